// `rmi` and garbage collection: a blob or snapshot stays while an image name or
// a prepared rootfs references it; everything else goes. Collection holds the
// GC lock exclusively, so it never races a pull (which holds it shared).
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentStore, type ImageRecord } from './store.js';
import { findImages, loadRecord, referencedBlobs } from './image.js';
import { chainIds, Snapshotter } from './snapshots.js';
import { rootfsInUse } from './runtime.js';

export interface GcResult {
  blobs: string[];
  snapshots: string[];
  bytes: number;
}

export async function collectGarbage(store: ContentStore): Promise<GcResult> {
  const lock = await store.gcLock('exclusive');
  try {
    const keepBlobs = new Set<string>();
    const keepChains = new Set<string>();
    const inUse = await rootfsInUse(store);
    for (const c of inUse.chains) keepChains.add(c);
    for (const rec of await store.listImages()) {
      for (const b of await referencedBlobs(store, rec)) keepBlobs.add(b);
      try {
        const img = await loadRecord(store, rec);
        for (const c of chainIds(img.config.rootfs?.diff_ids ?? [])) keepChains.add(c);
      } catch {
        // a broken record keeps its blobs but no snapshots
      }
    }
    const result: GcResult = { blobs: [], snapshots: [], bytes: 0 };
    for (const d of await store.listBlobs()) {
      if (keepBlobs.has(d)) continue;
      result.bytes += await store.size(d).catch(() => 0);
      await store.deleteBlob(d);
      result.blobs.push(d);
    }
    for (const format of ['overlay', 'merged'] as const) {
      const snap = new Snapshotter(store, format);
      for (const m of await snap.list()) {
        if (keepChains.has(m.chainId)) continue;
        await snap.remove(m.chainId);
        result.snapshots.push(`${format}:${m.chainId}`);
      }
    }
    // Leftovers of crashed operations (temp dirs older than an hour; stale partial downloads older than a day).
    const now = Date.now();
    for (const [sub, age] of [
      ['tmp', 3600_000],
      ['ingest', 86400_000],
    ] as const) {
      for (const name of await readdir(join(store.dir, sub)).catch(() => [] as string[])) {
        const p = join(store.dir, sub, name);
        const st = await stat(p).catch(() => null);
        if (st && now - st.mtimeMs > age && !name.endsWith('.lock')) await rm(p, { recursive: true, force: true });
      }
    }
    return result;
  } finally {
    await lock.release();
  }
}

export interface RemoveResult {
  untagged: string[];
  gc: GcResult;
}

/**
 * Removes image names (by name, or every name of an image ID), then collects garbage. An image used by a
 * prepared rootfs is refused unless `force`.
 */
export async function removeImages(
  root: string,
  namesOrIds: string[],
  opts: { force?: boolean } = {},
): Promise<RemoveResult> {
  const store = new ContentStore(root);
  await store.init();
  const untagged: string[] = [];
  const inUse = await rootfsInUse(store);
  for (const n of namesOrIds) {
    const recs: ImageRecord[] = await findImages(store, n);
    if (recs.length === 0) throw new Error(`image "${n}" is not in the local store`);
    for (const r of recs) {
      if (inUse.images.has(r.config) && !opts.force) {
        throw new Error(
          `image "${n}" (${r.config.slice(7, 19)}) is in use by a container root filesystem: stop it first or use --force`,
        );
      }
    }
    await store.updateImages((images) => {
      for (const r of recs) {
        if (images[r.name]) {
          delete images[r.name];
          untagged.push(r.name);
        }
      }
    });
  }
  return { untagged, gc: await collectGarbage(store) };
}
