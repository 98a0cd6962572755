#!/usr/bin/env node
// The quark CLI. Runs the compiled package (dist/); `npm run build` at the
// repository root produces it.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
if (!existsSync(main)) {
  console.error(`quark: ${main} is missing; build Quark first with \`npm run build\` in the repository root`);
  process.exit(125);
}
await import(main);
