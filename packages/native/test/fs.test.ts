// The file-system calls Node lacks, against the real kernel: mknod, xattrs, flock (contended by a real child
// process running util-linux flock(1)), mount/umount. Needs root (this machine runs tests as root).
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  constants as C,
  flock,
  flockAsync,
  lgetxattr,
  llistxattr,
  lsetxattr,
  makedev,
  mknod,
  mount,
  umount,
} from '../src/index.js';
import type { NativeSystemError } from '../src/index.js';

const TMPFS_MAGIC = 0x01021994;

function tempDir(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'quark-native-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function systemError(e: unknown): NativeSystemError {
  if (!(e instanceof Error)) throw new Error(`expected an Error, got ${String(e)}`);
  return e as NativeSystemError;
}

test('we run as root (the mknod/xattr/mount tests need it)', (t) => {
  t.is(process.geteuid?.(), 0, 'run the native tests as root');
});

test('makedev matches the kernel (stat of /dev/null is 1:3)', (t) => {
  t.is(makedev(1, 3), statSync('/dev/null').rdev);
  t.is(makedev(8, 1), 0x801);
  t.is(makedev(0, 0x12345), 0x12300045);
  t.throws(() => makedev(-1, 0), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
});

test('mknod makes a FIFO and a character device', (t) => {
  const dir = tempDir(t);
  const fifo = join(dir, 'fifo');
  mknod(fifo, C.S_IFIFO | 0o600, 0);
  const s = statSync(fifo);
  t.true(s.isFIFO());
  t.is(s.mode & 0o777, 0o600);

  const nul = join(dir, 'null');
  mknod(nul, C.S_IFCHR | 0o666, makedev(1, 3));
  const d = statSync(nul);
  t.true(d.isCharacterDevice());
  t.is(d.rdev, makedev(1, 3));
  // It really is /dev/null: writes vanish, reads are empty.
  writeFileSync(nul, 'discarded');
  t.is(readFileSync(nul, 'utf8'), '');
});

test('mknod errors are Node-style system errors', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'f');
  mknod(path, C.S_IFIFO | 0o600, 0);
  const e = systemError(t.throws(() => mknod(path, C.S_IFIFO | 0o600, 0)));
  t.is(e.message, `EEXIST: file already exists, mknod '${path}'`);
  t.is(e.code, 'EEXIST');
  t.is(e.errno, -17);
  t.is(e.syscall, 'mknod');
  t.is(e.path, path);
  const missing = join(dir, 'no', 'such');
  t.like(systemError(t.throws(() => mknod(missing, C.S_IFIFO, 0))), { code: 'ENOENT', errno: -2, path: missing });
});

test('argument checking on the file-system calls', (t) => {
  t.throws(() => mknod(5 as unknown as string, 0, 0), {
    instanceOf: TypeError,
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "path" argument must be of type string. Received type number (5)',
  });
  t.throws(() => mknod('/tmp/a\0b', C.S_IFIFO, 0), {
    instanceOf: TypeError,
    code: 'ERR_INVALID_ARG_VALUE',
  });
  t.throws(() => lsetxattr('/tmp', 'user.x', 'text' as unknown as Buffer), {
    instanceOf: TypeError,
    message: 'The "value" argument must be an instance of Buffer or Uint8Array. Received type string (\'text\')',
  });
  t.throws(() => flock(0, 'bogus' as 'shared', true), {
    instanceOf: TypeError,
    code: 'ERR_INVALID_ARG_VALUE',
    message: "The argument 'op' must be one of 'shared', 'exclusive' or 'unlock'. Received type string ('bogus')",
  });
  t.throws(() => flock(-1, 'shared', true), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => mount(null, '/tmp', null, -1, null), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
});

test('xattrs: set, get, list, flags, missing (user. namespace)', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'f');
  writeFileSync(file, '');
  t.deepEqual(llistxattr(file), []);
  t.is(lgetxattr(file, 'user.quark.missing'), null);

  lsetxattr(file, 'user.quark.a', Buffer.from('hello'));
  lsetxattr(file, 'user.quark.empty', Buffer.alloc(0));
  lsetxattr(file, 'user.quark.bin', new Uint8Array([0, 255, 0]));
  t.is(lgetxattr(file, 'user.quark.a')?.toString(), 'hello');
  t.deepEqual(lgetxattr(file, 'user.quark.empty'), Buffer.alloc(0));
  t.deepEqual(lgetxattr(file, 'user.quark.bin'), Buffer.from([0, 255, 0]));
  t.true(Buffer.isBuffer(lgetxattr(file, 'user.quark.a')));
  t.deepEqual(llistxattr(file).sort(), ['user.quark.a', 'user.quark.bin', 'user.quark.empty']);

  // A large value (the two-call size protocol).
  const big = Buffer.alloc(3000, 7);
  lsetxattr(file, 'user.quark.big', big);
  t.deepEqual(lgetxattr(file, 'user.quark.big'), big);

  const exists = systemError(t.throws(() => lsetxattr(file, 'user.quark.a', Buffer.from('x'), C.XATTR_CREATE)));
  t.like(exists, { code: 'EEXIST', errno: -17, syscall: 'lsetxattr', path: file });
  const absent = systemError(t.throws(() => lsetxattr(file, 'user.quark.nope', Buffer.from('x'), C.XATTR_REPLACE)));
  t.like(absent, { code: 'ENODATA', errno: -61, syscall: 'lsetxattr' });
  lsetxattr(file, 'user.quark.a', Buffer.from('replaced'), C.XATTR_REPLACE);
  t.is(lgetxattr(file, 'user.quark.a')?.toString(), 'replaced');

  const missing = join(dir, 'missing');
  t.like(systemError(t.throws(() => llistxattr(missing))), { code: 'ENOENT', syscall: 'llistxattr', path: missing });
  t.like(systemError(t.throws(() => lgetxattr(missing, 'user.x'))), { code: 'ENOENT', syscall: 'lgetxattr' });
});

test('xattrs: trusted. namespace (root) and no following of symlinks', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'target');
  const link = join(dir, 'link');
  writeFileSync(file, '');
  symlinkSync(file, link);
  lsetxattr(file, 'trusted.overlay.opaque', Buffer.from('y'));
  t.is(lgetxattr(file, 'trusted.overlay.opaque')?.toString(), 'y');
  t.true(llistxattr(file).includes('trusted.overlay.opaque'));
  // The l* calls act on the link itself, which has no such attribute.
  t.is(lgetxattr(link, 'trusted.overlay.opaque'), null);
  t.false(llistxattr(link).includes('trusted.overlay.opaque'));
  lsetxattr(link, 'trusted.quark.link', Buffer.from('on-link'));
  t.is(lgetxattr(link, 'trusted.quark.link')?.toString(), 'on-link');
  t.is(lgetxattr(file, 'trusted.quark.link'), null);
  // The kernel refuses user. attributes on symlinks.
  t.like(systemError(t.throws(() => lsetxattr(link, 'user.x', Buffer.from('1')))), { code: 'EPERM' });
});

/** Starts util-linux flock(1) holding an exclusive lock on `file` until its stdin closes. */
async function holdLock(file: string) {
  const child = spawn('flock', ['--exclusive', file, 'sh', '-c', 'echo locked; read _'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  if (line.toString().trim() !== 'locked') throw new Error(`flock(1) said ${line.toString()}`);
  return {
    release: async () => {
      child.stdin.end();
      await once(child, 'exit');
    },
  };
}

test('flock: contention with a child process; flockAsync resolves after release', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'lock');
  writeFileSync(file, '');
  const fd = openSync(file, 'r+');
  t.teardown(() => closeSync(fd));

  const holder = await holdLock(file);
  t.false(flock(fd, 'exclusive', true));
  t.false(flock(fd, 'shared', true));

  let settled = false;
  const waiting = flockAsync(fd, 'exclusive').then(() => {
    settled = true;
  });
  await sleep(300);
  t.false(settled, 'flockAsync must wait while the child holds the lock');
  // The JS thread stays free meanwhile (the blocking flock runs on a Rust thread).
  t.false(flock(fd, 'shared', true));

  await holder.release();
  await waiting;
  t.true(settled);

  // Now we hold it: another process cannot take it, until we unlock.
  t.is(spawnSync('flock', ['--nonblock', '--exclusive', file, 'true']).status, 1);
  t.true(flock(fd, 'unlock', false));
  t.is(spawnSync('flock', ['--nonblock', '--exclusive', file, 'true']).status, 0);

  // Shared locks coexist.
  t.true(flock(fd, 'shared', true));
  t.is(spawnSync('flock', ['--nonblock', '--shared', file, 'true']).status, 0);
  t.true(flock(fd, 'unlock', false));
});

test('flock errors', async (t) => {
  const bad = systemError(t.throws(() => flock(987654, 'exclusive', true)));
  t.like(bad, { code: 'EBADF', errno: -9, syscall: 'flock', message: 'EBADF: bad file descriptor, flock' });
  const rejected = systemError(await t.throwsAsync(flockAsync(987654, 'shared')));
  t.like(rejected, { code: 'EBADF', errno: -9, syscall: 'flock' });
  t.throws(() => flockAsync(0, 'unlock' as 'shared'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
});

test('mount a tmpfs, write to it, umount', (t) => {
  const dir = tempDir(t);
  const target = join(dir, 'mnt');
  mkdirSync(target);
  const before = statfsSync(target).type;
  t.not(before, TMPFS_MAGIC);

  mount('tmpfs', target, 'tmpfs', C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC, 'size=1m,mode=0700');
  let mounted = true;
  t.teardown(() => {
    if (mounted) umount(target, C.MNT_DETACH);
  });
  t.is(statfsSync(target).type, TMPFS_MAGIC);
  t.is(statSync(target).mode & 0o777, 0o700);
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === target);
  t.truthy(line);
  t.regex(line ?? '', / - tmpfs tmpfs /);
  t.regex(line ?? '', /nosuid,nodev,noexec/);

  writeFileSync(join(target, 'x'), 'in tmpfs');
  t.is(readFileSync(join(target, 'x'), 'utf8'), 'in tmpfs');
  // size=1m is enforced: the kernel refuses a 2 MiB file.
  t.like(
    t.throws(() => writeFileSync(join(target, 'big'), Buffer.alloc(2 << 20))),
    { code: 'ENOSPC' },
  );

  umount(target, 0);
  mounted = false;
  t.is(statfsSync(target).type, before);
  t.throws(() => statSync(join(target, 'x')), { code: 'ENOENT' });

  const e = systemError(t.throws(() => umount(target, 0)));
  t.like(e, { code: 'EINVAL', errno: -22, syscall: 'umount2', path: target });
  t.is(e.message, `EINVAL: invalid argument, umount2 '${target}'`);
});

test('bind mount, read-only remount, detach', (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  const dst = join(dir, 'dst');
  mkdirSync(src);
  mkdirSync(dst);
  writeFileSync(join(src, 'f'), 'shared');
  mount(src, dst, null, C.MS_BIND, null);
  let mounted = true;
  t.teardown(() => {
    if (mounted) umount(dst, C.MNT_DETACH);
  });
  t.is(readFileSync(join(dst, 'f'), 'utf8'), 'shared');
  mount(null, dst, null, C.MS_BIND | C.MS_REMOUNT | C.MS_RDONLY, null);
  t.like(
    t.throws(() => writeFileSync(join(dst, 'g'), 'x')),
    { code: 'EROFS' },
  );
  writeFileSync(join(src, 'g'), 'still writable at the source');
  t.is(readFileSync(join(dst, 'g'), 'utf8'), 'still writable at the source');
  umount(dst, C.MNT_DETACH);
  mounted = false;
  t.throws(() => statSync(join(dst, 'f')), { code: 'ENOENT' });

  const e = systemError(t.throws(() => mount('none', join(dir, 'absent'), 'tmpfs', 0, null)));
  t.like(e, { code: 'ENOENT', syscall: 'mount', path: join(dir, 'absent') });
});
