// Registry authentication: Basic (htpasswd) and the bearer-token flow public registries use, with a token
// server run by the test that signs JWTs with its own openssl-made certificate.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultCredentials, pull } from '@quark/oci';
import {
  buildBusybox,
  htpasswd,
  push,
  requireTools,
  startRegistry,
  startTokenServer,
  tempDir,
  type Registry,
  type TempDir,
  type TokenServer,
} from './helpers.js';

let dir: TempDir;
let basicReg: Registry;
let tokenReg: Registry;
let tokens: TokenServer;
const tokenPolicy = {
  issuer: 'quark-test-issuer',
  service: 'quark-test-registry',
  user: 'alice',
  pass: 's3cret',
  anonymousPull: false,
};
let n = 0;
const root = (): string => join(dir.path, `root-${n++}`);
const none = (): undefined => undefined;

test.before(async () => {
  requireTools();
  dir = tempDir('auth');
  const layout = await buildBusybox(dir.path);
  basicReg = await startRegistry(dir.path, { htpasswd: htpasswd(dir.path, 'bob', 'hunter2') });
  await push(layout, 'latest', `${basicReg.host}/private/busybox:latest`, { creds: 'bob:hunter2' });
  tokens = await startTokenServer(dir.path, tokenPolicy);
  tokenReg = await startRegistry(dir.path, {
    token: {
      realm: tokens.url,
      service: tokenPolicy.service,
      issuer: tokenPolicy.issuer,
      rootcertbundle: tokens.certFile,
    },
  });
  await push(layout, 'latest', `${tokenReg.host}/team/busybox:latest`, { creds: 'alice:s3cret' });
});

test.after.always(async () => {
  await basicReg?.stop();
  await tokenReg?.stop();
  await tokens?.close();
  dir?.cleanup();
});

test.serial('basic auth: no credentials is a clear 401', async (t) => {
  await t.throwsAsync(pull(`${basicReg.host}/private/busybox`, { root: root(), credentials: none }), {
    message:
      /registry 127\.0\.0\.1:\d+ requires authentication \(HTTP 401\) and no credentials are configured: add them to ~\/\.docker\/config\.json or set QUARK_REGISTRY_USERNAME/,
  });
});

test.serial('basic auth: wrong credentials are rejected clearly', async (t) => {
  await t.throwsAsync(
    pull(`${basicReg.host}/private/busybox`, {
      root: root(),
      credentials: () => ({ username: 'bob', password: 'wrong' }),
    }),
    {
      message: /rejected the credentials for private\/busybox \(HTTP 401\)/,
    },
  );
});

test.serial('basic auth: credentials from ~/.docker/config.json', async (t) => {
  const cfg = join(dir.path, 'docker-config.json');
  writeFileSync(
    cfg,
    JSON.stringify({ auths: { [basicReg.host]: { auth: Buffer.from('bob:hunter2').toString('base64') } } }),
  );
  const res = await pull(`${basicReg.host}/private/busybox`, {
    root: root(),
    credentials: defaultCredentials({ dockerConfig: cfg, env: {} }),
  });
  t.is(res.name, `${basicReg.host}/private/busybox:latest`);
});

test.serial('basic auth: credentials from the environment', async (t) => {
  const env = {
    QUARK_REGISTRY_USERNAME: 'bob',
    QUARK_REGISTRY_PASSWORD: 'hunter2',
    QUARK_REGISTRY_HOST: basicReg.host,
  };
  const res = await pull(`${basicReg.host}/private/busybox`, {
    root: root(),
    credentials: defaultCredentials({ env, dockerConfig: '/nonexistent' }),
  });
  t.truthy(res.config);
});

test.serial('bearer flow: anonymous access refused by the token server', async (t) => {
  tokenPolicy.anonymousPull = false;
  await t.throwsAsync(pull(`${tokenReg.host}/team/busybox`, { root: root(), credentials: none }), {
    message: /token server 127\.0\.0\.1:\d+ refused anonymous access to repository:team\/busybox:pull \(HTTP 401\)/,
  });
});

test.serial('bearer flow: wrong credentials', async (t) => {
  await t.throwsAsync(
    pull(`${tokenReg.host}/team/busybox`, {
      root: root(),
      credentials: () => ({ username: 'alice', password: 'nope' }),
    }),
    {
      message: /token server 127\.0\.0\.1:\d+ rejected the credentials/,
    },
  );
});

test.serial('bearer flow: token with credentials from docker config', async (t) => {
  const cfg = join(dir.path, 'docker-config-token.json');
  writeFileSync(
    cfg,
    JSON.stringify({ auths: { [`https://${tokenReg.host}`]: { username: 'alice', password: 's3cret' } } }),
  );
  tokens.requests.length = 0;
  const res = await pull(`${tokenReg.host}/team/busybox`, {
    root: root(),
    credentials: defaultCredentials({ dockerConfig: cfg, env: {} }),
  });
  t.is(res.name, `${tokenReg.host}/team/busybox:latest`);
  t.true(tokens.requests.length >= 1);
  t.deepEqual(tokens.requests[0], {
    scope: 'repository:team/busybox:pull',
    service: 'quark-test-registry',
    user: 'alice',
  });
  // One token serves the whole pull (manifest, config, layers).
  t.is(tokens.requests.length, 1);
});

test.serial('bearer flow: anonymous pull when the token server allows it', async (t) => {
  tokenPolicy.anonymousPull = true;
  tokens.requests.length = 0;
  const res = await pull(`${tokenReg.host}/team/busybox`, { root: root(), credentials: none });
  t.truthy(res.config);
  t.is(tokens.requests[0]?.user, null);
});
