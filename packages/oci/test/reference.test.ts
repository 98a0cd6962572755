import test from 'ava';
import { familiarName, formatReference, isLoopbackHost, parseReference } from '../src/reference.js';

const cases: [string, string][] = [
  ['busybox', 'docker.io/library/busybox:latest'],
  ['busybox:1.36', 'docker.io/library/busybox:1.36'],
  ['library/busybox', 'docker.io/library/busybox:latest'],
  ['user/app', 'docker.io/user/app:latest'],
  ['index.docker.io/user/app:v1', 'docker.io/user/app:v1'],
  ['docker.io/busybox', 'docker.io/library/busybox:latest'],
  ['localhost/app', 'localhost/app:latest'],
  ['localhost:5000/app:dev', 'localhost:5000/app:dev'],
  ['127.0.0.1:5000/a/b/c:1', '127.0.0.1:5000/a/b/c:1'],
  ['quay.io/coreos/etcd', 'quay.io/coreos/etcd:latest'],
  ['[::1]:5000/x', '[::1]:5000/x:latest'],
  ['busybox@sha256:' + 'a'.repeat(64), 'docker.io/library/busybox@sha256:' + 'a'.repeat(64)],
  ['r.example.com:443/x/y:tag@sha256:' + 'b'.repeat(64), 'r.example.com:443/x/y:tag@sha256:' + 'b'.repeat(64)],
  ['my_app/sub-part.x__y:Tag_1.0-rc', 'docker.io/my_app/sub-part.x__y:Tag_1.0-rc'],
];

for (const [input, want] of cases) {
  test(`parse ${input}`, (t) => {
    t.is(formatReference(parseReference(input)), want);
  });
}

test('digest-only reference has no default tag', (t) => {
  const r = parseReference('busybox@sha256:' + 'c'.repeat(64));
  t.is(r.tag, undefined);
  t.is(r.digest, 'sha256:' + 'c'.repeat(64));
});

test('familiar names', (t) => {
  t.is(familiarName(parseReference('busybox')), 'busybox:latest');
  t.is(familiarName(parseReference('user/x:1')), 'user/x:1');
  t.is(familiarName(parseReference('127.0.0.1:5000/x')), '127.0.0.1:5000/x:latest');
});

for (const bad of [
  '',
  'Busybox',
  'a//b',
  'busybox:',
  'busybox:-x',
  'busybox@sha256:123',
  'x/y:' + 'a'.repeat(200),
  'a/-b',
  'host:port/x',
  ':tag',
]) {
  test(`reject ${JSON.stringify(bad)}`, (t) => {
    t.throws(() => parseReference(bad), { message: /invalid image reference/ });
  });
}

test('loopback detection', (t) => {
  t.true(isLoopbackHost('127.0.0.1:5000'));
  t.true(isLoopbackHost('localhost'));
  t.true(isLoopbackHost('[::1]:80'));
  t.true(isLoopbackHost('127.3.2.1'));
  t.false(isLoopbackHost('10.0.0.1:5000'));
  t.false(isLoopbackHost('docker.io'));
});
