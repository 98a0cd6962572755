// The guest test programs of issues 3 (sandbox core) and 4 (processes,
// threads, memory) against Linux. Every program of tests/guest/src whose
// `// issue:` header is 3 or 4 runs, for each libc (and -pie variant) built:
//
// - natively, the oracle, through build/native/runner, which gives it the
//   sandbox's view (a root holding only /<name>, pid 1 of its own pid
//   namespace, uid 0 with the OCI default capabilities, exactly the header's
//   environment, pinned to `cpus` CPUs; a pids cgroup for `pids-limit`,
//   RLIMIT_AS for `memory`), as tests/guest/native-check.mjs does;
// - in a sandbox with the same root, environment, stdin and options.
//
// Both must end with the status the header expects, and print the same stdout
// (and stderr with `compare: stdout+stderr`) once the header's masks are
// applied. Each sandbox run must finish in under the header's timeout (20 s:
// the sizing rule of tests/guest/README.md). Times are logged per program and
// summed up at the end. Programs of issues 6 and 7 (files, networking) are
// left to their own tests by their headers.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findSandboxBinary } from '@quark/quark';
import { guestDir, masked, requireKvm } from './harness.js';

/** Issues whose programs this file runs. */
const ISSUES = new Set([3, 4]);

/** One program run, as `native-check.mjs --list` describes it. */
interface ProgramRun {
  name: string;
  variant: string;
  libc: 'glibc' | 'musl';
  binary: string;
  path: string;
  args: string[];
  env: string[];
  stdin: string;
  expectStatus: number;
  cpus: number;
  timeout: number;
  compare: 'stdout' | 'stdout+stderr';
  masks: string[];
  pidsLimit: number | null;
  nativeProc: boolean;
  memory: number | null;
  issue: number;
}

interface Outcome {
  status: number;
  stdout: string;
  stderr: string;
  ms: number;
}

requireKvm();
const make = spawnSync('make', ['-C', guestDir, '-j', '4', '--no-print-directory'], { encoding: 'utf8' });
if (make.status !== 0) throw new Error(`make -C tests/guest failed:\n${make.stdout}${make.stderr}`);
const listed = spawnSync('node', [join(guestDir, 'native-check.mjs'), '--list'], { encoding: 'utf8' });
if (listed.status !== 0) throw new Error(`native-check.mjs --list failed:\n${listed.stderr}`);
const runs = listed.stdout
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as ProgramRun)
  .filter((r) => ISSUES.has(r.issue));
if (runs.length === 0) throw new Error('no guest programs of issues 3 and 4 found');
const runner = join(guestDir, 'build', 'native', 'runner');
const sandbox = findSandboxBinary();
const work = mkdtempSync(join(tmpdir(), 'quark-programs-'));
const times: { label: string; native: number; sandbox: number }[] = [];

test.after.always(() => {
  rmSync(work, { recursive: true, force: true });
  if (times.length === 0) return;
  const lines = times.map(
    (x) => `${x.label.padEnd(30)} ${x.native.toFixed(0).padStart(7)} ${x.sandbox.toFixed(0).padStart(8)}`,
  );
  const total = times.reduce((s, x) => s + x.sandbox, 0);
  console.log(
    `\nguest programs (ms)            native  sandbox\n${lines.join('\n')}\n` +
      `${times.length} runs, ${(total / 1000).toFixed(1)} s in sandboxes`,
  );
});

/** Runs a command with exactly `env`, feeding `stdin`; kills it after `timeoutMs`. */
function collect(cmd: string, args: string[], stdin: string, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(cmd, args, { env: {}, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        status: code ?? (signal === 'SIGKILL' ? 137 : 128),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: performance.now() - t,
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
  });
}

/** A root holding only the program at /<variant> (and /proc for `native-proc` programs). */
function makeRoot(r: ProgramRun, tag: string): string {
  const dir = join(work, `${r.libc}-${r.variant}-${tag}`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(r.binary, join(dir, r.variant));
  spawnSync('chmod', ['0755', join(dir, r.variant)]);
  if (r.nativeProc) mkdirSync(join(dir, 'proc'));
  return dir;
}

/** A pids cgroup with pids.max = max (the native stand-in for --pids-limit). */
function pidsCgroup(tag: string, max: number): string {
  for (const base of ['/sys/fs/cgroup/pids', '/sys/fs/cgroup']) {
    if (!existsSync(join(base, 'cgroup.procs'))) continue;
    if (base === '/sys/fs/cgroup') {
      const ctl = join(base, 'cgroup.subtree_control');
      if (!existsSync(ctl) || !readFileSync(ctl, 'utf8').split(/\s+/).includes('pids')) continue;
    }
    const dir = join(base, `quark-programs-${process.pid}-${tag}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'pids.max'), `${max}\n`);
    return dir;
  }
  throw new Error('no writable pids cgroup for the native run of a pids-limit program (run as root)');
}

function removeCgroup(dir: string): void {
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch {
      spawnSync('sleep', ['0.05']);
    }
  }
}

async function runNativeView(r: ProgramRun): Promise<Outcome> {
  const root = makeRoot(r, 'native');
  const a = ['--root', root, '--cpus', String(r.cpus)];
  if (r.nativeProc) a.push('--proc');
  if (r.memory !== null) a.push('--as', String(r.memory));
  for (const e of r.env) a.push('--env', e);
  const cg = r.pidsLimit !== null ? pidsCgroup(`${r.libc}-${r.variant}`, r.pidsLimit) : null;
  if (cg) a.push('--pids-cgroup', cg);
  try {
    return await collect(runner, [...a, '--', r.path, ...r.args], r.stdin, r.timeout * 1000 * 3);
  } finally {
    if (cg) removeCgroup(cg);
  }
}

function runInSandbox(r: ProgramRun, log: string): Promise<Outcome> {
  const a = ['--rootfs', makeRoot(r, 'sandbox'), '--log', log, '--cpus', String(r.cpus)];
  if (r.memory !== null) a.push('--memory', `${Math.ceil(r.memory / (1 << 20))}M`);
  if (r.pidsLimit !== null) a.push('--pids-limit', String(r.pidsLimit));
  for (const e of r.env) a.push('--env', e);
  return collect(sandbox, [...a, '--', r.path, ...r.args], r.stdin, r.timeout * 1000 * 3);
}

for (const r of runs) {
  const label = `${r.variant} [${r.libc}]`;
  test.serial(`${label} (issue ${r.issue}) matches Linux`, async (t) => {
    const masks = r.masks.map((m) => new RegExp(m, 'g'));
    const n = await runNativeView(r);
    t.is(n.status, r.expectStatus, `native run: status ${n.status}, expected ${r.expectStatus}\n${n.stderr}`);
    const log = join(work, `${r.libc}-${r.variant}.log`);
    const g = await runInSandbox(r, log);
    times.push({ label, native: n.ms, sandbox: g.ms });
    t.log(`native ${n.ms.toFixed(0)} ms, sandbox ${g.ms.toFixed(0)} ms`);
    const diagnostics = () => `sandbox stderr:\n${g.stderr}\nlog tail:\n${tail(log)}`;
    t.is(g.status, n.status, `exit status (native ${n.status}, sandbox ${g.status})\n${diagnostics()}`);
    t.is(masked(g.stdout, masks), masked(n.stdout, masks), `stdout differs\n${diagnostics()}`);
    if (r.compare === 'stdout+stderr') t.is(masked(g.stderr, masks), masked(n.stderr, masks), 'stderr differs');
    t.true(g.ms < r.timeout * 1000, `the sandbox run took ${g.ms.toFixed(0)} ms (limit ${r.timeout} s)`);
  });
}

function tail(file: string): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
}
