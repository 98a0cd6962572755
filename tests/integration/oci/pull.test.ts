// Pulls from a real registry (Debian's docker-registry, distribution 2.8) of
// images built from busybox-static with umoci and pushed with skopeo.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  writeFileSync,
  rmSync,
  symlinkSync,
  linkSync,
  chownSync,
  chmodSync,
  existsSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  buildTar,
  collectGarbage,
  ContentStore,
  MediaType,
  nativeAddon,
  prepareRootfs,
  pull,
  removeImages,
  resolveProcess,
  type ImageIndex,
  type ImageManifest,
  type ImageConfig,
} from '@quark/oci';
import {
  addRawLayer,
  buildBusybox,
  diffTrees,
  execFileP,
  layoutBlob,
  layoutManifest,
  push,
  putManifest,
  uploadBlob,
  readTree,
  requireTools,
  sha256,
  startRegistry,
  tempDir,
  type Registry,
  type TempDir,
} from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
let dir: TempDir;
let reg: Registry;
let layout: string;
let n = 0;
const root = (): string => join(dir.path, `root-${n++}`);
const digests = { amd: '', arm: '', index: '', latest: '' };

test.before(async () => {
  requireTools();
  dir = tempDir('pull');
  reg = await startRegistry(dir.path);
  layout = await buildBusybox(dir.path);
  // A multi-layer image: files, modes, owners, links; then deletions (whiteouts); then a raw layer with an
  // opaque directory, a device node and a file capability.
  await buildBusybox(dir.path, {
    tag: 'multi',
    user: 'app',
    workdir: '/data',
    entrypoint: ['/bin/sh', '-c'],
    cmd: ['echo hi'],
    env: ['FOO=bar'],
    layers: [
      (r) => {
        mkdirSync(join(r, 'data/sub/deeper'), { recursive: true });
        writeFileSync(join(r, 'data/a'), 'a\n');
        writeFileSync(join(r, 'data/b'), 'b\n');
        writeFileSync(join(r, 'data/sub/x'), 'x\n');
        writeFileSync(join(r, 'data/sub/deeper/y'), 'y\n');
        writeFileSync(join(r, 'data/suid'), '#!/bin/sh\n');
        chmodSync(join(r, 'data/suid'), 0o4755);
        writeFileSync(join(r, 'data/owned'), 'o\n');
        chownSync(join(r, 'data/owned'), 1000, 1000);
        chownSync(join(r, 'data/sub'), 1000, 10);
        chmodSync(join(r, 'data/sub'), 0o2770);
        linkSync(join(r, 'data/b'), join(r, 'data/b-hard'));
        symlinkSync('/etc/passwd', join(r, 'data/abs-link'));
        symlinkSync('../bin/busybox', join(r, 'data/rel-link'));
        mkdirSync(join(r, 'tmp'), { mode: 0o1777 });
        chmodSync(join(r, 'tmp'), 0o1777);
      },
      (r) => {
        rmSync(join(r, 'data/a'));
        rmSync(join(r, 'bin/ls'));
        rmSync(join(r, 'data/sub/deeper'), { recursive: true });
        writeFileSync(join(r, 'data/b'), 'b changed\n');
      },
    ],
  });
  await addRawLayer(
    join(dir.path, 'oci'),
    'multi',
    buildTar([
      { name: 'data/', type: 'directory', mode: 0o755 },
      { name: 'data/sub/', type: 'directory', mode: 0o2770, uid: 1000, gid: 10 },
      { name: 'data/sub/.wh..wh..opq', type: 'file' },
      { name: 'data/sub/new', type: 'file', data: 'new\n', mode: 0o640, uid: 1000, gid: 10 },
      { name: 'dev/', type: 'directory', mode: 0o755 },
      { name: 'dev/null2', type: 'chardev', devmajor: 1, devminor: 3, mode: 0o666 },
      {
        name: 'bin/ping',
        type: 'file',
        data: 'ping\n',
        mode: 0o755,
        xattrs: { 'security.capability': Buffer.from('0100000200200000000000000000000000000000', 'hex') },
      },
      { name: 'data/.wh.b-hard', type: 'file' },
    ]),
    dir.path,
  );
  await push(layout, 'latest', `${reg.host}/busybox:oci`, { format: 'oci' });
  await push(layout, 'latest', `${reg.host}/busybox:v2s2`, { format: 'v2s2' });
  await push(layout, 'latest', `${reg.host}/library/busybox:latest`, { format: 'oci' });
  // The same image with its layer recompressed: zstd, and uncompressed (uploaded with the registry API).
  {
    const m = JSON.parse(layoutBlob(layout, layoutManifest(layout, 'latest').digest).toString()) as ImageManifest;
    const tar = gunzipSync(layoutBlob(layout, m.layers[0]?.digest ?? ''));
    for (const [tag, mediaType, blob] of [
      ['zstd', MediaType.OciLayerZstd, execFileSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 1 << 28 })],
      ['plain', MediaType.OciLayer, tar],
    ] as const) {
      await uploadBlob(reg.host, 'busybox', layoutBlob(layout, m.config.digest));
      const digest = await uploadBlob(reg.host, 'busybox', blob);
      const body = Buffer.from(JSON.stringify({ ...m, layers: [{ mediaType, digest, size: blob.length }] }));
      await putManifest(reg.host, 'busybox', tag, body, MediaType.OciManifest);
    }
    // 45 layers: more than fit one page of overlay mount options with absolute paths.
    const cfg = JSON.parse(layoutBlob(layout, m.config.digest).toString()) as ImageConfig;
    const layers = [...m.layers];
    for (let i = 0; i < 45; i++) {
      const tarI = buildTar([
        { name: 'layers/', type: 'directory' },
        { name: `layers/${i}`, type: 'file', data: `layer ${i}\n` },
      ]);
      const gz = gzipSync(tarI);
      layers.push({
        mediaType: MediaType.OciLayerGzip,
        digest: await uploadBlob(reg.host, 'deep', gz),
        size: gz.length,
      });
      cfg.rootfs.diff_ids.push(sha256(tarI));
    }
    await uploadBlob(reg.host, 'deep', layoutBlob(layout, m.layers[0]?.digest ?? ''));
    const cfgBuf = Buffer.from(JSON.stringify(cfg));
    const cfgDigest = await uploadBlob(reg.host, 'deep', cfgBuf);
    const deep = { ...m, config: { ...m.config, digest: cfgDigest, size: cfgBuf.length }, layers };
    await putManifest(reg.host, 'deep', 'latest', Buffer.from(JSON.stringify(deep)), MediaType.OciManifest);
  }
  await push(layout, 'multi', `${reg.host}/multi:latest`, { format: 'oci' });
  await push(layout, 'multi', `${reg.host}/multi:v2s2`, { format: 'v2s2' });

  // An index with two platforms, written here: the real amd64 image and an arm64/v8 twin (same layers).
  const amd = layoutManifest(layout, 'latest');
  const manifest = JSON.parse(layoutBlob(layout, amd.digest).toString()) as ImageManifest;
  const config = JSON.parse(layoutBlob(layout, manifest.config.digest).toString()) as ImageConfig;
  const armConfig = Buffer.from(JSON.stringify({ ...config, architecture: 'arm64', variant: 'v8' }));
  const armManifest = Buffer.from(
    JSON.stringify({ ...manifest, config: { ...manifest.config, digest: sha256(armConfig), size: armConfig.length } }),
  );
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      {
        mediaType: MediaType.OciManifest,
        digest: amd.digest,
        size: amd.size,
        platform: { os: 'linux', architecture: 'amd64' },
      },
      {
        mediaType: MediaType.OciManifest,
        digest: sha256(armManifest),
        size: armManifest.length,
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      },
    ],
  };
  const indexBuf = Buffer.from(JSON.stringify(index));
  for (const b of [armConfig, armManifest, indexBuf])
    writeFileSync(join(layout, 'blobs/sha256', sha256(b).slice(7)), b);
  const li = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as ImageIndex;
  li.manifests.push({
    mediaType: MediaType.OciIndex,
    digest: sha256(indexBuf),
    size: indexBuf.length,
    annotations: { 'org.opencontainers.image.ref.name': 'multiarch' },
  });
  writeFileSync(join(layout, 'index.json'), JSON.stringify(li));
  await execFileP('skopeo', [
    'copy',
    '--quiet',
    '--all',
    '--dest-tls-verify=false',
    `oci:${layout}:multiarch`,
    `docker://${reg.host}/busybox:multiarch`,
  ]);
  digests.amd = amd.digest;
  digests.arm = sha256(armManifest);
  digests.index = sha256(indexBuf);
  digests.latest = amd.digest;
});

test.after.always(async () => {
  await reg?.stop();
  dir?.cleanup();
});

test('pull an OCI image by tag and prepare its rootfs', async (t) => {
  const r = root();
  const res = await pull(`${reg.host}/busybox:oci`, { root: r });
  t.is(res.name, `${reg.host}/busybox:oci`);
  t.is(res.digest, digests.latest);
  const images = await new ContentStore(r).listImages();
  t.deepEqual(
    images.map((i) => [i.name, i.target.mediaType]),
    [[`${reg.host}/busybox:oci`, MediaType.OciManifest]],
  );
  const p = await prepareRootfs(`${reg.host}/busybox:oci`, { root: r, pullPolicy: 'never' });
  try {
    t.is(sha256(readFileSync(join(p.rootfs, 'bin/busybox'))), sha256(readFileSync('/bin/busybox')));
    t.is(readlinkSync(join(p.rootfs, 'bin/sh')), '/bin/busybox');
    t.deepEqual(p.config.cmd, ['/bin/sh']);
    t.is(p.mode, nativeAddon ? 'overlay' : 'merged');
    // The rootfs is writable and private.
    writeFileSync(join(p.rootfs, 'scratch'), 'x');
    t.true(existsSync(join(p.rootfs, 'scratch')));
  } finally {
    await p.cleanup();
  }
  t.false(existsSync(p.rootfs));
  // Busybox really runs from the prepared tree.
  const p2 = await prepareRootfs(`${reg.host}/busybox:oci`, { root: r });
  try {
    t.is(
      execFileSync('chroot', [p2.rootfs, '/bin/sh', '-c', 'echo hello from $(basename $0)']).toString(),
      'hello from sh\n',
    );
    t.false(existsSync(join(p2.rootfs, 'scratch')), 'a fresh rootfs does not see the other one’s writes');
  } finally {
    await p2.cleanup();
  }
});

test('pull a Docker v2s2 image; same config as the OCI one', async (t) => {
  const r = root();
  const a = await pull(`${reg.host}/busybox:v2s2`, { root: r });
  const b = await pull(`${reg.host}/busybox:oci`, { root: r });
  const images = await new ContentStore(r).listImages();
  t.is(images.find((i) => i.name.endsWith(':v2s2'))?.target.mediaType, MediaType.DockerManifest);
  t.is(a.config, b.config, 'skopeo keeps the config: one image ID');
  t.deepEqual(a.chainIds, b.chainIds);
});

for (const [tag, mediaType] of [
  ['zstd', MediaType.OciLayerZstd],
  ['plain', MediaType.OciLayer],
] as const) {
  test(`pull an image with ${tag} layers`, async (t) => {
    const r = root();
    const res = await pull(`${reg.host}/busybox:${tag}`, { root: r });
    t.is(res.layers[0]?.mediaType, mediaType);
    const p = await prepareRootfs(`${reg.host}/busybox:${tag}`, { root: r, pullPolicy: 'never' });
    try {
      t.is(sha256(readFileSync(join(p.rootfs, 'bin/busybox'))), sha256(readFileSync('/bin/busybox')));
    } finally {
      await p.cleanup();
    }
  });
}

test('pull by digest', async (t) => {
  const r = root();
  const res = await pull(`${reg.host}/busybox@${digests.latest}`, { root: r });
  t.is(res.name, `${reg.host}/busybox@${digests.latest}`);
  t.is(res.manifest, digests.latest);
  const missing = `sha256:${'0'.repeat(64)}`;
  await t.throwsAsync(pull(`${reg.host}/busybox@${missing}`, { root: r }), {
    message: /not found on registry 127\.0\.0\.1:\d+ \(HTTP 404\) \(MANIFEST_UNKNOWN/,
  });
});

test('index with two platforms: the matching one is chosen, a missing one is a clear error', async (t) => {
  const r = root();
  const amd = await pull(`${reg.host}/busybox:multiarch`, { root: r, platform: 'linux/amd64' });
  t.is(amd.digest, digests.index);
  t.is(amd.manifest, digests.amd);
  const arm = await pull(`${reg.host}/busybox:multiarch`, { root: r, platform: 'linux/arm64/v8', unpack: false });
  t.is(arm.manifest, digests.arm);
  t.is(arm.image.architecture, 'arm64');
  const arm2 = await pull(`${reg.host}/busybox:multiarch`, { root: r, platform: 'linux/aarch64', unpack: false });
  t.is(arm2.manifest, digests.arm, 'aarch64 normalises to arm64');
  await t.throwsAsync(pull(`${reg.host}/busybox:multiarch`, { root: r, platform: 'linux/s390x' }), {
    message: /no image for platform linux\/s390x \(the index offers: linux\/amd64, linux\/arm64\/v8\)/,
  });
});

for (const [format, snapshotter] of [
  ['oci', 'overlay'],
  ['oci', 'merged'],
  ['v2s2', 'merged'],
] as const) {
  test(`multi-layer image with whiteouts and an opaque dir matches umoci unpack (${format}, ${snapshotter})`, async (t) => {
    if (snapshotter === 'overlay' && !nativeAddon) {
      t.fail('the overlay snapshotter needs @quark/native: build it with `npm run build`');
      return;
    }
    const r = root();
    const tag = format === 'oci' ? 'latest' : 'v2s2';
    const pulled = await pull(`${reg.host}/multi:${tag}`, { root: r, snapshotter });
    t.is(pulled.layers.length, 4, 'base, two umoci layers, one raw layer');
    const p = await prepareRootfs(`${reg.host}/multi:${tag}`, { root: r, snapshotter, pullPolicy: 'never' });
    const bundle = join(dir.path, `umoci-${n++}`);
    try {
      await execFileP('umoci', ['unpack', '--image', `${layout}:multi`, bundle]);
      const ours = readTree(p.rootfs);
      const theirs = readTree(join(bundle, 'rootfs'));
      t.deepEqual(diffTrees(ours, theirs, 'quark', 'umoci'), []);
      // Spot checks that the comparison covers what matters.
      t.false(ours.has('data/a'), 'whiteout');
      t.false(ours.has('bin/ls'), 'whiteout of a lower-layer symlink');
      t.false(ours.has('data/b-hard'), 'whiteout in the last layer');
      t.deepEqual(readdirSync(join(p.rootfs, 'data/sub')), ['new'], 'opaque dir hides x and deeper/');
      t.is(ours.get('data/sub')?.mode, 0o2770);
      t.is(ours.get('data/sub')?.uid, 1000);
      t.is(ours.get('data/suid')?.mode, 0o4755);
      t.is(ours.get('data/owned')?.uid, 1000);
      t.is(ours.get('data/abs-link')?.link, '/etc/passwd');
      t.is(ours.get('dev/null2')?.type, 'char');
      t.is(ours.get('tmp')?.mode, 0o1777);
      t.is(readFileSync(join(p.rootfs, 'data/b'), 'utf8'), 'b changed\n');
      if (nativeAddon) {
        t.is(
          nativeAddon.lgetxattr(join(p.rootfs, 'bin/ping'), 'security.capability')?.toString('hex'),
          '0100000200200000000000000000000000000000',
        );
      }
      t.deepEqual(p.config.entrypoint, ['/bin/sh', '-c']);
      t.is(p.config.workingDir, '/data');
      const proc = await resolveProcess(p.rootfs, p.config, []);
      t.deepEqual(proc.args, ['/bin/sh', '-c', 'echo hi']);
      t.is(proc.uid, 1000);
      t.is(proc.gid, 1000);
      t.deepEqual(proc.additionalGids, [10]);
      t.is(proc.cwd, '/data');
      t.true(proc.env.includes('FOO=bar'));
      t.true(proc.env.includes('HOME=/home/app'));
    } finally {
      await p.cleanup();
      rmSync(bundle, { recursive: true, force: true });
    }
  });
}

test('404s name what is missing', async (t) => {
  const r = root();
  await t.throwsAsync(pull(`${reg.host}/busybox:nope`, { root: r }), {
    message: /manifest 127\.0\.0\.1:\d+\/busybox:nope: not found on registry .* \(HTTP 404\) \(MANIFEST_UNKNOWN/,
  });
  await t.throwsAsync(pull(`${reg.host}/nothing/here:latest`, { root: r }), {
    message: /nothing\/here:latest: not found .*HTTP 404/,
  });
});

test('a docker.io name is pulled through a mirror', async (t) => {
  const r = root();
  const res = await pull('busybox', { root: r, mirrors: [`http://${reg.host}`] });
  t.is(res.name, 'docker.io/library/busybox:latest');
  t.is(res.digest, digests.latest);
});

test('rmi removes names and collects unreferenced blobs and snapshots', async (t) => {
  const r = root();
  const a = await pull(`${reg.host}/busybox:oci`, { root: r });
  const b = await pull(`${reg.host}/multi:latest`, { root: r });
  const store = new ContentStore(r);
  const before = new Set(await store.listBlobs());
  t.true(before.has(a.layers[0]?.digest ?? ''));
  const res = await removeImages(r, [`${reg.host}/multi:latest`]);
  t.deepEqual(res.untagged, [`${reg.host}/multi:latest`]);
  const after = new Set(await store.listBlobs());
  // multi's base layer is busybox's layer: kept. Its own layers, config and manifest: gone.
  t.true(after.has(a.layers[0]?.digest ?? ''));
  t.true(after.has(a.config));
  t.false(after.has(b.config));
  t.false(after.has(b.manifest));
  for (const l of b.layers.slice(1)) t.false(after.has(l.digest));
  await removeImages(r, [a.config.slice(7, 19)]);
  t.deepEqual(await store.listBlobs(), []);
  t.deepEqual(await store.listImages(), []);
  const snaps = readdirSync(join(r, 'oci/snapshots')).flatMap((f) => readdirSync(join(r, 'oci/snapshots', f)));
  t.deepEqual(snaps, []);
  await t.throwsAsync(removeImages(r, ['busybox']), { message: /not in the local store/ });
  t.deepEqual((await collectGarbage(store)).blobs, []);
});

test('an image in use by a rootfs is not removed without force', async (t) => {
  const r = root();
  await pull(`${reg.host}/busybox:oci`, { root: r });
  const p = await prepareRootfs(`${reg.host}/busybox:oci`, { root: r });
  try {
    await t.throwsAsync(removeImages(r, [`${reg.host}/busybox:oci`]), {
      message: /in use by a container root filesystem/,
    });
    const res = await removeImages(r, [`${reg.host}/busybox:oci`], { force: true });
    t.is(res.untagged.length, 1);
    // The snapshots the rootfs uses survive the collection.
    t.is(readFileSync(join(p.rootfs, 'bin/busybox')).length, readFileSync('/bin/busybox').length);
  } finally {
    await p.cleanup();
  }
});

test('an unprivileged user pulls into merged snapshots and gets a copied rootfs', async (t) => {
  chmodSync(dir.path, 0o755);
  const r = root();
  mkdirSync(r);
  chownSync(r, 65534, 65534);
  const job = JSON.stringify({ op: 'prepare', ref: `${reg.host}/busybox:oci`, root: r });
  const { stdout } = await execFileP(
    'setpriv',
    [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      process.execPath,
      '--import',
      'tsx',
      '--conditions=quark-source',
      join(here, 'child.ts'),
      job,
    ],
    { cwd: join(here, '../../..') },
  );
  const res = JSON.parse(stdout) as {
    ok: boolean;
    mode: string;
    size: number;
    fileMode: number;
    owner: number;
    uid: number;
  };
  t.deepEqual(res, {
    ok: true,
    mode: 'merged',
    size: readFileSync('/bin/busybox').length,
    fileMode: 0o755,
    owner: 65534,
    uid: 65534,
  });
  t.deepEqual(readdirSync(join(r, 'oci/snapshots/merged')).filter((f) => !f.endsWith('.lock')).length, 1);
  t.deepEqual(readdirSync(join(r, 'oci/rootfs')), [], 'cleanup removed the rootfs');
});

test('an image with 46 layers is mounted (relative overlay paths)', async (t) => {
  const r = root();
  const res = await pull(`${reg.host}/deep`, { root: r });
  t.is(res.layers.length, 46);
  const p = await prepareRootfs(`${reg.host}/deep`, { root: r, pullPolicy: 'never' });
  try {
    t.is(p.mode, nativeAddon ? 'overlay' : 'merged');
    t.is(readdirSync(join(p.rootfs, 'layers')).length, 45);
    t.is(readFileSync(join(p.rootfs, 'layers/44'), 'utf8'), 'layer 44\n');
    t.true(existsSync(join(p.rootfs, 'bin/busybox')));
  } finally {
    await p.cleanup();
  }
});
