// Snapshots: one directory per layer chain (chain ID as in the OCI spec).
//   overlay: snapshots/overlay/<chain-hex>/fs holds only that layer, in
//            overlayfs format; a rootfs is an overlay mount of the chain.
//   merged:  snapshots/merged/<chain-hex>/fs is the complete tree up to that
//            layer (a copy of the parent plus the layer, like containerd's
//            native snapshotter); a rootfs is a copy of the top snapshot.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sha256, parseDigest } from './digest.js';
import { FileLock, isRoot, native } from './sys.js';
import type { ContentStore } from './store.js';
import { unpackLayer, type SnapshotFormat } from './unpack.js';
import { sniffCompression, type ZstdImpl } from './decompress.js';
import { layerCompression, type Descriptor } from './types.js';

const execFileP = promisify(execFile);

/** Chain IDs: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : sha256(`${prev} ${d}`));
  }
  return out;
}

let overlayKnown: boolean | undefined;
/** Whether this host can mount overlayfs snapshots: root, the addon, and overlay in /proc/filesystems. */
export function overlayAvailable(): boolean {
  if (overlayKnown === undefined) {
    let fsList = '';
    try {
      fsList = readFileSync('/proc/filesystems', 'utf8');
    } catch {
      // not Linux
    }
    overlayKnown = isRoot && native !== null && /\toverlay$/m.test(fsList);
  }
  return overlayKnown;
}

export function defaultSnapshotFormat(): SnapshotFormat {
  const forced = process.env.QUARK_SNAPSHOTTER;
  if (forced === 'merged' || forced === 'native') return 'merged';
  if (forced === 'overlay') return 'overlay';
  return overlayAvailable() ? 'overlay' : 'merged';
}

export interface SnapshotMeta {
  chainId: string;
  diffId: string;
  parent?: string;
  layer: string;
  format: SnapshotFormat;
  size: number;
  created: string;
}

export interface SnapshotProgress {
  layer: string;
  index: number;
  event: 'exists' | 'unpacking' | 'unpacked';
  ms?: number;
}

export class Snapshotter {
  readonly dir: string;

  constructor(
    readonly store: ContentStore,
    readonly format: SnapshotFormat = defaultSnapshotFormat(),
  ) {
    this.dir = join(store.dir, 'snapshots', format);
  }

  path(chainId: string): string {
    return join(this.dir, parseDigest(chainId).hex);
  }

  fsPath(chainId: string): string {
    return join(this.path(chainId), 'fs');
  }

  exists(chainId: string): boolean {
    return existsSync(join(this.path(chainId), 'meta.json'));
  }

  /**
   * Makes sure the snapshot of every chain prefix exists, unpacking missing layers in order. `ready(i)`
   * resolves when layer i's blob is in the store (so unpacking overlaps the remaining downloads).
   */
  async ensure(
    layers: Descriptor[],
    diffIds: string[],
    opts: {
      ready?: (i: number) => Promise<void>;
      zstd?: ZstdImpl;
      onProgress?: (p: SnapshotProgress) => void;
      onWarning?: (m: string) => void;
    } = {},
  ): Promise<string[]> {
    if (layers.length !== diffIds.length) {
      throw new Error(`image has ${layers.length} layers but its config lists ${diffIds.length} diff IDs`);
    }
    await mkdir(this.dir, { recursive: true });
    const chain = chainIds(diffIds);
    for (let i = 0; i < layers.length; i++) {
      const id = chain[i] ?? '';
      const layer = layers[i] as Descriptor;
      if (this.exists(id)) {
        opts.onProgress?.({ layer: layer.digest, index: i, event: 'exists' });
        continue;
      }
      await opts.ready?.(i);
      const lock = await FileLock.acquire(`${this.path(id)}.lock`);
      try {
        if (this.exists(id)) {
          opts.onProgress?.({ layer: layer.digest, index: i, event: 'exists' });
          continue;
        }
        const t0 = Date.now();
        opts.onProgress?.({ layer: layer.digest, index: i, event: 'unpacking' });
        await this.unpackOne(layer, diffIds[i] ?? '', id, i > 0 ? chain.slice(0, i) : [], opts);
        opts.onProgress?.({ layer: layer.digest, index: i, event: 'unpacked', ms: Date.now() - t0 });
      } finally {
        await lock.release(true);
      }
    }
    return chain;
  }

  private async unpackOne(
    layer: Descriptor,
    diffId: string,
    chainId: string,
    parents: string[],
    opts: { zstd?: ZstdImpl; onWarning?: (m: string) => void },
  ): Promise<void> {
    const tmp = this.store.tmpPath('snapshot');
    await mkdir(tmp, { recursive: true });
    try {
      const fs = join(tmp, 'fs');
      const parent = parents[parents.length - 1];
      if (this.format === 'merged' && parent !== undefined) {
        await execFileP('cp', ['-a', '--reflink=auto', this.fsPath(parent), fs]);
      } else {
        await mkdir(fs, { mode: 0o755 });
      }
      let compression = layerCompression(layer.mediaType);
      if (compression === undefined) {
        // Unknown media type (e.g. a foreign vendor type): trust the magic bytes.
        const fh = await open(this.store.blobPath(layer.digest));
        const head = Buffer.alloc(4);
        await fh.read(head, 0, 4, 0);
        await fh.close();
        compression = sniffCompression(head);
      }
      const res = await unpackLayer(this.store.openBlob(layer.digest), compression, fs, {
        format: this.format,
        lowers: parents.map((c) => this.fsPath(c)).reverse(),
        diffId,
        zstd: opts.zstd,
        compressedSize: layer.size,
        onWarning: opts.onWarning,
      });
      const meta: SnapshotMeta = {
        chainId,
        diffId,
        layer: layer.digest,
        format: this.format,
        size: res.size,
        created: new Date().toISOString(),
      };
      if (parent !== undefined) meta.parent = parent;
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta, null, 1) + '\n');
      await rm(this.path(chainId), { recursive: true, force: true });
      await rename(tmp, this.path(chainId));
    } catch (e) {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw e;
    }
  }

  async list(): Promise<SnapshotMeta[]> {
    const out: SnapshotMeta[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name.endsWith('.lock')) continue;
      try {
        out.push(JSON.parse(await readFile(join(this.dir, name, 'meta.json'), 'utf8')) as SnapshotMeta);
      } catch {
        // incomplete
      }
    }
    return out;
  }

  async remove(chainId: string): Promise<void> {
    await rm(this.path(chainId), { recursive: true, force: true });
  }
}

/** Total size in bytes of files under dir (apparent sizes; hard links counted once). */
export async function treeSize(dir: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await stat(p);
        const k = `${st.dev}:${st.ino}`;
        if (!seen.has(k)) {
          seen.add(k);
          total += st.size;
        }
      }
    }
  };
  await walk(dir);
  return total;
}
