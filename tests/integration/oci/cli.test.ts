// The image commands (pull, images, rmi, inspect, load, save) run through a small yargs instance, the way the
// quark CLI registers them; archives made by skopeo are loaded and `save` output is read back by skopeo.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import yargs from 'yargs';
import { createOciCommands, ociGlobalOptions, prepareRootfs, type ImageSummary } from '@quark/oci';
import {
  buildBusybox,
  execFileP,
  push,
  requireTools,
  sha256,
  startRegistry,
  tempDir,
  type Registry,
  type TempDir,
} from './helpers.js';

let dir: TempDir;
let reg: Registry;
let layout: string;
let n = 0;
const root = (): string => join(dir.path, `root-${n++}`);

class Capture {
  text = '';
  constructor(readonly isTTY = false) {}
  columns = 100;
  write(s: string): boolean {
    this.text += s;
    return true;
  }
}

async function quark(args: string[], tty = false): Promise<{ out: string; err: string }> {
  const stdout = new Capture(tty);
  const stderr = new Capture(tty);
  await yargs([])
    .options(ociGlobalOptions)
    .command(createOciCommands({ stdout, stderr }))
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseAsync(args);
  return { out: stdout.text, err: stderr.text };
}

test.before(async () => {
  requireTools();
  dir = tempDir('cli');
  reg = await startRegistry(dir.path);
  layout = await buildBusybox(dir.path, { cmd: ['/bin/echo', 'hi'] });
  await push(layout, 'latest', `${reg.host}/busybox:oci`, { format: 'oci' });
});

test.after.always(async () => {
  await reg?.stop();
  dir?.cleanup();
});

test('pull prints plain progress lines when not on a TTY', async (t) => {
  const r = root();
  const { out, err } = await quark(['pull', `${reg.host}/busybox:oci`, '--root', r]);
  t.regex(
    out,
    new RegExp(
      `^${reg.host}/busybox:oci: pulled in \\d+\\.\\d s\\nDigest: sha256:[a-f0-9]{64}\\nImage ID: sha256:[a-f0-9]{64}\\n$`,
    ),
  );
  t.regex(err, /resolved to sha256:/);
  t.regex(err, /layer [a-f0-9]{12}: downloading 1\.\d+ MB/);
  t.regex(err, /layer [a-f0-9]{12}: downloaded 1\.\d+ MB in \d+\.\d s/);
  t.regex(err, /layer [a-f0-9]{12}: unpacked in/);
  t.false(err.includes('\u001b['), 'no escape sequences in plain mode');
  // A second pull finds everything present.
  const again = await quark(['pull', `${reg.host}/busybox:oci`, '--root', r]);
  t.regex(again.err, /already present/);
});

test('pull draws progress bars on a TTY', async (t) => {
  const { err } = await quark(['pull', `${reg.host}/busybox:oci`, '--root', root()], true);
  const ESC = String.fromCharCode(27);
  t.true(
    err
      .split(`${ESC}[`)
      .slice(1)
      .some((s) => /^\d+A/.test(s)),
    'redraws in place',
  );
  t.regex(err, /layer [a-f0-9]{12}\s+\w+.*\[=+\] 1\.\d+ MB\/1\.\d+ MB/);
});

test('images: table, json, quiet; inspect; rmi', async (t) => {
  const r = root();
  await quark(['pull', `${reg.host}/busybox:oci`, '--root', r, '-q']);
  const table = (await quark(['images', '--root', r])).out.split('\n');
  t.regex(table[0] ?? '', /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  t.regex(table[1] ?? '', new RegExp(`^${reg.host}/busybox\\s+oci\\s+[a-f0-9]{12}\\s+.*ago\\s+1\\.\\d+ MB$`));
  const json = JSON.parse((await quark(['images', '--root', r, '--format', 'json'])).out) as ImageSummary[];
  t.is(json.length, 1);
  t.is(json[0]?.name, `${reg.host}/busybox:oci`);
  t.is(json[0]?.platform, 'linux/amd64');
  const id = json[0]?.id ?? '';
  t.is((await quark(['images', '--root', r, '-q'])).out, `${id.slice(7, 19)}\n`);
  const info = JSON.parse((await quark(['inspect', `${reg.host}/busybox:oci`, '--root', r])).out) as {
    Id: string;
    Digest: string;
    RepoDigests: string[];
    Config: { cmd: string[] };
    RepoTags: string[];
  };
  t.is(info.Id, id);
  t.deepEqual(info.RepoDigests, [`${reg.host}/busybox@${info.Digest}`]);
  t.deepEqual(info.Config.cmd, ['/bin/echo', 'hi']);
  t.deepEqual(info.RepoTags, [`${reg.host}/busybox:oci`]);
  const rm = await quark(['rmi', id.slice(7, 15), '--root', r]);
  t.regex(rm.out, new RegExp(`^Untagged: ${reg.host}/busybox:oci\\n(Deleted: sha256:[a-f0-9]{64}\\n){3}Reclaimed`));
  t.is((await quark(['images', '--root', r])).out.split('\n').length, 2, 'header only');
  await t.throwsAsync(quark(['rmi', 'busybox', '--root', r]), { message: /image "busybox" is not in the local store/ });
  await t.throwsAsync(quark(['inspect', 'nothing', '--root', r]), { message: /not in the local store/ });
});

test('pull errors are clear', async (t) => {
  await t.throwsAsync(quark(['pull', `${reg.host}/busybox:missing`, '--root', root()]), {
    message: /not found .*HTTP 404/,
  });
  await t.throwsAsync(quark(['pull', 'Not A Ref', '--root', root()]), { message: /invalid image reference/ });
});

for (const format of ['oci-archive', 'docker-archive'] as const) {
  test(`load -i a ${format} written by skopeo, then run offline`, async (t) => {
    const r = root();
    const file = join(dir.path, `busybox-${format}-${n++}.tar`);
    const dest =
      format === 'oci-archive'
        ? `oci-archive:${file}:docker.io/library/busybox:latest`
        : `docker-archive:${file}:busybox:latest`;
    await execFileP('skopeo', ['copy', '--quiet', `oci:${layout}:latest`, dest]);
    const { out } = await quark(['load', '-i', file, '--root', r]);
    t.is(out, `Loaded image: docker.io/library/busybox:latest (${format})\n`);
    const p = await prepareRootfs('busybox', { root: r, pullPolicy: 'never' });
    try {
      t.is(sha256(readFileSync(join(p.rootfs, 'bin/busybox'))), sha256(readFileSync('/bin/busybox')));
      t.deepEqual(p.config.cmd, ['/bin/echo', 'hi']);
    } finally {
      await p.cleanup();
    }
  });
}

test('save writes an OCI archive that skopeo reads and load restores', async (t) => {
  const r = root();
  await quark(['pull', `${reg.host}/busybox:oci`, '--root', r, '-q']);
  const file = join(dir.path, 'saved.tar');
  const { err } = await quark(['save', `${reg.host}/busybox:oci`, '-o', file, '--root', r]);
  t.regex(err, /Saved .* \(3 blobs\)/);
  const { stdout } = await execFileP('skopeo', ['inspect', '--raw', `oci-archive:${file}:oci`]);
  const id = JSON.parse((await quark(['images', '--root', r, '--format', 'json'])).out) as ImageSummary[];
  t.is(JSON.parse(stdout).config.digest, id[0]?.id);
  const r2 = root();
  const loaded = await quark(['load', '-i', file, '--root', r2]);
  t.is(loaded.out, `Loaded image: ${reg.host}/busybox:oci (oci-archive)\n`);
  const id2 = JSON.parse((await quark(['images', '--root', r2, '--format', 'json'])).out) as ImageSummary[];
  t.is(id2[0]?.id, id[0]?.id);
  t.is(id2[0]?.digest, id[0]?.digest);
});
