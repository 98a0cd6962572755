// The guest VFS (issue 6) against Linux: a dynamically linked program runs
// natively in a chroot and in the sandbox over two identical roots holding
// it, ld.so and libc; outputs and exit status must match byte for byte.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findSandboxBinary } from '@quark/quark';
import { compileC, guestDir, Rootfs, runGuest, runNative } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'quark-files-'));
const program = join(work, 'files');
const cc = spawnSync('gcc', ['-O2', '-o', program, join(guestDir, 'files', 'files.c')], { encoding: 'utf8' });
if (cc.status !== 0) throw new Error(`gcc files.c failed:\n${cc.stderr}`);

/** A root with the program, the dynamic loader, libc and an empty /tmp. */
function dynamicRoot(): Rootfs {
  const r = new Rootfs(program);
  mkdirSync(join(r.dir, 'tmp'));
  mkdirSync(join(r.dir, 'lib64'));
  mkdirSync(join(r.dir, 'lib/x86_64-linux-gnu'), { recursive: true });
  copyFileSync('/lib64/ld-linux-x86-64.so.2', join(r.dir, 'lib64/ld-linux-x86-64.so.2'));
  copyFileSync('/lib/x86_64-linux-gnu/libc.so.6', join(r.dir, 'lib/x86_64-linux-gnu/libc.so.6'));
  return r;
}

const roots: Rootfs[] = [];
test.after.always(() => {
  for (const r of roots) r.dispose();
  rmSync(work, { recursive: true, force: true });
});

test('a dynamic program: files, directories, links, mmap, pipes, fork and a #! script match Linux', async (t) => {
  const native = dynamicRoot();
  const guest = dynamicRoot();
  roots.push(native, guest);
  const n = await runNative(native);
  t.is(n.status, 0, `native run: ${n.stdout}${n.stderr}`);
  const g = await runGuest(guest, { log: join(work, 'files.log') });
  t.is(g.stdout, n.stdout);
  t.is(g.stderr, n.stderr);
  t.is(g.status, n.status);
  // What the guest left behind on the host is what Linux left.
  t.deepEqual(readdirSync(join(guest.dir, 'tmp')).sort(), readdirSync(join(native.dir, 'tmp')).sort());
  t.log(`native ${n.ms.toFixed(0)} ms, sandbox ${g.ms.toFixed(0)} ms`);
});

test('a read-only root refuses writes with EROFS and still runs the program', async (t) => {
  const guest = dynamicRoot();
  roots.push(guest);
  const r = spawnSync(findSandboxBinary(), ['--rootfs', guest.dir, '--read-only', '--', '/files'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.is(r.status, 1, r.stderr);
  t.regex(r.stdout, /FAIL line \d+: fd >= 0 \(errno Read-only file system\)/);
  t.deepEqual(readdirSync(join(guest.dir, 'tmp')), []);
});

test('poll, select, epoll (level, edge, oneshot) and eventfd over pipes match Linux', async (t) => {
  const bin = compileC(join(guestDir, 'files', 'poll.c'), join(work, 'poll'));
  const native = new Rootfs(bin);
  const guest = new Rootfs(bin);
  roots.push(native, guest);
  const n = await runNative(native);
  t.is(n.status, 0, n.stdout);
  const g = await runGuest(guest);
  t.is(g.stdout, n.stdout);
  t.is(g.status, n.status);
});
