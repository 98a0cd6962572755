// Issue 6, first "Done when" bullet: shell scripts over a root made from
// Debian's busybox-static (every applet an absolute symbolic link to
// /bin/busybox) run natively in a chroot of one fresh copy of the root (with
// the sandbox's view: pid 1, /proc, /dev, /sys; see rootfs.ts) and in the
// sandbox over another fresh copy. Outputs must match verbatim, except the
// fields that legitimately differ between two runs or two kernels; each is
// named below, replaced by its name in both outputs, and must have the
// expected shape (a value of another shape stays and fails the comparison).
//
// Each script (tests/guest/scripts/busybox/*.sh) prints sections headed
// `== name`; every section is its own test, so one wrong answer names the
// command that gave it. The runs happen once per script, one sandbox at a time.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestDir } from './harness.js';
import type { Differs } from './rootfs.js';
import { failedCalls, makeBusyboxRoot, mask, removeTree, scriptRunner, sectionNames, sections, tempDir } from './rootfs.js';

const scriptDir = join(guestDir, 'scripts', 'busybox');
const work = tempDir('quark-busybox-');
const template = join(work, 'template');
makeBusyboxRoot(template);
const ENV = ['PATH=/bin:/sbin:/usr/bin:/usr/sbin', 'HOME=/root'];

const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
/** `ls -l` time of a file made during the run (a file dated by `touch -d` in another year shows the year). */
const LS_TIME: Differs = { what: '<ls -l time of a file made by the run>', re: new RegExp(`${MONTH} [ \\d]\\d \\d\\d:\\d\\d`, 'g') };
const STAT_DEVICE: Differs = {
  what: '<stat Device: the sandbox numbers its filesystems from 0, Linux shows the host disk>',
  re: /Device: [0-9a-f]+h\/\d+d/g,
};
const INODE: Differs = { what: '<inode number>', re: /Inode: \d+/g };
const STAT_TIMES: Differs = {
  what: '<stat time of a file made by the run>',
  re: /(Access|Modify|Change): \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000/g,
};
const TAR_TIME: Differs = { what: '<tar mtime of a file made by the run>', re: /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g };
const PS_PID: Differs = { what: '<pid>', re: /^ {0,4}\d+ (?=root )/gm };

/** How one section is compared. */
type Compare = (t: ExecutionContext, native: string, guest: string) => void;

function verbatim(masks: Differs[] = []): Compare {
  return (t, n, g) => t.is(mask(g, masks), mask(n, masks));
}

// /proc/self/status: fields compared exactly, fields whose value differs
// between two runs or two machines (checked for shape), and fields Linux has
// that the guest need not (listed in the log, not required).
const STATUS_EXACT = [
  'Name',
  'Umask',
  'State',
  'TracerPid',
  'Uid',
  'Gid',
  'Groups',
  'Threads',
  'SigPnd',
  'ShdPnd',
  'SigBlk',
  'SigIgn',
  'SigCgt',
  'CapInh',
  'CapPrm',
  'CapEff',
  'CapBnd',
  'CapAmb',
  'NoNewPrivs',
  'Seccomp',
  'Cpus_allowed_list',
];
const STATUS_SHAPE: Record<string, RegExp> = {
  Tgid: /^\d+$/, // pid
  Pid: /^\d+$/, // pid
  PPid: /^1$/, // the shell is pid 1 in both
  FDSize: /^\d+$/, // size of the fd table
  VmSize: /^ *\d+ kB$/, // memory sizes
  VmRSS: /^ *\d+ kB$/,
  SigQ: /^\d+\/\d+$/, // queued/RLIMIT_SIGPENDING (the limit scales with memory)
};

function statusFields(s: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of s.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).replace(/^\t/, ''));
  }
  return m;
}

const compareStatus: Compare = (t, n, g) => {
  const nf = statusFields(n);
  const gf = statusFields(g);
  for (const k of STATUS_EXACT) {
    t.true(nf.has(k), `Linux prints ${k}`);
    t.is(JSON.stringify(gf.get(k)), JSON.stringify(nf.get(k)), `/proc/self/status ${k}`);
  }
  for (const [k, re] of Object.entries(STATUS_SHAPE)) {
    t.regex(nf.get(k) ?? '<missing>', re, `Linux's ${k}`);
    t.regex(gf.get(k) ?? '<missing>', re, `/proc/self/status ${k}`);
  }
  const extra = [...nf.keys()].filter((k) => !gf.has(k));
  t.log(`Linux fields the guest does not print (not required): ${extra.join(' ')}`);
  t.deepEqual(
    [...gf.keys()].filter((k) => !nf.has(k)),
    [],
    'every field the guest prints is one Linux prints',
  );
};

// `mount`: "SOURCE on TARGET type TYPE (OPTIONS)". Compared: the set of
// mount points, each one's source and type, and the rw/ro and
// nosuid/nodev/noexec options. Named differences: the root's source and type
// (the host's disk and filesystem vs the sandbox's hostfs), /dev's type (the
// native stand-in is a tmpfs, the sandbox's is devtmpfs), the order (the
// native /proc is mounted last) and other options (relatime, size=, mode=).
const compareMounts: Compare = (t, n, g) => {
  const parse = (s: string) =>
    s
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const m = /^(\S+) on (\S+) type (\S+) \(([^)]*)\)$/.exec(l);
        if (!m) return `<unparsable: ${l}>`;
        const [, source, target, type, opts] = m;
        const keep = (opts ?? '').split(',').filter((o) => ['rw', 'ro', 'nosuid', 'nodev', 'noexec'].includes(o));
        if (target === '/') return `<root source> on / type <root type> (${keep[0] ?? '?'})`;
        const ty = target === '/dev' ? '<dev type>' : type;
        return `${source} on ${target} type ${ty} (${keep.join(',')})`;
      })
      .sort();
  t.deepEqual(parse(g), parse(n));
};

// `df`: the mount points listed and the shape of each line. Named
// differences: the figures (sizes of the host disk and of tmpfs), the root's
// source (host disk vs the sandbox's root).
const compareDf: Compare = (t, n, g) => {
  const parse = (s: string) =>
    s
      .split('\n')
      .slice(1)
      .filter(Boolean)
      .map((l) => {
        const m = /^(\S+) +\d+ +\d+ +\d+ +\d+% (\S+)$/.exec(l);
        if (!m) return `<unparsable: ${l}>`;
        return m[2] === '/' ? '<root source> /' : `${m[1]} ${m[2]}`;
      })
      .sort();
  t.is(g.split('\n')[0], n.split('\n')[0], 'header');
  t.deepEqual(parse(g), parse(n));
};

/** A script, and how each of its sections is compared (verbatim by default). */
interface Script {
  name: string;
  compare?: Record<string, Compare>;
  /** Sections whose test is `test.failing` (a kernel bug reported with its diagnosis). */
  failing?: Record<string, string>;
}

const SCRIPTS: Script[] = [
  { name: 'shell-pipes' },
  { name: 'shell-redirections' },
  { name: 'shell-subshells' },
  { name: 'shell-jobs' },
  {
    name: 'files',
    compare: {
      'ls -la': verbatim([LS_TIME]),
      'cp -r, mv': verbatim([LS_TIME]),
      stat: verbatim([STAT_DEVICE, INODE, STAT_TIMES]),
      'chmod, ln -s, symlinks followed': verbatim([LS_TIME]),
      'rm -r': verbatim([LS_TIME]),
    },
  },
  { name: 'text-grep-sed-awk' },
  { name: 'text-sort-wc' },
  { name: 'archive-tar', compare: { 'tar c': verbatim([TAR_TIME]), 'tar x': verbatim([LS_TIME]) } },
  { name: 'archive-tgz' },
  { name: 'gzip' },
  {
    name: 'proc',
    compare: {
      ps: verbatim([PS_PID]),
      status: compareStatus,
      mount: compareMounts,
      df: compareDf,
    },
  },
];

const runsOf = scriptRunner({ template, scriptDir, shell: '/bin/sh', env: ENV, logDir: work });

test.after.always(() => removeTree(work));

test('every script under tests/guest/scripts/busybox has tests', (t) => {
  const files = readdirSync(scriptDir)
    .filter((f) => f.endsWith('.sh'))
    .map((f) => f.slice(0, -3))
    .sort();
  t.deepEqual(files, SCRIPTS.map((s) => s.name).sort());
});

for (const s of SCRIPTS) {
  const source = readFileSync(join(scriptDir, `${s.name}.sh`), 'utf8');
  const names = sectionNames(source);
  test.serial(`busybox ${s.name}: exit status, stderr, every section present`, async (t) => {
    const r = await runsOf(s.name);
    t.is(r.native.status, 0, `native run failed:\n${r.native.stderr}`);
    t.is(r.guest.status, r.native.status, `sandbox stderr:\n${r.guest.stderr}\nfailed calls:\n${failedCalls(r.log)}`);
    t.is(r.guest.stderr, r.native.stderr);
    t.deepEqual([...sections(r.guest.stdout).keys()], names);
    t.log(`native ${r.native.ms.toFixed(0)} ms, sandbox ${r.guest.ms.toFixed(0)} ms`);
  });
  for (const section of names) {
    const bug = s.failing?.[section];
    const declare = bug ? test.serial.failing : test.serial;
    const title = `busybox ${s.name}: ${section}${bug ? ` (kernel bug: ${bug})` : ''}`;
    declare(title, async (t) => {
      const r = await runsOf(s.name);
      const n = sections(r.native.stdout).get(section);
      const g = sections(r.guest.stdout).get(section);
      if (n === undefined) return t.fail(`the native run printed no section ${section}`);
      if (g === undefined) return t.fail(`the sandbox printed no section ${section}:\n${r.guest.stderr}`);
      (s.compare?.[section] ?? verbatim())(t, n, g);
    });
  }
}
