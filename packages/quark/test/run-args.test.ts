// `quark run`'s docker-style argument rule: options end at the first positional.
import test from 'ava';
import { ociGlobalOptions } from '@quark/oci';
import { isRootfsRun, normalizeRunArgs as normalize, runOptions, valueOptions } from '../src/commands/run.js';

const takesValue = valueOptions({ ...ociGlobalOptions, ...runOptions });
const normalizeRunArgs = (args: string[]): string[] => normalize(args, takesValue);

test('options after IMAGE belong to the program', (t) => {
  t.deepEqual(normalizeRunArgs(['run', 'busybox', 'ls', '-l']), ['run', 'busybox', '--', 'ls', '-l']);
  t.deepEqual(normalizeRunArgs(['run', '-e', 'A=1', '--env=B', '-w', '/x', 'img', 'sh', '-c', 'echo hi']), [
    'run',
    '-e',
    'A=1',
    '--env=B',
    '-w',
    '/x',
    'img',
    '--',
    'sh',
    '-c',
    'echo hi',
  ]);
  // Boolean options take no value: the next word is the image.
  t.deepEqual(normalizeRunArgs(['run', '--debug', '-q', 'img', '-x']), ['run', '--debug', '-q', 'img', '--', '-x']);
  // Global options before the command, with values.
  t.deepEqual(normalizeRunArgs(['--root', '/r', '--registry-ca', 'ca.pem', 'run', 'img', 'a']), [
    '--root',
    '/r',
    '--registry-ca',
    'ca.pem',
    'run',
    'img',
    '--',
    'a',
  ]);
});

test('with --rootfs the first positional is the program', (t) => {
  t.deepEqual(normalizeRunArgs(['run', '--rootfs', 'dir', '/bin/echo', '-n', 'hi']), [
    'run',
    '--rootfs',
    'dir',
    '--',
    '/bin/echo',
    '-n',
    'hi',
  ]);
  t.deepEqual(normalizeRunArgs(['run', '--rootfs=dir', '--cpus', '2', 'prog']), [
    'run',
    '--rootfs=dir',
    '--cpus',
    '2',
    '--',
    'prog',
  ]);
});

test('arguments that need no change are kept', (t) => {
  const same = [
    ['run', '--rootfs', 'dir', '--', '/bin/echo', 'hi'],
    ['run', 'img', '--', 'a', '-b'],
    ['run', 'img'],
    ['run', '--help'],
    ['pull', 'busybox', '-q'],
    ['images', '--format', 'json'],
    ['--root', 'run', 'images'],
    [],
  ];
  for (const a of same) t.deepEqual(normalizeRunArgs(a), a, a.join(' '));
});

test('value options: names and aliases of non-boolean options', (t) => {
  for (const o of ['--root', '--registry-ca', '--env', '-e', '--workdir', '-w', '--cwd', '-u', '--pull', '--cpus']) {
    t.true(takesValue.has(o), o);
  }
  for (const o of ['--debug', '-q', '--quiet', '--read-only']) t.false(takesValue.has(o), o);
});

test('a run with --rootfs is recognised before the program', (t) => {
  t.true(isRootfsRun(['run', '--rootfs', 'd', '--', '/p']));
  t.true(isRootfsRun(['run', '-e', 'A=1', '--rootfs=d', 'prog']));
  t.false(isRootfsRun(['run', 'img', '--', '--rootfs']));
  t.false(isRootfsRun(['run', 'img']));
  t.false(isRootfsRun(['run', 'img', 'prog', '--rootfs']));
  t.true(isRootfsRun(['run', '-w', '--rootfs', '--rootfs', 'd', 'prog']), "-w's value is not the option");
  t.false(isRootfsRun(['pull', '--rootfs']));
});
