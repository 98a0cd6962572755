// Applies one layer (a tar stream) to a snapshot directory.
//
// Two snapshot formats:
//  - 'overlay': the directory holds only this layer's changes, in overlayfs's
//    own format: a whiteout is a 0/0 character device, an opaque directory has
//    the xattr trusted.overlay.opaque=y. Parents are looked up through the
//    lower snapshots (`lowers`, topmost first). Needs root and the addon.
//  - 'merged': the directory is the complete tree of the parent snapshot and
//    the layer is applied on top; whiteouts delete. Works unprivileged.
//
// Safety rules (see README.md): entry names are cleaned and must stay inside
// the snapshot (absolute names and `..` components are refused); no symlink
// is ever followed while writing (a parent component that is a symlink, here
// or in a lower snapshot, refuses the layer; files are created with
// O_EXCL|O_NOFOLLOW after removing what was there); hard-link targets obey the
// same rules; device nodes need root; overlay's own trusted.overlay.* xattrs
// are never taken from a layer.
import { createHash } from 'node:crypto';
import { constants as fsc, type Stats } from 'node:fs';
import {
  copyFile,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  rm,
  symlink,
  writeFile,
  chmod,
  chown,
} from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';
import { decompressStream, type ZstdImpl } from './decompress.js';
import { TarReader, type TarHeader } from './tar.js';
import type { Compression } from './types.js';
import { isRoot, native, S_IFCHR, S_IFMT } from './sys.js';

const execFileP = promisify(execFile);

export type SnapshotFormat = 'overlay' | 'merged';

export class UnpackError extends Error {
  constructor(
    message: string,
    readonly entry?: string,
  ) {
    super(message);
    this.name = 'UnpackError';
  }
}

export interface UnpackOptions {
  format: SnapshotFormat;
  /** For 'overlay': the lower snapshot directories, topmost first. */
  lowers?: string[];
  /** Apply ownership and create device nodes (default: when running as root). */
  privileged?: boolean;
  zstd?: ZstdImpl;
  /** Compressed size, when known (picks the zstd decoder). */
  compressedSize?: number;
  /** Expected diff ID (sha256 of the uncompressed tar); a mismatch fails the unpack. */
  diffId?: string;
  onWarning?: (message: string) => void;
}

export interface UnpackResult {
  /** sha256 of the uncompressed tar stream. */
  diffId: string;
  /** Uncompressed size in bytes. */
  size: number;
  entries: number;
}

const WH_PREFIX = '.wh.';
/** Files up to this size are buffered and written concurrently (creation latency dominates on small files). */
const SMALL_FILE = 256 * 1024;
const MAX_PENDING = 16;
const WH_OPAQUE = '.wh..wh..opq';
const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

/** Cleans a tar entry name into snapshot-relative components, refusing escapes. */
export function cleanEntryPath(name: string): string[] {
  if (name.startsWith('/')) throw new UnpackError(`layer entry "${name}" has an absolute path`, name);
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new UnpackError(`layer entry "${name}" escapes the snapshot with ".."`, name);
    if (c.includes('\0')) throw new UnpackError(`layer entry "${name}" has a NUL byte`, name);
    out.push(c);
  }
  return out;
}

type Kind = 'dir' | 'symlink' | 'whiteout' | 'other';

function kindOf(st: { mode: number; rdev: number }): Kind {
  const t = st.mode & S_IFMT;
  if (t === 0o040000) return 'dir';
  if (t === 0o120000) return 'symlink';
  if (t === S_IFCHR && st.rdev === 0) return 'whiteout';
  return 'other';
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}

function isOpaque(dir: string): boolean {
  if (!native) return false;
  try {
    return native.lgetxattr(dir, OVERLAY_OPAQUE_XATTR)?.toString() === 'y';
  } catch {
    return false;
  }
}

class LayerWriter {
  private readonly verifiedDirs = new Set<string>();
  private readonly createdHere = new Set<string>();
  private readonly dirMeta = new Map<string, TarHeader>();
  private readonly lowers: string[];
  private readonly privileged: boolean;
  private readonly warn: (m: string) => void;
  private readonly warned = new Set<string>();
  /** Small-file writes in flight (path key → completion), so file creation overlaps parsing. */
  private readonly pending = new Map<string, Promise<void>>();
  private failure: unknown;

  constructor(
    private readonly dest: string,
    private readonly opts: UnpackOptions,
  ) {
    this.lowers = opts.format === 'overlay' ? (opts.lowers ?? []) : [];
    this.privileged = opts.privileged ?? isRoot;
    this.warn = opts.onWarning ?? (() => undefined);
    if (opts.format === 'overlay' && !native) {
      throw new UnpackError('overlay snapshots need the @quark/native addon (mknod, xattrs): use the merged format');
    }
  }

  private abs(parts: string[]): string {
    return parts.length === 0 ? this.dest : `${this.dest}/${parts.join('/')}`;
  }

  /** What a path is in the merged view of lowers (the dest layer itself is checked by the caller). */
  private async lowerKind(parts: string[]): Promise<{ kind: Kind; layer: string } | null> {
    for (const layer of this.lowers) {
      const st = await lstatOrNull(`${layer}/${parts.join('/')}`);
      if (st) {
        const k = kindOf(st);
        return k === 'whiteout' ? null : { kind: k, layer };
      }
      // An opaque ancestor in this layer hides everything below it.
      for (let i = parts.length - 1; i >= 1; i--) {
        if (isOpaque(`${layer}/${parts.slice(0, i).join('/')}`)) return null;
      }
    }
    return null;
  }

  /**
   * Makes sure every parent of `parts` is a real directory in dest, creating missing ones (copying the
   * metadata of a lower directory, as overlayfs copy-up does). Refuses symlinks and non-directories.
   */
  /** Waits for every write in flight; rethrows the first failure. */
  async barrier(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending.values());
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for writes in flight without throwing (error paths). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled(this.pending.values());
  }

  /** Writes a small file in the background (at most MAX_PENDING at once). */
  async writeSmall(h: TarHeader, data: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    while (this.pending.size >= MAX_PENDING) await Promise.race(this.pending.values());
    const key = cleanEntryPath(h.name).join('/');
    const p = this.abs(cleanEntryPath(h.name));
    const job = (async () => {
      await writeFile(p, data, { flag: fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode: 0o600 });
      await this.finish(p, h);
    })()
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => this.pending.delete(key));
    this.pending.set(key, job);
  }

  private async ensureParents(parts: string[], entry: string): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const sub = parts.slice(0, i);
      const key = sub.join('/');
      if (this.pending.has(key)) await this.barrier();
      if (this.verifiedDirs.has(key)) continue;
      const p = this.abs(sub);
      const st = await lstatOrNull(p);
      if (st) {
        const k = kindOf(st);
        if (k === 'symlink') {
          throw new UnpackError(`layer entry "${entry}" traverses the symlink "${key}": refusing to follow it`, entry);
        }
        if (k !== 'dir') throw new UnpackError(`layer entry "${entry}": parent "${key}" is not a directory`, entry);
      } else {
        const lower = await this.lowerKind(sub);
        if (lower?.kind === 'symlink') {
          throw new UnpackError(
            `layer entry "${entry}" traverses the symlink "${key}" of a lower layer: refusing to follow it`,
            entry,
          );
        }
        if (lower && lower.kind !== 'dir')
          throw new UnpackError(`layer entry "${entry}": parent "${key}" is not a directory`, entry);
        await mkdir(p, 0o755);
        if (lower) {
          const lst = await lstat(`${lower.layer}/${key}`);
          await chmod(p, lst.mode & 0o7777);
          if (this.privileged) await lchown(p, lst.uid, lst.gid);
        }
      }
      this.verifiedDirs.add(key);
    }
  }

  private forget(key: string): void {
    this.verifiedDirs.delete(key);
    const prefix = `${key}/`;
    for (const k of this.verifiedDirs) if (k.startsWith(prefix)) this.verifiedDirs.delete(k);
  }

  /** Removes whatever is at parts in dest (never following a symlink). */
  private async clear(parts: string[]): Promise<void> {
    const key = parts.join('/');
    this.forget(key);
    await rm(this.abs(parts), { recursive: true, force: true });
  }

  async apply(h: TarHeader): Promise<'body' | 'skip'> {
    const parts = cleanEntryPath(h.name);
    // Only new regular files may overlap writes in flight; everything else (links, whiteouts, dirs…) waits.
    if (
      h.type !== 'file' ||
      (parts[parts.length - 1] ?? '').startsWith(WH_PREFIX) ||
      this.pending.has(parts.join('/'))
    ) {
      await this.barrier();
    }
    if (parts.length === 0) {
      if (h.type !== 'directory') throw new UnpackError(`layer entry "${h.name}" replaces the snapshot root`, h.name);
      this.dirMeta.set('', h);
      return 'skip';
    }
    await this.ensureParents(parts, h.name);
    const base = parts[parts.length - 1] ?? '';
    const parentParts = parts.slice(0, -1);

    if (base.startsWith(WH_PREFIX)) {
      await this.whiteout(parentParts, base, h.name);
      return 'skip';
    }

    const p = this.abs(parts);
    const key = parts.join('/');
    const existing = await lstatOrNull(p);
    if (h.type === 'directory') {
      if (existing && kindOf(existing) === 'dir') {
        // Keep it (and its children); its metadata is applied at the end.
      } else {
        if (existing) await this.clear(parts);
        await mkdir(p, 0o700);
      }
      this.verifiedDirs.add(key);
      this.createdHere.add(key);
      this.dirMeta.set(key, h);
      await this.xattrs(p, h);
      return 'skip';
    }
    if (existing) await this.clear(parts);
    this.createdHere.add(key);
    switch (h.type) {
      case 'file':
        return 'body';
      case 'symlink':
        await symlink(h.linkname, p);
        break;
      case 'link':
        await this.hardlink(h, p);
        return 'skip';
      case 'chardev':
      case 'blockdev':
      case 'fifo':
        await this.special(h, p);
        break;
    }
    await this.finish(p, h);
    return 'skip';
  }

  async writeFile(h: TarHeader, body: AsyncIterable<Buffer>): Promise<void> {
    const p = this.abs(cleanEntryPath(h.name));
    const fh = await open(p, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of body) {
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
      }
    } finally {
      await fh.close();
    }
    await this.finish(p, h);
  }

  private async whiteout(parentParts: string[], base: string, entry: string): Promise<void> {
    const dir = this.abs(parentParts);
    if (base === WH_OPAQUE) {
      if (this.opts.format === 'overlay') {
        native?.lsetxattr(dir, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
      } else {
        // Everything the lower layers put in this directory goes; what this layer already wrote stays.
        const st = await lstatOrNull(dir);
        if (st && kindOf(st) === 'dir') {
          for (const name of await readdir(dir)) {
            const childKey = [...parentParts, name].join('/');
            if (!this.createdHere.has(childKey)) await this.clear([...parentParts, name]);
          }
        }
      }
      return;
    }
    if (base.startsWith(`${WH_PREFIX}${WH_PREFIX}`)) return; // other aufs metadata (.wh..wh.plnk …)
    const name = base.slice(WH_PREFIX.length);
    if (name === '' || name === '.' || name === '..' || name.includes('/')) {
      throw new UnpackError(`layer entry "${entry}" is an invalid whiteout`, entry);
    }
    const target = [...parentParts, name];
    await this.clear(target);
    if (this.opts.format === 'overlay') {
      const n = native;
      if (!n) throw new UnpackError('overlay whiteouts need the addon');
      n.mknod(this.abs(target), n.constants.S_IFCHR | 0o000, n.makedev(0, 0));
    }
  }

  private async hardlink(h: TarHeader, p: string): Promise<void> {
    const targetParts = cleanEntryPath(h.linkname);
    if (targetParts.length === 0) throw new UnpackError(`hard link "${h.name}" points at the snapshot root`, h.name);
    await this.ensureParents(targetParts, h.name);
    const target = this.abs(targetParts);
    const st = await lstatOrNull(target);
    if (st) {
      const k = kindOf(st);
      if (k === 'dir') throw new UnpackError(`hard link "${h.name}" points at a directory "${h.linkname}"`, h.name);
      await link(target, p);
      return;
    }
    const lower = await this.lowerKind(targetParts);
    if (!lower) throw new UnpackError(`hard link "${h.name}" points at "${h.linkname}", which does not exist`, h.name);
    if (lower.kind === 'dir')
      throw new UnpackError(`hard link "${h.name}" points at a directory "${h.linkname}"`, h.name);
    if (lower.kind === 'symlink') {
      throw new UnpackError(`hard link "${h.name}" points at a symlink "${h.linkname}" of a lower layer`, h.name);
    }
    // Copy the lower file up, then link to the copy.
    const src = `${lower.layer}/${targetParts.join('/')}`;
    const lst = await lstat(src);
    await copyFile(src, target, fsc.COPYFILE_EXCL);
    if (this.privileged) await lchown(target, lst.uid, lst.gid);
    await chmod(target, lst.mode & 0o7777);
    await lutimes(target, lst.atime, lst.mtime);
    await link(target, p);
  }

  private async special(h: TarHeader, p: string): Promise<void> {
    if (h.type === 'fifo') {
      if (native) native.mknod(p, native.constants.S_IFIFO | (h.mode & 0o777), 0);
      else await execFileP('mkfifo', ['-m', (h.mode & 0o777).toString(8), '--', p]);
      return;
    }
    if (!this.privileged) {
      throw new UnpackError(
        `layer entry "${h.name}" is a ${h.type === 'chardev' ? 'character' : 'block'} device (${h.devmajor}:${h.devminor}): ` +
          'creating device nodes needs root; refusing to unpack this layer unprivileged',
        h.name,
      );
    }
    if (native) {
      const t = h.type === 'chardev' ? native.constants.S_IFCHR : native.constants.S_IFBLK;
      native.mknod(p, t | (h.mode & 0o777), native.makedev(h.devmajor, h.devminor));
    } else {
      const t = h.type === 'chardev' ? 'c' : 'b';
      await execFileP('mknod', [
        '-m',
        (h.mode & 0o777).toString(8),
        '--',
        p,
        t,
        String(h.devmajor),
        String(h.devminor),
      ]);
    }
  }

  private async xattrs(p: string, h: TarHeader): Promise<void> {
    for (const [name, value] of h.xattrs) {
      if (name.startsWith('trusted.overlay.')) {
        this.warnOnce(`xattr:${name}`, `ignoring overlayfs-internal xattr ${name} on "${h.name}"`);
        continue;
      }
      if (!native) {
        this.warnOnce(
          'xattr-native',
          `xattrs not applied (the @quark/native addon is not built), first on "${h.name}"`,
        );
        return;
      }
      if (!this.privileged && !name.startsWith('user.')) {
        this.warnOnce(`xattr-priv:${name}`, `xattr ${name} needs root; not applied (first on "${h.name}")`);
        continue;
      }
      try {
        native.lsetxattr(p, name, value);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOTSUP' || code === 'EOPNOTSUPP')
          this.warnOnce(`xattr-fs:${name}`, `filesystem refuses xattr ${name}`);
        else throw e;
      }
    }
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.warn(msg);
  }

  /** Ownership, xattrs, mode, times — in that order (chown clears setuid bits). */
  private async finish(p: string, h: TarHeader): Promise<void> {
    if (this.privileged) await lchown(p, h.uid, h.gid);
    await this.xattrs(p, h);
    if (h.type !== 'symlink') await chmod(p, h.mode & 0o7777);
    const t = h.mtime;
    await lutimes(p, t, t);
  }

  /** Directory metadata last, deepest first, so writing children cannot disturb it. */
  async finishDirs(): Promise<void> {
    await this.barrier();
    const keys = [...this.dirMeta.keys()].sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? 1 : -1));
    for (const key of keys) {
      const h = this.dirMeta.get(key);
      if (!h) continue;
      const p = key === '' ? this.dest : `${this.dest}/${key}`;
      if (this.privileged) await chown(p, h.uid, h.gid);
      await chmod(p, h.mode & 0o7777);
      await lutimes(p, h.mtime, h.mtime);
    }
  }
}

async function* hashing(
  src: AsyncIterable<Buffer>,
  state: { hash: ReturnType<typeof createHash>; size: number },
): AsyncGenerator<Buffer> {
  for await (const chunk of src) {
    state.hash.update(chunk);
    state.size += chunk.length;
    yield chunk;
  }
}

/** Unpacks a (compressed) layer stream into dest, which must exist. */
export async function unpackLayer(
  src: Readable,
  compression: Compression,
  dest: string,
  opts: UnpackOptions,
): Promise<UnpackResult> {
  const { stream, done } = decompressStream(src, compression, opts.zstd, opts.compressedSize);
  const state = { hash: createHash('sha256'), size: 0 };
  const reader = new TarReader(hashing(stream, state));
  const w = new LayerWriter(dest, opts);
  let entries = 0;
  try {
    for (let h = await reader.next(); h; h = await reader.next()) {
      entries++;
      if ((await w.apply(h)) !== 'body') continue;
      if (h.size <= SMALL_FILE) {
        const parts: Buffer[] = [];
        for await (const c of reader.body()) parts.push(Buffer.from(c));
        await w.writeSmall(h, Buffer.concat(parts, h.size));
      } else {
        await w.writeFile(h, reader.body());
      }
    }
    await w.finishDirs();
    await done;
  } catch (e) {
    await w.settle();
    src.destroy();
    await done.catch(() => undefined);
    throw e;
  }
  const diffId = `sha256:${state.hash.digest('hex')}`;
  if (opts.diffId !== undefined && opts.diffId !== diffId) {
    throw new UnpackError(`layer content does not match the image config: diff ID ${diffId}, expected ${opts.diffId}`);
  }
  return { diffId, size: state.size, entries };
}
