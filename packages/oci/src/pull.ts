// `pull`: resolve a reference to a platform manifest, download config and
// layers into the content store (concurrently, with a limit), unpack them into
// snapshots as they arrive, and record the image name.
import { RegistryClient, type RegistryOptions } from './registry.js';
import { formatReference, parseReference, repoName, type Reference } from './reference.js';
import { ContentStore, type IngestProgress } from './store.js';
import { hostPlatform, parsePlatform, selectManifest } from './platform.js';
import { chainIds, Snapshotter, type SnapshotProgress } from './snapshots.js';
import type { SnapshotFormat } from './unpack.js';
import type { ZstdImpl } from './decompress.js';
import {
  isIndexMediaType,
  isManifestMediaType,
  MediaType,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from './types.js';

export interface PullOptions extends RegistryOptions {
  /** The runtime's root directory (the store lives in <root>/oci). */
  root: string;
  /** os/arch[/variant]; default the host's. */
  platform?: string | Platform;
  /** Parallel blob downloads (default 3). */
  concurrency?: number;
  /** Unpack layers into snapshots (default true). */
  unpack?: boolean;
  snapshotter?: SnapshotFormat;
  zstd?: ZstdImpl;
  onEvent?: (e: PullEvent) => void;
  /** An existing client to reuse (its options win over the ones here). */
  client?: RegistryClient;
}

export type PullEvent =
  | { type: 'resolved'; ref: string; digest: string; mediaType: string; platformManifest: string; layers: Descriptor[] }
  | ({ type: 'blob'; kind: 'config' | 'layer'; index: number } & IngestProgress)
  | ({ type: 'snapshot' } & SnapshotProgress)
  | { type: 'retry'; what: string; attempt: number; error: string }
  | { type: 'warning'; message: string };

export interface PullResult {
  name: string;
  digest: string;
  manifest: string;
  config: string;
  layers: Descriptor[];
  chainIds: string[];
  image: ImageConfig;
}

/** Runs tasks with at most `limit` in flight; results in order. */
export function limiter(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  const next = (): void => {
    if (active >= limit) return;
    const go = queue.shift();
    if (go) {
      active++;
      go();
    }
  };
  return <T>(fn: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        fn()
          .then(resolve, reject)
          .finally(() => {
            active--;
            next();
          });
      });
      next();
    });
}

function parseJson<T>(buf: Buffer, what: string): T {
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
}

export function checkManifest(m: ImageManifest, what: string): void {
  if (m.schemaVersion !== 2 || !m.config || !Array.isArray(m.layers)) {
    throw new Error(`${what} is not an image manifest (schemaVersion 2 with config and layers)`);
  }
}

export async function pull(input: string, opts: PullOptions): Promise<PullResult> {
  const ref = parseReference(input);
  const store = new ContentStore(opts.root);
  await store.init();
  const emit = opts.onEvent ?? (() => undefined);
  const client =
    opts.client ??
    new RegistryClient({
      ...opts,
      onRetry: (what, attempt, error) => emit({ type: 'retry', what, attempt, error: error.message }),
    });
  const gc = await store.gcLock('shared');
  try {
    return await pullWith(client, store, ref, opts, emit);
  } finally {
    await gc.release();
    if (!opts.client) client.close();
  }
}

async function pullWith(
  client: RegistryClient,
  store: ContentStore,
  ref: Reference,
  opts: PullOptions,
  emit: (e: PullEvent) => void,
): Promise<PullResult> {
  const want = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : (opts.platform ?? hostPlatform());
  const top = await client.getManifest(ref, ref.digest ?? ref.tag ?? 'latest');
  await store.writeBlob(top.digest, top.body);
  const target: Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.body.length };
  let manifestDigest = top.digest;
  let manifestBody = top.body;
  const what = formatReference(ref);
  if (isIndexMediaType(top.mediaType)) {
    const index = parseJson<ImageIndex>(top.body, `index of ${what}`);
    const chosen = selectManifest(index.manifests ?? [], want, what);
    const m = await client.getManifest(ref, chosen.digest);
    if (!isManifestMediaType(m.mediaType))
      throw new Error(`${what}: the index entry ${chosen.digest} is a ${m.mediaType}, not an image manifest`);
    await store.writeBlob(m.digest, m.body);
    manifestDigest = m.digest;
    manifestBody = m.body;
  } else if (!isManifestMediaType(top.mediaType)) {
    throw new Error(`${what}: unsupported manifest media type "${top.mediaType}"`);
  }
  const manifest = parseJson<ImageManifest>(manifestBody, `manifest of ${what}`);
  checkManifest(manifest, `manifest of ${what}`);
  emit({
    type: 'resolved',
    ref: what,
    digest: top.digest,
    mediaType: top.mediaType,
    platformManifest: manifestDigest,
    layers: manifest.layers,
  });

  const run = limiter(Math.max(1, opts.concurrency ?? 3));
  const fetcher = (d: Descriptor) => (offset: number) => client.openBlob(ref, d.digest, offset);
  const ingestOpts = (kind: 'config' | 'layer', index: number) => ({
    attempts: opts.attempts,
    backoffMs: opts.backoffMs,
    onProgress: (p: IngestProgress) => emit({ type: 'blob', kind, index, ...p }),
  });
  const configDone = run(() => store.ingest(manifest.config, fetcher(manifest.config), ingestOpts('config', 0)));
  const layerDone = manifest.layers.map((l, i) => run(() => store.ingest(l, fetcher(l), ingestOpts('layer', i))));
  // Observe every download now, so a failure while we wait on another is not an unhandled rejection.
  for (const p of [configDone, ...layerDone]) p.catch(() => undefined);
  await configDone;
  const image = parseJson<ImageConfig>(await store.readBlob(manifest.config.digest), `config of ${what}`);
  const cfgMt = manifest.config.mediaType;
  if (cfgMt !== MediaType.OciConfig && cfgMt !== MediaType.DockerConfig) {
    throw new Error(
      `${what}: config media type "${cfgMt}" is not an image config (is this an artifact, not an image?)`,
    );
  }
  const diffIds = image.rootfs?.diff_ids ?? [];
  let chain: string[] = [];
  try {
    if (opts.unpack === false) {
      await Promise.all(layerDone);
      chain = chainIds(diffIds);
    } else {
      const snap = new Snapshotter(store, opts.snapshotter);
      chain = await snap.ensure(manifest.layers, diffIds, {
        ready: (i) => layerDone[i] ?? Promise.resolve(),
        zstd: opts.zstd,
        onProgress: (p) => emit({ type: 'snapshot', ...p }),
        onWarning: (message) => emit({ type: 'warning', message }),
      });
      await Promise.all(layerDone);
    }
  } catch (e) {
    await Promise.allSettled(layerDone);
    throw e;
  }
  const name = ref.digest !== undefined ? `${repoName(ref)}@${ref.digest}` : formatReference(ref);
  await store.putImage({
    name,
    target,
    manifest: manifestDigest,
    config: manifest.config.digest,
    updated: new Date().toISOString(),
  });
  return {
    name,
    digest: top.digest,
    manifest: manifestDigest,
    config: manifest.config.digest,
    layers: manifest.layers,
    chainIds: chain,
    image,
  };
}
