// Queued host calls (issue 5): a guest task blocked in read(0) on its stdin
// pipe parks in the guest kernel (the host I/O thread waits for the pipe), so
// the sandbox uses no host CPU while it waits, the vCPU stays free for other
// tasks, and the completion interrupt wakes the task as soon as data arrives.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findSandboxBinary } from '@quark/quark';
import { compileC, guestDir, requireKvm, Rootfs } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'quark-hostq-'));
const binary = compileC(join(guestDir, 'hostq', 'stdin_wait.c'), join(work, 'stdin_wait'), 'glibc', ['-pthread']);
const root = new Rootfs(binary);
test.after.always(() => {
  root.dispose();
  rmSync(work, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Lines of a child's stdout, awaited one at a time. */
class Lines {
  private buf = '';
  private ready: string[] = [];
  private waiters: ((l: string) => void)[] = [];
  constructor(child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (b: Buffer) => {
      this.buf += b.toString('utf8');
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.ready.push(line);
      }
    });
  }
  next(timeoutMs = 20_000): Promise<string> {
    const l = this.ready.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no output line within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }
}

/** `pid` and all its descendants (from /proc/<pid>/stat's ppid field). */
function family(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = st.slice(st.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(fields[1]));
    } catch {
      // The process exited meanwhile.
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    for (const [p, pp] of parent) if (pp === out[i]) out.push(p);
  }
  return out;
}

/** utime + stime of the processes (all their threads), in clock ticks. */
function cpuTicks(pids: number[]): number {
  let sum = 0;
  for (const p of pids) {
    let st: string;
    try {
      st = readFileSync(`/proc/${p}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const fields = st.slice(st.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat(5); `fields` starts at field 3.
    sum += Number(fields[11]) + Number(fields[12]);
  }
  return sum;
}

function start(
  args: string[],
  cpus = 1,
): { child: ChildProcessWithoutNullStreams; lines: Lines; exit: Promise<number> } {
  requireKvm();
  // --test-hooks: the program asks the guest kernel when it resumed the task.
  const sandboxArgs = ['--rootfs', root.dir, '--test-hooks', '--cpus', String(cpus), '--', '/stdin_wait', ...args];
  const child = spawn(findSandboxBinary(), sandboxArgs, {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = new Lines(child);
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  return { child, lines, exit };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * `rounds` reads: the host writes a line, the guest's read returns. Returns
 * the median latency (µs) until the guest kernel resumed the parked task, and
 * until read returned to the program. A round whose data was already there
 * when the program called read (it did not park: the guest was slow to come
 * back, which happens on a loaded machine) is not a wake and is left out.
 */
async function wakeRounds(
  t: ExecutionContext,
  child: ChildProcessWithoutNullStreams,
  lines: Lines,
  rounds: number,
): Promise<{ kernel: number; user: number }> {
  const kernel: number[] = [];
  const user: number[] = [];
  let notParked = 0;
  for (let i = 0; i < rounds; i++) {
    const sent = process.hrtime.bigint();
    child.stdin.write('x\n');
    const m = /^woke (\d+) (\d+) (\d+)$/.exec(await lines.next());
    t.truthy(m, 'the guest reports when read returned');
    t.is(m?.[3], '2', 'read returned the two bytes written');
    const resumed = BigInt(m?.[2] ?? '0') - sent;
    if (resumed < 0n) {
      notParked++;
    } else {
      user.push(Number(BigInt(m?.[1] ?? '0') - sent) / 1000);
      kernel.push(Number(resumed) / 1000);
    }
    await sleep(50);
  }
  t.true(kernel.length >= rounds / 2, `${notParked} of ${rounds} reads found their data without waiting`);
  const show = (xs: number[]) =>
    [...xs]
      .sort((a, b) => a - b)
      .map((x) => x.toFixed(0))
      .join(' ');
  t.log(`task resumed in the guest kernel, us: median ${median(kernel).toFixed(0)}; ${show(kernel)}`);
  t.log(`read returned to the program, us: median ${median(user).toFixed(0)}; ${show(user)}`);
  return { kernel: median(kernel), user: median(user) };
}

// The wake-up latency figure (the 1 ms goal) is measured by
// bench/sandbox/hostq.bench.ts against a native baseline on a quiet machine.
// This test proves the mechanism under whatever load the suite runs with: the
// parked reader costs no host CPU, and the completion interrupt wakes it at
// once. A wake that waited for a timer, a poll or a tick would take tens of
// milliseconds (there is no tick while the guest idles: it would never come),
// so the bound is 20 ms, far above the ~0.5 ms a quiet host measures and far
// below any periodic fallback.
const WAKE_BOUND_US = 20_000;

test.serial('a guest blocked in read(0) costs no host CPU and is woken by the completion interrupt', async (t) => {
  // Up to three series of 15 wakes; the best median counts. Timing on this
  // 2-CPU machine is disturbed by whatever else runs (other sandboxes of the
  // test suite): a series that loses its CPU is noise, not the mechanism.
  const series = 3;
  const rounds = 15;
  const { child, lines, exit } = start(['wake', String(series * rounds)]);
  try {
    t.is(await lines.next(), 'ready');
    // The guest is now parked in read(0); the host I/O thread waits for the pipe.
    await sleep(300);
    const pids = family(child.pid ?? 0);
    t.true(pids.length >= 2, `the sandbox's processes: ${pids.join(' ')}`);
    const before = cpuTicks(pids);
    await sleep(1000);
    const ticks = cpuTicks(pids) - before;
    t.log(`host CPU while blocked in read: ${ticks} clock ticks (10 ms each) in 1 s`);
    t.true(ticks <= 2, `the blocked sandbox used ${ticks * 10} ms of CPU in 1 s`);

    const medians: { kernel: number; user: number }[] = [];
    for (let s = 0; s < series; s++) medians.push(await wakeRounds(t, child, lines, rounds));
    const best = Math.min(...medians.map((m) => m.kernel));
    const all = medians.map((m) => m.kernel.toFixed(0)).join(', ');
    t.log(`best median wake latency ${best.toFixed(0)} us (series medians: ${all})`);
    t.true(best < WAKE_BOUND_US, `median wake latency ${best.toFixed(0)} us (series: ${all})`);
    t.is(await exit, 0);
  } finally {
    child.kill('SIGKILL');
  }
});

test.serial('a task blocked in read(0) leaves the vCPU to the other threads', async (t) => {
  // One vCPU: if read blocked the vCPU in the host, the worker thread could
  // not finish its 20 sleeps before the input arrives.
  const { child, lines, exit } = start(['worker']);
  try {
    t.is(await lines.next(), 'reading');
    t.is(await lines.next(10_000), 'worker done', 'the worker ran while the reader waited');
    child.stdin.write('hello\n');
    t.is(await lines.next(), 'read 6');
    t.is(await exit, 0);
  } finally {
    child.kill('SIGKILL');
  }
});

test.serial('a signal interrupts a blocked read (EINTR); with SA_RESTART the read restarts', async (t) => {
  // The waiting request is cancelled in the host; without SA_RESTART read
  // fails with EINTR, with it the read starts again and gets the data.
  const { child, lines, exit } = start(['signal']);
  try {
    t.is(await lines.next(), 'ready');
    t.is(await lines.next(10_000), 'interrupted EINTR alarms 1');
    await sleep(600);
    child.stdin.write('late\n');
    t.is(await lines.next(), 'restarted read 5 alarms 2');
    t.is(await exit, 0);
  } finally {
    child.kill('SIGKILL');
  }
});

test.serial('with two vCPUs, blocked reads wake and the worker runs meanwhile', async (t) => {
  const w = start(['worker'], 2);
  try {
    t.is(await w.lines.next(), 'reading');
    t.is(await w.lines.next(10_000), 'worker done');
    w.child.stdin.write('hello\n');
    t.is(await w.lines.next(), 'read 6');
    t.is(await w.exit, 0);
  } finally {
    w.child.kill('SIGKILL');
  }
  const r = start(['wake', '10'], 2);
  try {
    t.is(await r.lines.next(), 'ready');
    for (let i = 0; i < 10; i++) {
      await sleep(20);
      r.child.stdin.write('x\n');
      t.regex(await r.lines.next(), /^woke \d+ \d+ 2$/);
    }
    t.is(await r.exit, 0);
  } finally {
    r.child.kill('SIGKILL');
  }
});
