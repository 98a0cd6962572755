// Root filesystems made from this machine's Debian userland, and the two ways
// the guest tests of issue 6 run a command in them:
//
// - `runSandboxed`: quark-sandbox over the directory;
// - `runNativeView`: Linux, the oracle, with the same view of the world as the
//   sandbox gives: a chroot into a copy of the same directory, pid 1 of new
//   pid, mount and IPC namespaces, uid 0 with the OCI default capabilities,
//   exactly the given environment (tests/guest/src/native/runner.c does that),
//   plus the mounts the sandbox provides: /proc (procfs), /dev (a tmpfs with
//   the sandbox's device nodes and links), /dev/shm (tmpfs) and /sys (sysfs,
//   read-only). The copy itself is bind-mounted on itself so that `/` appears
//   in /proc/mounts, as the sandbox's root does.
//
// Each run gets its own fresh copy of a template root (`freshCopy`), so the
// native and sandbox runs start from identical trees and never see each
// other's leftovers.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { findSandboxBinary } from '@quark/quark';
import { guestDir, requireKvm } from './harness.js';

/** The outcome of one run. */
export interface Outcome {
  status: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** What a run is given, natively and in the sandbox alike. */
export interface RunSpec {
  /** The whole environment (nothing is inherited). */
  env?: string[];
  stdin?: string;
  timeoutMs?: number;
}

/** Sandbox-only options. */
export interface SandboxSpec extends RunSpec {
  readOnly?: boolean;
  log?: string;
  strace?: boolean;
  statsFile?: string;
  memory?: string;
  extra?: string[];
}

const SIGNUMS: Record<string, number> = { SIGKILL: 9, SIGSEGV: 11, SIGABRT: 6, SIGTERM: 15, SIGBUS: 7 };

/** Runs a command, collecting its output; rejects when it outlives `timeoutMs`. */
export function collect(
  cmd: string,
  args: string[],
  stdin: string | undefined,
  timeoutMs: number,
  env: NodeJS.ProcessEnv = {},
): Promise<Outcome> {
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
      resolve({
        status: code ?? 128 + (signal ? (SIGNUMS[signal] ?? 0) : 0),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: performance.now() - t,
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
  });
}

function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** A fresh temporary directory; `removeTree` removes what it returns. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Removes a tree (made writable first: tests chmod things read-only). */
export function removeTree(dir: string): void {
  spawnSync('chmod', ['-R', 'u+rwx', dir]);
  rmSync(dir, { recursive: true, force: true });
}

/** A fresh copy (`cp -a`: modes, owners, times, links, device nodes) of `template` in a new temp dir. */
export function freshCopy(template: string): string {
  const dir = tempDir('quark-root-');
  must('cp', ['-a', `${template}/.`, dir]);
  return dir;
}

/** Directories every root gets, with the modes a Docker image has. */
function skeleton(root: string): void {
  for (const d of ['dev', 'proc', 'sys', 'etc', 'root', 'home', 'var', 'usr', 'tmp']) {
    mkdirSync(join(root, d), { recursive: true });
  }
  chmodSync(join(root, 'tmp'), 0o1777);
  chmodSync(join(root, 'root'), 0o700);
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
}

/** The static busybox of Debian's busybox-static (scripts/prereqs.txt). */
export const BUSYBOX = '/bin/busybox';

/**
 * Makes a busybox root in `root` (created): /bin/busybox from busybox-static
 * and every applet installed as an absolute symbolic link to it at the path
 * `busybox --list-full` gives (what `busybox --install -s` does), plus the
 * directories and /etc/passwd, /etc/group of a Docker busybox image.
 */
export function makeBusyboxRoot(root: string): void {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: install busybox-static (bash scripts/prereqs.sh)`);
  const ldd = spawnSync('ldd', [BUSYBOX], { encoding: 'utf8' });
  if (ldd.status === 0) throw new Error(`${BUSYBOX} is dynamically linked (${ldd.stdout.trim()}): install busybox-static`);
  mkdirSync(root, { recursive: true });
  skeleton(root);
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  for (const p of must(BUSYBOX, ['--list-full']).split('\n').filter(Boolean)) {
    if (p === 'bin/busybox' || p === 'usr/bin/busybox') continue;
    const at = join(root, p);
    if (!existsSync(at)) symlinkSync('/bin/busybox', at);
  }
}

/** Shared libraries (and the loader) `ldd` names for `binaries`. */
export function lddClosure(binaries: string[]): string[] {
  const r = spawnSync('ldd', binaries, { encoding: 'utf8' });
  const libs = new Set<string>();
  for (const m of (r.stdout ?? '').matchAll(/(\/[^\s()]+\.so[^\s()]*)/g)) libs.add(m[1] ?? '');
  libs.delete('');
  if (libs.size === 0) throw new Error(`ldd found no libraries for ${binaries.join(' ')}: ${r.stderr}`);
  return [...libs];
}

/**
 * Copies host path `p` into `root` at the same path, reproducing every
 * symbolic link met on the way (`/lib64/ld-linux-x86-64.so.2 ->
 * /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`, `/bin -> usr/bin`), so the
 * root has the same shape as the host.
 */
export function copyHostPath(root: string, p: string, depth = 0): void {
  if (depth > 16) throw new Error(`too many symbolic links copying ${p}`);
  const parts = p.split('/').filter(Boolean);
  let host = '';
  for (let i = 0; i < parts.length; i++) {
    host = `${host}/${parts[i] ?? ''}`;
    const st = lstatSync(host);
    const inRoot = join(root, host);
    if (st.isSymbolicLink()) {
      const target = readlinkSync(host);
      if (!existsSync(inRoot) && !isLink(inRoot)) {
        mkdirSync(dirname(inRoot), { recursive: true });
        symlinkSync(target, inRoot);
      }
      const resolved = target.startsWith('/') ? target : join(dirname(host), target);
      copyHostPath(root, [resolved, ...parts.slice(i + 1)].join('/'), depth + 1);
      return;
    }
    if (i === parts.length - 1) {
      if (!existsSync(inRoot)) {
        mkdirSync(dirname(inRoot), { recursive: true });
        copyFileSync(host, inRoot);
        chmodSync(inRoot, st.mode & 0o7777);
      }
    } else if (!existsSync(inRoot)) {
      mkdirSync(inRoot, { recursive: true });
    }
  }
}

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/** The coreutils programs of this machine (Debian's coreutils package). */
export function coreutilsBinaries(): string[] {
  return must('dpkg', ['-L', 'coreutils'])
    .split('\n')
    .filter((p) => /^\/(usr\/)?bin\/[^/]+$/.test(p))
    .filter((p) => !p.endsWith('/['));
}

/**
 * Makes a root in `root` with Debian's dynamically linked /bin/bash, the
 * coreutils programs and every library `ldd` names for them (with the
 * loader), laid out like the host (merged /usr: /bin -> usr/bin, /lib ->
 * usr/lib, /lib64 -> usr/lib64).
 */
export function makeBashRoot(root: string, extra: string[] = []): void {
  mkdirSync(root, { recursive: true });
  skeleton(root);
  const bins = ['/bin/bash', ...coreutilsBinaries(), ...extra];
  for (const b of bins) copyHostPath(root, b);
  for (const l of lddClosure(bins)) copyHostPath(root, l);
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
}

/** The native launcher of the guest tests (tests/guest/src/native/runner.c), built on demand. */
export function nativeRunner(): string {
  must('make', ['-s', '-C', guestDir, 'build/native/runner']);
  return join(guestDir, 'build', 'native', 'runner');
}

// Mounts the sandbox provides, reproduced natively in a private mount
// namespace before the runner chroots (it adds /proc in its pid namespace).
const NATIVE_SETUP = `
set -e
R=$1; RUNNER=$2; shift 2
mount --bind "$R" "$R"
mount -t tmpfs -o nosuid,mode=755,size=64k dev "$R/dev"
node() { mknod -m "$4" "$R/dev/$1" c "$2" "$3"; }
node null 1 3 666; node zero 1 5 666; node full 1 7 666; node random 1 8 666; node urandom 1 9 666
node tty 5 0 666; node ptmx 5 2 666; node console 5 1 620
mkdir -m 755 "$R/dev/pts"; mkdir -m 1777 "$R/dev/shm" "$R/dev/mqueue"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 shm "$R/dev/shm"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
exec "$RUNNER" --root "$R" --proc "$@"
`;

/** Runs `argv` natively in `root` with the sandbox's view (see the top of this file). */
export function runNativeView(root: string, argv: string[], o: RunSpec = {}): Promise<Outcome> {
  const runner = nativeRunner();
  const envArgs = (o.env ?? []).flatMap((e) => ['--env', e]);
  return collect(
    'unshare',
    ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', NATIVE_SETUP, 'sh', root, runner, ...envArgs, '--', ...argv],
    o.stdin,
    o.timeoutMs ?? 60_000,
    { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  );
}

/** The quark-sandbox command line for running `argv` in `root`. */
export function sandboxArgv(root: string, argv: string[], o: SandboxSpec = {}): string[] {
  const a = ['--rootfs', root];
  for (const e of o.env ?? []) a.push('--env', e);
  if (o.readOnly) a.push('--read-only');
  if (o.log) a.push('--log', o.log);
  if (o.strace) a.push('--strace');
  if (o.statsFile) a.push('--stats-file', o.statsFile);
  if (o.memory) a.push('--memory', o.memory);
  a.push(...(o.extra ?? []), '--', ...argv);
  return a;
}

/** Runs `argv` in a sandbox over `root`. */
export function runSandboxed(root: string, argv: string[], o: SandboxSpec = {}): Promise<Outcome> {
  requireKvm();
  return collect(findSandboxBinary(), sandboxArgv(root, argv, o), o.stdin, o.timeoutMs ?? 60_000);
}

/** Lines of a log mentioning strace records of failed calls, for failure messages. */
export function failedCalls(log: string, max = 40): string {
  const r = spawnSync('grep', ['-E', 'strace .*= -E', log], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').slice(-max).join('\n');
}

/** A field that legitimately differs between two runs: its name (the replacement) and its shape. */
export interface Differs {
  what: string;
  re: RegExp;
}

/** Replaces every field of `masks` by its name. */
export function mask(s: string, masks: Differs[]): string {
  return masks.reduce((acc, m) => acc.replace(m.re, m.what), s);
}

/** Splits a script's output into its `== name` sections. */
export function sections(out: string): Map<string, string> {
  const m = new Map<string, string>();
  let cur = '';
  for (const line of out.split('\n')) {
    const h = /^== (.*)$/.exec(line);
    if (h) {
      cur = h[1] ?? '';
      m.set(cur, '');
    } else if (cur) {
      m.set(cur, `${m.get(cur) ?? ''}${line}\n`);
    }
  }
  return m;
}

/** The section names a script announces with `echo '== name'` lines. */
export function sectionNames(source: string): string[] {
  return [...source.matchAll(/^echo '== (.*)'$/gm)].map((m) => m[1] ?? '');
}

/** The native and sandbox runs of one script. */
export interface ScriptRuns {
  native: Outcome;
  guest: Outcome;
  /** The sandbox's --log file. */
  log: string;
}

/**
 * Runs scripts (each `${scriptDir}/${name}.sh`, copied to /test.sh) with
 * `shell` natively and in the sandbox, each over a fresh copy of `template`,
 * once per script and one script at a time (sandbox runs are CPU-bound).
 */
export function scriptRunner(o: {
  template: string;
  scriptDir: string;
  shell: string;
  env: string[];
  logDir: string;
}): (name: string) => Promise<ScriptRuns> {
  let queue: Promise<unknown> = Promise.resolve();
  const runs = new Map<string, Promise<ScriptRuns>>();
  return (name) => {
    let p = runs.get(name);
    if (!p) {
      p = queue.then(async () => {
        const native = freshCopy(o.template);
        const guest = freshCopy(o.template);
        const log = join(o.logDir, `${name}.log`);
        try {
          for (const r of [native, guest]) copyFileSync(join(o.scriptDir, `${name}.sh`), join(r, 'test.sh'));
          const n = await runNativeView(native, [o.shell, '/test.sh'], { env: o.env });
          const g = await runSandboxed(guest, [o.shell, '/test.sh'], { env: o.env, log, timeoutMs: 90_000 });
          return { native: n, guest: g, log };
        } finally {
          removeTree(native);
          removeTree(guest);
        }
      });
      queue = p.catch(() => undefined);
      runs.set(name, p);
    }
    return p;
  };
}
