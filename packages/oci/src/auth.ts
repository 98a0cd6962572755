// Registry credentials: QUARK_REGISTRY_USERNAME/PASSWORD (optionally limited
// to QUARK_REGISTRY_HOST), then ~/.docker/config.json (or $DOCKER_CONFIG)
// `auths` entries and credential helpers (`credsStore`, `credHelpers`).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DOCKER_HUB } from './reference.js';

export interface Credentials {
  username: string;
  password: string;
}

export type CredentialLookup = (registry: string) => Credentials | undefined;

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/** The keys docker writes for a registry host. */
function configKeys(registry: string): string[] {
  if (registry === DOCKER_HUB) {
    return [
      'https://index.docker.io/v1/',
      'index.docker.io',
      'docker.io',
      'registry-1.docker.io',
      'https://registry-1.docker.io',
    ];
  }
  return [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`, `https://${registry}/v2/`];
}

function fromHelper(helper: string, server: string): Credentials | undefined {
  try {
    const out = execFileSync(`docker-credential-${helper}`, ['get'], { input: server, timeout: 10_000 });
    const j = JSON.parse(out.toString()) as { Username?: string; Secret?: string };
    if (j.Username !== undefined && j.Secret !== undefined) return { username: j.Username, password: j.Secret };
  } catch {
    // A helper that has nothing for this server exits non-zero.
  }
  return undefined;
}

export interface CredentialOptions {
  env?: NodeJS.ProcessEnv;
  /** Path of a docker config.json; default $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
  dockerConfig?: string;
}

/** Builds the default lookup: environment first, then the docker config file. */
export function defaultCredentials(opts: CredentialOptions = {}): CredentialLookup {
  const env = opts.env ?? process.env;
  const path = opts.dockerConfig ?? join(env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
  return (registry) => {
    const user = env.QUARK_REGISTRY_USERNAME;
    const pass = env.QUARK_REGISTRY_PASSWORD;
    if (
      user !== undefined &&
      pass !== undefined &&
      (!env.QUARK_REGISTRY_HOST || env.QUARK_REGISTRY_HOST === registry)
    ) {
      return { username: user, password: pass };
    }
    let cfg: DockerConfig;
    try {
      cfg = JSON.parse(readFileSync(path, 'utf8')) as DockerConfig;
    } catch {
      return undefined;
    }
    const keys = configKeys(registry);
    const helper = cfg.credHelpers?.[registry];
    if (helper) return fromHelper(helper, keys[0] ?? registry);
    for (const k of keys) {
      const a = cfg.auths?.[k];
      if (!a) continue;
      if (a.username !== undefined && a.password !== undefined) return { username: a.username, password: a.password };
      if (a.auth) {
        const dec = Buffer.from(a.auth, 'base64').toString('utf8');
        const i = dec.indexOf(':');
        if (i > 0) return { username: dec.slice(0, i), password: dec.slice(i + 1) };
      }
    }
    if (cfg.credsStore) return fromHelper(cfg.credsStore, keys[0] ?? registry);
    return undefined;
  };
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header (one or more challenges). */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re = /\s*([A-Za-z][\w-]*)(?:\s+|$)((?:[\w-]+=(?:"(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?\s*)*)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(header)) !== null && m[0] !== '') {
    const params: Record<string, string> = {};
    const pre = /([\w-]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
    let p: RegExpExecArray | null;
    while ((p = pre.exec(m[2] ?? '')) !== null) {
      params[(p[1] ?? '').toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
    }
    out.push({ scheme: (m[1] ?? '').toLowerCase(), params });
  }
  return out;
}
