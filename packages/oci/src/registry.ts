// OCI distribution client: endpoints (mirrors, plain HTTP for loopback or
// --insecure-registry), TLS with extra CAs, the bearer-token and Basic auth
// flows, retries with backoff, redirects to blob storage.
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { defaultCredentials, parseWwwAuthenticate, type CredentialLookup, type Credentials } from './auth.js';
import { DOCKER_HUB, DOCKER_HUB_API_HOST, isLoopbackHost, type Reference } from './reference.js';
import { MANIFEST_ACCEPT } from './types.js';
import { parseDigest, sha256, DigestError } from './digest.js';

export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

export interface RegistryOptions {
  /** Hosts (host[:port]) reachable over plain HTTP and without TLS verification. */
  insecureRegistries?: string[];
  /** Mirrors: "URL" (for docker.io) or "HOST=URL" (for HOST). Tried in order before the registry itself. */
  mirrors?: string[];
  /** PEM files with extra trusted CAs. */
  caFiles?: string[];
  /** Credential lookup by registry host; default environment + ~/.docker/config.json. */
  credentials?: CredentialLookup;
  /** Attempts per request on 5xx, 429 and connection errors (default 4). */
  attempts?: number;
  /** First backoff delay in ms, doubled each retry (default 250). */
  backoffMs?: number;
  /** Socket idle timeout in ms (default 30 s). */
  timeoutMs?: number;
  userAgent?: string;
  /** Called for each retry, for progress output. */
  onRetry?: (what: string, attempt: number, error: Error) => void;
}

interface Endpoint {
  /** scheme://host[:port][/prefix] without a trailing slash. */
  base: URL;
  /** The registry host whose credentials apply. */
  host: string;
  /** Whether plain HTTP may be tried when HTTPS fails on the protocol level. */
  httpFallback: boolean;
  skipVerify: boolean;
  mirror: boolean;
}

const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ESOCKETTIMEDOUT',
]);

export function isRetryable(e: unknown): boolean {
  if (e instanceof RegistryError)
    return e.status !== undefined && (e.status >= 500 || e.status === 429) && e.status !== 501;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && RETRYABLE_CODES.has(code);
}

const TLS_PROTOCOL_ERRORS = new Set(['EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG']);
const TLS_TRUST_ERRORS = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
  'UNABLE_TO_GET_ISSUER_CERT',
]);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Response {
  status: number;
  headers: IncomingMessage['headers'];
  body: IncomingMessage;
  url: URL;
}

async function readAll(res: IncomingMessage, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      res.destroy();
      throw new RegistryError(`response larger than ${limit} bytes`);
    }
    parts.push(c);
  }
  return Buffer.concat(parts);
}

function registryErrorDetail(body: Buffer): { code?: string; message?: string } {
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const e = j.errors?.[0];
    if (e) return { code: e.code, message: e.message };
  } catch {
    // not JSON
  }
  return {};
}

export class RegistryClient {
  private readonly opts: RegistryOptions;
  private readonly creds: CredentialLookup;
  private readonly ca: string[] | undefined;
  private readonly tokens = new Map<string, { value: string; expires: number }>();
  /** Auth scheme learnt per host: 'bearer' params or 'basic'. */
  private readonly challenges = new Map<string, { scheme: string; params: Record<string, string> }>();
  /** Hosts learnt to speak plain HTTP. */
  private readonly plainHttp = new Set<string>();
  private readonly agents = new Map<string, http.Agent>();

  constructor(opts: RegistryOptions = {}) {
    this.opts = opts;
    this.creds = opts.credentials ?? defaultCredentials();
    this.ca =
      opts.caFiles && opts.caFiles.length > 0
        ? [...rootCertificates, ...opts.caFiles.map((f) => readFileSync(f, 'utf8'))]
        : undefined;
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }

  private isInsecure(host: string): boolean {
    return (this.opts.insecureRegistries ?? []).some((h) => h === host || h.replace(/^https?:\/\//, '') === host);
  }

  endpoints(registry: string): Endpoint[] {
    const out: Endpoint[] = [];
    for (const m of this.opts.mirrors ?? []) {
      const eq = m.indexOf('=');
      const forHost = eq > 0 && !m.slice(0, eq).includes('/') ? m.slice(0, eq) : DOCKER_HUB;
      const url = eq > 0 && !m.slice(0, eq).includes('/') ? m.slice(eq + 1) : m;
      if (forHost !== registry) continue;
      const base = new URL(url.includes('://') ? url : `https://${url}`);
      out.push({
        base,
        host: base.host,
        httpFallback: false,
        skipVerify: this.isInsecure(base.host),
        mirror: true,
      });
    }
    const apiHost = registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
    const insecure = this.isInsecure(registry);
    out.push({
      base: new URL(`https://${apiHost}`),
      host: registry,
      httpFallback: insecure || isLoopbackHost(registry),
      skipVerify: insecure,
      mirror: false,
    });
    return out;
  }

  private agent(url: URL, skipVerify: boolean): http.Agent {
    const key = `${url.protocol}//${url.host}|${skipVerify}`;
    let a = this.agents.get(key);
    if (!a) {
      a =
        url.protocol === 'https:'
          ? new https.Agent({ keepAlive: true, maxSockets: 8, ca: this.ca, rejectUnauthorized: !skipVerify })
          : new http.Agent({ keepAlive: true, maxSockets: 8 });
      this.agents.set(key, a);
    }
    return a;
  }

  /** One HTTP exchange, no retries, no redirects. */
  private raw(url: URL, method: string, headers: OutgoingHttpHeaders, skipVerify: boolean): Promise<Response> {
    const mod = url.protocol === 'https:' ? https : http;
    const timeout = this.opts.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          headers: { 'user-agent': this.opts.userAgent ?? 'quark-oci/0.1', ...headers },
          agent: this.agent(url, skipVerify),
          timeout,
        },
        (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url }),
      );
      req.on('timeout', () =>
        req.destroy(Object.assign(new Error(`no answer from ${url.host} in ${timeout} ms`), { code: 'ETIMEDOUT' })),
      );
      req.on('error', reject);
      req.end();
    });
  }

  /** HTTPS, or plain HTTP where allowed and the server does not speak TLS. Clear TLS errors. */
  private async exchange(ep: Endpoint, url: URL, method: string, headers: OutgoingHttpHeaders): Promise<Response> {
    if (url.host === ep.base.host && url.protocol === 'https:' && this.plainHttp.has(url.host)) {
      url = new URL(url.href.replace(/^https:/, 'http:'));
    }
    try {
      return await this.raw(url, method, headers, ep.skipVerify);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (
        url.protocol === 'https:' &&
        ep.httpFallback &&
        url.host === ep.base.host &&
        (TLS_PROTOCOL_ERRORS.has(code) || code === 'ECONNRESET')
      ) {
        const plain = new URL(url.href.replace(/^https:/, 'http:'));
        const r = await this.raw(plain, method, headers, ep.skipVerify);
        this.plainHttp.add(url.host);
        return r;
      }
      if (TLS_TRUST_ERRORS.has(code)) {
        throw new RegistryError(
          `TLS certificate of ${url.host} is not trusted (${code}: ${(e as Error).message}): ` +
            'pass its CA with --registry-ca FILE, or --insecure-registry HOST to skip verification',
          undefined,
          code,
        );
      }
      throw e;
    }
  }

  private async token(ep: Endpoint, scope: string, ch: Record<string, string>): Promise<string> {
    const key = `${ep.host}|${ch.realm}|${ch.service}|${scope}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now()) return cached.value;
    const realm = ch.realm;
    if (!realm) throw new RegistryError(`registry ${ep.host} sent a Bearer challenge without a realm`);
    const url = new URL(realm);
    if (ch.service) url.searchParams.set('service', ch.service);
    url.searchParams.set('scope', scope);
    const creds = this.creds(ep.host);
    const headers: OutgoingHttpHeaders = {};
    if (creds) headers.authorization = basic(creds);
    const tokenEp: Endpoint = { ...ep, base: url, httpFallback: false };
    const res = await this.exchange(tokenEp, url, 'GET', headers);
    const body = await readAll(res.body, 1 << 20);
    if (res.status === 401 || res.status === 403) {
      throw new RegistryError(
        creds
          ? `token server ${url.host} rejected the credentials for ${ep.host} (HTTP ${res.status})`
          : `token server ${url.host} refused anonymous access to ${scope} (HTTP ${res.status}): log in (~/.docker/config.json) or set QUARK_REGISTRY_USERNAME/QUARK_REGISTRY_PASSWORD`,
        res.status,
        'UNAUTHORIZED',
      );
    }
    if (res.status !== 200) throw new RegistryError(`token server ${url.host} answered HTTP ${res.status}`, res.status);
    let j: { token?: string; access_token?: string; expires_in?: number };
    try {
      j = JSON.parse(body.toString('utf8')) as typeof j;
    } catch {
      throw new RegistryError(`token server ${url.host} sent invalid JSON`);
    }
    const value = j.token ?? j.access_token;
    if (!value) throw new RegistryError(`token server ${url.host} sent no token`);
    const ttl = Math.max(60, j.expires_in ?? 60) * 1000;
    this.tokens.set(key, { value, expires: Date.now() + ttl - 10_000 });
    return value;
  }

  private async authHeader(ep: Endpoint, scope: string): Promise<string | undefined> {
    const ch = this.challenges.get(ep.base.host);
    if (!ch) return undefined;
    if (ch.scheme === 'bearer') return `Bearer ${await this.token(ep, scope, ch.params)}`;
    if (ch.scheme === 'basic') {
      const creds = this.creds(ep.host);
      return creds ? basic(creds) : undefined;
    }
    return undefined;
  }

  /**
   * A request to the registry API with auth, redirects (Authorization dropped when leaving the host) and
   * retries. Returns a response with status 200/206 (body unread) or throws a RegistryError.
   */
  async request(
    ep: Endpoint,
    ref: Reference,
    path: string,
    what: string,
    headers: OutgoingHttpHeaders = {},
    method = 'GET',
  ): Promise<Response> {
    const scope = `repository:${ref.repository}:pull`;
    const attempts = this.opts.attempts ?? 4;
    let lastErr: Error | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        return await this.requestOnce(ep, scope, path, what, headers, method, ref);
      } catch (e) {
        lastErr = e as Error;
        if (!isRetryable(e) || attempt === attempts) break;
        this.opts.onRetry?.(what, attempt, lastErr);
        const base = (this.opts.backoffMs ?? 250) * 2 ** (attempt - 1);
        await sleep(base / 2 + Math.random() * base);
      }
    }
    const err = lastErr ?? new Error('unknown error');
    if (err instanceof RegistryError && !isRetryable(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new RegistryError(
      `${what}: ${ep.base.host} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ''}`,
      err instanceof RegistryError ? err.status : undefined,
      code ?? (err instanceof RegistryError ? err.code : undefined),
    );
  }

  private async requestOnce(
    ep: Endpoint,
    scope: string,
    path: string,
    what: string,
    headers: OutgoingHttpHeaders,
    method: string,
    ref: Reference,
  ): Promise<Response> {
    const prefix = ep.base.pathname.replace(/\/$/, '');
    let url = new URL(`${ep.base.protocol}//${ep.base.host}${prefix}${path}`);
    let authTried = false;
    for (let hop = 0; hop < 10; hop++) {
      const h: OutgoingHttpHeaders = { ...headers };
      const sameHost = url.host === ep.base.host;
      if (sameHost) {
        const auth = await this.authHeader(ep, scope);
        if (auth) h.authorization = auth;
      }
      const res = await this.exchange(ep, url, method, h);
      const status = res.status;
      if (status === 200 || status === 206) return res;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.body.resume();
        url = new URL(res.headers.location, url);
        continue;
      }
      const body = await readAll(res.body, 1 << 20).catch(() => Buffer.alloc(0));
      const detail = registryErrorDetail(body);
      if (status === 401 && sameHost && !authTried) {
        const challenge = parseWwwAuthenticate(String(res.headers['www-authenticate'] ?? ''))[0];
        if (challenge && (challenge.scheme === 'bearer' || challenge.scheme === 'basic')) {
          const had = this.challenges.get(ep.base.host);
          this.challenges.set(ep.base.host, challenge);
          if (challenge.scheme === 'basic' && !this.creds(ep.host)) {
            throw new RegistryError(
              `${what}: registry ${ep.host} requires authentication (HTTP 401) and no credentials are configured: ` +
                'add them to ~/.docker/config.json or set QUARK_REGISTRY_USERNAME/QUARK_REGISTRY_PASSWORD',
              401,
              'UNAUTHORIZED',
            );
          }
          if (!had || had.scheme !== challenge.scheme || challenge.scheme === 'bearer') {
            authTried = true;
            this.tokens.clear();
            continue;
          }
        }
      }
      throw this.statusError(status, detail, what, ep, ref);
    }
    throw new RegistryError(`${what}: too many redirects`);
  }

  private statusError(
    status: number,
    d: { code?: string; message?: string },
    what: string,
    ep: Endpoint,
    ref: Reference,
  ): RegistryError {
    const reg = ep.mirror ? `mirror ${ep.base.host}` : `registry ${ep.host}`;
    const why = d.code ? ` (${d.code}${d.message ? `: ${d.message}` : ''})` : '';
    switch (status) {
      case 401:
        return new RegistryError(
          this.creds(ep.host)
            ? `${what}: ${reg} rejected the credentials for ${ref.repository} (HTTP 401)${why}`
            : `${what}: ${reg} requires authentication for ${ref.repository} (HTTP 401)${why}: add credentials to ~/.docker/config.json or set QUARK_REGISTRY_USERNAME/QUARK_REGISTRY_PASSWORD`,
          401,
          d.code ?? 'UNAUTHORIZED',
        );
      case 403:
        return new RegistryError(
          `${what}: ${reg} denied access to ${ref.repository} (HTTP 403)${why}`,
          403,
          d.code ?? 'DENIED',
        );
      case 404:
        return new RegistryError(`${what}: not found on ${reg} (HTTP 404)${why}`, 404, d.code ?? 'NOT_FOUND');
      default:
        return new RegistryError(`${what}: ${reg} answered HTTP ${status}${why}`, status, d.code);
    }
  }

  /** Tries each endpoint in order; a failing mirror falls back to the next (errors of the last are thrown). */
  private async onEndpoints<T>(ref: Reference, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const eps = this.endpoints(ref.registry);
    let last: unknown;
    for (const ep of eps) {
      try {
        return await fn(ep);
      } catch (e) {
        last = e;
        if (!ep.mirror || e instanceof DigestError) throw e;
      }
    }
    throw last;
  }

  /**
   * Fetches a manifest or index by tag or digest. When fetched by digest the bytes are verified.
   */
  async getManifest(ref: Reference, tagOrDigest: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
    const what = `manifest ${ref.registry}/${ref.repository}${tagOrDigest.includes(':') ? '@' : ':'}${tagOrDigest}`;
    return this.onEndpoints(ref, async (ep) => {
      const res = await this.request(ep, ref, `/v2/${ref.repository}/manifests/${tagOrDigest}`, what, {
        accept: MANIFEST_ACCEPT,
      });
      const body = await readAll(res.body, 4 << 20);
      const digest = tagOrDigest.includes(':')
        ? tagOrDigest
        : String(res.headers['docker-content-digest'] ?? sha256(body));
      const actual = parseDigest(digest).algorithm === 'sha256' ? sha256(body) : digest;
      if (actual !== digest) {
        throw new DigestError(`${what}: digest mismatch: expected ${digest}, got ${actual}`);
      }
      let mediaType =
        String(res.headers['content-type'] ?? '')
          .split(';')[0]
          ?.trim() ?? '';
      try {
        const j = JSON.parse(body.toString('utf8')) as {
          mediaType?: string;
          manifests?: unknown;
          schemaVersion?: number;
        };
        if (j.mediaType) mediaType = j.mediaType;
        if (j.schemaVersion === 1) throw new RegistryError(`${what}: Docker schema 1 manifests are not supported`);
      } catch (e) {
        if (e instanceof RegistryError) throw e;
        throw new RegistryError(`${what}: the registry sent a manifest that is not JSON`);
      }
      return { body, mediaType, digest };
    });
  }

  /** Opens a blob (following redirects), from `offset` when > 0 (status 206 when honoured). */
  async openBlob(ref: Reference, digest: string, offset = 0): Promise<Response> {
    const what = `blob ${digest.slice(0, 19)} of ${ref.registry}/${ref.repository}`;
    return this.onEndpoints(ref, (ep) =>
      this.request(
        ep,
        ref,
        `/v2/${ref.repository}/blobs/${digest}`,
        what,
        offset > 0 ? { range: `bytes=${offset}-` } : {},
      ),
    );
  }
}

function basic(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}
