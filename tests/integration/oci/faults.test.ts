// Failures on the wire: redirects to blob storage, corrupted blobs, a connection cut mid-blob (resumed),
// a registry that dies mid-pull (retries, then a clear error), and two processes pulling one image at once.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ContentStore, DigestError, pull, type ImageManifest } from '@quark/oci';
import {
  buildBusybox,
  layoutBlob,
  layoutManifest,
  push,
  requireTools,
  startProxy,
  startRegistry,
  tempDir,
  type Registry,
  type TempDir,
} from './helpers.js';

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

let dir: TempDir;
let reg: Registry;
let manifest: ImageManifest;
let n = 0;
const root = (): string => join(dir.path, `root-${n++}`);
const BLOB = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/;

test.before(async () => {
  requireTools();
  dir = tempDir('faults');
  reg = await startRegistry(dir.path);
  const layout = await buildBusybox(dir.path);
  await push(layout, 'latest', `${reg.host}/busybox:latest`, { format: 'oci' });
  manifest = JSON.parse(layoutBlob(layout, layoutManifest(layout, 'latest').digest).toString()) as ImageManifest;
});

test.after.always(async () => {
  await reg?.stop();
  dir?.cleanup();
});

function fetchUpstream(
  host: string,
  path: string,
  headers: http.OutgoingHttpHeaders = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://${host}${path}`, { headers }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function storeIsClean(r: string, digest: string): string[] {
  const problems: string[] = [];
  const hex = digest.slice(7);
  if (existsSync(join(r, 'oci/blobs/sha256', hex))) problems.push('blob present');
  for (const f of readdirSync(join(r, 'oci/ingest'))) problems.push(`ingest/${f}`);
  for (const f of readdirSync(join(r, 'oci/tmp'))) problems.push(`tmp/${f}`);
  return problems;
}

test('redirects to blob storage are followed, without leaking credentials', async (t) => {
  const storageSeen: { path: string; auth: boolean }[] = [];
  const storage = http.createServer(async (req, res) => {
    const digest = (req.url ?? '').split('/').pop() ?? '';
    storageSeen.push({ path: req.url ?? '', auth: req.headers.authorization !== undefined });
    const up = await fetchUpstream(reg.host, `/v2/busybox/blobs/${digest}`);
    res
      .writeHead(up.status, { 'content-type': 'application/octet-stream', 'content-length': up.body.length })
      .end(up.body);
  });
  await new Promise<void>((r) => storage.listen(0, '127.0.0.1', r));
  const addr = storage.address();
  const sport = typeof addr === 'object' && addr ? addr.port : 0;
  const proxy = await startProxy(reg.host, (req, res) => {
    const m = BLOB.exec(req.url ?? '');
    if (!m || req.method !== 'GET') return false;
    res.writeHead(307, { location: `http://127.0.0.1:${sport}/storage/${m[2]}?signature=abc` }).end();
    return true;
  });
  try {
    const r = root();
    const res = await pull(`${proxy.host}/busybox`, { root: r, credentials: () => ({ username: 'u', password: 'p' }) });
    t.is(res.config, manifest.config.digest);
    const paths = storageSeen.map((s) => s.path).sort();
    t.deepEqual(
      paths,
      [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]
        .map((d) => `/storage/${d}?signature=abc`)
        .sort(),
    );
    t.false(storageSeen.some((s) => s.auth));
  } finally {
    await proxy.close();
    await new Promise((r) => storage.close(r));
  }
});

test('a corrupted blob fails with a digest error and leaves nothing behind', async (t) => {
  const layer = manifest.layers[0]?.digest ?? '';
  const proxy = await startProxy(reg.host, async (req, res) => {
    const m = BLOB.exec(req.url ?? '');
    if (!m || m[2] !== layer) return false;
    const up = await fetchUpstream(reg.host, req.url ?? '');
    const body = Buffer.from(up.body);
    body[body.length >> 1] = (body[body.length >> 1] ?? 0) ^ 0x55;
    res.writeHead(200, { 'content-length': body.length }).end(body);
    return true;
  });
  try {
    const r = root();
    const e = await t.throwsAsync(pull(`${proxy.host}/busybox`, { root: r }), { instanceOf: DigestError });
    t.regex(
      e?.message ?? '',
      new RegExp(
        `blob ${layer}: digest mismatch: the registry sent content hashing to sha256:[a-f0-9]{64}; the download was deleted`,
      ),
    );
    t.deepEqual(storeIsClean(r, layer), []);
    t.deepEqual(await new ContentStore(r).listImages(), []);
  } finally {
    await proxy.close();
  }
});

test('a connection cut mid-blob is retried and resumed with a Range request', async (t) => {
  const layer = manifest.layers[0];
  let cut = false;
  const ranges: (string | undefined)[] = [];
  const proxy = await startProxy(reg.host, async (req, res) => {
    const m = BLOB.exec(req.url ?? '');
    if (!m || m[2] !== layer?.digest) return false;
    ranges.push(req.headers.range);
    if (cut) return false;
    cut = true;
    const up = await fetchUpstream(reg.host, req.url ?? '');
    res.writeHead(200, { 'content-length': up.body.length });
    res.write(up.body.subarray(0, up.body.length >> 1), () => res.destroy());
    return true;
  });
  try {
    const r = root();
    const res = await pull(`${proxy.host}/busybox`, { root: r, backoffMs: 20 });
    t.is(res.config, manifest.config.digest);
    t.is(ranges.length, 2);
    t.is(ranges[0], undefined);
    t.regex(ranges[1] ?? '', /^bytes=\d+-$/);
    t.true(Number(/\d+/.exec(ranges[1] ?? '')?.[0]) > 0);
    t.is(statSync(join(r, 'oci/blobs/sha256', layer?.digest.slice(7) ?? '')).size, layer?.size ?? -1);
  } finally {
    await proxy.close();
  }
});

test.serial(
  'a registry that dies mid-pull: retries, a clear error, and the partial download resumes later',
  async (t) => {
    const victim = await startRegistry(dir.path);
    const layout = join(dir.path, 'oci');
    await push(layout, 'latest', `${victim.host}/busybox:latest`, { format: 'oci' });
    const layer = manifest.layers[0];
    const closer: { close?: () => Promise<void> } = {};
    const proxy = await startProxy(victim.host, async (req, res) => {
      const m = BLOB.exec(req.url ?? '');
      if (!m || m[2] !== layer?.digest) return false;
      const up = await fetchUpstream(victim.host, req.url ?? '');
      res.writeHead(200, { 'content-length': up.body.length });
      res.write(up.body.subarray(0, up.body.length >> 1), () => {
        // The registry dies: its process and every connection to it.
        void victim.stop().then(() => closer.close?.());
      });
      return true;
    });
    closer.close = proxy.close;
    const r = root();
    const retries: number[] = [];
    const t0 = Date.now();
    try {
      const e = await t.throwsAsync(
        pull(`${proxy.host}/busybox`, {
          root: r,
          attempts: 3,
          backoffMs: 50,
          onEvent: (ev) => ev.type === 'blob' && ev.event === 'retry' && retries.push(ev.done),
        }),
      );
      t.regex(
        e?.message ?? '',
        new RegExp(
          `blob ${(layer?.digest ?? '').slice(0, 19)} of ${proxy.host.replace(/\./g, '\\.')}/busybox: ${proxy.host.replace(/\./g, '\\.')} failed after 3 attempts: .*ECONNREFUSED`,
        ),
      );
      t.true(retries.length >= 1, 'the blob download was retried');
      t.true(Date.now() - t0 < 20_000);
      // Half the layer is kept for a resume; nothing is in blobs/.
      const partial = join(r, 'oci/ingest', `${layer?.digest.slice(7)}.partial`);
      t.true(existsSync(partial));
      t.true(statSync(partial).size > 0);
      t.false(existsSync(join(r, 'oci/blobs/sha256', layer?.digest.slice(7) ?? '')));
      // The registry comes back: the next pull resumes from the partial download.
      await victim.restart();
      const ranges: (string | undefined)[] = [];
      const proxy2 = await startProxy(victim.host, (req) => {
        if (BLOB.exec(req.url ?? '')?.[2] === layer?.digest) ranges.push(req.headers.range);
        return false;
      });
      try {
        await pull(`${proxy2.host}/busybox`, { root: r });
        t.is(ranges.length, 1, 'one request for the rest of the layer');
        t.regex(ranges[0] ?? '', /^bytes=[1-9]\d*-$/);
      } finally {
        await proxy2.close();
      }
    } finally {
      await proxy.close().catch(() => undefined);
      await victim.stop();
    }
  },
);

test('two processes pulling one image download each blob once', async (t) => {
  const gets = new Map<string, number>();
  const proxy = await startProxy(reg.host, async (req) => {
    const m = BLOB.exec(req.url ?? '');
    if (m && req.method === 'GET') {
      gets.set(m[2] ?? '', (gets.get(m[2] ?? '') ?? 0) + 1);
      // Slow blobs, so the two pulls overlap.
      await new Promise((r) => setTimeout(r, 400));
    }
    return false;
  });
  try {
    const r = root();
    const run = () =>
      execFileP(
        process.execPath,
        [
          '--import',
          'tsx',
          '--conditions=quark-source',
          join(here, 'child.ts'),
          JSON.stringify({ op: 'pull', ref: `${proxy.host}/busybox`, root: r }),
        ],
        {
          cwd: join(here, '../../..'),
        },
      );
    const [a, b] = await Promise.all([run(), run()]);
    const ra = JSON.parse(a.stdout) as { ok: boolean; config: string };
    const rb = JSON.parse(b.stdout) as { ok: boolean; config: string };
    t.true(ra.ok && rb.ok);
    t.is(ra.config, rb.config);
    const want = [manifest.config.digest, ...manifest.layers.map((l) => l.digest)].sort();
    t.deepEqual([...gets.keys()].sort(), want);
    t.deepEqual(
      [...gets.values()],
      want.map(() => 1),
      'one GET per blob across both processes',
    );
    // And within one process.
    gets.clear();
    const r2 = root();
    await Promise.all([pull(`${proxy.host}/busybox`, { root: r2 }), pull(`${proxy.host}/busybox`, { root: r2 })]);
    t.deepEqual(
      [...gets.values()],
      want.map(() => 1),
    );
  } finally {
    await proxy.close();
  }
});

test('5xx answers are retried with backoff, then reported', async (t) => {
  let failures = 2;
  const proxy = await startProxy(reg.host, (req, res) => {
    if (!(req.url ?? '').includes('/manifests/') || failures <= 0) return false;
    failures--;
    res
      .writeHead(503, { 'content-type': 'application/json' })
      .end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
    return true;
  });
  try {
    const retries: string[] = [];
    const res = await pull(`${proxy.host}/busybox`, {
      root: root(),
      backoffMs: 20,
      onEvent: (e) => e.type === 'retry' && retries.push(e.error),
    });
    t.is(res.config, manifest.config.digest);
    t.is(retries.length, 2);
    failures = 100;
    await t.throwsAsync(pull(`${proxy.host}/busybox`, { root: root(), backoffMs: 20, attempts: 3 }), {
      message: /failed after 3 attempts: .*answered HTTP 503 \(UNAVAILABLE: try later\)/,
    });
  } finally {
    await proxy.close();
  }
});
