#!/usr/bin/env node
// The project's test command (`npm test`). On a fresh clone it installs the
// Debian prerequisites (as root), the npm dependencies, builds everything and
// runs every test group, printing the time each group took.
//
// Usage: node scripts/test.mjs [--only group,group] [--no-build]
// Groups: lint, typecheck, cargo-test, unit, models, guest, integration.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { ensureNodeModules, ensurePrereqs, findFiles, must, root, run } from './lib.mjs';

/** rustc's known warning about disabling SSE on the host target (docs/building.md), repeated per crate. */
const TARGET_FEATURE_NOISE =
  /target feature|#116344|previously accepted by the compiler|unstable feature specified|not stably supported|^\s*\|\s*$|^\s*= (note|help):|^warning: `(qlib|qkernel)` .* generated \d+ warnings?/;

/** Runs a command, printing its output without the target-feature noise. */
function runQuiet(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', ...opts });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`
    .split('\n')
    .filter((l) => !TARGET_FEATURE_NOISE.test(l) && l.trim() !== '')
    .join('\n');
  if (text) console.log(text);
  return r.status === 0;
}

const args = process.argv.slice(2);
const onlyArg = args.indexOf('--only');
const only = onlyArg >= 0 ? new Set((args[onlyArg + 1] ?? '').split(',').filter(Boolean)) : null;
const noBuild = args.includes('--no-build');

const kernelDir = join(root, 'crates', 'qkernel');
/** Lines naming failed tests, reprinted under the summary so a log's tail says what failed. */
const failures = [];

/** Runs ava on the files, streaming its output and remembering the lines of failed tests. */
const ava = (globs) => async () => {
  const files = globs.flatMap(([dir, re]) => findFiles(dir, re));
  if (files.length === 0) return 'empty';
  const child = spawn('npx', ['ava', ...files], { cwd: root, stdio: ['inherit', 'pipe', 'pipe'] });
  let partial = '';
  const scan = (chunk) => {
    const text = partial + chunk.toString();
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (/✘|\[fail\]|Timed out while running|Uncaught exception/.test(l)) failures.push(l.trim());
  };
  child.stdout.on('data', (c) => {
    process.stdout.write(c);
    scan(c);
  });
  child.stderr.on('data', (c) => {
    process.stderr.write(c);
    scan(c);
  });
  const code = await new Promise((res) => {
    child.on('error', (e) => {
      console.error(`npx ava: ${e.message}`);
      res(1);
    });
    child.on('close', (c) => res(c ?? 1));
  });
  return code === 0;
};

/** Each group returns true (passed), false (failed) or 'empty' (nothing to run). */
const groups = [
  [
    'lint',
    () => {
      let ok = run('npx', ['eslint', '--max-warnings=0', '.']);
      ok = run('node', ['scripts/gen-syscalls-doc.mjs', '--check']) && ok;
      ok = run('npx', ['prettier', '--check', '--log-level=warn', '.']) && ok;
      ok = run('cargo', ['fmt', '--all', '--check']) && ok;
      ok =
        runQuiet('cargo', ['clippy', '--offline', '--workspace', '--all-targets', '--quiet', '--', '-D', 'warnings']) &&
        ok;
      if (existsSync(kernelDir)) {
        ok = run('cargo', ['fmt', '--check'], { cwd: kernelDir }) && ok;
        // The guest crate is outside the workspace: lint it with its own config.
        ok =
          runQuiet('cargo', ['clippy', '--offline', '--release', '--quiet', '--', '-D', 'warnings'], {
            cwd: kernelDir,
          }) && ok;
      }
      return ok;
    },
  ],
  ['typecheck', () => run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit'])],
  ['cargo-test', () => run('cargo', ['test', '--offline', '--workspace', '--quiet'])],
  ['unit', ava([['packages', /\.test\.ts$/]])],
  ['models', () => (findFiles('crates', /\.pml$/).length === 0 ? 'empty' : run('node', ['scripts/models.mjs']))],
  ['guest', ava([['tests/guest', /\.test\.ts$/]])],
  ['integration', ava([['tests/integration', /\.test\.ts$/]])],
];

const started = Date.now();
const results = [];
try {
  ensurePrereqs();
  ensureNodeModules();
  if (!noBuild) {
    const t = Date.now();
    must('node', ['scripts/build.mjs']);
    results.push(['build', 'ok', Date.now() - t]);
  }
} catch (e) {
  console.error(`\nnpm test: set-up failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}

for (const [name, fn] of groups) {
  if (only && !only.has(name)) continue;
  console.log(`\n=== ${name}`);
  const t = Date.now();
  const r = await fn();
  const status = r === 'empty' ? 'empty' : r ? 'ok' : 'FAILED';
  results.push([name, status, Date.now() - t]);
  console.log(`=== ${name}: ${status} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
}

console.log('\ngroup         result     time');
for (const [name, status, ms] of results) {
  console.log(`${name.padEnd(13)} ${status.padEnd(9)} ${(ms / 1000).toFixed(1).padStart(6)} s`);
}
console.log(`total                   ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s`);
if (failures.length > 0) {
  console.log('\nfailed tests:');
  for (const l of [...new Set(failures)]) console.log(`  ${l}`);
}
process.exit(results.some(([, s]) => s === 'FAILED') ? 1 : 0);
