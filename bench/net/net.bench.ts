// Networking benchmarks (issue 7): TCP over loopback in the sandbox (its own
// namespace, host sockets through the VMM) against the same program natively
// on the host's loopback, measured in the same run. Prints JSON lines
// (bench/README.md). Usage: npx tsx bench/net/net.bench.ts [--quick]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSandboxBinary } from '@quark/quark';

const quick = process.argv.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
const sandbox = findSandboxBinary();
const work = mkdtempSync(join(tmpdir(), 'quark-bench-net-'));
const rootfs = join(work, 'rootfs');
mkdirSync(rootfs);
const bin = join(rootfs, 'netbench');
execFileSync('gcc', ['-static', '-O2', '-o', bin, join(here, 'netbench.c')]);

interface VmStats {
  vcpus: { insn_emulation: number | null; exits: number | null; hcalls: number; syscalls: number }[];
}

function native(args: string[]): number {
  return Number(execFileSync(bin, args, { encoding: 'utf8' }).trim());
}

function guest(args: string[]): { value: number; stats: VmStats } {
  const stats = join(work, `stats-${args.join('-')}.json`);
  const out = execFileSync(sandbox, ['--rootfs', rootfs, '--stats-file', stats, '--', '/netbench', ...args], {
    encoding: 'utf8',
  });
  return { value: Number(out.trim()), stats: JSON.parse(readFileSync(stats, 'utf8')) as VmStats };
}

function emit(name: string, unit: string, args: string[], nativeArgs: string[], ops: number): void {
  const g = guest(args);
  const base = native(nativeArgs);
  const v = g.stats.vcpus[0];
  console.log(
    JSON.stringify({
      name,
      value: g.value,
      unit,
      baseline: base,
      baseline_name: 'the same program natively (host loopback)',
      ratio: Number((g.value / base).toFixed(3)),
      detail: {
        supervisor_insns_per_op:
          typeof v?.insn_emulation === 'number' ? Math.round((v.insn_emulation ?? 0) / ops) : 'n/a',
        vm_exits_per_op: typeof v?.exits === 'number' ? Math.round((v.exits ?? 0) / ops) : 'n/a',
        hcalls_per_op: Math.round((v?.hcalls ?? 0) / ops),
        syscalls_per_op: Math.round((v?.syscalls ?? 0) / ops),
      },
    }),
  );
}

try {
  const rr = quick ? 100 : 300;
  // One op = one write + one read on each side (4 socket system calls).
  emit('tcp_rr_64b_latency', 'us', ['rr', String(rr)], ['rr', '5000'], rr);
  const mib = quick ? 4 : 16;
  emit('tcp_stream_1conn', 'MiB/s', ['stream', String(mib), '1'], ['stream', '256', '1'], mib * 16);
  emit('tcp_stream_8conn', 'MiB/s', ['stream', String(mib), '8'], ['stream', '256', '8'], mib * 16);
  const cps = quick ? 30 : 100;
  emit('tcp_connections_per_second', 'conn/s', ['cps', String(cps)], ['cps', '2000'], cps);
} finally {
  rmSync(work, { recursive: true, force: true });
}
