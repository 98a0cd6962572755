// Failures no correct program can cause, planted through the test-only
// quark_test system call: a guest kernel panic, a supervisor-mode hang, a VMM
// call naming memory outside the guest, and a forbidden host system call.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileC, guestDir, Rootfs, runGuest } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'quark-hooks-'));
const binary = compileC(join(guestDir, 'hooks', 'quark_test.c'), join(work, 'quark_test'));
const root = new Rootfs(binary);
test.after.always(() => {
  root.dispose();
  rmSync(work, { recursive: true, force: true });
});

/** Processes of sandbox `id` still alive (none may survive it). */
function leftovers(id: string): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes('quark-sandbox') && l.includes(`--id ${id} `));
}

test('the leftover check sees a running sandbox', async (t) => {
  const running = runGuest(root, { args: ['nop', '2000'], testHooks: true, id: 'hook-alive' });
  await new Promise((r) => setTimeout(r, 300));
  t.true(leftovers('hook-alive').length > 0, 'a running sandbox is visible to the check');
  t.is((await running).status, 0);
  t.deepEqual(leftovers('hook-alive'), []);
});

test('a planted guest kernel panic is reported with message, RIP and return addresses', async (t) => {
  const log = join(work, 'panic.log');
  const id = 'hook-panic';
  const r = await runGuest(root, { args: ['panic'], testHooks: true, log, id });
  t.is(r.status, 125, r.stderr);
  t.regex(r.stderr, /guest kernel panic on vCPU 0: kernel panic: planted test panic/);
  t.is(r.stdout, '', 'nothing reaches the program\'s stdout');
  const text = readFileSync(log, 'utf8');
  t.regex(text, /planted test panic \(quark_test PANIC\) at src\/syscalls\/sys_test\.rs:\d+/, 'source location');
  t.regex(text, /rip 0xffffffff8[0-9a-f]+ <[^>]+>/, 'RIP, symbolised');
  t.regex(text, /return addresses: .*syscall_dispatch\+0x[0-9a-f]+/, 'the stack scan names the callers');
  t.deepEqual(leftovers(id), []);
});

test('a vCPU hung in supervisor mode is detected, dumped and aborted', async (t) => {
  const log = join(work, 'hang.log');
  const id = 'hook-hang';
  const r = await runGuest(root, { args: ['hang'], testHooks: true, log, id, hangTimeoutSeconds: 3, timeoutMs: 30_000 });
  t.is(r.status, 125, r.stderr);
  t.regex(r.stderr, /vCPU 0 hung in the guest kernel for \d+ s without progress/);
  t.true(r.ms < 15_000, `aborted after ${Math.round(r.ms)} ms`);
  t.regex(readFileSync(log, 'utf8'), /rip 0xffffffff8[0-9a-f]+ <[^>]+> rsp 0x[0-9a-f]+ rax/, 'registers are dumped, symbolised');
  t.deepEqual(leftovers(id), []);
});

test('a VMM call naming memory outside guest RAM is refused with EFAULT', async (t) => {
  const log = join(work, 'bad.log');
  const r = await runGuest(root, { args: ['bad-hcall'], testHooks: true, log });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, 'bad-hcall: EFAULT\n');
  t.regex(readFileSync(log, 'utf8'), /refused a VMM call naming memory outside the guest/);
});

test('a forbidden host system call from the VMM kills the sandbox (seccomp)', async (t) => {
  const id = 'hook-seccomp';
  const r = await runGuest(root, { args: ['forbidden'], testHooks: true, id });
  t.is(r.status, 125, r.stderr);
  t.regex(r.stderr, /killed by its seccomp filter/);
  t.is(r.stdout, '', 'the guest never saw a result');
  t.deepEqual(leftovers(id), []);
});

test('the kernel lock primitives: a failed try_lock leaves a held lock held', async (t) => {
  // The in-kernel check returns the number of the first failed step (0: all
  // hold). A try_lock that released a lock it failed to take once corrupted
  // run queues (lost wake-ups under load); this catches it deterministically.
  const r = await runGuest(root, { args: ['lock-selftest'], testHooks: true });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, 'lock-selftest: returned 0\n');
});

test('without --test-hooks the test system call does not exist (ENOSYS)', async (t) => {
  for (const op of ['panic', 'hang', 'forbidden']) {
    const r = await runGuest(root, { args: [op] });
    t.is(r.status, 0, r.stderr);
    t.is(r.stdout, `${op}: ENOSYS\n`);
  }
});
