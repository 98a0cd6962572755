import test from 'ava';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CommandError,
  DEFAULT_PATH,
  resolveCommand,
  resolveUser,
  runtimeConfig,
  type ImageRuntimeConfig,
} from '../src/runtime.js';

const img = (c: Partial<ImageRuntimeConfig>): ImageRuntimeConfig => ({
  entrypoint: [],
  cmd: [],
  env: [],
  workingDir: '',
  user: '',
  labels: {},
  exposedPorts: [],
  volumes: [],
  ...c,
});

test('Cmd only: user args replace it', (t) => {
  const c = img({ cmd: ['/bin/sh'] });
  t.deepEqual(resolveCommand(c).args, ['/bin/sh']);
  t.deepEqual(resolveCommand(c, ['echo', 'hi']).args, ['echo', 'hi']);
});

test('Entrypoint + Cmd: user args replace Cmd only', (t) => {
  const c = img({ entrypoint: ['/docker-entrypoint.sh'], cmd: ['nginx', '-g', 'daemon off;'] });
  t.deepEqual(resolveCommand(c).args, ['/docker-entrypoint.sh', 'nginx', '-g', 'daemon off;']);
  t.deepEqual(resolveCommand(c, ['sh']).args, ['/docker-entrypoint.sh', 'sh']);
});

test('--entrypoint replaces the entrypoint and drops the image Cmd', (t) => {
  const c = img({ entrypoint: ['/init'], cmd: ['serve'] });
  t.deepEqual(resolveCommand(c, [], { entrypoint: '/bin/sh' }).args, ['/bin/sh']);
  t.deepEqual(resolveCommand(c, ['-c', 'ls'], { entrypoint: '/bin/sh' }).args, ['/bin/sh', '-c', 'ls']);
  t.deepEqual(resolveCommand(c, ['ls'], { entrypoint: '' }).args, ['ls']);
  t.deepEqual(resolveCommand(c, [], { entrypoint: ['a', 'b'] }).args, ['a', 'b']);
});

test('no command at all is an error', (t) => {
  t.throws(() => resolveCommand(img({})), { instanceOf: CommandError, message: /no command specified/ });
  t.throws(() => resolveCommand(img({ cmd: ['x'] }), [], { entrypoint: '' }), { instanceOf: CommandError });
});

test('Env: image values, default PATH, overrides by key, KEY from the host', (t) => {
  t.deepEqual(resolveCommand(img({ cmd: ['x'] })).env, [`PATH=${DEFAULT_PATH}`]);
  const c = img({ cmd: ['x'], env: ['PATH=/bin', 'A=1', 'B=2'] });
  const r = resolveCommand(c, [], { env: ['A=override', 'C=3', 'HOSTVAR', 'UNSET_VAR'], hostEnv: { HOSTVAR: 'h' } });
  t.deepEqual(r.env, ['PATH=/bin', 'A=override', 'B=2', 'C=3', 'HOSTVAR=h']);
  t.deepEqual(resolveCommand(c, [], { env: ['PATH=/x'] }).env[0], 'PATH=/x');
});

test('WorkingDir and User', (t) => {
  const c = img({ cmd: ['x'], workingDir: '/srv/app/', user: 'www' });
  t.is(resolveCommand(c).cwd, '/srv/app');
  t.is(resolveCommand(img({ cmd: ['x'] })).cwd, '/');
  t.is(resolveCommand(c, [], { workingDir: '/tmp' }).cwd, '/tmp');
  t.throws(() => resolveCommand(c, [], { workingDir: 'rel' }), { message: /absolute/ });
  t.is(resolveCommand(c).user, 'www');
  t.is(resolveCommand(c, [], { user: '0:0' }).user, '0:0');
});

test('runtimeConfig maps the image config', (t) => {
  const r = runtimeConfig({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [] },
    config: {
      Entrypoint: null,
      Cmd: ['sh'],
      Env: ['A=1'],
      WorkingDir: '/w',
      User: '1:2',
      ExposedPorts: { '80/tcp': {} },
      StopSignal: 'SIGQUIT',
    },
  });
  t.deepEqual(r.entrypoint, []);
  t.deepEqual(r.cmd, ['sh']);
  t.deepEqual(r.exposedPorts, ['80/tcp']);
  t.is(r.stopSignal, 'SIGQUIT');
});

test('resolveUser against /etc/passwd and /etc/group', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'oci-user-'));
  try {
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n');
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\nwww:x:33:\nstaff:x:50:www,other\nadm:x:4:www\n');
    t.deepEqual(await resolveUser(root, ''), { uid: 0, gid: 0, additionalGids: [], home: '/root' });
    t.deepEqual(await resolveUser(root, 'www'), { uid: 33, gid: 33, additionalGids: [50, 4], home: '/var/www' });
    t.deepEqual(await resolveUser(root, 'www:staff'), { uid: 33, gid: 50, additionalGids: [], home: '/var/www' });
    t.deepEqual(await resolveUser(root, '1234'), { uid: 1234, gid: 0, additionalGids: [], home: '/' });
    t.deepEqual(await resolveUser(root, '1234:99'), { uid: 1234, gid: 99, additionalGids: [], home: '/' });
    await t.throwsAsync(resolveUser(root, 'ghost'), { message: /unable to find user ghost/ });
    await t.throwsAsync(resolveUser(root, 'www:ghosts'), { message: /unable to find group ghosts/ });
    // No passwd at all: numeric ids still work.
    t.deepEqual(await resolveUser(join(root, 'none'), '5:6'), { uid: 5, gid: 6, additionalGids: [], home: '/' });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
