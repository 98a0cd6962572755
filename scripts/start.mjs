#!/usr/bin/env node
// `npm start`: builds Quark, makes a demo root filesystem from the project's
// own static demo program, and runs it in a sandbox with the quark CLI.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNodeModules, ensurePrereqs, must, root, run } from './lib.mjs';

ensurePrereqs();
ensureNodeModules();
must('node', ['scripts/build.mjs', '--quiet']);
const rootfs = join(root, '.cache', 'demo-rootfs');
mkdirSync(rootfs, { recursive: true });
execFileSync('gcc', [
  '-static',
  '-O2',
  '-o',
  join(rootfs, 'quark-demo'),
  join(root, 'scripts', 'demo', 'quark-demo.c'),
]);
console.log(`$ quark run --rootfs ${rootfs} -- /quark-demo\n`);
const ok = run('node', [
  join(root, 'packages', 'quark', 'bin', 'quark.js'),
  'run',
  '--rootfs',
  rootfs,
  '--',
  '/quark-demo',
]);
process.exit(ok ? 0 : 1);
