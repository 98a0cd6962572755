// Import/export for offline hosts: `load` reads an OCI archive (an OCI image
// layout in a tar, as `skopeo copy … oci-archive:` or `quark save` write it)
// or a docker-archive (`docker save`, `skopeo copy … docker-archive:`);
// `save` writes an OCI archive.
import { createReadStream, createWriteStream, constants as fsc } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import { ContentStore, type ImageRecord } from './store.js';
import { TarReader, tarHeader, tarPadding, tarTrailer } from './tar.js';
import { cleanEntryPath } from './unpack.js';
import { parseDigest, sha256 } from './digest.js';
import { formatReference, parseReference } from './reference.js';
import { findImages, readJson, referencedBlobs, loadRecord } from './image.js';
import { hostPlatform, parsePlatform, selectManifest } from './platform.js';
import { Snapshotter } from './snapshots.js';
import { sniffCompression } from './decompress.js';
import { checkManifest } from './pull.js';
import {
  isIndexMediaType,
  MediaType,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from './types.js';

export interface LoadOptions {
  root: string;
  /** Repository name for images the archive names by tag only (or not at all). */
  name?: string;
  platform?: string | Platform;
  /** Unpack snapshots so the images run offline at once (default true). */
  unpack?: boolean;
  onWarning?: (m: string) => void;
}

export interface LoadResult {
  format: 'oci-archive' | 'docker-archive';
  images: ImageRecord[];
}

interface StagedFile {
  digest: string;
  size: number;
}

const SMALL = /(^|\/)(index\.json|oci-layout|manifest\.json|repositories)$|\.json$/;

/** Streams `src` into a temp file in the store, hashing it; returns its digest and path. */
async function stage(
  store: ContentStore,
  body: AsyncIterable<Buffer>,
): Promise<{ path: string; digest: string; size: number }> {
  const path = store.tmpPath('load');
  const fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o444);
  const h = createHash('sha256');
  let size = 0;
  try {
    for await (const c of body) {
      h.update(c);
      size += c.length;
      let off = 0;
      while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { path, digest: `sha256:${h.digest('hex')}`, size };
}

async function commitStaged(store: ContentStore, s: { path: string; digest: string }): Promise<void> {
  if (await store.has(s.digest)) await rm(s.path, { force: true });
  else await rename(s.path, store.blobPath(s.digest));
}

function nameFor(annotation: string | undefined, opts: LoadOptions): string | undefined {
  if (annotation && (annotation.includes('/') || annotation.includes(':') || annotation.includes('@'))) {
    try {
      return formatReference(parseReference(annotation));
    } catch {
      // not a reference: a tag, below
    }
  }
  if (!opts.name) return undefined;
  const base = parseReference(opts.name);
  if (annotation && /^[\w][\w.-]{0,127}$/.test(annotation))
    return formatReference({ registry: base.registry, repository: base.repository, tag: annotation });
  return formatReference(base);
}

export async function loadArchive(input: string | Readable, opts: LoadOptions): Promise<LoadResult> {
  const store = new ContentStore(opts.root);
  await store.init();
  const warn = opts.onWarning ?? (() => undefined);
  const gc = await store.gcLock('shared');
  const staged = new Map<string, StagedFile>();
  const small = new Map<string, Buffer>();
  const links = new Map<string, string>();
  try {
    const src = typeof input === 'string' ? createReadStream(input, { highWaterMark: 1 << 20 }) : input;
    const reader = new TarReader(src);
    for (let h = await reader.next(); h; h = await reader.next()) {
      const path = cleanEntryPath(h.name).join('/');
      if (h.type === 'symlink' || h.type === 'link') {
        const target =
          h.type === 'link'
            ? cleanEntryPath(h.linkname).join('/')
            : posix.normalize(posix.join(posix.dirname(path), h.linkname)).replace(/^\/+/, '');
        links.set(path, target);
        continue;
      }
      if (h.type !== 'file') continue;
      const blobName = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(path);
      if (blobName) {
        const want = `${blobName[1]}:${blobName[2]}`;
        parseDigest(want);
        const s = await stage(store, reader.body());
        if (blobName[1] === 'sha256' && s.digest !== want) {
          await rm(s.path, { force: true });
          throw new Error(`archive entry ${path} does not match its digest (content hashes to ${s.digest})`);
        }
        await commitStaged(store, s);
        staged.set(path, { digest: s.digest, size: s.size });
      } else if (SMALL.test(path) && h.size < 16 << 20) {
        const parts: Buffer[] = [];
        for await (const c of reader.body()) parts.push(Buffer.from(c));
        const data = Buffer.concat(parts);
        small.set(path, data);
        if (path.endsWith('.json') && path !== 'index.json' && path !== 'manifest.json') {
          // A docker-archive config (<id>.json): also a blob.
          await store.writeBlob(sha256(data), data);
          staged.set(path, { digest: sha256(data), size: data.length });
        }
      } else {
        const s = await stage(store, reader.body());
        await commitStaged(store, s);
        staged.set(path, { digest: s.digest, size: s.size });
      }
    }
    const resolve = (p: string): StagedFile | undefined => {
      let cur = cleanEntryPath(p).join('/');
      for (let i = 0; i < 8 && !staged.has(cur) && links.has(cur); i++) cur = links.get(cur) ?? cur;
      return staged.get(cur);
    };
    const records: ImageRecord[] = [];
    const want = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : (opts.platform ?? hostPlatform());
    let format: LoadResult['format'];
    if (small.has('index.json') && small.has('oci-layout')) {
      format = 'oci-archive';
      const index = JSON.parse(small.get('index.json')?.toString() ?? '{}') as ImageIndex;
      for (const d of index.manifests ?? []) {
        const ann = d.annotations ?? {};
        const name = nameFor(ann['io.containerd.image.name'] ?? ann['org.opencontainers.image.ref.name'], opts);
        if (!name) {
          warn(`image ${d.digest} in the archive has no name: skipped (give one with --name)`);
          continue;
        }
        records.push(await recordFor(store, name, d, want));
      }
    } else if (small.has('manifest.json')) {
      format = 'docker-archive';
      const list = JSON.parse(small.get('manifest.json')?.toString() ?? '[]') as {
        Config: string;
        RepoTags?: string[] | null;
        Layers: string[];
      }[];
      for (const entry of list) {
        const cfg = resolve(entry.Config);
        if (!cfg) throw new Error(`docker-archive: config ${entry.Config} is missing`);
        const layers: Descriptor[] = [];
        for (const l of entry.Layers) {
          const f = resolve(l);
          if (!f) throw new Error(`docker-archive: layer ${l} is missing`);
          const head = Buffer.alloc(4);
          const fh = await open(store.blobPath(f.digest));
          await fh.read(head, 0, 4, 0);
          await fh.close();
          const comp = sniffCompression(head);
          layers.push({
            mediaType:
              comp === 'gzip'
                ? MediaType.DockerLayerGzip
                : comp === 'zstd'
                  ? MediaType.OciLayerZstd
                  : MediaType.DockerLayer,
            digest: f.digest,
            size: f.size,
          });
        }
        const manifest = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: MediaType.DockerManifest,
            config: { mediaType: MediaType.DockerConfig, digest: cfg.digest, size: cfg.size },
            layers,
          }),
        );
        await store.writeBlob(sha256(manifest), manifest);
        const desc: Descriptor = {
          mediaType: MediaType.DockerManifest,
          digest: sha256(manifest),
          size: manifest.length,
        };
        const names = (entry.RepoTags ?? []).map((t) => formatReference(parseReference(t)));
        if (names.length === 0) {
          const n = nameFor(undefined, opts);
          if (n) names.push(n);
          else warn(`image ${cfg.digest} in the archive has no RepoTags: skipped (give a name with --name)`);
        }
        for (const name of names) records.push(await recordFor(store, name, desc, want));
      }
    } else {
      throw new Error('not an image archive: no index.json + oci-layout (OCI) and no manifest.json (docker-archive)');
    }
    if (opts.unpack !== false) {
      const snap = new Snapshotter(store);
      for (const r of records) {
        const img = await loadRecord(store, r);
        await snap.ensure(img.manifest.layers, img.config.rootfs?.diff_ids ?? [], { onWarning: warn });
      }
    }
    for (const r of records) await store.putImage(r);
    return { format, images: records };
  } finally {
    await gc.release();
  }
}

async function recordFor(store: ContentStore, name: string, target: Descriptor, want: Platform): Promise<ImageRecord> {
  if (!(await store.has(target.digest)))
    throw new Error(`archive is missing blob ${target.digest} (the manifest of ${name})`);
  let manifestDigest = target.digest;
  let doc = await readJson<ImageManifest & ImageIndex>(store, target.digest);
  if (isIndexMediaType(target.mediaType) || isIndexMediaType(doc.mediaType) || Array.isArray(doc.manifests)) {
    const present: Descriptor[] = [];
    for (const m of doc.manifests ?? []) if (await store.has(m.digest)) present.push(m);
    const chosen = selectManifest(present, want, name);
    manifestDigest = chosen.digest;
    doc = await readJson<ImageManifest & ImageIndex>(store, chosen.digest);
  }
  checkManifest(doc, `manifest of ${name}`);
  for (const d of [doc.config, ...doc.layers]) {
    if (!(await store.has(d.digest))) throw new Error(`archive is missing blob ${d.digest} of ${name}`);
  }
  return {
    name,
    target: { mediaType: target.mediaType, digest: target.digest, size: target.size },
    manifest: manifestDigest,
    config: doc.config.digest,
    updated: new Date().toISOString(),
  };
}

export interface SaveOptions {
  root: string;
}

async function write(out: Writable, b: Buffer): Promise<void> {
  if (!out.write(b)) await once(out, 'drain');
}

/** Writes the named images as one OCI archive (OCI image layout in a tar). */
export async function saveArchive(
  namesOrIds: string[],
  output: string | Writable,
  opts: SaveOptions,
): Promise<{ images: string[]; blobs: number }> {
  const store = new ContentStore(opts.root);
  await store.init();
  const records: ImageRecord[] = [];
  for (const n of namesOrIds) {
    const found = await findImages(store, n);
    if (found.length === 0) throw new Error(`image "${n}" is not in the local store`);
    records.push(...found);
  }
  const blobs = new Set<string>();
  for (const r of records) for (const b of await referencedBlobs(store, r)) blobs.add(b);
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: records.map((r) => {
      let tag: string | undefined;
      try {
        tag = parseReference(r.name).tag;
      } catch {
        tag = undefined;
      }
      const annotations: Record<string, string> = { 'io.containerd.image.name': r.name };
      if (tag) annotations['org.opencontainers.image.ref.name'] = tag;
      return { ...r.target, annotations };
    }),
  };
  const toFile = typeof output === 'string';
  const tmp = toFile ? `${output}.tmp-${process.pid}` : undefined;
  const out = typeof output === 'string' ? createWriteStream(tmp ?? output) : output;
  try {
    const small = async (name: string, data: Buffer): Promise<void> => {
      await write(out, tarHeader({ name, type: 'file', size: data.length, mode: 0o644 }));
      await write(out, data);
      await write(out, tarPadding(data.length));
    };
    await small('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    await write(out, tarHeader({ name: 'blobs/', type: 'directory' }));
    await write(out, tarHeader({ name: 'blobs/sha256/', type: 'directory' }));
    for (const d of [...blobs].sort()) {
      const { algorithm, hex } = parseDigest(d);
      const size = (await stat(store.blobPath(d))).size;
      await write(out, tarHeader({ name: `blobs/${algorithm}/${hex}`, type: 'file', size, mode: 0o444 }));
      for await (const c of store.openBlob(d) as AsyncIterable<Buffer>) await write(out, c);
      await write(out, tarPadding(size));
    }
    await small('index.json', Buffer.from(JSON.stringify(index)));
    await write(out, tarTrailer());
    if (toFile) {
      out.end();
      await once(out, 'finish');
      await rename(tmp ?? '', output);
    }
  } catch (e) {
    if (toFile) {
      out.destroy();
      await rm(tmp ?? '', { force: true });
    }
    throw e;
  }
  return { images: records.map((r) => r.name), blobs: blobs.size };
}
