// Shared helpers of the repository scripts. Plain JavaScript with no
// dependencies: these scripts run on a fresh clone before `npm ci`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs a command with inherited stdio; returns true when it exits 0. */
export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) {
    console.error(`${cmd}: ${r.error.message}`);
    return false;
  }
  return r.status === 0;
}

/** Runs a command and throws with its name when it fails. */
export function must(cmd, args, opts = {}) {
  if (!run(cmd, args, opts)) {
    throw new Error(`failed: ${cmd} ${args.join(' ')}`);
  }
}

/** Lists files under dir (relative to the repository root) whose names match re. */
export function findFiles(dir, re, out = []) {
  const abs = join(root, dir);
  if (!existsSync(abs)) return out;
  for (const name of readdirSync(abs)) {
    if (name === 'node_modules' || name === 'target' || name === 'dist') continue;
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) findFiles(rel, re, out);
    else if (re.test(name)) out.push(rel);
  }
  return out.sort();
}

/** Installs npm dependencies when node_modules is missing or older than the lock file. */
export function ensureNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  must('npm', ['ci', '--no-audit', '--no-fund']);
}

/** Installs (as root) or checks (otherwise) the Debian prerequisites. */
export function ensurePrereqs() {
  must('bash', [join(root, 'scripts', 'prereqs.sh')]);
}

export function packagesWith(file) {
  const dir = join(root, 'packages');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((p) => existsSync(join(dir, p, file)))
    .sort();
}
