// The image commands through the real `quark` entry point (a child process):
// pull from a real docker-registry, images, image ls, inspect, rmi, help
// texts and exit statuses.
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildBusybox,
  layoutManifest,
  push,
  requireTools,
  startRegistry,
  tempDir,
  type Registry,
  type TempDir,
} from '../oci/helpers.js';
import { quark } from './helpers.js';

let dir: TempDir;
let reg: Registry;
let ref: string;
let manifestDigest: string;
let n = 0;
const newRoot = (): string => join(dir.path, `root-${n++}`);

test.before(async () => {
  requireTools();
  dir = tempDir('cli-images');
  reg = await startRegistry(dir.path);
  const layout = await buildBusybox(dir.path, {
    cmd: ['/bin/echo', 'hi'],
    env: ['GREETING=hello'],
    workdir: '/srv',
    user: 'app',
  });
  ref = `${reg.host}/tools/busybox:1.0`;
  await push(layout, 'latest', ref, { format: 'oci' });
  manifestDigest = layoutManifest(layout, 'latest').digest;
});

test.after.always(async () => {
  await reg?.stop();
  dir?.cleanup();
});

test('pull, images, image ls, inspect and rmi through the quark CLI', async (t) => {
  const root = newRoot();
  const pulled = await quark(['pull', ref, '--root', root]);
  t.is(pulled.status, 0, pulled.stderr);
  t.regex(pulled.stdout, new RegExp(`^${ref}: pulled in \\d+\\.\\d s\\nDigest: ${manifestDigest}\\nImage ID: sha256:`));
  t.regex(pulled.stderr, /layer [a-f0-9]{12}: downloaded/, 'plain progress lines on a pipe');
  const imageId = /Image ID: (sha256:[a-f0-9]{64})/.exec(pulled.stdout)?.[1] ?? '';

  // The table, and docker's `image ls` name for it.
  const table = await quark(['images', '--root', root]);
  t.is(table.status, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  t.regex(lines[0] ?? '', /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  t.is(lines.length, 2);
  t.regex(
    lines[1] ?? '',
    new RegExp(`^${reg.host}/tools/busybox\\s+1\\.0\\s+${imageId.slice(7, 19)}\\s+.+\\s+1\\.\\d+ MB$`),
  );
  const ls = await quark(['image', 'ls', '--root', root]);
  t.is(ls.status, 0, ls.stderr);
  t.is(ls.stdout, table.stdout);

  const json = await quark(['images', '--format', 'json', '--root', root]);
  const list = JSON.parse(json.stdout) as { name: string; id: string; digest: string; platform: string }[];
  t.deepEqual(
    list.map((i) => [i.name, i.id, i.digest, i.platform]),
    [[ref, imageId, manifestDigest, 'linux/amd64']],
  );

  // inspect by name and by short ID show the image config the run command applies.
  for (const what of [ref, imageId.slice(7, 19)]) {
    const ins = await quark(['inspect', what, '--root', root]);
    t.is(ins.status, 0, ins.stderr);
    const info = JSON.parse(ins.stdout) as {
      Id: string;
      RepoTags: string[];
      Digest: string;
      Config: { cmd: string[]; env: string[]; workingDir: string; user: string };
    };
    t.is(info.Id, imageId);
    t.deepEqual(info.RepoTags, [ref]);
    t.is(info.Digest, manifestDigest);
    t.deepEqual(info.Config.cmd, ['/bin/echo', 'hi']);
    t.deepEqual(info.Config.env, ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'GREETING=hello']);
    t.is(info.Config.workingDir, '/srv');
    t.is(info.Config.user, 'app');
  }

  // rmi untags and deletes every blob; the store is empty afterwards.
  const rmi = await quark(['rmi', ref, '--root', root]);
  t.is(rmi.status, 0, rmi.stderr);
  t.regex(rmi.stdout, new RegExp(`^Untagged: ${ref}\\n`));
  t.regex(rmi.stdout, new RegExp(`Deleted: ${manifestDigest}\\n`));
  t.regex(rmi.stdout, /Reclaimed \d/);
  const after = await quark(['images', '-q', '--root', root]);
  t.is(after.stdout, '');
  t.deepEqual(readdirSync(join(root, 'oci', 'blobs', 'sha256')), []);
  const snapshots = join(root, 'oci', 'snapshots', 'overlay');
  t.deepEqual(existsSync(snapshots) ? readdirSync(snapshots) : [], []);
});

test('image pull and image rm are docker names of pull and rmi', async (t) => {
  const root = newRoot();
  const p = await quark(['image', 'pull', '-q', ref, '--root', root]);
  t.is(p.status, 0, p.stderr);
  t.is(p.stdout, `${ref}\n`);
  const rm = await quark(['image', 'rm', ref, '--root', root]);
  t.is(rm.status, 0, rm.stderr);
  t.regex(rm.stdout, /^Untagged: /);
});

test('errors: a clear message on stderr and a non-zero status', async (t) => {
  const root = newRoot();
  const missing = await quark(['pull', `${reg.host}/no/such:tag`, '--root', root]);
  t.is(missing.status, 1);
  t.is(missing.stdout, '');
  t.regex(missing.stderr, /^quark: .*no\/such.*(not found|404)/im);
  t.false(missing.stderr.includes('    at '), 'no stack trace');

  const rmi = await quark(['rmi', 'nothing-here:1', '--root', root]);
  t.is(rmi.status, 1);
  t.regex(rmi.stderr, /^quark: .*nothing-here/m);

  const inspect = await quark(['inspect', 'nothing-here:1', '--root', root]);
  t.is(inspect.status, 1);
  t.regex(inspect.stderr, /^quark: image "nothing-here:1" is not in the local store/m);

  const usage = await quark(['pull', '--root', root]);
  t.is(usage.status, 125);
  t.regex(usage.stderr, /Not enough non-option arguments/);

  const unknown = await quark(['frobnicate']);
  t.is(unknown.status, 125);
  t.regex(unknown.stderr, /^quark: Unknown argument: frobnicate\nSee `quark --help`\./);
});

test('--pull never: a missing image is a clear error, exit 125, and nothing is pulled', async (t) => {
  const root = newRoot();
  const r = await quark(['run', '--pull', 'never', '--root', root, ref, '/bin/true']);
  t.is(r.status, 125);
  t.is(r.stdout, '');
  t.is(
    r.stderr,
    `quark run: image "${ref}" is not in the local store and --pull never forbids pulling it: ` +
      `pull it first (quark pull ${ref}) or use --pull missing\n`,
  );
  t.deepEqual(readdirSync(join(root, 'oci', 'blobs', 'sha256')), []);
  t.deepEqual(readdirSync(join(root, 'oci', 'rootfs')), []);
});

test('help: every command explains itself with examples', async (t) => {
  const top = await quark(['--help']);
  t.is(top.status, 0);
  for (const c of ['run', 'pull', 'images', 'rmi', 'inspect', 'load', 'save', 'image', 'check']) {
    t.regex(top.stdout, new RegExp(`^  quark ${c}\\b`, 'm'), `quark --help lists ${c}`);
  }
  for (const o of ['--root', '--insecure-registry', '--registry-mirror', '--registry-ca']) {
    t.true(top.stdout.includes(o), `quark --help shows the global option ${o}`);
  }
  t.regex(top.stdout, /Examples:\n {2}quark run busybox echo hello/);
  for (const c of [['run'], ['pull'], ['images'], ['rmi'], ['inspect'], ['load'], ['save'], ['image', 'ls']]) {
    const h = await quark([...c, '--help']);
    t.is(h.status, 0, c.join(' '));
    t.regex(h.stdout, /\nExamples:\n {2}quark /, `quark ${c.join(' ')} --help has examples`);
    t.regex(h.stdout, /--registry-ca/, `quark ${c.join(' ')} --help shows the global options`);
  }
  const run = await quark(['run', '--help']);
  for (const o of ['--pull', '--platform', '--entrypoint', '--env', '--workdir', '--user', '--rootfs']) {
    t.true(run.stdout.includes(o), `quark run --help documents ${o}`);
  }
  t.regex(run.stdout, /quark run \[options\] IMAGE \[COMMAND \[ARG\.\.\.\]\]/);
});
