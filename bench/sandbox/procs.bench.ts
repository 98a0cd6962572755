// Processes, threads and memory in the guest kernel (issue 4). Prints JSON
// lines: the guest figure, the same operation natively (measured in the same
// run), the ratio, and supervisor instructions and VM exits per operation
// from the sandbox's --stats-file (a run of N operations minus a run of 0).
// Usage: npx tsx bench/sandbox/procs.bench.ts [--quick]
//
// Figures (bench/sandbox/procs.c):
//   fork_exit_wait            fork + child _exit + waitpid
//   thread_create_join        pthread_create + pthread_join
//   page_fault_sequential     first touch of fresh anonymous pages in order (fault-around applies)
//   page_fault_sparse         first touch of every 32nd page (one fault each)
//   futex_ping_pong           one round trip between two threads on two vCPUs
//   context_switch_yield      sched_yield hand-over between two threads on one vCPU
//   frame_alloc_free_Nvcpu    map, touch, unmap 64 pages, N processes on N vCPUs (time per page)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSandboxBinary } from '@quark/quark';

const quick = process.argv.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
const sandbox = findSandboxBinary();
const work = mkdtempSync(join(tmpdir(), 'quark-bench-procs-'));
const rootfs = join(work, 'rootfs');
mkdirSync(rootfs);
const program = join(rootfs, 'procs');
execFileSync('gcc', ['-static', '-O2', '-pthread', '-o', program, join(here, 'procs.c')]);

interface VmStats {
  vcpus: { insn_emulation: number | null; exits: number | null }[];
}

function emit(l: {
  name: string;
  value: number;
  unit: string;
  baseline: number;
  baseline_name: string;
  detail: Record<string, number | string>;
}): void {
  const ratio = l.baseline ? Number((l.value / l.baseline).toFixed(1)) : null;
  console.log(JSON.stringify({ ...l, ratio }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** One sandbox run of `procs MODE n [threads]`: ns per op and the VM's counters. */
function guest(mode: string, n: number, cpus: number, threads: number): { ns: number; insn: number; exits: number } {
  const stats = join(work, `stats-${mode}-${n}-${cpus}.json`);
  rmSync(stats, { force: true });
  const out = execFileSync(
    sandbox,
    [
      '--rootfs',
      rootfs,
      '--cpus',
      String(cpus),
      '--stats-file',
      stats,
      '--',
      '/procs',
      mode,
      String(n),
      String(threads),
    ],
    { encoding: 'utf8' },
  );
  const s = JSON.parse(readFileSync(stats, 'utf8').trim().split('\n').pop() ?? '{}') as VmStats;
  const sum = (k: 'insn_emulation' | 'exits') => s.vcpus.reduce((a, v) => a + (v[k] ?? NaN), 0);
  return { ns: Number(out), insn: sum('insn_emulation'), exits: sum('exits') };
}

/** The same program natively, on `cpus` CPUs (taskset), median of three runs. */
function native(mode: string, n: number, cpus: number, threads: number): number {
  const list = Array.from({ length: cpus }, (_, i) => i).join(',');
  return median(
    [1, 2, 3].map(() =>
      Number(execFileSync('taskset', ['-c', list, program, mode, String(n), String(threads)], { encoding: 'utf8' })),
    ),
  );
}

function bench(
  name: string,
  mode: string,
  n: number,
  nativeN: number,
  what: string,
  cpus = 1,
  threads = 1,
  oneVcpuNs = 0,
): number {
  const base = guest(mode, 0, cpus, threads);
  const run = guest(mode, n, cpus, threads);
  // frames: one op is one page per thread; the others: one op each.
  const ops = mode === 'frames' ? Math.floor(n / 64) * 64 * threads : n;
  const nat = native(mode, nativeN, cpus, threads);
  emit({
    name,
    value: Number((run.ns / 1000).toFixed(2)),
    unit: 'us',
    baseline: Number((nat / 1000).toFixed(3)),
    baseline_name: `native ${what}`,
    detail: {
      supervisor_insn_per_op: Math.round((run.insn - base.insn) / ops),
      vm_exits_per_op: Number(((run.exits - base.exits) / ops).toFixed(2)),
      iterations: n,
      vcpus: cpus,
      ...(oneVcpuNs ? { speedup_vs_1vcpu: Number((oneVcpuNs / run.ns).toFixed(2)) } : {}),
    },
  });
  return run.ns;
}

const k = quick ? 0.5 : 1;
bench('fork_exit_wait', 'fork', Math.round(40 * k), 2000, 'fork + _exit + waitpid');
bench('thread_create_join', 'thread', Math.round(100 * k), 5000, 'pthread_create + pthread_join');
bench('page_fault_sequential', 'fault', Math.round(4000 * k), 100000, 'first touch, pages in order');
bench('page_fault_sparse', 'sparse', Math.round(500 * k), 20000, 'first touch, every 32nd page');
bench('futex_ping_pong', 'futex', Math.round(300 * k), 20000, 'futex round trip between two threads', 2);
bench('context_switch_yield', 'yield', Math.round(400 * k), 100000, 'sched_yield hand-over on one CPU');
// Page-frame allocation and free: the value is the time per page over all
// processes, so 2 vCPUs scaling perfectly halve it (speedup_vs_1vcpu 2).
const one = bench('frame_alloc_free_1vcpu', 'frames', Math.round(6400 * k), 640000, 'mmap/touch/munmap, 1 process');
bench('frame_alloc_free_2vcpu', 'frames', Math.round(6400 * k), 640000, 'mmap/touch/munmap, 2 processes', 2, 2, one);

rmSync(work, { recursive: true, force: true });
