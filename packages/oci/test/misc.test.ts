import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultCredentials, parseWwwAuthenticate } from '../src/auth.js';
import { parsePlatform, platformMatches, selectManifest } from '../src/platform.js';
import { chainIds } from '../src/snapshots.js';
import { sha256 } from '../src/digest.js';
import { limiter } from '../src/pull.js';
import { sniffCompression } from '../src/decompress.js';

test('WWW-Authenticate parsing', (t) => {
  t.deepEqual(
    parseWwwAuthenticate(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
    ),
    [
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/busybox:pull',
        },
      },
    ],
  );
  t.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [
    { scheme: 'basic', params: { realm: 'Registry Realm' } },
  ]);
});

test('credentials: env first, then docker config auths (base64 and username/password)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'oci-creds-'));
  try {
    const cfg = join(dir, 'config.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw:with:colons').toString('base64') },
          'r.example.com': { username: 'u', password: 'p' },
        },
      }),
    );
    const c = defaultCredentials({ dockerConfig: cfg, env: {} });
    t.deepEqual(c('docker.io'), { username: 'hub', password: 'pw:with:colons' });
    t.deepEqual(c('r.example.com'), { username: 'u', password: 'p' });
    t.is(c('other.example.com'), undefined);
    const e = defaultCredentials({
      dockerConfig: cfg,
      env: { QUARK_REGISTRY_USERNAME: 'x', QUARK_REGISTRY_PASSWORD: 'y', QUARK_REGISTRY_HOST: 'r.example.com' },
    });
    t.deepEqual(e('r.example.com'), { username: 'x', password: 'y' });
    t.deepEqual(e('docker.io'), { username: 'hub', password: 'pw:with:colons' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('platform matching', (t) => {
  t.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  t.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  t.throws(() => parsePlatform('linux'), { message: /os\/arch/ });
  t.true(
    platformMatches({ os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm64' }),
  );
  t.false(
    platformMatches(
      { os: 'linux', architecture: 'arm', variant: 'v7' },
      { os: 'linux', architecture: 'arm', variant: 'v6' },
    ),
  );
  const ms = [
    { mediaType: 'm', digest: 'a', size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
    { mediaType: 'm', digest: 'b', size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
    { mediaType: 'm', digest: 'c', size: 1, platform: { os: 'linux', architecture: 'amd64' } },
  ];
  t.is(selectManifest(ms, { os: 'linux', architecture: 'arm', variant: 'v7' }, 'x').digest, 'b');
  t.is(selectManifest(ms, { os: 'linux', architecture: 'amd64' }, 'x').digest, 'c');
  t.throws(() => selectManifest(ms, { os: 'windows', architecture: 'amd64' }, 'img'), {
    message:
      /img: no image for platform windows\/amd64 \(the index offers: linux\/arm\/v6, linux\/arm\/v7, linux\/amd64\)/,
  });
});

test('chain IDs follow the OCI spec', (t) => {
  const a = sha256('a');
  const b = sha256('b');
  const c = sha256('c');
  const ab = sha256(`${a} ${b}`);
  t.deepEqual(chainIds([a, b, c]), [a, ab, sha256(`${ab} ${c}`)]);
});

test('limiter keeps at most N tasks in flight', async (t) => {
  const run = limiter(2);
  let active = 0;
  let peak = 0;
  await Promise.all(
    Array.from({ length: 7 }, () =>
      run(async () => {
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
      }),
    ),
  );
  t.is(peak, 2);
});

test('compression sniffing', (t) => {
  t.is(sniffCompression(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
  t.is(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
  t.is(sniffCompression(Buffer.from('ustar')), 'none');
});
