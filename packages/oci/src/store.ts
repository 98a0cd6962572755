// The content store under <root>/oci:
//   blobs/sha256/<hex>        immutable, verified content (mode 0444)
//   ingest/<hex>.partial      a download in progress (resumable), guarded by ingest/<hex>.lock
//   images.json               name → { target descriptor, manifest, config }, replaced atomically
//   meta.lock                 guards read-modify-write of images.json
//   gc.lock                   shared by pulls/mounts, exclusive for garbage collection
//   snapshots/<format>/<chain-hex>/{fs,meta.json}   unpacked layers (see snapshots.ts)
//   rootfs/<id>/               prepared container root filesystems
import { createReadStream, constants as fsc } from 'node:fs';
import { chmod, mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { DigestError, hasherFor, parseDigest, verifyBytes } from './digest.js';
import { FileLock, withLock } from './sys.js';
import { isRetryable, sleep, type Response } from './registry.js';
import type { Descriptor } from './types.js';

export interface ImageRecord {
  /** Canonical name, e.g. docker.io/library/busybox:latest (or repo@digest for digest pulls). */
  name: string;
  /** What the name points at: a manifest or an index. */
  target: Descriptor;
  /** The platform manifest chosen from the target. */
  manifest: string;
  /** Config digest: the image ID. */
  config: string;
  /** When this name was last written. */
  updated: string;
}

interface ImagesFile {
  version: 1;
  images: Record<string, ImageRecord>;
}

export interface IngestProgress {
  digest: string;
  /** Bytes present so far (including resumed bytes). */
  done: number;
  total: number;
  /** 'resumed' when a partial download is continued; 'exists' when the blob was already there. */
  event: 'start' | 'resumed' | 'data' | 'exists' | 'done' | 'retry';
}

export type BlobFetcher = (offset: number) => Promise<Response>;

export interface IngestOptions {
  attempts?: number;
  backoffMs?: number;
  onProgress?: (p: IngestProgress) => void;
}

export class ContentStore {
  readonly dir: string;
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(readonly root: string) {
    this.dir = join(root, 'oci');
  }

  async init(): Promise<void> {
    for (const d of ['blobs/sha256', 'blobs/sha512', 'ingest', 'snapshots', 'rootfs', 'tmp']) {
      await mkdir(join(this.dir, d), { recursive: true, mode: 0o700 });
    }
  }

  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.dir, 'blobs', algorithm, hex);
  }

  async has(digest: string): Promise<boolean> {
    try {
      await stat(this.blobPath(digest));
      return true;
    } catch {
      return false;
    }
  }

  async size(digest: string): Promise<number> {
    return (await stat(this.blobPath(digest))).size;
  }

  async readBlob(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.blobPath(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`blob ${digest} is not in the content store`);
      throw e;
    }
  }

  openBlob(digest: string): Readable {
    return createReadStream(this.blobPath(digest), { highWaterMark: 1 << 20 });
  }

  /** A temp path inside the store (same filesystem, so rename is atomic). */
  tmpPath(tag: string): string {
    return join(this.dir, 'tmp', `${tag}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** Writes verified bytes atomically (temp file, fsync, rename). */
  async writeBlob(digest: string, data: Buffer): Promise<void> {
    verifyBytes(data, digest, `blob ${digest}`);
    if (await this.has(digest)) return;
    const tmp = this.tmpPath('blob');
    const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o444);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.blobPath(digest));
  }

  /**
   * Downloads a blob into the store, verifying its digest while streaming. De-duplicated within the process
   * (shared promise) and across processes (a file lock per digest: the second waits, then finds the blob).
   * A partial download left by an interrupted pull is resumed with a Range request.
   */
  ingest(desc: Descriptor, fetch: BlobFetcher, opts: IngestOptions = {}): Promise<void> {
    const running = this.inflight.get(desc.digest);
    if (running) return running;
    const p = this.ingestLocked(desc, fetch, opts).finally(() => this.inflight.delete(desc.digest));
    this.inflight.set(desc.digest, p);
    return p;
  }

  private async ingestLocked(desc: Descriptor, fetch: BlobFetcher, opts: IngestOptions): Promise<void> {
    const { digest, size } = desc;
    const report = (done: number, event: IngestProgress['event']): void =>
      opts.onProgress?.({ digest, done, total: size, event });
    if (await this.has(digest)) {
      report(size, 'exists');
      return;
    }
    const { hex } = parseDigest(digest);
    const lock = await FileLock.acquire(join(this.dir, 'ingest', `${hex}.lock`));
    let removeLock = false;
    try {
      if (await this.has(digest)) {
        report(size, 'exists');
        removeLock = true;
        return;
      }
      await this.download(desc, fetch, opts, report);
      removeLock = true;
    } catch (e) {
      removeLock = e instanceof DigestError;
      throw e;
    } finally {
      await lock.release(removeLock);
    }
  }

  private async download(
    desc: Descriptor,
    fetch: BlobFetcher,
    opts: IngestOptions,
    report: (done: number, event: IngestProgress['event']) => void,
  ): Promise<void> {
    const { digest, size } = desc;
    const { hex } = parseDigest(digest);
    const partial = join(this.dir, 'ingest', `${hex}.partial`);
    let hash = hasherFor(digest);
    let offset = 0;
    // Resume: hash what an earlier attempt left.
    try {
      const st = await stat(partial);
      if (st.size > 0 && st.size <= size) {
        for await (const c of createReadStream(partial) as AsyncIterable<Buffer>) hash.update(c);
        offset = st.size;
      } else {
        await unlink(partial);
      }
    } catch {
      // no partial
    }
    report(offset, offset > 0 ? 'resumed' : 'start');
    const fh = await open(partial, fsc.O_WRONLY | fsc.O_CREAT, 0o600);
    const attempts = opts.attempts ?? 4;
    try {
      let failures = 0;
      while (offset < size || size === 0) {
        try {
          // Opening is retried by the fetcher itself (the registry client); only a body cut short is retried here.
          const res = await fetch(offset).catch((e: unknown) => {
            throw Object.assign(e as Error, { final: true });
          });
          if (offset > 0 && res.status !== 206) {
            // The server ignored the Range: start over.
            offset = 0;
            hash = hasherFor(digest);
            await fh.truncate(0);
          }
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            if (offset + chunk.length > size) {
              res.body.destroy();
              throw new DigestError(`blob ${digest}: the registry sent more than the expected ${size} bytes`);
            }
            hash.update(chunk);
            let off = 0;
            while (off < chunk.length) {
              const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, offset + off);
              off += bytesWritten;
            }
            offset += chunk.length;
            report(offset, 'data');
          }
          if (offset < size)
            throw Object.assign(new Error(`connection closed after ${offset} of ${size} bytes`), {
              code: 'ECONNRESET',
            });
          break;
        } catch (e) {
          failures++;
          if ((e as { final?: boolean }).final || !isRetryable(e) || failures >= attempts) throw e;
          report(offset, 'retry');
          const base = (opts.backoffMs ?? 250) * 2 ** (failures - 1);
          await sleep(base / 2 + Math.random() * base);
        }
      }
      await fh.sync();
    } catch (e) {
      await fh.close();
      throw e;
    }
    await fh.close();
    const actual = `${parseDigest(digest).algorithm}:${hash.digest('hex')}`;
    if (actual !== digest) {
      await unlink(partial).catch(() => undefined);
      throw new DigestError(
        `blob ${digest}: digest mismatch: the registry sent content hashing to ${actual}; the download was deleted`,
      );
    }
    await chmod(partial, 0o444);
    await rename(partial, this.blobPath(digest));
    report(size, 'done');
  }

  // ---- image metadata -------------------------------------------------

  private get imagesPath(): string {
    return join(this.dir, 'images.json');
  }

  async listImages(): Promise<ImageRecord[]> {
    return Object.values((await this.readImages()).images).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  private async readImages(): Promise<ImagesFile> {
    try {
      const j = JSON.parse(await readFile(this.imagesPath, 'utf8')) as ImagesFile;
      if (j.version === 1 && j.images) return j;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new Error(`${this.imagesPath} is unreadable: ${(e as Error).message}`);
    }
    return { version: 1, images: {} };
  }

  /** Read-modify-write of images.json under meta.lock, replaced atomically. */
  async updateImages<T>(fn: (images: Record<string, ImageRecord>) => T | Promise<T>): Promise<T> {
    return withLock(join(this.dir, 'meta.lock'), async () => {
      const f = await this.readImages();
      const r = await fn(f.images);
      const tmp = this.tmpPath('images');
      await writeFile(tmp, JSON.stringify(f, null, 1) + '\n', { mode: 0o600 });
      await rename(tmp, this.imagesPath);
      return r;
    });
  }

  async putImage(rec: ImageRecord): Promise<void> {
    await this.updateImages((images) => {
      images[rec.name] = rec;
    });
  }

  /** Holds the GC lock: shared for pulls and mounts, exclusive for collection. */
  gcLock(mode: 'shared' | 'exclusive'): Promise<FileLock> {
    return FileLock.acquire(join(this.dir, 'gc.lock'), mode);
  }

  /** Blobs present in the store. */
  async listBlobs(): Promise<string[]> {
    const out: string[] = [];
    for (const alg of ['sha256', 'sha512']) {
      for (const hex of await readdir(join(this.dir, 'blobs', alg)).catch(() => [] as string[]))
        out.push(`${alg}:${hex}`);
    }
    return out;
  }

  async deleteBlob(digest: string): Promise<void> {
    await rm(this.blobPath(digest), { force: true });
  }
}
