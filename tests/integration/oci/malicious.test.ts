// Malicious layers from a real registry: path traversal, absolute paths, symlink escapes and hard links out
// of the snapshot are refused with a clear error and leave nothing behind; a device node is refused when
// unpacking as an unprivileged user (a child process running as nobody via setpriv).
import test from 'ava';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildTar, ContentStore, pull, UnpackError, type TarWriteEntry } from '@quark/oci';
import {
  addRawLayer,
  buildBusybox,
  execFileP,
  push,
  requireTools,
  startRegistry,
  tempDir,
  type Registry,
  type TempDir,
} from './helpers.js';

const execFileAsync = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
let dir: TempDir;
let reg: Registry;
let outside: string;
let n = 0;
const root = (): string => join(dir.path, `root-${n++}`);

type Entry = TarWriteEntry & { data?: string };
const cases: [string, (out: string) => Entry[], RegExp][] = [
  [
    'path traversal',
    () => [{ name: '../../../../../../tmp/quark-pwned', type: 'file', data: 'x' }],
    /layer entry "\.\.\/.*" escapes the snapshot with "\.\."/,
  ],
  ['absolute path', (o) => [{ name: `${o}/victim`, type: 'file', data: 'pwned' }], /has an absolute path/],
  [
    'symlink escape',
    (o) => [
      { name: 'evil', type: 'symlink', linkname: o },
      { name: 'evil/victim', type: 'file', data: 'pwned' },
    ],
    /layer entry "evil\/victim" traverses the symlink "evil": refusing to follow it/,
  ],
  [
    'symlink escape through a lower layer',
    () => [{ name: 'bin/sh/../../x', type: 'file', data: 'pwned' }],
    /escapes the snapshot/,
  ],
  [
    'symlink of a lower layer as parent',
    () => [{ name: 'bin/sh/owned', type: 'file', data: 'pwned' }],
    /traverses the symlink "bin\/sh"/,
  ],
  [
    'hard link out',
    (o) => [{ name: 'h', type: 'link', linkname: `../../../../../../../..${o}/victim` }],
    /escapes the snapshot/,
  ],
];

test.before(async () => {
  requireTools();
  dir = tempDir('malicious');
  outside = join(dir.path, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'victim'), 'original');
  reg = await startRegistry(dir.path);
  const layout = await buildBusybox(dir.path);
  for (const [i, [, entries]] of cases.entries()) {
    await execFileP('umoci', ['tag', '--image', `${layout}:latest`, `evil${i}`]);
    await addRawLayer(layout, `evil${i}`, buildTar(entries(outside)), dir.path);
    await push(layout, `evil${i}`, `${reg.host}/evil:${i}`);
  }
});

test.after.always(async () => {
  await reg?.stop();
  dir?.cleanup();
});

for (const [i, [what, , re]] of cases.entries()) {
  for (const snapshotter of ['overlay', 'merged'] as const) {
    test(`refused: ${what} (${snapshotter})`, async (t) => {
      const r = root();
      const e = await t.throwsAsync(pull(`${reg.host}/evil:${i}`, { root: r, snapshotter }), {
        instanceOf: UnpackError,
      });
      t.regex(e?.message ?? '', re);
      t.is(readFileSync(join(outside, 'victim'), 'utf8'), 'original');
      t.deepEqual(readdirSync(outside), ['victim']);
      t.false(existsSync('/tmp/quark-pwned'));
      t.deepEqual(await new ContentStore(r).listImages(), [], 'no image recorded');
      t.deepEqual(readdirSync(join(r, 'oci/tmp')), [], 'no half-unpacked snapshot left');
      // Only the good base layer has a snapshot.
      t.is(readdirSync(join(r, 'oci/snapshots', snapshotter)).filter((f) => !f.endsWith('.lock')).length, 1);
    });
  }
}

async function asNobody(job: object): Promise<{ ok: boolean; error?: string; uid: number }> {
  const args = [
    '--reuid=65534',
    '--regid=65534',
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    process.execPath,
    '--import',
    'tsx',
    '--conditions=quark-source',
    join(here, 'child.ts'),
    JSON.stringify(job),
  ];
  try {
    const { stdout } = await execFileAsync('setpriv', args, { cwd: join(here, '../../..') });
    return JSON.parse(stdout) as { ok: boolean; uid: number };
  } catch (e) {
    const out = (e as { stdout?: string }).stdout ?? '';
    if (!out.trim().startsWith('{')) throw e;
    return JSON.parse(out) as { ok: boolean; error: string; uid: number };
  }
}

test('a device node is refused when unpacking as an unprivileged user', async (t) => {
  const work = join(dir.path, 'nobody');
  chmodSync(dir.path, 0o755); // mkdtemp makes it 0700: let nobody reach its own directory
  mkdirSync(join(work, 'ok'), { recursive: true });
  mkdirSync(join(work, 'dev'), { recursive: true });
  for (const d of [work, join(work, 'ok'), join(work, 'dev')]) chownSync(d, 65534, 65534);
  const good = join(work, 'good.tar');
  const bad = join(work, 'bad.tar');
  writeFileSync(
    good,
    buildTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', type: 'file', data: 'x\n' },
    ]),
  );
  writeFileSync(
    bad,
    buildTar([
      { name: 'dev/', type: 'directory' },
      { name: 'dev/sda', type: 'blockdev', devmajor: 8, devminor: 0, mode: 0o660 },
    ]),
  );
  // The child really is unprivileged and can unpack an ordinary layer.
  const ok = await asNobody({ op: 'unpack', tar: good, dest: join(work, 'ok') });
  t.deepEqual(ok, { ok: true, entries: 2, uid: 65534 });
  const res = await asNobody({ op: 'unpack', tar: bad, dest: join(work, 'dev') });
  t.is(res.uid, 65534);
  t.false(res.ok);
  t.regex(
    res.error ?? '',
    /layer entry "dev\/sda" is a block device \(8:0\): creating device nodes needs root; refusing to unpack this layer unprivileged/,
  );
  t.false(existsSync(join(work, 'dev', 'dev', 'sda')));
});
