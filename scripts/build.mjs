#!/usr/bin/env node
// Builds everything: the Rust workspace (which builds the guest kernel through
// crates/qvisor/build.rs), the Node-API addon, and the TypeScript packages.
// Usage: node scripts/build.mjs [--quiet]
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureNodeModules, ensurePrereqs, must as mustLoud, packagesWith, root } from './lib.mjs';

const quiet = process.argv.includes('--quiet');
const opts = {};

/** Runs a step; in quiet mode its output is shown only when it fails. */
function must(cmd, args, o) {
  if (!quiet) return mustLoud(cmd, args, o);
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`);
    throw new Error(`failed: ${cmd} ${args.join(' ')}`);
  }
}

ensurePrereqs();
ensureNodeModules();
must('cargo', ['build', '--release', '--workspace', '--offline'], opts);
// The addon first: TypeScript packages load it.
for (const p of packagesWith('package.json')) {
  if (p === 'native') must('npm', ['run', '--silent', 'build', '-w', 'packages/native'], opts);
}
const tsProjects = packagesWith('tsconfig.build.json').map((p) => join(root, 'packages', p, 'tsconfig.build.json'));
if (tsProjects.length > 0) must('npx', ['tsc', '-b', ...tsProjects], opts);
