// Running guest test programs natively (the oracle) and in a Quark sandbox.
//
// A program is a static binary placed alone in a fresh root filesystem at
// /<name>. The native run uses chroot into that same root, so argv[0],
// AT_EXECFN and paths are identical in both runs; the environment is exactly
// the one the test gives in both.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSandboxBinary } from '@quark/quark';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const guestDir = join(repo, 'tests', 'guest');

/** Fails loudly when KVM is unavailable: guest tests never skip. */
export function requireKvm(): void {
  if (!existsSync('/dev/kvm')) {
    throw new Error('/dev/kvm is missing: guest tests need KVM (run `quark check` for what to fix)');
  }
}

/** The outcome of one run. */
export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Options of one run. */
export interface RunOptions {
  args?: string[];
  env?: string[];
  stdin?: string;
  cpus?: number;
  memory?: string;
  pidsLimit?: number;
  timeoutMs?: number;
  testHooks?: boolean;
  hangTimeoutSeconds?: number;
  log?: string;
  statsFile?: string;
  id?: string;
  /** `--net`: none (default), host or ns:PATH. */
  net?: string;
}

function collect(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdin: string | undefined,
  timeoutMs: number,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const sig = signal ? ({ SIGKILL: 9, SIGSEGV: 11, SIGABRT: 6, SIGTERM: 15 } as Record<string, number>)[signal] : 0;
      resolve({
        status: code ?? 128 + (sig ?? 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: performance.now() - t,
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
  });
}

function envObject(env: string[]): NodeJS.ProcessEnv {
  const o: NodeJS.ProcessEnv = {};
  for (const e of env) {
    const i = e.indexOf('=');
    o[e.slice(0, i)] = e.slice(i + 1);
  }
  return o;
}

/** A root filesystem holding only `binary` at `/<name>`; removed by `dispose`. */
export class Rootfs {
  readonly dir: string;
  constructor(
    binary: string,
    readonly name: string = basename(binary),
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'quark-guest-'));
    copyFileSync(binary, join(this.dir, name));
    spawnSync('chmod', ['0755', join(this.dir, name)]);
  }
  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs `/<name>` natively in a chroot of the root filesystem. */
export function runNative(root: Rootfs, o: RunOptions = {}): Promise<RunResult> {
  return collect(
    '/usr/sbin/chroot',
    [root.dir, `/${root.name}`, ...(o.args ?? [])],
    envObject(o.env ?? []),
    o.stdin,
    o.timeoutMs ?? 60_000,
  );
}

/** Runs `/<name>` in a sandbox with exactly the given environment. */
export function runGuest(root: Rootfs, o: RunOptions = {}): Promise<RunResult> {
  requireKvm();
  const a = ['--rootfs', root.dir];
  for (const e of o.env ?? []) a.push('--env', e);
  if (o.cpus) a.push('--cpus', String(o.cpus));
  if (o.memory) a.push('--memory', o.memory);
  if (o.pidsLimit) a.push('--pids-limit', String(o.pidsLimit));
  if (o.testHooks) a.push('--test-hooks');
  if (o.hangTimeoutSeconds) a.push('--hang-timeout', String(o.hangTimeoutSeconds));
  if (o.log) a.push('--log', o.log);
  if (o.statsFile) a.push('--stats-file', o.statsFile);
  if (o.id) a.push('--id', o.id);
  if (o.net) a.push('--net', o.net);
  a.push('--', `/${root.name}`, ...(o.args ?? []));
  return collect(findSandboxBinary(), a, {}, o.stdin, o.timeoutMs ?? 60_000);
}

/** Compiles a C file statically (glibc or musl) into `out`. */
export function compileC(src: string, out: string, libc: 'glibc' | 'musl' = 'glibc', extra: string[] = []): string {
  const cc = libc === 'glibc' ? 'gcc' : 'musl-gcc';
  const r = spawnSync(cc, ['-static', '-O2', '-o', out, src, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cc} ${src} failed:\n${r.stderr}`);
  return out;
}

/** Header fields of a guest test program (see tests/guest/README.md). */
export interface ProgramHeaders {
  issue: string;
  args: string[];
  env: string[];
  exit: number;
  stdin?: string;
  cpus?: number;
  memory?: string;
  pidsLimit?: number;
  timeout: number;
  libc: ('glibc' | 'musl')[];
  compare: 'stdout' | 'stdout+stderr';
  masks: RegExp[];
}

const SIGNALS: Record<string, number> = { SIGSEGV: 11, SIGABRT: 6, SIGKILL: 9, SIGBUS: 7, SIGFPE: 8, SIGILL: 4, SIGTRAP: 5 };

/** Splits a header value like a shell would for simple quoting. */
export function splitWords(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) out.push(m[1] ?? m[2] ?? m[3] ?? '');
  return out;
}

/** Reads the `// key: value` headers at the top of a program's source. */
export function parseHeaders(source: string): ProgramHeaders {
  const h: ProgramHeaders = {
    issue: '',
    args: [],
    env: [],
    exit: 0,
    timeout: 20,
    libc: ['glibc', 'musl'],
    compare: 'stdout',
    masks: [],
  };
  for (const line of readFileSync(source, 'utf8').split('\n')) {
    const m = /^\/\/\s*([a-z-]+):\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    const key = m[1] ?? '';
    const v = (m[2] ?? '').trim();
    switch (key) {
      case 'issue':
        h.issue = v;
        break;
      case 'args':
        h.args = splitWords(v);
        break;
      case 'env':
        h.env = splitWords(v);
        break;
      case 'exit':
        h.exit = Number(v);
        break;
      case 'signal':
        h.exit = 128 + (SIGNALS[v] ?? 0);
        break;
      case 'stdin':
        h.stdin = v.replace(/\\n/g, '\n');
        break;
      case 'cpus':
        h.cpus = Number(v);
        break;
      case 'memory':
        h.memory = v;
        break;
      case 'pids-limit':
        h.pidsLimit = Number(v);
        break;
      case 'timeout':
        h.timeout = Number(v);
        break;
      case 'libc':
        h.libc = v.split(/\s+/).filter((x): x is 'glibc' | 'musl' => x === 'glibc' || x === 'musl');
        break;
      case 'compare':
        h.compare = v === 'stdout+stderr' ? 'stdout+stderr' : 'stdout';
        break;
      case 'mask':
        h.masks.push(new RegExp(v, 'g'));
        break;
    }
  }
  return h;
}

/** Applies masks (fields that legitimately differ between runs). */
export function masked(text: string, masks: RegExp[]): string {
  return masks.reduce((t, re) => t.replace(re, '<masked>'), text);
}
