import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, linkSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { TarReader, buildTar, parsePax, TarFormatError, type TarHeader } from '../src/tar.js';

interface Read extends TarHeader {
  data: Buffer;
}

async function readAll(buf: Buffer, chunk = 7919): Promise<Read[]> {
  // Small, odd chunk sizes exercise reads that straddle blocks.
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) chunks.push(buf.subarray(i, i + chunk));
  const r = new TarReader(Readable.from(chunks));
  const out: Read[] = [];
  for (let h = await r.next(); h; h = await r.next()) {
    const parts: Buffer[] = [];
    for await (const c of r.body()) parts.push(Buffer.from(c));
    out.push({ ...h, data: Buffer.concat(parts) });
  }
  return out;
}

function gnuTar(format: 'gnu' | 'pax' | 'ustar', build: (dir: string) => void, extra: string[] = []): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'oci-tar-'));
  try {
    build(dir);
    return execFileSync('tar', ['-C', dir, `--format=${format}`, '--numeric-owner', ...extra, '-cf', '-', '.'], {
      maxBuffer: 1 << 26,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const longDir = 'd'.repeat(120);
const longName = `${longDir}/${'f'.repeat(130)}`;

function tree(dir: string): void {
  mkdirSync(join(dir, longDir));
  writeFileSync(join(dir, longName), 'long\n');
  writeFileSync(join(dir, 'small'), 'x'.repeat(1000));
  writeFileSync(join(dir, 'empty'), '');
  symlinkSync('t'.repeat(150), join(dir, 'longlink'));
  symlinkSync('small', join(dir, 'sym'));
  linkSync(join(dir, 'small'), join(dir, 'hard'));
}

for (const format of ['gnu', 'pax'] as const) {
  test(`reads GNU tar --format=${format}: long names, links, contents`, async (t) => {
    const entries = await readAll(gnuTar(format, tree));
    const by = new Map(entries.map((e) => [e.name.replace(/^\.\//, '').replace(/\/$/, ''), e]));
    t.is(by.get(longName)?.data.toString(), 'long\n');
    t.is(by.get(longDir)?.type, 'directory');
    t.is(by.get('small')?.data.length, 1000);
    t.is(by.get('empty')?.size, 0);
    t.is(by.get('longlink')?.type, 'symlink');
    t.is(by.get('longlink')?.linkname, 't'.repeat(150));
    t.is(by.get('sym')?.linkname, 'small');
    const hard = by.get('hard') ?? by.get('small');
    t.truthy(hard);
    const link = entries.find((e) => e.type === 'link');
    t.truthy(link, 'one of small/hard is a hard link');
    t.regex(link?.linkname ?? '', /small|hard/);
  });
}

test('reads pax xattrs (security.capability) written by GNU tar', async (t) => {
  const buf = gnuTar(
    'pax',
    (dir) => {
      writeFileSync(join(dir, 'ping'), 'bin');
      execFileSync('setcap', ['cap_net_raw+ep', join(dir, 'ping')]);
    },
    ['--xattrs', '--xattrs-include=*'],
  );
  const ping = (await readAll(buf)).find((e) => e.name.endsWith('ping'));
  const cap = ping?.xattrs.get('security.capability');
  t.truthy(cap);
  t.is(cap?.length, 20, 'VFS_CAP_REVISION_2 is 20 bytes');
});

test('round-trips every entry type through buildTar', async (t) => {
  const buf = buildTar([
    { name: 'dir/', type: 'directory', mode: 0o1777, uid: 1, gid: 2, mtime: 1700000000 },
    {
      name: 'dir/file',
      type: 'file',
      mode: 0o4755,
      data: 'hello',
      uid: 1000,
      gid: 1000,
      xattrs: { 'user.k': Buffer.from([0, 1, 2, 255]) },
    },
    { name: 'dir/hl', type: 'link', linkname: 'dir/file' },
    { name: 'sl', type: 'symlink', linkname: '../../etc/passwd' },
    { name: 'null', type: 'chardev', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'sda', type: 'blockdev', devmajor: 8, devminor: 0 },
    { name: 'p', type: 'fifo' },
    { name: `${'a'.repeat(200)}/${'b'.repeat(200)}`, type: 'file', data: 'deep' },
  ]);
  const e = await readAll(buf, 100);
  t.deepEqual(
    e.map((x) => [x.name, x.type]),
    [
      ['dir/', 'directory'],
      ['dir/file', 'file'],
      ['dir/hl', 'link'],
      ['sl', 'symlink'],
      ['null', 'chardev'],
      ['sda', 'blockdev'],
      ['p', 'fifo'],
      [`${'a'.repeat(200)}/${'b'.repeat(200)}`, 'file'],
    ],
  );
  t.is(e[0]?.mode, 0o1777);
  t.is(e[1]?.mode, 0o4755);
  t.is(e[1]?.uid, 1000);
  t.is(e[1]?.data.toString(), 'hello');
  t.deepEqual(e[1]?.xattrs.get('user.k'), Buffer.from([0, 1, 2, 255]));
  t.is(e[3]?.linkname, '../../etc/passwd');
  t.is(e[4]?.devmajor, 1);
  t.is(e[4]?.devminor, 3);
  t.is(e[7]?.data.toString(), 'deep');
});

test('GNU tar can read what buildTar writes', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'oci-tar-'));
  try {
    const buf = buildTar([
      { name: 'a/', type: 'directory' },
      { name: `a/${'n'.repeat(150)}`, type: 'file', data: 'content' },
    ]);
    execFileSync('tar', ['-C', dir, '-xf', '-'], { input: buf });
    t.is(readFileSync(join(dir, 'a', 'n'.repeat(150)), 'utf8'), 'content');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('base-256 numeric fields (GNU, large uid)', async (t) => {
  const buf = buildTar([{ name: 'f', type: 'file', data: 'x' }]);
  // uid field at 108..116: 0x80 marker then big-endian 7 bytes of 3000000.
  const h = Buffer.from(buf.subarray(0, 512));
  h.fill(0, 108, 116);
  h[108] = 0x80;
  h.writeUIntBE(3000000, 110, 6);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of h) sum += c;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const e = await readAll(Buffer.concat([h, buf.subarray(512)]));
  t.is(e[0]?.uid, 3000000);
});

test('bad checksum and truncation are errors', async (t) => {
  const buf = buildTar([{ name: 'f', type: 'file', data: 'x'.repeat(2000) }]);
  const bad = Buffer.from(buf);
  bad[0] = 0x41;
  await t.throwsAsync(readAll(bad), { instanceOf: TarFormatError, message: /checksum/ });
  await t.throwsAsync(readAll(buf.subarray(0, 1024)), { instanceOf: TarFormatError, message: /truncated/ });
});

test('pax record parsing', (t) => {
  const m = parsePax(Buffer.from('12 path=abc\n17 uid=123456789\n'));
  t.is(m.get('path')?.toString(), 'abc');
  t.is(m.get('uid')?.toString(), '123456789');
  t.throws(() => parsePax(Buffer.from('99 path=abc\n')), { instanceOf: TarFormatError });
});

test('skipping unread bodies', async (t) => {
  const buf = buildTar([
    { name: 'a', type: 'file', data: 'A'.repeat(5000) },
    { name: 'b', type: 'file', data: 'B' },
  ]);
  const r = new TarReader(Readable.from([buf]));
  t.is((await r.next())?.name, 'a');
  const b = await r.next();
  t.is(b?.name, 'b');
  let s = '';
  for await (const c of r.body()) s += c.toString();
  t.is(s, 'B');
  t.is(await r.next(), null);
});
