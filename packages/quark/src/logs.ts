// Per-sandbox log files: diagnostics of the VMM and the guest kernel go here,
// never to the program's stdout/stderr.
import { mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How many sandbox logs the default directory keeps. */
export const KEEP_LOGS = 100;

/** The default log directory: $QUARK_LOG_DIR, /run/quark/logs (root), or a per-user one. */
export function logDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['QUARK_LOG_DIR'];
  if (fromEnv) return fromEnv;
  if (process.getuid?.() === 0) return '/run/quark/logs';
  const runtime = env['XDG_RUNTIME_DIR'];
  return runtime ? join(runtime, 'quark', 'logs') : join(tmpdir(), `quark-${process.getuid?.() ?? 'user'}`, 'logs');
}

/** Removes the oldest logs beyond {@link KEEP_LOGS}. */
export function pruneLogs(dir: string, keep: number = KEEP_LOGS): void {
  let entries: { path: string; mtime: number }[];
  try {
    entries = readdirSync(dir)
      .filter((n) => n.endsWith('.log'))
      .map((n) => ({ path: join(dir, n), mtime: statSync(join(dir, n)).mtimeMs }));
  } catch {
    return;
  }
  entries.sort((a, b) => b.mtime - a.mtime);
  for (const e of entries.slice(keep)) {
    try {
      unlinkSync(e.path);
    } catch {
      // Another quark process removed it first.
    }
  }
}

/**
 * The log file of sandbox `id`: $QUARK_LOG when set (one file for every
 * run), else `<logDir>/<id>.log`.
 */
export function logPathFor(id: string, env: NodeJS.ProcessEnv = process.env): string {
  const fixed = env['QUARK_LOG'];
  if (fixed) return fixed;
  const dir = logDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  pruneLogs(dir, KEEP_LOGS - 1);
  return join(dir, `${id}.log`);
}
