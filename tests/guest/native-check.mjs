#!/usr/bin/env node
// Native oracle check for the guest test programs (tests/guest/src/*.c).
//
// Builds everything (`make -C tests/guest`), then runs every program natively,
// for each libc its header allows (and its -pie variant where built), through
// build/native/runner, which gives the program the sandbox's view of the world
// (chroot holding only /<name>, pid 1 of its own pid namespace, OCI default
// capabilities, exactly the header's environment, N CPUs). For each it checks:
//   - the exit status matches the header (`exit: N` or `signal: SIGx` = 128+x),
//   - two runs print identical stdout (and stderr with `compare: stdout+stderr`),
//     after applying the header's `mask:` regexes,
//   - its syscalls plus page faults, counted by `perf stat` over all its processes
//     (minus the runner's own, measured with build/native/nop), stay within the
//     sandbox budget (BUDGET below: ~50 µs per kernel entry in the sandbox on
//     this host, 20 s per program). perf rather than `strace -f -c`: ptrace changes
//     what a program sees (a traced pid 1 does not die of SIGSEGV, it loops).
// It prints a table with the time, syscalls and faults of each program.
//
// Usage: node tests/guest/native-check.mjs [--only name,name] [--libc glibc|musl] [--no-count] [--verbose]
//        node tests/guest/native-check.mjs --list   (one JSON line per program run, for harnesses; no build)
// --save DIR keeps the first native run's output as DIR/<libc>/<variant>.{stdout,stderr,status}.
// Must run as root (chroot, namespaces, cgroups), like the sandbox tests.
//
// The header parser is exported for the sandbox harness: import { parseHeaders } from this file.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const BUDGET = 20000;

// Linux x86-64 signal numbers, for `signal: SIGx` headers.
export const SIGNALS = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9,
  SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17,
  SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25,
  SIGVTALRM: 26, SIGPROF: 27, SIGWINCH: 28, SIGIO: 29, SIGPWR: 30, SIGSYS: 31,
}; // prettier-ignore

/** Split a header value like a shell would: spaces separate words, double quotes group
 * (with \" and \\ escapes inside), so `a "b c" ""` is ['a', 'b c', '']. */
export function splitWords(s) {
  const words = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && s[i] === ' ') i++;
    if (i >= s.length) break;
    let w = '';
    while (i < s.length && s[i] !== ' ') {
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          w += s[i++];
        }
        if (i >= s.length) throw new Error(`unterminated quote in header value: ${s}`);
        i++;
      } else {
        w += s[i++];
      }
    }
    words.push(w);
  }
  return words;
}

/** `stdin:` values use C escapes: \n \t \\ \" (so a header stays one line). */
export function unescapeC(s) {
  return s.replace(/\\(.)/g, (_, c) => ({ n: '\n', t: '\t', r: '\r', 0: '\0' })[c] ?? c);
}

/** Parse the `// key: value` lines at the top of a program's source.
 * Returns the normalized run description; throws on a malformed header. */
export function parseHeaders(source, name = '?') {
  const raw = {};
  const masks = [];
  for (const line of source.split('\n')) {
    if (!line.startsWith('//')) break;
    const m = /^\/\/ ([a-z][a-z0-9-]*): ?(.*)$/.exec(line);
    if (!m) continue;
    const [, key, value] = m;
    if (key === 'mask') masks.push(new RegExp(value, 'g'));
    else if (key in raw) throw new Error(`${name}: header "${key}" given twice`);
    else raw[key] = value.trim();
  }
  const int = (k, dflt) => {
    if (raw[k] === undefined) return dflt;
    if (!/^\d+$/.test(raw[k])) throw new Error(`${name}: header "${k}" must be a number, got "${raw[k]}"`);
    return Number(raw[k]);
  };
  if (!raw.issue) throw new Error(`${name}: missing "// issue: N" header`);
  // `exit: SIGSEGV` and `exit: signal: SIGSEGV` are accepted as spellings of `signal: SIGSEGV`.
  const sigInExit = raw.exit !== undefined ? /^(?:signal:\s*)?(SIG[A-Z0-9]+)$/.exec(raw.exit) : null;
  if (sigInExit) {
    if (raw.signal !== undefined) throw new Error(`${name}: both exit and signal headers`);
    raw.signal = sigInExit[1];
    delete raw.exit;
  }
  if (raw.exit !== undefined && raw.signal !== undefined) throw new Error(`${name}: both exit and signal headers`);
  let expectStatus = int('exit', 0);
  if (raw.signal !== undefined) {
    const n = SIGNALS[raw.signal];
    if (!n) throw new Error(`${name}: unknown signal ${raw.signal}`);
    expectStatus = 128 + n;
  }
  const libc = raw.libc ? splitWords(raw.libc) : ['glibc', 'musl'];
  for (const l of libc) if (l !== 'glibc' && l !== 'musl') throw new Error(`${name}: unknown libc ${l}`);
  const env = raw.env ? splitWords(raw.env) : [];
  for (const e of env) if (!e.includes('=')) throw new Error(`${name}: env entry "${e}" has no "="`);
  const compare = raw.compare ?? 'stdout';
  if (compare !== 'stdout' && compare !== 'stdout+stderr') throw new Error(`${name}: bad compare "${compare}"`);
  let memory = null;
  if (raw.memory !== undefined) {
    const mm = /^(\d+)([KMG]?)$/.exec(raw.memory);
    if (!mm) throw new Error(`${name}: bad memory "${raw.memory}"`);
    memory = Number(mm[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[mm[2]];
  }
  return {
    name,
    issue: Number(raw.issue),
    args: raw.args ? splitWords(raw.args) : [],
    env,
    expectStatus,
    stdin: raw.stdin !== undefined ? unescapeC(raw.stdin) : '',
    cpus: int('cpus', 1),
    timeout: int('timeout', 20),
    libc,
    compare,
    masks,
    pie: raw.pie === 'yes',
    pidsLimit: int('pids-limit', null),
    memory,
    nativeProc: raw['native-proc'] === 'yes',
    raw,
  };
}

/** All programs: [{ name, file, headers }], sorted by name. */
export function listPrograms(dir = join(here, 'src')) {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.c'))
    .sort()
    .map((f) => {
      const name = basename(f, '.c');
      return { name, file: join(dir, f), headers: parseHeaders(readFileSync(join(dir, f), 'utf8'), name) };
    });
}

function statusLabel(st) {
  if (st > 128) {
    const sig = Object.keys(SIGNALS).find((k) => SIGNALS[k] === st - 128);
    if (sig) return `${st}(${sig})`;
  }
  return String(st);
}

// ---- pids cgroup (native stand-in for --pids-limit) ----------------------------------

function makePidsCgroup(tag, max) {
  const candidates = ['/sys/fs/cgroup/pids', '/sys/fs/cgroup'];
  for (const base of candidates) {
    if (!existsSync(join(base, 'cgroup.procs'))) continue;
    if (base === '/sys/fs/cgroup') {
      const ctl = join(base, 'cgroup.subtree_control');
      if (!existsSync(ctl) || !readFileSync(ctl, 'utf8').split(/\s+/).includes('pids')) continue;
    }
    const dir = join(base, `quark-guest-${process.pid}-${tag}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'pids.max'), `${max}\n`);
    return dir;
  }
  throw new Error(
    'no writable pids cgroup (cgroup v1 /sys/fs/cgroup/pids or v2 with the pids controller enabled): ' +
      'the fork-bomb program needs one natively; run as root on a host with the pids controller',
  );
}

function removeCgroup(dir) {
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch {
      spawnSync('sleep', ['0.05']);
    }
  }
  console.error(`warning: could not remove cgroup ${dir}`);
}

// ---- running ----------------------------------------------------------------------------

function runnerArgs(h, root, variant, extra) {
  const a = ['--root', root, '--cpus', String(h.cpus)];
  if (h.nativeProc) a.push('--proc');
  if (h.memory) a.push('--as', String(h.memory));
  for (const e of h.env) a.push('--env', e);
  return [...a, ...extra, '--', `/${variant}`, ...h.args];
}

function runOnce(runner, h, root, variant, extra, wrap = []) {
  const args = runnerArgs(h, root, variant, extra);
  const cmd = wrap.length ? wrap[0] : runner;
  const argv = wrap.length ? [...wrap.slice(1), runner, ...args] : args;
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, {
    input: h.stdin,
    timeout: h.timeout * 1000 * (wrap.length ? 4 : 1),
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024 * 1024,
    env: {},
  });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  const timedOut = r.error && r.error.code === 'ETIMEDOUT';
  if (r.error && !timedOut) throw new Error(`${variant}: ${r.error.message}`);
  return {
    status: timedOut ? `timeout` : (r.status ?? `runner killed by ${r.signal}`),
    stdout: r.stdout.toString('utf8'),
    stderr: r.stderr.toString('utf8'),
    ms,
  };
}

/** Run under `perf stat` (kernel counters, no ptrace: strace would change what the program
 * sees, e.g. a traced pid 1 no longer dies of a fatal signal) and return
 * { run, syscalls, faults } counted over the runner and all the program's processes. */
function runCounted(runner, h, root, variant, extra, perfOut) {
  const wrap = ['perf', 'stat', '-x,', '-o', perfOut, '-e', 'raw_syscalls:sys_enter,page-faults', '--'];
  const run = runOnce(runner, h, root, variant, extra, wrap);
  const counts = {};
  for (const line of readFileSync(perfOut, 'utf8').split('\n')) {
    const f = line.split(',');
    if (f.length > 3 && /^\d+$/.test(f[0])) counts[f[2]] = Number(f[0]);
  }
  if (counts['raw_syscalls:sys_enter'] === undefined || counts['page-faults'] === undefined)
    throw new Error(`perf stat gave no counts for ${variant}:\n${readFileSync(perfOut, 'utf8')}`);
  return { run, syscalls: counts['raw_syscalls:sys_enter'], faults: counts['page-faults'] };
}

function applyMasks(s, masks) {
  return masks.reduce((acc, re) => acc.replace(re, '<masked>'), s);
}

function main() {
  const argv = process.argv.slice(2);
  const opt = (k) => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const only = opt('--only') ? new Set(opt('--only').split(',')) : null;
  const onlyLibc = opt('--libc');
  const useCounts = !argv.includes('--no-count');
  const verbose = argv.includes('--verbose');
  const saveDir = opt('--save');
  if (argv.includes('--list')) {
    // One JSON object per program run (name, variant, libc, how to run it, what to expect).
    for (const { name, headers: h } of listPrograms())
      for (const libc of h.libc)
        for (const variant of h.pie ? [name, `${name}-pie`] : [name])
          console.log(
            JSON.stringify({
              name,
              variant,
              libc,
              binary: join(here, 'build', libc, variant),
              path: `/${variant}`,
              args: h.args,
              env: h.env,
              stdin: h.stdin,
              expectStatus: h.expectStatus,
              cpus: h.cpus,
              timeout: h.timeout,
              compare: h.compare,
              masks: h.masks.map((m) => m.source),
              pidsLimit: h.pidsLimit,
              nativeProc: h.nativeProc,
              memory: h.memory,
              issue: h.issue,
            }),
          );
    return;
  }

  if (process.getuid && process.getuid() !== 0) {
    console.error('native-check: must run as root (chroot, pid namespaces, pids cgroup)');
    process.exit(2);
  }
  const make = spawnSync('make', ['-C', here, '-j', '4', '--no-print-directory'], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (make.status !== 0) {
    console.error('native-check: build failed');
    process.exit(1);
  }
  const perfWorks = () => spawnSync('perf', ['stat', '-e', 'raw_syscalls:sys_enter', '--', 'true']).status === 0;
  if (useCounts && !perfWorks() && !existsSync('/sys/kernel/tracing/events')) {
    // Tracepoints need tracefs; some hosts do not mount it by default.
    console.log('native-check: mounting tracefs at /sys/kernel/tracing for perf');
    spawnSync('mount', ['-t', 'tracefs', 'nodev', '/sys/kernel/tracing'], { stdio: 'inherit' });
  }
  if (useCounts && !perfWorks()) {
    console.error(
      'native-check: `perf stat -e raw_syscalls:sys_enter` does not work here (apt-get install linux-perf; ' +
        'tracefs at /sys/kernel/tracing), or pass --no-count',
    );
    process.exit(2);
  }
  const runner = join(here, 'build', 'native', 'runner');
  const programs = listPrograms().filter((p) => !only || only.has(p.name));
  if (only && programs.length !== only.size) {
    console.error(`native-check: unknown program in --only: ${[...only].join(',')}`);
    process.exit(2);
  }
  const work = mkdtempSync(join(tmpdir(), 'quark-guest-native-'));
  const rows = [];
  const failures = [];
  // The runner's own cost (dynamic loading, namespaces, chroot, exec): counted once with the
  // smallest program, build/native/nop (1 syscall), and subtracted from every count.
  let baseline = { syscalls: 0, faults: 0 };
  if (useCounts) {
    const nopRoot = join(work, 'nop');
    mkdirSync(nopRoot);
    copyFileSync(join(here, 'build', 'native', 'nop'), join(nopRoot, 'nop'));
    const nopH = parseHeaders('// issue: 0\n', 'nop');
    const c = runCounted(runner, nopH, nopRoot, 'nop', [], join(work, 'perf.out'));
    if (c.run.status !== 0) throw new Error(`nop: status ${c.run.status}`);
    baseline = { syscalls: c.syscalls - 1, faults: c.faults - 1 };
  }
  const started = Date.now();
  try {
    for (const { name, headers: h } of programs) {
      for (const libc of h.libc) {
        if (onlyLibc && libc !== onlyLibc) continue;
        for (const variant of h.pie ? [name, `${name}-pie`] : [name]) {
          const label = `${variant} [${libc}]`;
          const root = join(work, libc, variant);
          mkdirSync(root, { recursive: true });
          copyFileSync(join(here, 'build', libc, variant), join(root, variant));
          if (h.nativeProc) mkdirSync(join(root, 'proc'), { recursive: true });
          const problems = [];
          let cg = null;
          const extra = (tag) => {
            if (!h.pidsLimit) return [];
            cg = makePidsCgroup(`${libc}-${variant}-${tag}`, h.pidsLimit);
            return ['--pids-cgroup', cg];
          };
          const withCg = (tag, fn) => {
            try {
              return fn(extra(tag));
            } finally {
              if (cg) removeCgroup(cg);
              cg = null;
            }
          };
          const r1 = withCg('1', (x) => runOnce(runner, h, root, variant, x));
          const r2 = withCg('2', (x) => runOnce(runner, h, root, variant, x));
          if (saveDir) {
            const d = join(saveDir, libc);
            mkdirSync(d, { recursive: true });
            writeFileSync(join(d, `${variant}.stdout`), r1.stdout);
            writeFileSync(join(d, `${variant}.stderr`), r1.stderr);
            writeFileSync(join(d, `${variant}.status`), `${r1.status}\n`);
          }
          for (const [i, r] of [r1, r2].entries()) {
            if (r.status !== h.expectStatus)
              problems.push(`run ${i + 1}: status ${statusLabel(r.status)}, expected ${statusLabel(h.expectStatus)}`);
          }
          if (applyMasks(r1.stdout, h.masks) !== applyMasks(r2.stdout, h.masks)) problems.push('stdout differs between runs');
          if (h.compare === 'stdout+stderr' && applyMasks(r1.stderr, h.masks) !== applyMasks(r2.stderr, h.masks))
            problems.push('stderr differs between runs');
          let sys = null;
          let flt = null;
          if (useCounts) {
            const c = withCg('c', (x) => runCounted(runner, h, root, variant, x, join(work, 'perf.out')));
            if (c.run.status !== h.expectStatus) problems.push(`counted run: status ${statusLabel(c.run.status)}`);
            sys = Math.max(0, c.syscalls - baseline.syscalls);
            flt = Math.max(0, c.faults - baseline.faults);
            if (sys + flt > BUDGET) problems.push(`syscalls+faults ${sys + flt} > budget ${BUDGET}`);
          }
          rows.push({ label, status: statusLabel(r1.status), ms: r1.ms, sys, flt, ok: !problems.length });
          if (problems.length) {
            failures.push(label);
            console.log(`FAIL ${label}: ${problems.join('; ')}`);
            if (r1.stderr) console.log(`  stderr: ${r1.stderr.trim().split('\n').join('\n  stderr: ')}`);
          }
          if (verbose || problems.length) {
            console.log(`--- ${label} stdout:\n${r1.stdout}${problems.length ? `--- run 2 stdout:\n${r2.stdout}` : ''}`);
          }
        }
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  console.log(`\nrunner baseline subtracted: ${baseline.syscalls} syscalls, ${baseline.faults} page faults`);
  console.log('program                      status          ms  syscalls  faults  result');
  for (const r of rows) {
    console.log(
      `${r.label.padEnd(28)} ${r.status.padEnd(13)} ${r.ms.toFixed(0).padStart(5)} ${String(r.sys ?? '-').padStart(9)} ` +
        `${String(r.flt ?? '-').padStart(7)}  ${r.ok ? 'ok' : 'FAIL'}`,
    );
  }
  console.log(
    `\n${rows.length} runs (each twice${useCounts ? " and once counted" : ""}), ${failures.length} failed, ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (failures.length) {
    console.log(`failed: ${failures.join(', ')}`);
    process.exit(1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
