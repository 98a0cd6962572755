// Shared helpers of the repository scripts. Plain JavaScript with no
// dependencies: these scripts run on a fresh clone before `npm ci`.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
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
  const dir = join(root, 'node_modules');
  const stamp = join(dir, '.quark-lock-sha256');
  const want = createHash('sha256')
    .update(readFileSync(join(root, 'package-lock.json')))
    .digest('hex');
  const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
  if (have === want) return;
  if (existsSync(dir) && lstatSync(dir).isSymbolicLink()) {
    // A worktree borrowing another checkout's install: `npm ci` here would
    // empty that checkout's node_modules through the link. Never touch it.
    console.warn(
      `node_modules is a link to another checkout's install (${realpathSync(dir)}), installed from a different ` +
        'package-lock.json: not reinstalling through the link. Replace the link with a real install if tests fail.',
    );
    return;
  }
  must('npm', ['ci', '--no-audit', '--no-fund']);
  writeFileSync(stamp, `${want}\n`);
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
