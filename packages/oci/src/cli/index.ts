// The image commands of the `quark` CLI, as yargs CommandModules the CLI
// registers: pull, images, rmi, inspect, load, save. See README.md
// ("CLI integration").
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Argv, CommandModule, Options } from 'yargs';
import { pull } from '../pull.js';
import { ContentStore } from '../store.js';
import { displayName, findImages, loadRecord, referencedBlobs } from '../image.js';
import { removeImages } from '../gc.js';
import { loadArchive, saveArchive } from '../archive.js';
import { formatPlatform } from '../platform.js';
import { parseReference, repoName } from '../reference.js';
import { isRoot } from '../sys.js';
import { runtimeConfig } from '../runtime.js';
import type { RegistryOptions } from '../registry.js';
import { PullProgress, formatBytes, type Output } from './progress.js';

export { PullProgress, formatBytes, type Output } from './progress.js';

/** /var/lib/quark for root, else $XDG_DATA_HOME/quark (default ~/.local/share/quark). */
export function defaultRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (isRoot) return '/var/lib/quark';
  return join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'quark');
}

export interface OciGlobalArgs {
  root?: string;
  'insecure-registry'?: string[];
  'registry-mirror'?: string[];
  'registry-ca'?: string[];
}

/** Global options the image commands read; the CLI should declare them on its top-level yargs. */
export const ociGlobalOptions: Record<keyof OciGlobalArgs, Options> = {
  root: {
    type: 'string',
    describe: 'Quark state directory (default /var/lib/quark as root, else $XDG_DATA_HOME/quark)',
  },
  'insecure-registry': {
    type: 'string',
    array: true,
    describe: 'Registry HOST[:PORT] to reach over plain HTTP or without TLS verification',
  },
  'registry-mirror': {
    type: 'string',
    array: true,
    describe: 'Mirror URL for docker.io, or HOST=URL for another registry',
  },
  'registry-ca': { type: 'string', array: true, describe: 'PEM file of an extra CA to trust for registries' },
};

export function rootOf(argv: OciGlobalArgs): string {
  return argv.root ?? defaultRoot();
}

export function registryOptions(argv: OciGlobalArgs): RegistryOptions {
  return {
    insecureRegistries: argv['insecure-registry'] ?? [],
    mirrors: argv['registry-mirror'] ?? [],
    caFiles: argv['registry-ca'] ?? [],
  };
}

export interface CliIo {
  stdout: Output;
  stderr: Output;
}

function withGlobals<T>(y: Argv<T>): Argv<T> {
  return y.options(ociGlobalOptions) as unknown as Argv<T>;
}

function ago(iso: string | undefined): string {
  if (!iso) return 'N/A';
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(s)) return 'N/A';
  if (s < 60) return 'Less than a minute ago';
  const steps: [number, string][] = [
    [60, 'minute'],
    [3600, 'hour'],
    [86400, 'day'],
    [604800, 'week'],
    [2592000, 'month'],
    [31536000, 'year'],
  ];
  let unit = steps[0] as [number, string];
  for (const st of steps) if (s >= st[0]) unit = st;
  const v = Math.floor(s / unit[0]);
  return `${v} ${unit[1]}${v === 1 ? '' : 's'} ago`;
}

function table(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
          .join('')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export interface ImageSummary {
  name: string;
  repository: string;
  tag: string;
  id: string;
  digest: string;
  mediaType: string;
  created?: string;
  size: number;
  platform: string;
}

export async function listImageSummaries(root: string): Promise<ImageSummary[]> {
  const store = new ContentStore(root);
  const out: ImageSummary[] = [];
  for (const rec of await store.listImages()) {
    const img = await loadRecord(store, rec);
    const size = img.manifest.config.size + img.manifest.layers.reduce((a, l) => a + l.size, 0);
    const { repository, tag } = displayName(rec);
    const s: ImageSummary = {
      name: rec.name,
      repository,
      tag,
      id: rec.config,
      digest: rec.target.digest,
      mediaType: rec.target.mediaType,
      size,
      platform: formatPlatform({
        os: img.config.os,
        architecture: img.config.architecture,
        variant: img.config.variant,
      }),
    };
    if (img.config.created) s.created = img.config.created;
    out.push(s);
  }
  return out;
}

export function createOciCommands(io: CliIo = { stdout: process.stdout, stderr: process.stderr }): CommandModule[] {
  const { stdout, stderr } = io;

  const pullCmd: CommandModule<OciGlobalArgs, OciGlobalArgs & { image: string; platform?: string; quiet?: boolean }> = {
    command: 'pull <image>',
    describe: 'Pull an image from a registry',
    builder: (y) =>
      withGlobals(y)
        .positional('image', {
          type: 'string',
          demandOption: true,
          describe: 'Image reference, e.g. busybox or host:5000/app:1@sha256:…',
        })
        .option('platform', { type: 'string', describe: 'os/arch[/variant] to pull from a multi-platform image' })
        .option('quiet', { alias: 'q', type: 'boolean', describe: 'Print only the image name' }) as unknown as Argv<
        OciGlobalArgs & { image: string; platform?: string; quiet?: boolean }
      >,
    handler: async (argv) => {
      const progress = argv.quiet ? undefined : new PullProgress(stderr);
      const t0 = Date.now();
      const res = await pull(argv.image, {
        root: rootOf(argv),
        ...registryOptions(argv),
        ...(argv.platform ? { platform: argv.platform } : {}),
        onEvent: (e) => progress?.event(e),
      });
      progress?.finish();
      if (argv.quiet) stdout.write(`${res.name}\n`);
      else {
        stdout.write(`${res.name}: pulled in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
        stdout.write(`Digest: ${res.digest}\nImage ID: ${res.config}\n`);
      }
    },
  };

  const imagesCmd: CommandModule<
    OciGlobalArgs,
    OciGlobalArgs & { format?: string; quiet?: boolean; digests?: boolean }
  > = {
    command: ['images', 'image ls'],
    describe: 'List local images',
    builder: (y) =>
      withGlobals(y)
        .option('format', { type: 'string', choices: ['table', 'json'], default: 'table', describe: 'Output format' })
        .option('quiet', { alias: 'q', type: 'boolean', describe: 'Print image IDs only' })
        .option('digests', { type: 'boolean', describe: 'Show digests' }) as unknown as Argv<
        OciGlobalArgs & { format?: string; quiet?: boolean; digests?: boolean }
      >,
    handler: async (argv) => {
      const list = await listImageSummaries(rootOf(argv));
      if (argv.format === 'json') {
        stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      if (argv.quiet) {
        stdout.write([...new Set(list.map((i) => i.id.slice(7, 19)))].map((s) => `${s}\n`).join(''));
        return;
      }
      const head = ['REPOSITORY', 'TAG', ...(argv.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
      const rows = list.map((i) => [
        i.repository,
        i.tag,
        ...(argv.digests ? [i.digest] : []),
        i.id.slice(7, 19),
        ago(i.created),
        formatBytes(i.size),
      ]);
      stdout.write(table([head, ...rows]));
    },
  };

  const rmiCmd: CommandModule<OciGlobalArgs, OciGlobalArgs & { images: string[]; force?: boolean }> = {
    command: 'rmi <images..>',
    describe: 'Remove images and the content nothing else uses',
    builder: (y) =>
      withGlobals(y).positional('images', { type: 'string', array: true, demandOption: true }).option('force', {
        alias: 'f',
        type: 'boolean',
        describe: 'Remove even when a container rootfs uses it',
      }) as unknown as Argv<OciGlobalArgs & { images: string[]; force?: boolean }>,
    handler: async (argv) => {
      const res = await removeImages(rootOf(argv), argv.images, { force: argv.force === true });
      for (const n of res.untagged) stdout.write(`Untagged: ${n}\n`);
      for (const b of res.gc.blobs) stdout.write(`Deleted: ${b}\n`);
      if (res.gc.bytes > 0) stdout.write(`Reclaimed ${formatBytes(res.gc.bytes)}\n`);
    },
  };

  const inspectCmd: CommandModule<OciGlobalArgs, OciGlobalArgs & { image: string }> = {
    command: 'inspect <image>',
    describe: 'Show an image: names, digests, platform, config and layers (JSON)',
    builder: (y) =>
      withGlobals(y).positional('image', { type: 'string', demandOption: true }) as unknown as Argv<
        OciGlobalArgs & { image: string }
      >,
    handler: async (argv) => {
      const store = new ContentStore(rootOf(argv));
      const [rec] = await findImages(store, argv.image);
      if (!rec) throw new Error(`image "${argv.image}" is not in the local store`);
      const img = await loadRecord(store, rec);
      const names = (await store.listImages()).filter((r) => r.config === rec.config).map((r) => r.name);
      const out = {
        Id: rec.config,
        RepoTags: names.filter((n) => !n.includes('@')),
        RepoDigests: [...new Set(names.map((n) => `${repoName(parseReference(n))}@${rec.target.digest}`))],
        Digest: rec.target.digest,
        MediaType: rec.target.mediaType,
        Manifest: rec.manifest,
        Created: img.config.created,
        Os: img.config.os,
        Architecture: img.config.architecture,
        Variant: img.config.variant,
        Size: img.manifest.layers.reduce((a, l) => a + l.size, 0),
        Config: runtimeConfig(img.config),
        RootFS: img.config.rootfs,
        Layers: img.manifest.layers,
        Blobs: [...(await referencedBlobs(store, rec))].sort(),
      };
      stdout.write(JSON.stringify(out, null, 2) + '\n');
    },
  };

  const loadCmd: CommandModule<OciGlobalArgs, OciGlobalArgs & { input?: string; name?: string; platform?: string }> = {
    command: 'load',
    describe: 'Load images from an OCI archive or a docker-archive (tar)',
    builder: (y) =>
      withGlobals(y)
        .option('input', { alias: 'i', type: 'string', describe: 'Archive file (default: standard input)' })
        .option('name', { type: 'string', describe: 'Repository name for images the archive names by tag only' })
        .option('platform', {
          type: 'string',
          describe: 'os/arch[/variant] to pick from multi-platform images',
        }) as unknown as Argv<OciGlobalArgs & { input?: string; name?: string; platform?: string }>,
    handler: async (argv) => {
      const res = await loadArchive(argv.input ?? process.stdin, {
        root: rootOf(argv),
        ...(argv.name ? { name: argv.name } : {}),
        ...(argv.platform ? { platform: argv.platform } : {}),
        onWarning: (m) => stderr.write(`warning: ${m}\n`),
      });
      for (const r of res.images) stdout.write(`Loaded image: ${r.name} (${res.format})\n`);
      if (res.images.length === 0) throw new Error('the archive contained no named image');
    },
  };

  const saveCmd: CommandModule<OciGlobalArgs, OciGlobalArgs & { images: string[]; output?: string }> = {
    command: 'save <images..>',
    describe: 'Save images to an OCI archive (tar)',
    builder: (y) =>
      withGlobals(y).positional('images', { type: 'string', array: true, demandOption: true }).option('output', {
        alias: 'o',
        type: 'string',
        describe: 'Archive file (default: standard output)',
      }) as unknown as Argv<OciGlobalArgs & { images: string[]; output?: string }>,
    handler: async (argv) => {
      if (!argv.output && process.stdout.isTTY)
        throw new Error('refusing to write an archive to a terminal: use -o FILE or redirect stdout');
      const res = await saveArchive(argv.images, argv.output ?? process.stdout, { root: rootOf(argv) });
      if (argv.output) stderr.write(`Saved ${res.images.join(', ')} (${res.blobs} blobs) to ${argv.output}\n`);
    },
  };

  return [pullCmd, imagesCmd, rmiCmd, inspectCmd, loadCmd, saveCmd] as unknown as CommandModule[];
}

/** The commands writing to the process's stdout/stderr. */
export const ociCommands: CommandModule[] = createOciCommands();
