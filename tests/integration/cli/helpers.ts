// The quark CLI as users run it: a child process of packages/quark/src/main.ts
// (from source, like every test here), against a real docker-registry and
// the real quark-sandbox.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const main = join(repo, 'packages', 'quark', 'src', 'main.ts');

export interface CliResult {
  status: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Called with the child once it runs (e.g. to send it a signal). */
  onSpawn?: (child: ChildProcess, output: { stdout(): string; stderr(): string }) => void;
}

/** Runs `quark ARGS...` to completion and collects its output. */
export function quark(args: string[], o: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=quark-source', main, ...args], {
      cwd: repo,
      env: { ...process.env, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timeoutMs = o.timeoutMs ?? 90_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`quark ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, signal, stdout, stderr });
    });
    o.onSpawn?.(child, { stdout: () => stdout, stderr: () => stderr });
  });
}

/** Fails loudly (never skips) when the sandbox cannot run here. */
export function requireKvm(): void {
  if (!existsSync('/dev/kvm')) {
    throw new Error('/dev/kvm is missing: `quark run` tests need KVM (run `quark check` for what to fix)');
  }
}

/** Compiles tests/integration/cli/show.c statically into `out`. */
export function buildShow(out: string): string {
  const src = join(repo, 'tests', 'integration', 'cli', 'show.c');
  const r = spawnSync('gcc', ['-static', '-O2', '-o', out, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc -static ${src} failed (is gcc installed?):\n${r.stderr}`);
  return out;
}

/** A layer function for buildBusybox: /app/show (the static program) and an /app/sub directory. */
export function showLayer(binary: string): (rootfs: string) => void {
  return (rootfs) => {
    mkdirSync(join(rootfs, 'app', 'sub'), { recursive: true });
    copyFileSync(binary, join(rootfs, 'app', 'show'));
    chmodSync(join(rootfs, 'app', 'show'), 0o755);
  };
}

/** Parses show.c's output. */
export interface ShowOutput {
  argv: string[];
  env: string[];
  cwd: string | null;
  cwdErrno: number | null;
  exe: string;
  exeErrno: number | null;
  uid: number;
  gid: number;
  rest: string[];
}

export function parseShow(stdout: string): ShowOutput {
  const out: ShowOutput = {
    argv: [],
    env: [],
    cwd: null,
    cwdErrno: null,
    exe: '',
    exeErrno: null,
    uid: -1,
    gid: -1,
    rest: [],
  };
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^argv\[(\d+)\]=(.*)$/.exec(line))) out.argv[Number(m[1])] = m[2] ?? '';
    else if (line.startsWith('env=')) out.env.push(line.slice(4));
    else if (line.startsWith('cwd=')) out.cwd = line.slice(4);
    else if (line.startsWith('cwd-errno=')) out.cwdErrno = Number(line.slice(10));
    else if (line.startsWith('exe=')) out.exe = line.slice(4);
    else if (line.startsWith('exe-errno=')) out.exeErrno = Number(line.slice(10));
    else if ((m = /^uid=(\d+) gid=(\d+)$/.exec(line))) {
      out.uid = Number(m[1]);
      out.gid = Number(m[2]);
    } else out.rest.push(line);
  }
  return out;
}

/** ENOSYS: what getcwd gives until the guest kernel implements it. */
export const ENOSYS = 38;

/** Container root filesystems prepared under `root` that still exist. */
export function preparedRootfs(root: string): string[] {
  const dir = join(root, 'oci', 'rootfs');
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Mount points under `root` (overlay rootfs mounts left behind). */
export function mountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(root + '/'));
}
