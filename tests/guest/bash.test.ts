// Issue 6, second "Done when" bullet: a root with Debian's dynamically
// linked /bin/bash and the coreutils programs, with every library `ldd`
// names for them and the loader (laid out like the host: /bin -> usr/bin,
// /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...), runs bash
// scripts (tests/guest/scripts/bash/*.sh) natively in a chroot of one fresh
// copy (with the sandbox's view, see rootfs.ts) and in the sandbox over
// another. Outputs must match verbatim; each `== section` is its own test.
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestDir } from './harness.js';
import { failedCalls, makeBashRoot, removeTree, scriptRunner, sectionNames, sections, tempDir } from './rootfs.js';

const scriptDir = join(guestDir, 'scripts', 'bash');
const work = tempDir('quark-bash-');
const template = join(work, 'template');
makeBashRoot(template);
const ENV = ['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/root', 'LANG=C'];
const runsOf = scriptRunner({ template, scriptDir, shell: '/bin/bash', env: ENV, logDir: work });
const SCRIPTS = ['arrays-functions', 'substitution', 'pipes-sort', 'pipes-cat-ls'];

test.after.always(() => removeTree(work));

test('the root holds dynamic bash and coreutils with their libraries and loader', (t) => {
  const file = (p: string) => readFileSync(join(template, p));
  // ELF e_type ET_DYN with a PT_INTERP: a dynamically linked program.
  t.true(file('usr/bin/bash').includes(Buffer.from('/lib64/ld-linux-x86-64.so.2')), 'bash names the loader');
  for (const p of ['lib64/ld-linux-x86-64.so.2', 'usr/lib/x86_64-linux-gnu/libc.so.6', 'usr/bin/sort', 'bin/ls']) {
    t.true(existsSync(join(template, p)), p);
  }
});

test('every script under tests/guest/scripts/bash has tests', (t) => {
  const files = readdirSync(scriptDir)
    .filter((f) => f.endsWith('.sh'))
    .map((f) => f.slice(0, -3))
    .sort();
  t.deepEqual(files, [...SCRIPTS].sort());
});

for (const name of SCRIPTS) {
  const names = sectionNames(readFileSync(join(scriptDir, `${name}.sh`), 'utf8'));
  test.serial(`bash ${name}: exit status, stderr, every section present`, async (t) => {
    const r = await runsOf(name);
    t.is(r.native.status, 0, `native run failed:\n${r.native.stderr}`);
    t.is(r.guest.status, r.native.status, `sandbox stderr:\n${r.guest.stderr}\nfailed calls:\n${failedCalls(r.log)}`);
    t.is(r.guest.stderr, r.native.stderr);
    t.deepEqual([...sections(r.guest.stdout).keys()], names);
    t.log(`native ${r.native.ms.toFixed(0)} ms, sandbox ${r.guest.ms.toFixed(0)} ms`);
  });
  for (const section of names) {
    test.serial(`bash ${name}: ${section}`, async (t) => {
      const r = await runsOf(name);
      const n = sections(r.native.stdout).get(section);
      const g = sections(r.guest.stdout).get(section);
      t.not(n, undefined, `the native run printed section ${section}`);
      t.is(g, n, `sandbox stderr:\n${r.guest.stderr}`);
    });
  }
}
