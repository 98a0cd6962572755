// Starting quark-sandbox (crates/qvisor), the per-sandbox VMM process.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `--net`: a fresh namespace, the host's, or an existing one (`ns:/run/netns/NAME`). */
export type NetMode = 'none' | 'host' | `ns:/${string}`;

/** Docker's default PATH, set when the caller's environment has none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Exit status of a failed sandbox (guest kernel panic, hang, VM error, bad options). */
export const EXIT_SANDBOX_FAILED = 125;

/** How one sandbox should run; mirrors `quark-sandbox --help`. */
export interface SandboxOptions {
  rootfs?: string;
  readOnly?: boolean;
  cpus?: number;
  /** Bytes, or a size string such as "256M". */
  memory?: string;
  env?: string[];
  cwd?: string;
  hostname?: string;
  user?: string;
  pidsLimit?: number;
  net?: NetMode;
  log?: string;
  statsFile?: string;
  id?: string;
  debug?: boolean;
  check?: boolean;
  hangTimeoutSeconds?: number;
  testHooks?: boolean;
  argv?: string[];
}

/** Thrown when quark-sandbox cannot be found. */
export class SandboxBinaryError extends Error {
  readonly code = 'ERR_QUARK_SANDBOX_MISSING';
}

function executable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where quark-sandbox is: $QUARK_SANDBOX, the repository build
 * (target/release/quark-sandbox next to this package), or $PATH.
 */
export function findSandboxBinary(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['QUARK_SANDBOX'];
  if (fromEnv) {
    if (!executable(fromEnv)) throw new SandboxBinaryError(`QUARK_SANDBOX=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const built = join(repo, 'target', 'release', 'quark-sandbox');
  if (executable(built)) return built;
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    const candidate = join(dir, 'quark-sandbox');
    if (dir && executable(candidate)) return candidate;
  }
  throw new SandboxBinaryError(
    'quark-sandbox not found: build it with `npm run build` (or `cargo build --release`) in the Quark repository, ' +
      'put it on PATH, or set QUARK_SANDBOX to its path',
  );
}

/** A short random sandbox id. */
export function newSandboxId(): string {
  return randomBytes(8).toString('hex');
}

/** Translates options into quark-sandbox's command line. */
export function sandboxArgs(o: SandboxOptions): string[] {
  const a: string[] = [];
  const opt = (name: string, v: string | number | undefined) => {
    if (v !== undefined) a.push(name, String(v));
  };
  opt('--rootfs', o.rootfs);
  if (o.readOnly) a.push('--read-only');
  opt('--cpus', o.cpus);
  opt('--memory', o.memory);
  for (const e of o.env ?? []) a.push('--env', e);
  opt('--cwd', o.cwd);
  opt('--hostname', o.hostname);
  opt('--user', o.user);
  opt('--pids-limit', o.pidsLimit);
  opt('--net', o.net);
  opt('--log', o.log);
  opt('--stats-file', o.statsFile);
  opt('--id', o.id);
  opt('--hang-timeout', o.hangTimeoutSeconds);
  if (o.debug) a.push('--debug');
  if (o.check) a.push('--check');
  if (o.testHooks) a.push('--test-hooks');
  if (o.argv) a.push('--', ...o.argv);
  return a;
}

/** Adds Docker's default PATH unless the environment sets PATH. */
export function withDefaultPath(env: string[]): string[] {
  return env.some((e) => e.startsWith('PATH=')) ? env : [`PATH=${DEFAULT_PATH}`, ...env];
}

/** The signals `quark run` forwards to the sandbox. */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/** The result of a sandbox run. */
export interface SandboxResult {
  /** Exit status, as a shell reports it (128+N for death by signal N). */
  status: number;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

/**
 * Runs quark-sandbox with inherited stdio, forwarding SIGINT, SIGTERM,
 * SIGHUP and SIGQUIT to it, and resolves with its exit status.
 */
export function runSandbox(o: SandboxOptions, binary: string = findSandboxBinary()): Promise<SandboxResult> {
  return new Promise((resolve, reject) => {
    // A session of its own: terminal signals reach only this process, which
    // forwards each once; --die-with-parent ends the sandbox if we die.
    const child = spawn(binary, ['--die-with-parent', ...sandboxArgs(o)], { stdio: 'inherit', detached: true });
    const forward = (sig: NodeJS.Signals) => {
      child.kill(sig);
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    const cleanup = () => {
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
    };
    child.on('error', (e) => {
      cleanup();
      reject(e);
    });
    child.on('exit', (code, signal) => {
      cleanup();
      if (code !== null) resolve({ status: code });
      else resolve({ status: 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 1) : 1) });
    });
  });
}
