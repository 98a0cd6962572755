// Sandbox-core benchmarks (issue 3). Prints JSON lines: figure, baseline
// measured in the same run, ratio. Usage: npx tsx bench/sandbox/sandbox.bench.ts [--quick]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSandboxBinary } from '@quark/quark';

const quick = process.argv.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const sandbox = findSandboxBinary();
const work = mkdtempSync(join(tmpdir(), 'quark-bench-'));
const rootfs = join(work, 'rootfs');
mkdirSync(rootfs);
for (const p of ['getpid', 'hcall', 'idle', 'hello']) {
  execFileSync('gcc', ['-static', '-O2', '-o', join(rootfs, p), join(here, `${p}.c`)]);
}

interface Line {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  baseline_name: string | null;
  ratio: number | null;
  detail?: Record<string, number | string>;
}

function emit(l: Omit<Line, 'ratio'>): void {
  const ratio = l.baseline ? Number((l.value / l.baseline).toFixed(3)) : null;
  console.log(JSON.stringify({ ...l, ratio }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function time(cmd: string, args: string[]): number {
  const t = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return performance.now() - t;
}

function guest(args: string[], extra: string[] = []): { out: string; stats: VmStats } {
  const stats = join(work, `stats-${Math.random()}.json`);
  const out = execFileSync(sandbox, ['--rootfs', rootfs, '--stats-file', stats, ...extra, '--', ...args], {
    encoding: 'utf8',
  });
  return { out, stats: JSON.parse(readFileSync(stats, 'utf8')) as VmStats };
}

interface VmStats {
  setup_ns: number;
  run_ns: number;
  vcpus: { insn_emulation: number | null; exits: number | null; syscalls: number; hcalls: number }[];
}

// 1. getpid round trip in the guest vs natively, with supervisor instructions
//    and VM exits per round trip (difference between N and 0 iterations).
{
  const n = quick ? 2000 : 10000;
  const nat = median(
    [1, 2, 3].map(() => Number(execFileSync(join(rootfs, 'getpid'), [String(n * 100)], { encoding: 'utf8' }))),
  );
  const base = guest(['/getpid', '0']);
  const run = guest(['/getpid', String(n)]);
  const perCall = Number(run.out);
  const v0 = base.stats.vcpus[0];
  const v1 = run.stats.vcpus[0];
  const insn =
    v0 && v1 && v1.insn_emulation !== null && v0.insn_emulation !== null
      ? (v1.insn_emulation - v0.insn_emulation) / n
      : NaN;
  const exits = v0 && v1 && v1.exits !== null && v0.exits !== null ? (v1.exits - v0.exits) / n : NaN;
  emit({
    name: 'getpid_round_trip',
    value: Number((perCall / 1000).toFixed(3)),
    unit: 'us',
    baseline: Number((nat / 1000).toFixed(4)),
    baseline_name: 'native getpid',
    detail: {
      supervisor_insn_per_call: Number(insn.toFixed(1)),
      vm_exits_per_call: Number(exits.toFixed(2)),
      iterations: n,
    },
  });
}

// 2. VMM call round trip (no-op host call carried by a system call) vs the bare system call.
{
  const n = quick ? 500 : 2000;
  const sys = Number(guest(['/getpid', String(n)]).out);
  const base = guest(['/hcall', '0'], ['--test-hooks']);
  const run = guest(['/hcall', String(n)], ['--test-hooks']);
  const v0 = base.stats.vcpus[0];
  const v1 = run.stats.vcpus[0];
  const insn =
    v0 && v1 && v1.insn_emulation !== null && v0.insn_emulation !== null
      ? (v1.insn_emulation - v0.insn_emulation) / n
      : NaN;
  emit({
    name: 'vmm_call_round_trip',
    value: Number((Number(run.out) / 1000).toFixed(3)),
    unit: 'us',
    baseline: Number((sys / 1000).toFixed(3)),
    baseline_name: 'guest getpid (the system call that carries it)',
    detail: { supervisor_insn_per_call: Number(insn.toFixed(1)), iterations: n },
  });
}

// 3. Start-to-exit of a static hello: quark-sandbox vs runc run of the same rootfs.
{
  const runs = quick ? 5 : 15;
  const q = median(Array.from({ length: runs }, () => time(sandbox, ['--rootfs', rootfs, '--', '/hello'])));
  const bundle = join(work, 'bundle');
  mkdirSync(bundle);
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[] };
    root: { path: string; readonly: boolean };
  };
  spec.process.terminal = false;
  spec.process.args = ['/hello'];
  spec.root = { path: rootfs, readonly: true };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  let i = 0;
  const r = median(
    Array.from({ length: runs }, () => time('runc', ['run', '--bundle', bundle, `quark-bench-${process.pid}-${i++}`])),
  );
  emit({
    name: 'start_to_exit_static_hello',
    value: Number(q.toFixed(1)),
    unit: 'ms',
    baseline: Number(r.toFixed(1)),
    baseline_name: 'runc run',
  });

  // 4. What the quark CLI adds on top of quark-sandbox.
  const cli = join(repo, 'packages', 'quark', 'bin', 'quark.js');
  const c = median(Array.from({ length: runs }, () => time('node', [cli, 'run', '--rootfs', rootfs, '--', '/hello'])));
  emit({
    name: 'cli_run_static_hello',
    value: Number(c.toFixed(1)),
    unit: 'ms',
    baseline: Number(q.toFixed(1)),
    baseline_name: 'quark-sandbox directly',
    detail: { cli_added_ms: Number((c - q).toFixed(1)) },
  });
}

// 5. Idle sandbox memory: PSS of quark-sandbox's processes (guest memory it
//    touched included, since the guest RAM mapping is theirs) vs the same
//    idle program natively.
function pssKb(pid: number): number {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(t)?.[1] ?? NaN);
}
function descendants(pid: number): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid='], { encoding: 'utf8' });
  const kids = new Map<number, number[]>();
  for (const l of out.trim().split('\n')) {
    const [p, pp] = l.trim().split(/\s+/).map(Number);
    if (p !== undefined && pp !== undefined) kids.set(pp, [...(kids.get(pp) ?? []), p]);
  }
  const all: number[] = [];
  const walk = (p: number) => {
    all.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(pid);
  return all;
}
async function idlePss(cmd: string, args: string[]): Promise<number> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  await new Promise((r) => setTimeout(r, 300));
  const kb = descendants(child.pid ?? 0).reduce((s, p) => s + pssKb(p), 0);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return kb;
}
{
  const q = await idlePss(sandbox, ['--rootfs', rootfs, '--', '/idle', '5']);
  const n = await idlePss(join(rootfs, 'idle'), ['5']);
  emit({
    name: 'idle_sandbox_memory',
    value: Number((q / 1024).toFixed(2)),
    unit: 'MiB',
    baseline: Number((n / 1024).toFixed(2)),
    baseline_name: 'the same idle program natively (PSS)',
  });
}

rmSync(work, { recursive: true, force: true });
