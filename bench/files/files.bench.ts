// File benchmarks (issue 6). Prints JSON lines (bench/README.md): each figure
// measured in the sandbox with the same program run natively (in a chroot of
// the same root) in the same run, and the ratio. `detail` carries per-operation
// counts from quark-sandbox --stats-file: supervisor instructions (KVM
// insn_emulation), VM exits, guest system calls, VMM calls (hcalls) and page
// faults, and guest-copied bytes (bytes the guest kernel copied itself,
// `copied_bytes`), as the difference between a run with N operations and a
// run doing only the set-up (N = 0), divided by N.
//
// Usage: npx tsx --conditions=quark-source bench/files/files.bench.ts [--quick] [--only readers]
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSandboxBinary } from '@quark/quark';
import { makeBashRoot, makeBusyboxRoot, removeTree, tempDir } from '../../tests/guest/rootfs.js';

const quick = process.argv.includes('--quick');
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt >= 0 ? process.argv[onlyAt + 1] : undefined;
const runs = (what: string) => only === undefined || only === what;
const here = dirname(fileURLToPath(import.meta.url));
const sandbox = findSandboxBinary();
const work = tempDir('quark-bench-files-');
const root = join(work, 'root');
mkdirSync(root);
execFileSync('gcc', ['-static', '-O2', '-pthread', '-o', join(root, 'fileops'), join(here, 'fileops.c')]);

interface Line {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  baseline_name: string | null;
  detail?: Record<string, number | string>;
}

function emit(l: Line): void {
  const ratio = l.baseline ? Number((l.value / l.baseline).toFixed(3)) : null;
  console.log(JSON.stringify({ ...l, ratio }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

interface VcpuStats {
  insn_emulation: number | null;
  exits: number | null;
  syscalls: number;
  hcalls: number;
  page_faults: number;
  copied_bytes?: number;
}

/** Sum of the vCPUs' counters. */
function total(stats: { vcpus: VcpuStats[] }): Record<string, number> {
  const t = { insn: 0, exits: 0, syscalls: 0, hcalls: 0, faults: 0, copied: 0 };
  for (const v of stats.vcpus) {
    t.insn += v.insn_emulation ?? NaN;
    t.exits += v.exits ?? NaN;
    t.syscalls += v.syscalls;
    t.hcalls += v.hcalls;
    t.faults += v.page_faults;
    t.copied += v.copied_bytes ?? NaN;
  }
  return t;
}

/** Runs fileops (or another program) in the sandbox: its output and counters. */
function guest(
  dir: string,
  args: string[],
  env: Record<string, string> = {},
  cpus?: number,
): { out: string; counts: Record<string, number> } {
  const stats = join(work, `stats-${Math.random()}.json`);
  const cpu = cpus ? ['--cpus', String(cpus)] : [];
  const out = execFileSync(sandbox, ['--rootfs', dir, ...cpu, '--stats-file', stats, '--', ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    env: { ...process.env, ...env },
  });
  const counts = total(JSON.parse(readFileSync(stats, 'utf8')) as { vcpus: VcpuStats[] });
  rmSync(stats);
  return { out: out.trim(), counts };
}

/** Runs the same program natively in a chroot of the root. */
function native(dir: string, args: string[]): string {
  return execFileSync('chroot', [dir, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 }).trim();
}

/** Per-operation counts: (run with n ops - set-up-only run) / n. */
function perOp(run: Record<string, number>, base: Record<string, number>, n: number): Record<string, number> {
  const d = (k: string) => Number((((run[k] ?? NaN) - (base[k] ?? NaN)) / n).toFixed(1));
  return {
    supervisor_insn_per_op: d('insn'),
    vm_exits_per_op: d('exits'),
    syscalls_per_op: d('syscalls'),
    vmm_calls_per_op: d('hcalls'),
    page_faults_per_op: d('faults'),
    guest_copied_bytes_per_op: d('copied'),
  };
}

// 1-3. Latency loops: open+fstat+close, stat of a deep path, 4 KiB pread.
if (runs('latency')) {
  const deep = Array.from({ length: 10 }, (_, i) => `d${i + 1}`).join('/');
  mkdirSync(join(root, deep), { recursive: true });
  writeFileSync(join(root, deep, 'file'), 'x\n');
  writeFileSync(join(root, 'data'), execFileSync('head', ['-c', '8M', '/dev/urandom'], { maxBuffer: 1 << 24 }));
  for (const [name, op, path, n, what] of [
    ['open_fstat_close', 'openstat', '/data', quick ? 100 : 1000, 'open + fstat + close of a host file'],
    ['stat_deep_path', 'stat', `/${deep}/file`, quick ? 50 : 300, 'stat of a path 11 components deep'],
    ['pread_4k', 'pread', '/data', quick ? 200 : 1000, '4 KiB pread at random offsets of an 8 MiB host file'],
  ] as const) {
    const nat = median([1, 2, 3].map(() => Number(native(root, ['/fileops', op, String(n * 100), path]))));
    const base = guest(root, ['/fileops', op, '0', path]);
    const run = guest(root, ['/fileops', op, String(n), path]);
    emit({
      name,
      value: Number((Number(run.out) / 1000).toFixed(2)),
      unit: 'us',
      baseline: Number((nat / 1000).toFixed(3)),
      baseline_name: `native ${what}`,
      detail: { ...perOp(run.counts, base.counts, n), iterations: n },
    });
  }
}

// 4. Sequential write and read of a 64 MiB host file (1 MiB calls).
if (runs('sequential')) {
  const mib = quick ? 16 : 64;
  const nw = median([1, 2, 3].map(() => Number(native(root, ['/fileops', 'write', String(mib), '/seq']))));
  const nr = median([1, 2, 3].map(() => Number(native(root, ['/fileops', 'read', '/seq']))));
  rmSync(join(root, 'seq'));
  const w0 = guest(root, ['/fileops', 'write', '0', '/seq']);
  const w = guest(root, ['/fileops', 'write', String(mib), '/seq']);
  const r = guest(root, ['/fileops', 'read', '/seq']);
  writeFileSync(join(root, 'empty'), '');
  const r0 = guest(root, ['/fileops', 'read', '/empty']);
  emit({
    name: 'sequential_write',
    value: Number(w.out),
    unit: 'MB/s',
    baseline: nw,
    baseline_name: `native sequential write of ${mib} MiB + fsync (1 MiB writes)`,
    detail: { ...perOp(w.counts, w0.counts, mib), op: '1 MiB', mib },
  });
  emit({
    name: 'sequential_read',
    value: Number(r.out),
    unit: 'MB/s',
    baseline: nr,
    baseline_name: `native sequential read of ${mib} MiB (1 MiB reads; in the host's page cache)`,
    detail: { ...perOp(r.counts, r0.counts, mib), op: '1 MiB', mib },
  });
  rmSync(join(root, 'seq'));
}

// 5. tar x of the busybox root (busybox tar, 1 file and ~400 symbolic links),
//    timed inside the guest (fork + exec + wait of tar) and natively.
if (runs('tar')) {
  const bb = join(work, 'busybox');
  makeBusyboxRoot(bb);
  const tarball = join(work, 'rootfs.tar');
  execFileSync('tar', ['-C', bb, '-cf', tarball, '.']);
  copyFileSync(tarball, join(bb, 'rootfs.tar'));
  copyFileSync(join(root, 'fileops'), join(bb, 'fileops'));
  const entries = execFileSync('tar', ['-tf', tarball], { encoding: 'utf8' }).trim().split('\n').length;
  const args = (dest: string) => ['/fileops', 'spawn', '1', '/bin/tar', '-x', '-f', '/rootfs.tar', '-C', dest];
  const nat = median(
    [1, 2, 3].map((i) => {
      mkdirSync(join(bb, 'tmp', `n${i}`));
      return Number(native(bb, args(`/tmp/n${i}`)));
    }),
  );
  mkdirSync(join(bb, 'tmp', 'g0'));
  mkdirSync(join(bb, 'tmp', 'g1'));
  const base = guest(bb, ['/fileops', 'spawn', '1', '/bin/true']);
  const run = guest(bb, args('/tmp/g1'));
  const ok = spawnSync('diff', ['-r', '--no-dereference', join(bb, 'tmp', 'g1'), join(bb, 'tmp', 'n1')]);
  emit({
    name: 'tar_x_busybox_rootfs',
    value: Number((Number(run.out) / 1e6).toFixed(1)),
    unit: 'ms',
    baseline: Number((nat / 1e6).toFixed(2)),
    baseline_name: `native busybox tar x of the busybox root (${entries} entries)`,
    detail: {
      ...perOp(run.counts, base.counts, entries),
      op: 'one archive entry (set-up: a spawn of /bin/true)',
      entries,
      same_tree_as_native: ok.status === 0 ? 'yes' : `no: ${ok.stdout.toString().slice(0, 200)}`,
    },
  });
  removeTree(bb);
}

// 6. bash start-up: fork + exec of the dynamic /bin/bash -c true (ld.so,
//    libtinfo, libc) and wait, inside the guest vs natively.
if (runs('bash')) {
  const br = join(work, 'bash');
  makeBashRoot(br);
  copyFileSync(join(root, 'fileops'), join(br, 'fileops'));
  const n = quick ? 2 : 5;
  const nat = median([1, 2, 3].map(() => Number(native(br, ['/fileops', 'spawn', '20', '/bin/bash', '-c', 'true']))));
  const base = guest(br, ['/fileops', 'spawn', '0', '/bin/bash', '-c', 'true']);
  const run = guest(br, ['/fileops', 'spawn', String(n), '/bin/bash', '-c', 'true']);
  emit({
    name: 'bash_startup',
    value: Number((Number(run.out) / 1e6).toFixed(1)),
    unit: 'ms',
    baseline: Number((nat / 1e6).toFixed(3)),
    baseline_name: 'native fork + exec + wait of /bin/bash -c true (dynamic)',
    detail: { ...perOp(run.counts, base.counts, n), iterations: n },
  });
  // The whole sandbox: quark-sandbox -- /bin/bash -c true vs chroot.
  const time = (cmd: string, args: string[]) => {
    const t = performance.now();
    execFileSync(cmd, args);
    return performance.now() - t;
  };
  const q = median([1, 2, 3].map(() => time(sandbox, ['--rootfs', br, '--', '/bin/bash', '-c', 'true'])));
  const c = median([1, 2, 3].map(() => time('chroot', [br, '/bin/bash', '-c', 'true'])));
  emit({
    name: 'bash_sandbox_start_to_exit',
    value: Number(q.toFixed(1)),
    unit: 'ms',
    baseline: Number(c.toFixed(2)),
    baseline_name: 'chroot ROOT /bin/bash -c true',
  });
  removeTree(br);
}

// 7. Eight concurrent readers on --cpus 2 (issue 5: queued vs synchronous
//    hostfs calls). Each thread preads its own 8 MiB host file at
//    pseudo-random block-aligned offsets, 4 KiB and 1 MiB blocks, with the
//    files in the host's page cache (warm) or dropped from it before the run
//    (cold). The same program through the queued path
//    (QUARK_HOSTFS_QUEUE=always), through synchronous VMM calls (=never), and
//    natively in a chroot, in this run. Value: wall time / reads (all
//    threads), so lower is better and 8 readers overlapping shows as a
//    smaller figure than one read's latency.
if (runs('readers')) {
  const files = Array.from({ length: 8 }, (_, i) => join(root, `rf${i}`));
  for (const f of files) writeFileSync(f, execFileSync('head', ['-c', '8M', '/dev/urandom'], { maxBuffer: 1 << 24 }));
  const evict = () => execFileSync(join(root, 'fileops'), ['evict', ...files]);
  const warmUp = () => execFileSync('cat', files, { maxBuffer: 1 << 27 });
  const reps = quick ? 1 : 3;
  for (const [bs, n] of [
    [4096, quick ? 32 : 128],
    [1 << 20, quick ? 2 : 4],
  ] as const) {
    for (const cache of ['warm', 'cold'] as const) {
      const prep = cache === 'cold' ? evict : warmUp;
      const args = (reads: number) => ['/fileops', 'readers', '8', String(bs), String(reads), '/rf'];
      const nat = median(
        Array.from({ length: reps }, () => {
          prep();
          return Number(native(root, args(n)).split(' ')[0]);
        }),
      );
      const measure = (mode: string) => {
        prep();
        const base = guest(root, args(0), { QUARK_HOSTFS_QUEUE: mode }, 2);
        const times: number[] = [];
        let counts = base.counts;
        for (let i = 0; i < reps; i++) {
          prep();
          const r = guest(root, args(n), { QUARK_HOSTFS_QUEUE: mode }, 2);
          times.push(Number(r.out.split(' ')[0]));
          counts = r.counts;
        }
        return { us: median(times) / 1000, detail: perOp(counts, base.counts, 8 * n) };
      };
      const sync = measure('never');
      const queued = measure('always');
      const what = `8 readers (--cpus 2), ${bs === 4096 ? '4 KiB' : '1 MiB'} preads, files ${cache === 'warm' ? 'in' : 'not in'} the host page cache`;
      const tag = `${bs === 4096 ? '4k' : '1m'}_${cache}`;
      emit({
        name: `readers8_${tag}_queued`,
        value: Number(queued.us.toFixed(1)),
        unit: 'us/read',
        baseline: Number(sync.us.toFixed(1)),
        baseline_name: `synchronous VMM calls, ${what}`,
        detail: { ...queued.detail, reads: 8 * n, native_us_per_read: Number((nat / 1000).toFixed(2)) },
      });
      emit({
        name: `readers8_${tag}_sync`,
        value: Number(sync.us.toFixed(1)),
        unit: 'us/read',
        baseline: Number((nat / 1000).toFixed(2)),
        baseline_name: `native, ${what}`,
        detail: { ...sync.detail, reads: 8 * n },
      });
    }
  }
  for (const f of files) rmSync(f);
}

removeTree(work);
