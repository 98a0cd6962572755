// Pull + unpack of a multi-layer image from a loopback registry (Debian's
// docker-registry), measured in the same run for:
//   quark:   @quark/oci pull (download, verify, unpack into snapshots) + prepareRootfs
//   skopeo:  skopeo copy docker://… oci:DIR + umoci unpack
//   ctr:     containerd 1.6 `ctr images pull` (download + unpack into overlayfs snapshots) + `ctr snapshots prepare`
// Every run starts from empty stores. Prints JSON lines (median of the runs).
// Usage: npx tsx bench/oci/pull.ts [--quick]
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { prepareRootfs, pull } from '../../packages/oci/src/index.js';
import { buildBusybox, push, startRegistry, tempDir, requireTools } from '../../tests/integration/oci/helpers.js';

const execFileP = promisify(execFile);
const quick = process.argv.includes('--quick');
const RUNS = quick ? 2 : 5;
const LAYERS = quick ? 3 : 6;
const FILES_PER_LAYER = quick ? 200 : 600;
const BIG_PER_LAYER = quick ? 1 : 2;

/** Semi-compressible content (like binaries and text in real images). */
function content(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  const rnd = randomBytes(Math.ceil(bytes / 4));
  for (let i = 0; i < bytes; i++) b[i] = i % 4 === 0 ? (rnd[i >> 2] ?? 0) : 97 + (i % 23);
  return b;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function waitSocket(path: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(path, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`containerd did not create ${path}`);
}

requireTools();
const dir = tempDir('bench');
const reg = await startRegistry(dir.path);
try {
  const layers = Array.from({ length: LAYERS }, (_, i) => (rootfs: string) => {
    const d = join(rootfs, 'data', `layer${i}`);
    mkdirSync(d, { recursive: true });
    for (let f = 0; f < FILES_PER_LAYER; f++) {
      const sub = join(d, `dir${f % 20}`);
      mkdirSync(sub, { recursive: true });
      writeFileSync(join(sub, `file${f}.txt`), content(1024 + ((f * 997) % 8192)));
    }
    for (let f = 0; f < BIG_PER_LAYER; f++) writeFileSync(join(d, `big${f}.bin`), content(4 << 20));
  });
  const layout = await buildBusybox(dir.path, { layers });
  const ref = `${reg.host}/bench:latest`;
  await push(layout, 'latest', ref, { format: 'oci' });
  const { stdout: raw } = await execFileP('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  const manifest = JSON.parse(raw) as { layers: { size: number }[] };
  const compressed = manifest.layers.reduce((a, l) => a + l.size, 0);

  const quark: number[] = [];
  const skopeo: number[] = [];
  const ctr: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const work = join(dir.path, `run${run}`);
    mkdirSync(work);

    const root = join(work, 'quark');
    quark.push(
      await timed(async () => {
        await pull(ref, { root });
        const p = await prepareRootfs(ref, { root, pullPolicy: 'never' });
        await p.cleanup();
      }),
    );
    rmSync(root, { recursive: true, force: true });

    skopeo.push(
      await timed(async () => {
        await execFileP('skopeo', [
          'copy',
          '--quiet',
          '--src-tls-verify=false',
          `docker://${ref}`,
          `oci:${join(work, 'oci')}:latest`,
        ]);
        await execFileP('umoci', ['unpack', '--image', `${join(work, 'oci')}:latest`, join(work, 'bundle')]);
      }),
    );
    rmSync(join(work, 'oci'), { recursive: true, force: true });
    rmSync(join(work, 'bundle'), { recursive: true, force: true });

    const cd = join(work, 'containerd');
    mkdirSync(cd);
    const sock = join(cd, 'c.sock');
    writeFileSync(
      join(cd, 'config.toml'),
      [
        'version = 2',
        `root = "${join(cd, 'root')}"`,
        `state = "${join(cd, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${sock}"`,
        '[ttrpc]',
        `  address = "${sock}.ttrpc"`,
      ].join('\n') + '\n',
    );
    const daemon = spawn('containerd', ['--config', join(cd, 'config.toml')], { stdio: 'ignore' });
    try {
      await waitSocket(sock);
      ctr.push(
        await timed(async () => {
          await execFileP('ctr', ['-a', sock, '-n', 'bench', 'images', 'pull', '--plain-http', ref], {
            maxBuffer: 1 << 26,
          });
          const { stdout: chain } = await execFileP('ctr', ['-a', sock, '-n', 'bench', 'images', 'ls', '-q']);
          if (!chain.includes('bench')) throw new Error('ctr did not record the image');
          // The top snapshot of the unpacked chain is the image's chain ID; prepare an active snapshot on it.
          const { stdout: snaps } = await execFileP('ctr', ['-a', sock, '-n', 'bench', 'snapshots', 'ls']);
          const committed = snaps
            .split('\n')
            .slice(1)
            .map((l) => l.trim().split(/\s+/))
            .filter((f) => f[f.length - 1] === 'Committed');
          const parents = new Set(committed.map((f) => (f.length === 3 ? f[1] : '')));
          const top = committed.find((f) => !parents.has(f[0]))?.[0];
          if (!top) throw new Error('no committed snapshot');
          await execFileP('ctr', ['-a', sock, '-n', 'bench', 'snapshots', 'prepare', 'rootfs', top]);
        }),
      );
    } finally {
      daemon.kill('SIGKILL');
      await new Promise((r) => daemon.once('exit', r));
    }
    rmSync(work, { recursive: true, force: true });
  }

  const q = median(quark);
  const s = median(skopeo);
  const c = median(ctr);
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  const common = { layers: LAYERS + 1, compressed_bytes: compressed, runs: RUNS };
  console.log(
    JSON.stringify({
      name: 'oci_pull_unpack_ms',
      value: r2(q),
      unit: 'ms',
      baseline: r2(s),
      baseline_name: 'skopeo copy + umoci unpack',
      ratio: r2(q / s),
      ...common,
    }),
  );
  console.log(
    JSON.stringify({
      name: 'oci_pull_unpack_vs_ctr_ms',
      value: r2(q),
      unit: 'ms',
      baseline: r2(c),
      baseline_name: 'ctr images pull + snapshots prepare (containerd 1.6)',
      ratio: r2(q / c),
      ...common,
    }),
  );
} finally {
  await reg.stop();
  dir.cleanup();
}
