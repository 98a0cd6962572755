// The Linux calls Node lacks (mknod, xattrs, flock, mount) come from
// @quark/native. This module is the one place that loads it, so the rest of
// the package can ask "is it there" and degrade clearly when it is not (for
// example an unprivileged unpack never needs it).
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';

export interface NativeApi {
  mknod(path: string, mode: number, dev: number): void;
  makedev(major: number, minor: number): number;
  lsetxattr(path: string, name: string, value: Buffer, flags?: number): void;
  lgetxattr(path: string, name: string): Buffer | null;
  llistxattr(path: string): string[];
  flock(fd: number, op: 'shared' | 'exclusive' | 'unlock', nonBlocking: boolean): boolean;
  flockAsync(fd: number, op: 'shared' | 'exclusive'): Promise<void>;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount(target: string, flags: number): void;
  constants: {
    MS_RDONLY: number;
    MS_BIND: number;
    MS_REC: number;
    MS_NODEV: number;
    MS_NOSUID: number;
    MS_NOEXEC: number;
    MS_PRIVATE: number;
    MNT_DETACH: number;
    S_IFCHR: number;
    S_IFBLK: number;
    S_IFIFO: number;
    XATTR_CREATE: number;
    XATTR_REPLACE: number;
  };
}

async function loadNative(): Promise<NativeApi | null> {
  if (process.env.QUARK_OCI_NO_NATIVE === '1') return null;
  try {
    // A computed specifier: the addon is optional at type-check time.
    const name = '@quark/native';
    const mod = (await import(name)) as Partial<NativeApi> & { default?: Partial<NativeApi> };
    const api = (typeof mod.mknod === 'function' ? mod : mod.default) as NativeApi | undefined;
    if (api && typeof api.mknod === 'function' && typeof api.flockAsync === 'function') return api;
    return null;
  } catch {
    return null;
  }
}

/** The addon, or null when it is not built/available. */
export const native: NativeApi | null = await loadNative();

export function requireNative(what: string): NativeApi {
  if (!native) throw new Error(`${what} needs the @quark/native addon, which is not built: run \`npm run build\``);
  return native;
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Linux file-type bits, also valid without the addon. */
export const S_IFMT = 0o170000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

/**
 * An advisory lock on a file, shared across processes (flock(2) through the
 * addon). Without the addon it falls back to an O_EXCL lock file holding the
 * owner's pid (stale owners are detected), which is exclusive only.
 */
export class FileLock {
  private constructor(
    private readonly release_: (unlinkIt: boolean) => Promise<void>,
    readonly path: string,
  ) {}

  static async acquire(path: string, mode: 'shared' | 'exclusive' = 'exclusive'): Promise<FileLock> {
    if (native) {
      for (;;) {
        const fh = await open(path, fsc.O_RDWR | fsc.O_CREAT, 0o644);
        try {
          if (!native.flock(fh.fd, mode, true)) await native.flockAsync(fh.fd, mode);
          // The lock file may have been removed (and recreated) by its previous holder while we waited:
          // the lock only counts when the path still names the locked inode.
          const [a, b] = await Promise.all([fh.stat(), stat(path).catch(() => null)]);
          if (!b || a.ino !== b.ino || a.dev !== b.dev) {
            await fh.close();
            continue;
          }
        } catch (e) {
          await fh.close();
          throw e;
        }
        return new FileLock(async (unlinkIt) => {
          if (unlinkIt) await unlink(path).catch(() => undefined);
          // Closing the descriptor drops the lock.
          await fh.close();
        }, path);
      }
    }
    const lockPath = `${path}.pid`;
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      try {
        const fh = await open(lockPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
        await fh.writeFile(String(process.pid));
        await fh.close();
        return new FileLock(async () => {
          await unlink(lockPath).catch(() => undefined);
        }, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const owner = Number((await readFile(lockPath, 'utf8').catch(() => '')) || NaN);
      if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
        await unlink(lockPath).catch(() => undefined);
        continue;
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Drops the lock; with `remove` the lock file is deleted first (safe: waiters re-check the inode). */
  async release(remove = false): Promise<void> {
    await this.release_(remove);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs fn while holding the lock at path. */
export async function withLock<T>(
  path: string,
  fn: () => Promise<T>,
  mode: 'shared' | 'exclusive' = 'exclusive',
): Promise<T> {
  const lock = await FileLock.acquire(path, mode);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
