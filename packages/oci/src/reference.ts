// Image references: `busybox` → docker.io/library/busybox:latest, with the
// normalisation rules of docker/distribution's reference package.

export const DOCKER_HUB = 'docker.io';
/** The host that actually serves docker.io's registry API. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

export interface Reference {
  /** Registry host with an optional port, e.g. `docker.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  repository: string;
  /** Tag, when given or defaulted (`latest` unless a digest was given). */
  tag?: string;
  /** Digest (`sha256:…`), when given. */
  digest?: string;
}

export class ReferenceError extends Error {
  constructor(input: string, why: string) {
    super(`invalid image reference "${input}": ${why}`);
    this.name = 'ReferenceError';
  }
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$/;
const IPV6_HOST = /^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$/;

/** True when `s` looks like a registry host: it has a dot, a port, or is `localhost`. */
function isRegistryHost(s: string): boolean {
  return s.includes('.') || s.includes(':') || s === 'localhost' || s.startsWith('[');
}

/**
 * Parses an image reference, applying docker's defaults: registry docker.io,
 * namespace `library/` for official images on docker.io, tag `latest` when
 * neither tag nor digest is given.
 */
export function parseReference(input: string): Reference {
  const s = input.trim();
  if (s === '') throw new ReferenceError(input, 'empty');
  if (s.length > 4096) throw new ReferenceError(input, 'too long');

  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ReferenceError(input, `bad digest "${digest}" (expected algorithm:hex)`);
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      throw new ReferenceError(input, 'a sha256 digest has 64 lowercase hex digits');
    }
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ReferenceError(input, `bad tag "${tag}"`);
  }

  let registry = DOCKER_HUB;
  let path = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0 && isRegistryHost(rest.slice(0, firstSlash))) {
    registry = rest.slice(0, firstSlash);
    path = rest.slice(firstSlash + 1);
    if (!HOST.test(registry) && !IPV6_HOST.test(registry))
      throw new ReferenceError(input, `bad registry host "${registry}"`);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (path === '') throw new ReferenceError(input, 'missing repository name');
  if (path !== path.toLowerCase()) throw new ReferenceError(input, 'repository names must be lowercase');
  for (const c of path.split('/')) {
    if (!COMPONENT.test(c)) throw new ReferenceError(input, `bad repository path component "${c}"`);
  }
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (tag === undefined && digest === undefined) tag = 'latest';
  const ref: Reference = { registry, repository: path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The canonical name without tag or digest: `docker.io/library/busybox`. */
export function repoName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The full canonical form: `docker.io/library/busybox:latest` or `…@sha256:…`. */
export function formatReference(ref: Reference): string {
  let s = repoName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The short, familiar form docker prints: `busybox:latest`, `user/x:1`. */
export function familiarName(ref: Reference): string {
  let name = repoName(ref);
  if (ref.registry === DOCKER_HUB) {
    name = ref.repository.startsWith('library/') ? ref.repository.slice('library/'.length) : ref.repository;
  }
  if (ref.tag !== undefined) name += `:${ref.tag}`;
  if (ref.digest !== undefined) name += `@${ref.digest}`;
  return name;
}

/** True when the host (with optional port) names the loopback interface. */
export function isLoopbackHost(hostPort: string): boolean {
  const host = hostPort.startsWith('[') ? hostPort.slice(1, hostPort.indexOf(']')) : hostPort.replace(/:\d+$/, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
