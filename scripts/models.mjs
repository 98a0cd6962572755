#!/usr/bin/env node
// Model checking with spin. Every `crates/*/models/*.pml` is verified; a model
// states how in header comments:
//   // expect: pass            (or `fail` for a model with a planted bug that spin must find)
//   // spin-cc: -DSAFETY       (extra C flags for pan.c; optional)
//   // spin-run: -a -m100000   (flags for ./pan; optional)
//   // spin-ltl: name          (an LTL property to check with -N; optional)
// A model "fails" when pan reports errors > 0.
import { mkdtempSync, readFileSync, copyFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { findFiles, root } from './lib.mjs';

const header = (text, key) => {
  const m = text.match(new RegExp(`^//\\s*${key}:\\s*(.*)$`, 'm'));
  return m ? m[1].trim() : null;
};

let failed = 0;
for (const rel of findFiles('crates', /\.pml$/)) {
  const text = readFileSync(join(root, rel), 'utf8');
  const expect = header(text, 'expect');
  if (expect !== 'pass' && expect !== 'fail') {
    console.error(`${rel}: missing '// expect: pass|fail' header`);
    failed++;
    continue;
  }
  const dir = mkdtempSync(join(tmpdir(), 'quark-spin-'));
  const file = join(dir, basename(rel));
  copyFileSync(join(root, rel), file);
  const step = (cmd, argv) => spawnSync(cmd, argv, { cwd: dir, encoding: 'utf8' });
  const ltl = header(text, 'spin-ltl');
  let out = '';
  let errors = -1;
  const gen = step('spin', ['-a', basename(file)]);
  if (gen.status === 0) {
    const cc = (header(text, 'spin-cc') ?? '').split(/\s+/).filter(Boolean);
    const build = step('gcc', ['-O2', '-w', '-o', 'pan', ...cc, 'pan.c']);
    if (build.status === 0) {
      const runArgs = (header(text, 'spin-run') ?? '-m100000').split(/\s+/).filter(Boolean);
      if (ltl) runArgs.push('-N', ltl);
      const pan = step('./pan', runArgs);
      out = pan.stdout + pan.stderr;
      const m = out.match(/errors: (\d+)/);
      if (m) errors = Number(m[1]);
    } else out = build.stderr;
  } else out = gen.stdout + gen.stderr;
  rmSync(dir, { recursive: true, force: true });
  const verdict = errors < 0 ? 'error' : errors === 0 ? 'pass' : 'fail';
  const ok = verdict === expect;
  console.log(
    `${ok ? 'ok  ' : 'FAIL'} ${rel}: spin says ${verdict}${errors > 0 ? ` (${errors} errors)` : ''}, expected ${expect}`,
  );
  if (!ok) {
    failed++;
    console.log(out.split('\n').slice(0, 40).join('\n'));
  }
}
process.exit(failed === 0 ? 0 : 1);
