// A TLS registry with a certificate from a test CA: trusted with --registry-ca, refused clearly without it
// or with another CA, accepted unverified with --insecure-registry.
import test from 'ava';
import { join } from 'node:path';
import { pull, RegistryError } from '@quark/oci';
import {
  buildBusybox,
  makeCa,
  push,
  requireTools,
  startRegistry,
  tempDir,
  type Registry,
  type TempDir,
  type TestCa,
} from './helpers.js';

let dir: TempDir;
let reg: Registry;
let ca: TestCa;
let otherCa: TestCa;
let n = 0;
const root = (): string => join(dir.path, `root-${n++}`);

test.before(async () => {
  requireTools();
  dir = tempDir('tls');
  ca = makeCa(dir.path, 'ca');
  otherCa = makeCa(dir.path, 'other-ca');
  reg = await startRegistry(dir.path, { tls: ca.issue('registry') });
  await push(await buildBusybox(dir.path), 'latest', `${reg.host}/busybox:latest`);
});

test.after.always(async () => {
  await reg?.stop();
  dir?.cleanup();
});

test('trusted through --registry-ca', async (t) => {
  const res = await pull(`${reg.host}/busybox`, { root: root(), caFiles: [ca.caCert] });
  t.is(res.name, `${reg.host}/busybox:latest`);
});

test('untrusted certificate: a clear error naming the fix', async (t) => {
  const e = await t.throwsAsync(pull(`${reg.host}/busybox`, { root: root() }), { instanceOf: RegistryError });
  t.regex(
    e?.message ?? '',
    /TLS certificate of 127\.0\.0\.1:\d+ is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/,
  );
  t.regex(e?.message ?? '', /--registry-ca FILE/);
});

test('a different CA does not help', async (t) => {
  await t.throwsAsync(pull(`${reg.host}/busybox`, { root: root(), caFiles: [otherCa.caCert] }), {
    message: /is not trusted/,
  });
});

test('--insecure-registry skips verification', async (t) => {
  const res = await pull(`${reg.host}/busybox`, { root: root(), insecureRegistries: [reg.host] });
  t.truthy(res.config);
});
