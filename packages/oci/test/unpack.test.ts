import test from 'ava';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  readdirSync,
  rmSync,
  mkdirSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { buildTar, type TarWriteEntry } from '../src/tar.js';
import { cleanEntryPath, unpackLayer, UnpackError } from '../src/unpack.js';
import { sha256 } from '../src/digest.js';
import type { Compression } from '../src/types.js';

type E = TarWriteEntry & { data?: string | Buffer };

function sandbox(): { root: string; dest: string; outside: string; done: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'oci-unpack-'));
  const dest = join(root, 'fs');
  const outside = join(root, 'outside');
  mkdirSync(dest);
  mkdirSync(outside);
  writeFileSync(join(outside, 'victim'), 'original');
  return { root, dest, outside, done: () => rmSync(root, { recursive: true, force: true }) };
}

async function apply(dest: string, entries: E[], compression: Compression = 'none', privileged?: boolean) {
  const tar = buildTar(entries);
  let blob = tar;
  if (compression === 'gzip') blob = gzipSync(tar);
  if (compression === 'zstd') blob = execFileSync('zstd', ['-q', '-c'], { input: tar });
  const opts = privileged === undefined ? { format: 'merged' as const } : { format: 'merged' as const, privileged };
  const r = await unpackLayer(Readable.from([blob]), compression, dest, opts);
  return { ...r, tarDigest: sha256(tar) };
}

test('cleanEntryPath', (t) => {
  t.deepEqual(cleanEntryPath('./a//b/./c/'), ['a', 'b', 'c']);
  t.deepEqual(cleanEntryPath('./'), []);
  t.throws(() => cleanEntryPath('/etc/passwd'), { instanceOf: UnpackError, message: /absolute/ });
  t.throws(() => cleanEntryPath('a/../../b'), { instanceOf: UnpackError, message: /escapes/ });
  t.throws(() => cleanEntryPath('a/..'), { instanceOf: UnpackError });
});

for (const compression of ['none', 'gzip', 'zstd'] as const) {
  test(`unpacks files, dirs, links (${compression}); diff ID is the tar's sha256`, async (t) => {
    const s = sandbox();
    try {
      const r = await apply(
        s.dest,
        [
          { name: 'etc/', type: 'directory', mode: 0o755 },
          { name: 'etc/hosts', type: 'file', mode: 0o644, data: '127.0.0.1 localhost\n', mtime: 1600000000 },
          { name: 'bin/', type: 'directory', mode: 0o755 },
          { name: 'bin/tool', type: 'file', mode: 0o4755, data: 'ELF' },
          { name: 'bin/sh', type: 'symlink', linkname: 'tool' },
          { name: 'bin/hl', type: 'link', linkname: 'bin/tool' },
          { name: 'ro/', type: 'directory', mode: 0o555 },
          { name: 'ro/inside', type: 'file', mode: 0o400, data: 'x' },
          { name: 'tmp/', type: 'directory', mode: 0o1777 },
          { name: 'p', type: 'fifo', mode: 0o600 },
        ],
        compression,
      );
      t.is(r.diffId, r.tarDigest);
      t.is(readFileSync(join(s.dest, 'etc/hosts'), 'utf8'), '127.0.0.1 localhost\n');
      t.is(lstatSync(join(s.dest, 'etc/hosts')).mtimeMs, 1600000000_000);
      t.is(lstatSync(join(s.dest, 'bin/tool')).mode & 0o7777, 0o4755);
      t.is(readlinkSync(join(s.dest, 'bin/sh')), 'tool');
      t.is(lstatSync(join(s.dest, 'bin/hl')).ino, lstatSync(join(s.dest, 'bin/tool')).ino);
      t.is(lstatSync(join(s.dest, 'ro')).mode & 0o7777, 0o555);
      t.is(lstatSync(join(s.dest, 'tmp')).mode & 0o7777, 0o1777);
      t.true(lstatSync(join(s.dest, 'p')).isFIFO());
    } finally {
      s.done();
    }
  });
}

test('zstd through fzstd gives the same tree', async (t) => {
  const s = sandbox();
  try {
    const tar = buildTar([{ name: 'big', type: 'file', data: Buffer.alloc(3 << 20, 7) }]);
    const blob = execFileSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 1 << 26 });
    const r = await unpackLayer(Readable.from([blob]), 'zstd', s.dest, { format: 'merged', zstd: 'fzstd' });
    t.is(r.diffId, sha256(tar));
    t.is(readFileSync(join(s.dest, 'big')).length, 3 << 20);
  } finally {
    s.done();
  }
});

test('whiteouts and opaque directories in merged snapshots', async (t) => {
  const s = sandbox();
  try {
    await apply(s.dest, [
      { name: 'a/', type: 'directory' },
      { name: 'a/keep', type: 'file', data: '1' },
      { name: 'a/gone', type: 'file', data: '2' },
      { name: 'b/', type: 'directory' },
      { name: 'b/old1', type: 'file', data: '3' },
      { name: 'b/sub/', type: 'directory' },
      { name: 'b/sub/old2', type: 'file', data: '4' },
      { name: 'c/', type: 'directory' },
      { name: 'c/x', type: 'file', data: '5' },
    ]);
    await apply(s.dest, [
      { name: 'a/.wh.gone', type: 'file' },
      { name: 'b/', type: 'directory' },
      { name: 'b/.wh..wh..opq', type: 'file' },
      { name: 'b/new', type: 'file', data: '6' },
      { name: '.wh.c', type: 'file' },
    ]);
    t.deepEqual(readdirSync(join(s.dest, 'a')), ['keep']);
    t.deepEqual(readdirSync(join(s.dest, 'b')), ['new']);
    t.false(existsSync(join(s.dest, 'c')));
    t.false(readdirSync(s.dest).some((n) => n.startsWith('.wh.')));
  } finally {
    s.done();
  }
});

test('opaque marker after new entries keeps what this layer wrote', async (t) => {
  const s = sandbox();
  try {
    await apply(s.dest, [
      { name: 'd/', type: 'directory' },
      { name: 'd/old', type: 'file', data: 'o' },
    ]);
    await apply(s.dest, [
      { name: 'd/', type: 'directory' },
      { name: 'd/new', type: 'file', data: 'n' },
      { name: 'd/.wh..wh..opq', type: 'file' },
    ]);
    t.deepEqual(readdirSync(join(s.dest, 'd')), ['new']);
  } finally {
    s.done();
  }
});

const malicious: [string, E[], RegExp][] = [
  ['dot-dot path', [{ name: '../outside/victim', type: 'file', data: 'pwned' }], /escapes the snapshot/],
  ['nested dot-dot', [{ name: 'a/../../outside/victim', type: 'file', data: 'pwned' }], /escapes the snapshot/],
  ['absolute path', [{ name: '/outside/victim', type: 'file', data: 'pwned' }], /absolute path/],
  [
    'symlink parent (absolute target)',
    [
      { name: 'esc', type: 'symlink', linkname: '/' },
      { name: 'esc/tmp/pwned', type: 'file', data: 'pwned' },
    ],
    /traverses the symlink "esc"/,
  ],
  [
    'symlink parent (relative target)',
    [
      { name: 'esc', type: 'symlink', linkname: '../outside' },
      { name: 'esc/victim', type: 'file', data: 'pwned' },
    ],
    /traverses the symlink "esc"/,
  ],
  [
    'symlink in the middle',
    [
      { name: 'a/', type: 'directory' },
      { name: 'a/l', type: 'symlink', linkname: '../../outside' },
      { name: 'a/l/victim', type: 'file', data: 'pwned' },
    ],
    /traverses the symlink "a\/l"/,
  ],
  ['hard link out', [{ name: 'h', type: 'link', linkname: '../outside/victim' }], /escapes the snapshot/],
  [
    'hard link through symlink',
    [
      { name: 'esc', type: 'symlink', linkname: '../outside' },
      { name: 'h', type: 'link', linkname: 'esc/victim' },
    ],
    /traverses the symlink "esc"/,
  ],
  [
    'whiteout through symlink',
    [
      { name: 'esc', type: 'symlink', linkname: '../outside' },
      { name: 'esc/.wh.victim', type: 'file' },
    ],
    /traverses/,
  ],
  [
    'char device unprivileged',
    [
      { name: 'dev/', type: 'directory' },
      { name: 'dev/mem', type: 'chardev', devmajor: 1, devminor: 1 },
    ],
    /device.*needs root/,
  ],
];

for (const [what, entries, re] of malicious) {
  test(`refuses a malicious layer: ${what}`, async (t) => {
    const s = sandbox();
    try {
      await t.throwsAsync(apply(s.dest, entries, 'gzip', false), { instanceOf: UnpackError, message: re });
      t.is(readFileSync(join(s.outside, 'victim'), 'utf8'), 'original');
      t.deepEqual(readdirSync(s.outside), ['victim']);
      t.false(existsSync('/tmp/pwned'));
    } finally {
      s.done();
    }
  });
}

test('an existing symlink is replaced, never written through', async (t) => {
  const s = sandbox();
  try {
    await apply(s.dest, [{ name: 'f', type: 'symlink', linkname: join(s.outside, 'victim') }]);
    await apply(s.dest, [{ name: 'f', type: 'file', data: 'new' }]);
    t.true(lstatSync(join(s.dest, 'f')).isFile());
    t.is(readFileSync(join(s.dest, 'f'), 'utf8'), 'new');
    t.is(readFileSync(join(s.outside, 'victim'), 'utf8'), 'original');
  } finally {
    s.done();
  }
});

test('diff ID mismatch is an error', async (t) => {
  const s = sandbox();
  try {
    const tar = buildTar([{ name: 'f', type: 'file', data: 'x' }]);
    await t.throwsAsync(
      unpackLayer(Readable.from([tar]), 'none', s.dest, { format: 'merged', diffId: sha256('other') }),
      {
        message: /does not match the image config/,
      },
    );
  } finally {
    s.done();
  }
});

test('corrupt gzip is an error', async (t) => {
  const s = sandbox();
  try {
    const gz = gzipSync(buildTar([{ name: 'f', type: 'file', data: 'x'.repeat(10000) }]));
    gz[gz.length - 5] = (gz[gz.length - 5] ?? 0) ^ 0xff;
    await t.throwsAsync(unpackLayer(Readable.from([gz]), 'gzip', s.dest, { format: 'merged' }), {
      message: /gzip|malformed|truncated/,
    });
  } finally {
    s.done();
  }
});
