// Local images: looking them up by name or ID, and reading their documents.
import { familiarName, formatReference, parseReference } from './reference.js';
import type { ContentStore, ImageRecord } from './store.js';
import { isIndexMediaType, type ImageConfig, type ImageIndex, type ImageManifest } from './types.js';

export class ImageNotFoundError extends Error {
  constructor(what: string) {
    super(`image "${what}" is not in the local store: pull it first (quark pull ${what})`);
    this.name = 'ImageNotFoundError';
  }
}

export interface LocalImage {
  record: ImageRecord;
  manifest: ImageManifest;
  config: ImageConfig;
}

/** Canonical name for a user-supplied reference, or undefined when it does not parse. */
export function canonicalName(input: string): string | undefined {
  try {
    return formatReference(parseReference(input));
  } catch {
    return undefined;
  }
}

/**
 * Finds image records by name (`busybox`, `docker.io/library/busybox:latest`, `x@sha256:…`) or by ID
 * (config digest `sha256:…`, or a hex prefix of at least 4 digits).
 */
export async function findImages(store: ContentStore, nameOrId: string): Promise<ImageRecord[]> {
  const all = await store.listImages();
  const name = canonicalName(nameOrId);
  if (name !== undefined) {
    const byName = all.filter((r) => r.name === name);
    if (byName.length > 0) return byName;
  }
  const id = nameOrId.startsWith('sha256:') ? nameOrId.slice(7) : nameOrId;
  if (/^[a-f0-9]{4,64}$/.test(id)) {
    const byId = all.filter((r) => r.config.slice(7).startsWith(id) || r.target.digest.slice(7) === id);
    const ids = new Set(byId.map((r) => r.config));
    if (ids.size > 1) throw new Error(`"${nameOrId}" is ambiguous: it matches ${ids.size} images`);
    return byId;
  }
  return [];
}

export async function readJson<T>(store: ContentStore, digest: string): Promise<T> {
  return JSON.parse((await store.readBlob(digest)).toString('utf8')) as T;
}

export async function loadImage(store: ContentStore, nameOrId: string): Promise<LocalImage> {
  const [record] = await findImages(store, nameOrId);
  if (!record) throw new ImageNotFoundError(nameOrId);
  return loadRecord(store, record);
}

export async function loadRecord(store: ContentStore, record: ImageRecord): Promise<LocalImage> {
  const manifest = await readJson<ImageManifest>(store, record.manifest);
  const config = await readJson<ImageConfig>(store, record.config);
  return { record, manifest, config };
}

/** Every blob an image record keeps alive: target, index children present locally, config, layers. */
export async function referencedBlobs(store: ContentStore, record: ImageRecord): Promise<Set<string>> {
  const out = new Set<string>([record.target.digest, record.manifest, record.config]);
  const addManifest = async (digest: string): Promise<void> => {
    if (!(await store.has(digest))) return;
    out.add(digest);
    const m = await readJson<ImageManifest & ImageIndex>(store, digest);
    if (isIndexMediaType(m.mediaType) || Array.isArray(m.manifests)) {
      for (const c of m.manifests ?? []) await addManifest(c.digest);
      return;
    }
    if (m.config) out.add(m.config.digest);
    for (const l of m.layers ?? []) out.add(l.digest);
  };
  await addManifest(record.target.digest);
  await addManifest(record.manifest);
  return out;
}

export function displayName(record: ImageRecord): { repository: string; tag: string } {
  try {
    const ref = parseReference(record.name);
    const fam = familiarName({ registry: ref.registry, repository: ref.repository });
    return { repository: fam, tag: ref.tag ?? '<none>' };
  } catch {
    return { repository: record.name, tag: '<none>' };
  }
}
