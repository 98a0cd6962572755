// Real peers for the OCI tests: Debian's docker-registry (distribution 2.8)
// with its own config on a random loopback port, images built from
// busybox-static with umoci and pushed with skopeo, test CAs made by openssl.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const execFileP = promisify(execFile);

const REQUIRED = ['docker-registry', 'skopeo', 'umoci', 'openssl', 'htpasswd', 'zstd', 'setpriv'];

/** Fails loudly (never skips) when a prerequisite is missing. */
export function requireTools(): void {
  for (const t of REQUIRED) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${t} is not installed: run \`bash scripts/prereqs.sh\` as root (see scripts/prereqs.txt)`);
    }
  }
  try {
    execFileSync('sh', ['-c', 'test -x /bin/busybox']);
  } catch {
    throw new Error('/bin/busybox (Debian busybox-static) is missing: run `bash scripts/prereqs.sh`');
  }
}

export interface TempDir {
  path: string;
  cleanup(): void;
}

export function tempDir(tag: string): TempDir {
  const path = mkdtempSync(join(tmpdir(), `quark-oci-${tag}-`));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// ---- images ---------------------------------------------------------------

/**
 * Builds a busybox OCI image layout at `<dir>/oci` tag `tag` (recipe from ecosystem.md). `layers` mutate the
 * bundle rootfs; each becomes one layer (umoci repack). Returns the layout path.
 */
export async function buildBusybox(
  dir: string,
  opts: {
    tag?: string;
    layers?: ((rootfs: string) => void)[];
    cmd?: string[];
    entrypoint?: string[];
    env?: string[];
    workdir?: string;
    user?: string;
  } = {},
): Promise<string> {
  const layout = join(dir, 'oci');
  const tag = opts.tag ?? 'latest';
  const bundle = join(dir, `bundle-${randomBytes(4).toString('hex')}`);
  await execFileP('umoci', ['init', '--layout', layout]).catch(() => undefined);
  await execFileP('umoci', ['new', '--image', `${layout}:${tag}`]);
  await execFileP('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
  const rootfs = join(bundle, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  await execFileP('chroot', [rootfs, '/bin/busybox', '--install', '-s', '/bin']);
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(
    join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n',
  );
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n');
  await execFileP('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:${tag}`, bundle]);
  for (const layer of opts.layers ?? []) {
    layer(rootfs);
    await execFileP('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:${tag}`, bundle]);
  }
  const cfg = ['config', '--image', `${layout}:${tag}`];
  cfg.push('--config.env', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin');
  for (const e of opts.env ?? []) cfg.push('--config.env', e);
  for (const c of opts.cmd ?? ['/bin/sh']) cfg.push('--config.cmd', c);
  for (const c of opts.entrypoint ?? []) cfg.push('--config.entrypoint', c);
  if (opts.workdir) cfg.push('--config.workingdir', opts.workdir);
  if (opts.user) cfg.push('--config.user', opts.user);
  await execFileP('umoci', cfg);
  await execFileP('umoci', ['gc', '--layout', layout]);
  rmSync(bundle, { recursive: true, force: true });
  return layout;
}

/** Appends a raw (uncompressed) tar as a new layer of `layout:tag`. */
export async function addRawLayer(layout: string, tag: string, tar: Buffer, dir: string): Promise<void> {
  const f = join(dir, `layer-${randomBytes(4).toString('hex')}.tar`);
  writeFileSync(f, tar);
  await execFileP('umoci', ['raw', 'add-layer', '--image', `${layout}:${tag}`, f]);
  rmSync(f);
}

export interface PushOptions {
  format?: 'oci' | 'v2s2';
  creds?: string;
  /** Extra skopeo arguments. */
  args?: string[];
}

export async function push(layout: string, tag: string, dest: string, opts: PushOptions = {}): Promise<void> {
  const args = ['copy', '--quiet', '--dest-tls-verify=false'];
  if (opts.format === 'v2s2') args.push('--format', 'v2s2');
  if (opts.format === 'oci') args.push('--format', 'oci');
  if (opts.creds) args.push('--dest-creds', opts.creds);
  args.push(...(opts.args ?? []), `oci:${layout}:${tag}`, `docker://${dest}`);
  await execFileP('skopeo', args, { env: { ...process.env, HOME: tmpdir() } });
}

/** The digest of `layout:tag`'s manifest, from the layout's index.json. */
export function layoutManifest(layout: string, tag: string): { digest: string; size: number; mediaType: string } {
  const idx = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[];
  };
  const m = idx.manifests.find((x) => x.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!m) throw new Error(`no ${tag} in ${layout}`);
  return m;
}

export function layoutBlob(layout: string, digest: string): Buffer {
  return readFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)));
}

export function sha256(b: Buffer | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

// ---- registry ---------------------------------------------------------------

export interface RegistryOpts {
  tls?: { cert: string; key: string };
  htpasswd?: string;
  token?: { realm: string; service: string; issuer: string; rootcertbundle: string };
}

export interface Registry {
  host: string;
  port: number;
  dir: string;
  proc: ChildProcess;
  log(): string;
  stop(): Promise<void>;
  /** Starts it again on the same port and storage. */
  restart(): Promise<void>;
}

export async function startRegistry(base: string, opts: RegistryOpts = {}): Promise<Registry> {
  const port = await freePort();
  const dir = join(base, `registry-${port}`);
  mkdirSync(join(dir, 'data'), { recursive: true });
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (opts.tls) lines.push('  tls:', `    certificate: ${opts.tls.cert}`, `    key: ${opts.tls.key}`);
  if (opts.htpasswd) lines.push('auth:', '  htpasswd:', '    realm: quark-test', `    path: ${opts.htpasswd}`);
  if (opts.token) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${opts.token.realm}`,
      `    service: ${opts.token.service}`,
      `    issuer: ${opts.token.issuer}`,
      `    rootcertbundle: ${opts.token.rootcertbundle}`,
    );
  }
  writeFileSync(join(dir, 'config.yml'), lines.join('\n') + '\n');
  let log = '';
  const launch = async (): Promise<{ proc: ChildProcess; exited: Promise<void> }> => {
    const proc = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<void>((r) => proc.on('exit', () => r()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`docker-registry exited: ${log}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`docker-registry did not listen on ${port}: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return { proc, exited };
  };
  let cur = await launch();
  const stop = async (): Promise<void> => {
    if (cur.proc.exitCode === null && cur.proc.signalCode === null) {
      cur.proc.kill('SIGKILL');
      await cur.exited;
    }
  };
  return {
    host: `127.0.0.1:${port}`,
    port,
    dir,
    get proc() {
      return cur.proc;
    },
    log: () => log,
    stop,
    restart: async () => {
      await stop();
      cur = await launch();
    },
  };
}

// ---- certificates -------------------------------------------------------------

export interface TestCa {
  caCert: string;
  caKey: string;
  /** Issues a server certificate for 127.0.0.1/localhost. */
  issue(name: string): { cert: string; key: string };
}

export function makeCa(dir: string, name = 'ca'): TestCa {
  const caKey = join(dir, `${name}.key`);
  const caCert = join(dir, `${name}.crt`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      caKey,
      '-out',
      caCert,
      '-days',
      '2',
      '-subj',
      `/CN=quark test ${name}`,
    ],
    { stdio: 'ignore' },
  );
  return {
    caCert,
    caKey,
    issue(srv: string) {
      const key = join(dir, `${srv}.key`);
      const csr = join(dir, `${srv}.csr`);
      const cert = join(dir, `${srv}.crt`);
      const ext = join(dir, `${srv}.ext`);
      writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
      execFileSync(
        'openssl',
        [
          'req',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          key,
          '-out',
          csr,
          '-subj',
          '/CN=127.0.0.1',
        ],
        { stdio: 'ignore' },
      );
      execFileSync(
        'openssl',
        [
          'x509',
          '-req',
          '-in',
          csr,
          '-CA',
          caCert,
          '-CAkey',
          caKey,
          '-CAcreateserial',
          '-out',
          cert,
          '-days',
          '2',
          '-extfile',
          ext,
        ],
        { stdio: 'ignore' },
      );
      return { cert, key };
    },
  };
}

export function htpasswd(dir: string, user: string, pass: string): string {
  const f = join(dir, 'htpasswd');
  execFileSync('htpasswd', ['-Bbc', f, user, pass], { stdio: 'ignore' });
  return f;
}

// ---- token server ---------------------------------------------------------------

export interface TokenServer {
  url: string;
  /** The signing certificate (the registry's rootcertbundle). */
  certFile: string;
  requests: { scope: string | null; service: string | null; user: string | null }[];
  close(): Promise<void>;
}

/**
 * A Docker token server (https://distribution.github.io/distribution/spec/auth/token/): RS256 JWTs whose
 * x5c header carries the signing certificate, which the registry trusts through `rootcertbundle`.
 * Anonymous clients get pull access only when `anonymousPull`; `user:pass` get everything they ask for.
 */
export async function startTokenServer(
  dir: string,
  opts: { issuer: string; service: string; user: string; pass: string; anonymousPull: boolean },
): Promise<TokenServer> {
  const key = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=quark test token signer',
    ],
    { stdio: 'ignore' },
  );
  const keyPem = readFileSync(key, 'utf8');
  const der = Buffer.from(
    readFileSync(certFile, 'utf8')
      .replace(/-----(BEGIN|END) CERTIFICATE-----/g, '')
      .replace(/\s+/g, ''),
    'base64',
  );
  const b64u = (b: Buffer | string): string => Buffer.from(b).toString('base64url');
  const requests: TokenServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    let user: string | null = null;
    if (auth?.startsWith('Basic ')) {
      const [name, pass] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
      if (name !== opts.user || pass !== opts.pass) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      user = name;
    }
    const scope = u.searchParams.get('scope');
    requests.push({ scope, service: u.searchParams.get('service'), user });
    if (!user && !opts.anonymousPull) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"authentication required"}');
      return;
    }
    const access = (scope ?? '')
      .split(' ')
      .filter(Boolean)
      .map((s) => {
        const [type, name, actions] = s.split(':');
        const wanted = (actions ?? '').split(',');
        return { type, name, actions: user ? wanted : wanted.filter((a) => a === 'pull') };
      });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] };
    const claims = {
      iss: opts.issuer,
      sub: user ?? '',
      aud: opts.service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(keyPem);
    const token = `${input}.${b64u(sig)}`;
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}/token`,
    certFile,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

// ---- proxy ---------------------------------------------------------------------

export interface Proxy {
  host: string;
  /** Requests seen: method and path. */
  seen: { method: string; path: string }[];
  close(): Promise<void>;
}

/**
 * A loopback HTTP proxy in front of `target` (host:port, plain HTTP). `intercept` may answer a request itself
 * (return true); otherwise it is forwarded.
 */
export async function startProxy(
  target: string,
  intercept?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>,
): Promise<Proxy> {
  const seen: Proxy['seen'] = [];
  const [thost, tport] = target.split(':');
  const server = http.createServer(async (req, res) => {
    seen.push({ method: req.method ?? 'GET', path: req.url ?? '' });
    if (intercept && (await intercept(req, res))) return;
    const up = http.request(
      {
        host: thost,
        port: Number(tport),
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target },
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.keepAliveTimeout = 100;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

// ---- tree comparison ---------------------------------------------------------------

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  mode: number;
  uid: number;
  gid: number;
  link?: string;
  sha?: string;
  rdev?: number;
}

/** Every path under root (relative, '' for root) with type, mode, owner, link target, content hash. */
export function readTree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const walk = (rel: string): void => {
    const p = rel === '' ? root : join(root, rel);
    const st = lstatSync(p);
    const e: TreeEntry = {
      type: st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isFile()
            ? 'file'
            : st.isCharacterDevice()
              ? 'char'
              : st.isBlockDevice()
                ? 'block'
                : st.isFIFO()
                  ? 'fifo'
                  : 'socket',
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
    };
    if (e.type === 'symlink') {
      e.link = readlinkSync(p);
      delete (e as Partial<TreeEntry>).mode;
    }
    if (e.type === 'file') e.sha = sha256(readFileSync(p));
    if (e.type === 'char' || e.type === 'block') e.rdev = st.rdev;
    out.set(rel, e);
    if (e.type === 'dir') for (const n of readdirSync(p).sort()) walk(rel === '' ? n : `${rel}/${n}`);
  };
  walk('');
  return out;
}

/** Human-readable differences between two trees (empty when equal). */
export function diffTrees(
  a: Map<string, TreeEntry>,
  b: Map<string, TreeEntry>,
  aName = 'ours',
  bName = 'theirs',
): string[] {
  const out: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w) out.push(`${k || '/'}: only in ${aName}`);
    else if (JSON.stringify(v) !== JSON.stringify(w))
      out.push(`${k || '/'}: ${aName} ${JSON.stringify(v)} != ${bName} ${JSON.stringify(w)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`${k || '/'}: only in ${bName}`);
  return out;
}

// ---- raw registry API ------------------------------------------------------------

function httpCall(
  method: string,
  url: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Uploads a blob with the distribution API (POST, then PUT ?digest=). */
export async function uploadBlob(host: string, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const start = await httpCall('POST', `http://${host}/v2/${repo}/blobs/uploads/`);
  if (start.status !== 202) throw new Error(`upload start: HTTP ${start.status} ${start.body.toString()}`);
  const loc = new URL(String(start.headers.location), `http://${host}`);
  loc.searchParams.set('digest', digest);
  const put = await httpCall('PUT', loc.href, data, { 'content-type': 'application/octet-stream' });
  if (put.status !== 201) throw new Error(`upload: HTTP ${put.status} ${put.body.toString()}`);
  return digest;
}

export async function putManifest(
  host: string,
  repo: string,
  ref: string,
  body: Buffer,
  mediaType: string,
): Promise<void> {
  const r = await httpCall('PUT', `http://${host}/v2/${repo}/manifests/${ref}`, body, { 'content-type': mediaType });
  if (r.status !== 201) throw new Error(`manifest put: HTTP ${r.status} ${r.body.toString()}`);
}
