// Queued host calls (issue 5) vs the synchronous VMM call, measured in the
// same run. Prints JSON lines (bench/README.md):
//   hostq_nop_round_trip     a no-op host call through the queue vs through the
//                            synchronous VMM call (both carried by a system call),
//                            with emulated supervisor instructions per call
//   hostq_stdin_wake_latency a guest blocked in read(0) on a pipe: host write ->
//                            guest read returns, vs the same program natively
//                            (detail: host write -> the guest kernel resumes the
//                            parked task, from quark_test with --test-hooks)
//   hostq_blocked_read_cpu   host CPU of the sandbox while the guest waits in read
// Usage: npx tsx bench/sandbox/hostq.bench.ts [--quick]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSandboxBinary } from '@quark/quark';

const quick = process.argv.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const sandbox = findSandboxBinary();
const work = mkdtempSync(join(tmpdir(), 'quark-bench-hostq-'));
const rootfs = join(work, 'rootfs');
mkdirSync(rootfs);
execFileSync('gcc', ['-static', '-O2', '-o', join(rootfs, 'hostq'), join(here, 'hostq.c')]);
execFileSync('gcc', [
  '-static',
  '-O2',
  '-pthread',
  '-o',
  join(rootfs, 'stdin_wait'),
  join(repo, 'tests', 'guest', 'hostq', 'stdin_wait.c'),
]);

function emit(l: {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  baseline_name: string | null;
  detail?: Record<string, number | string>;
}): void {
  const ratio = l.baseline ? Number((l.value / l.baseline).toFixed(3)) : null;
  console.log(JSON.stringify({ ...l, ratio }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

interface Run {
  ns: number;
  insn: number;
  hostq: { requests: number; interrupts: number; doorbells: number };
}

/** One sandbox run of `hostq N mode` with its KVM statistics and hostq counters. */
function nop(n: number, mode: 'sync' | 'queue'): Run {
  const stats = join(work, `stats-${mode}-${n}-${Math.random()}.json`);
  const log = join(work, `log-${mode}-${n}-${Math.random()}.txt`);
  const out = execFileSync(
    sandbox,
    ['--rootfs', rootfs, '--test-hooks', '--stats-file', stats, '--log', log, '--', '/hostq', String(n), mode],
    { encoding: 'utf8' },
  );
  const s = JSON.parse(readFileSync(stats, 'utf8')) as { vcpus: { insn_emulation: number | null }[] };
  const m = /hostq: (\d+) requests .*?, (\d+) completion interrupts, (\d+) doorbells/.exec(readFileSync(log, 'utf8'));
  return {
    ns: Number(out),
    insn: s.vcpus[0]?.insn_emulation ?? NaN,
    hostq: { requests: Number(m?.[1] ?? NaN), interrupts: Number(m?.[2] ?? NaN), doorbells: Number(m?.[3] ?? NaN) },
  };
}

// 1. No-op round trip: interleaved pairs, medians; instructions per call from
//    the difference between N and 0 iterations.
{
  const n = quick ? 200 : 1000;
  const pairs = quick ? 2 : 3;
  const sync: number[] = [];
  const queue: number[] = [];
  for (let i = 0; i < pairs; i++) {
    sync.push(nop(n, 'sync').ns);
    queue.push(nop(n, 'queue').ns);
  }
  const s0 = nop(0, 'sync');
  const s1 = nop(n, 'sync');
  const q0 = nop(0, 'queue');
  const q1 = nop(n, 'queue');
  const perCall = (a: number, b: number) => Number(((b - a) / n).toFixed(1));
  emit({
    name: 'hostq_nop_round_trip',
    value: Number((median(queue) / 1000).toFixed(1)),
    unit: 'us',
    baseline: Number((median(sync) / 1000).toFixed(1)),
    baseline_name: 'synchronous VMM call (Nop), same system call around it',
    detail: {
      supervisor_insn_per_call_queue: perCall(q0.insn, q1.insn),
      supervisor_insn_per_call_sync: perCall(s0.insn, s1.insn),
      doorbells_per_call: perCall(q0.hostq.doorbells, q1.hostq.doorbells),
      completion_interrupts_per_call: perCall(q0.hostq.interrupts, q1.hostq.interrupts),
      iterations: n,
      runs: pairs,
    },
  });
}

// 2 and 3. A reader blocked in read(0) on a pipe: CPU while it waits, and the
// latency from the host's write to the return of read (both clocks are
// CLOCK_MONOTONIC of this machine: the guest's is derived from it at boot).
function family(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [p, pp] of parent) if (pp === out[i]) out.push(p);
  return out;
}
function cpuTicks(pids: number[]): number {
  let sum = 0;
  for (const p of pids) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      sum += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited meanwhile
    }
  }
  return sum;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function blockedReader(
  cmd: string,
  args: string[],
  rounds: number,
): Promise<{ latencies: number[]; resumed: number[]; ticks: number }> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const closed = new Promise((r) => child.once('close', r));
  let buf = '';
  const waiting: ((l: string) => void)[] = [];
  const ready: string[] = [];
  child.stdout.on('data', (b: Buffer) => {
    buf += b.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w(l);
      else ready.push(l);
    }
  });
  const next = () => {
    const l = ready.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise<string>((r) => waiting.push(r));
  };
  if ((await next()) !== 'ready') throw new Error(`${cmd}: unexpected first line`);
  await sleep(300);
  const pids = family(child.pid ?? 0);
  const t0 = cpuTicks(pids);
  await sleep(1000);
  const ticks = cpuTicks(pids) - t0;
  const latencies: number[] = [];
  const resumed: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const sent = process.hrtime.bigint();
    child.stdin.write('x\n');
    const m = /^woke (\d+) (\d+)/.exec(await next());
    const back = Number(BigInt(m?.[2] ?? '0') - sent) / 1000;
    // Natively (no kernel time: 0) every round counts; in the guest a round
    // whose data was there before read (it did not park) is not a wake.
    if (m?.[2] === '0' || back >= 0) {
      latencies.push(Number(BigInt(m?.[1] ?? '0') - sent) / 1000);
      if (m?.[2] !== '0') resumed.push(back);
    }
    await sleep(50);
  }
  child.stdin.end();
  await closed;
  return { latencies, resumed, ticks };
}

{
  const rounds = quick ? 15 : 41;
  const guest = await blockedReader(
    sandbox,
    ['--rootfs', rootfs, '--test-hooks', '--', '/stdin_wait', 'wake', String(rounds)],
    rounds,
  );
  const native = await blockedReader(join(rootfs, 'stdin_wait'), ['wake', String(rounds)], rounds);
  const sorted = [...guest.latencies].sort((a, b) => a - b);
  emit({
    name: 'hostq_stdin_wake_latency',
    value: Number(median(guest.latencies).toFixed(0)),
    unit: 'us',
    baseline: Number(median(native.latencies).toFixed(0)),
    baseline_name: 'the same program natively (read on the same kind of pipe)',
    detail: {
      task_resumed_in_guest_kernel_median_us: Number(median(guest.resumed).toFixed(0)),
      wakes_measured: guest.latencies.length,
      p10_us: Number((sorted[Math.floor(sorted.length / 10)] ?? NaN).toFixed(0)),
      p90_us: Number((sorted[Math.floor((sorted.length * 9) / 10)] ?? NaN).toFixed(0)),
      rounds,
    },
  });
  emit({
    name: 'hostq_blocked_read_cpu',
    value: guest.ticks * 10,
    unit: 'ms CPU per s',
    baseline: native.ticks * 10,
    baseline_name: 'the same program natively',
    detail: { clock_tick_ms: 10 },
  });
}

rmSync(work, { recursive: true, force: true });
