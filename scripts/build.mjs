#!/usr/bin/env node
// Builds everything: the Rust workspace (which builds the guest kernel through
// crates/qvisor/build.rs), the Node-API addon, and the TypeScript packages.
// Usage: node scripts/build.mjs [--quiet]
import { join } from 'node:path';
import { ensureNodeModules, ensurePrereqs, must, packagesWith, root } from './lib.mjs';

const quiet = process.argv.includes('--quiet');
const opts = quiet ? { stdio: ['ignore', 'ignore', 'inherit'] } : {};

ensurePrereqs();
ensureNodeModules();
must('cargo', ['build', '--release', '--workspace', '--offline', ...(quiet ? ['--quiet'] : [])], opts);
// The addon first: TypeScript packages load it.
for (const p of packagesWith('package.json')) {
  if (p === 'native') must('npm', ['run', '--silent', 'build', '-w', 'packages/native'], opts);
}
const tsProjects = packagesWith('tsconfig.build.json').map((p) => join(root, 'packages', p, 'tsconfig.build.json'));
if (tsProjects.length > 0) must('npx', ['tsc', '-b', ...tsProjects], opts);
