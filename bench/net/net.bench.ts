// Networking benchmarks (issue 7): TCP over loopback, the same static program
// three ways in the same run and the same network namespace (a fresh one made
// for the run, loopback up): in the sandbox (`--net ns:`, host sockets through
// the VMM), under `runc run` (the namespace given to runc by path) and
// natively (`ip netns exec`). Prints JSON lines (bench/README.md): `baseline`
// is the native figure, `runc` the runc one. Supervisor instructions and VM
// exits come from KVM's per-vCPU statistics (`--stats-file`).
// Usage: npx tsx bench/net/net.bench.ts [--quick]   (root: netns and runc)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSandboxBinary } from '@quark/quark';

const quick = process.argv.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
const sandbox = findSandboxBinary();
const work = mkdtempSync(join(tmpdir(), 'quark-bench-net-'));
const bundle = join(work, 'bundle');
const rootfs = join(bundle, 'rootfs');
mkdirSync(rootfs, { recursive: true });
const bin = join(rootfs, 'netbench');
execFileSync('gcc', ['-static', '-O2', '-o', bin, join(here, 'netbench.c')]);
const netns = `quark-bench-net-${process.pid}`;
const nsPath = `/run/netns/${netns}`;

interface VmStats {
  vcpus: { insn_emulation: number | null; exits: number | null; hcalls: number; syscalls: number }[];
}

/** A minimal OCI bundle: `runc spec`, no terminal, the test namespace as its network namespace. */
function writeBundle(args: string[]): void {
  rmSync(join(bundle, 'config.json'), { force: true });
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[] };
    linux: { namespaces: { type: string; path?: string }[] };
  };
  cfg.process.terminal = false;
  cfg.process.args = ['/netbench', ...args];
  cfg.linux.namespaces = cfg.linux.namespaces.map((n) =>
    n.type === 'network' ? { type: 'network', path: nsPath } : n,
  );
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
}

let runcId = 0;
function runc(args: string[]): number {
  writeBundle(args);
  const id = `quark-bench-net-${process.pid}-${runcId++}`;
  return Number(execFileSync('runc', ['run', '--bundle', bundle, id], { encoding: 'utf8' }).trim());
}

function native(args: string[]): number {
  return Number(execFileSync('ip', ['netns', 'exec', netns, bin, ...args], { encoding: 'utf8' }).trim());
}

function guest(args: string[]): { value: number; stats: VmStats } {
  const stats = join(work, `stats-${args.join('-')}.json`);
  const out = execFileSync(
    sandbox,
    ['--rootfs', rootfs, '--net', `ns:${nsPath}`, '--stats-file', stats, '--', '/netbench', ...args],
    { encoding: 'utf8' },
  );
  return { value: Number(out.trim()), stats: JSON.parse(readFileSync(stats, 'utf8')) as VmStats };
}

function perOp(v: VmStats['vcpus'][number] | undefined, ops: number) {
  return {
    supervisor_insns_per_op: typeof v?.insn_emulation === 'number' ? Math.round(v.insn_emulation / ops) : 'n/a',
    vm_exits_per_op: typeof v?.exits === 'number' ? Math.round(v.exits / ops) : 'n/a',
    hcalls_per_op: Number(((v?.hcalls ?? 0) / ops).toFixed(2)),
    syscalls_per_op: Number(((v?.syscalls ?? 0) / ops).toFixed(2)),
  };
}

function emit(name: string, unit: string, args: string[], baseArgs: string[], ops: number): void {
  const g = guest(args);
  const base = native(baseArgs);
  const rc = runc(baseArgs);
  console.log(
    JSON.stringify({
      name,
      value: g.value,
      unit,
      baseline: base,
      baseline_name: 'the same program natively in the same network namespace',
      ratio: Number((g.value / base).toFixed(3)),
      runc: rc,
      runc_ratio: Number((g.value / rc).toFixed(3)),
      detail: perOp(g.stats.vcpus[0], ops),
    }),
  );
}

/** Kernel work per socket call: the counters' difference between N and 2N calls. */
function perCall(name: string, mode: 'sends' | 'recvs', n: number): void {
  const a = guest([mode, String(n)]).stats.vcpus[0];
  const b = guest([mode, String(2 * n)]).stats.vcpus[0];
  const d = (k: 'insn_emulation' | 'exits' | 'hcalls') => ((b?.[k] ?? 0) - (a?.[k] ?? 0)) / n;
  console.log(
    JSON.stringify({
      name,
      value: Math.round(d('insn_emulation')),
      unit: 'supervisor instructions',
      baseline: null,
      baseline_name: 'none (native and runc run no emulated supervisor code)',
      ratio: null,
      detail: { vm_exits_per_call: Number(d('exits').toFixed(2)), hcalls_per_call: Number(d('hcalls').toFixed(2)) },
    }),
  );
}

try {
  execFileSync('ip', ['netns', 'add', netns]);
  execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  const rr = quick ? 100 : 300;
  // One op = one write + one read on each side (4 socket system calls).
  emit('tcp_rr_64b_latency', 'us', ['rr', String(rr)], ['rr', '5000'], rr);
  const mib = quick ? 4 : 16;
  emit('tcp_stream_1conn', 'MiB/s', ['stream', String(mib), '1'], ['stream', '256', '1'], mib * 16);
  emit('tcp_stream_8conn', 'MiB/s', ['stream', String(mib), '8'], ['stream', '256', '8'], mib * 16);
  const cps = quick ? 30 : 100;
  emit('tcp_connections_per_second', 'conn/s', ['cps', String(cps)], ['cps', '2000'], cps);
  const calls = quick ? 100 : 200;
  perCall('supervisor_insns_per_send_64b', 'sends', calls);
  perCall('supervisor_insns_per_recv_64b', 'recvs', calls);
} finally {
  try {
    execFileSync('ip', ['netns', 'delete', netns]);
  } catch {
    // not created
  }
  rmSync(work, { recursive: true, force: true });
}
