#!/usr/bin/env node
// `npm run bench [-- --quick] [-- name-filter]`: builds, then runs every
// benchmark entry point (bench/**/*.bench.ts, and Rust bench binaries listed
// in bench/README.md) and prints their JSON lines. Benchmarks are not part of
// `npm test`.
import { ensureNodeModules, ensurePrereqs, findFiles, must, run } from './lib.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const filter = args.find((a) => !a.startsWith('--'));

ensurePrereqs();
ensureNodeModules();
must('node', ['scripts/build.mjs', '--quiet']);
let failed = 0;
for (const file of findFiles('bench', /\.bench\.ts$/)) {
  if (filter && !file.includes(filter)) continue;
  console.error(`# ${file}`);
  if (!run('npx', ['tsx', '--conditions=quark-source', file, ...(quick ? ['--quick'] : [])])) failed++;
}
process.exit(failed ? 1 : 0);
