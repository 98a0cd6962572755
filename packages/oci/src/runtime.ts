// What `quark run IMAGE [CMD…]` needs: the image's runtime config, the
// process it implies (Docker/containerd semantics), and a prepared rootfs.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { ContentStore } from './store.js';
import { findImages, ImageNotFoundError, loadRecord } from './image.js';
import { pull, type PullOptions } from './pull.js';
import { chainIds, defaultSnapshotFormat, Snapshotter } from './snapshots.js';
import { native } from './sys.js';
import type { ImageConfig } from './types.js';
import type { SnapshotFormat } from './unpack.js';

const execFileP = promisify(execFile);

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ImageRuntimeConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
  stopSignal?: string;
  labels: Record<string, string>;
  exposedPorts: string[];
  volumes: string[];
}

export function runtimeConfig(image: ImageConfig): ImageRuntimeConfig {
  const c = image.config ?? {};
  const out: ImageRuntimeConfig = {
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    env: c.Env ?? [],
    workingDir: c.WorkingDir ?? '',
    user: c.User ?? '',
    labels: c.Labels ?? {},
    exposedPorts: Object.keys(c.ExposedPorts ?? {}),
    volumes: Object.keys(c.Volumes ?? {}),
  };
  if (c.StopSignal) out.stopSignal = c.StopSignal;
  return out;
}

export interface CommandOverrides {
  /** `--entrypoint`: a string is one program ('' clears the entrypoint); it also drops the image's Cmd. */
  entrypoint?: string | string[];
  /** `-e KEY=VALUE` (replaces the image's KEY) or `-e KEY` (copied from hostEnv when set there). */
  env?: string[];
  /** `-w DIR`. */
  workingDir?: string;
  /** `-u USER[:GROUP]`. */
  user?: string;
  /** Environment `-e KEY` reads from (default process.env). */
  hostEnv?: NodeJS.ProcessEnv;
}

export interface ResolvedCommand {
  args: string[];
  env: string[];
  cwd: string;
  /** The user string to resolve against the rootfs (see resolveUser); '' means root. */
  user: string;
}

export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}

function envKey(e: string): string {
  const i = e.indexOf('=');
  return i < 0 ? e : e.slice(0, i);
}

/** Sets KEY=VALUE in an env list, replacing an earlier KEY. */
function setEnv(env: string[], entry: string): void {
  const key = envKey(entry);
  const i = env.findIndex((e) => envKey(e) === key);
  if (i >= 0) env[i] = entry;
  else env.push(entry);
}

/**
 * Docker's rules: argv = Entrypoint + Cmd, where user arguments replace Cmd; `--entrypoint` replaces the
 * entrypoint and also clears the image's Cmd. Env: the image's, PATH defaulted, then overrides by key.
 * WorkingDir: override, else the image's, else '/'. User: override, else the image's.
 */
export function resolveCommand(
  config: ImageRuntimeConfig,
  userArgs: string[] = [],
  overrides: CommandOverrides = {},
): ResolvedCommand {
  let entrypoint = config.entrypoint;
  let cmd = userArgs.length > 0 ? userArgs : config.cmd;
  if (overrides.entrypoint !== undefined) {
    const ep = overrides.entrypoint;
    entrypoint = Array.isArray(ep) ? ep : ep === '' ? [] : [ep];
    cmd = userArgs;
  }
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new CommandError(
      'no command specified: the image has no Entrypoint or Cmd; give a command after the image name',
    );
  }
  const env: string[] = [];
  for (const e of config.env) setEnv(env, e);
  if (!env.some((e) => envKey(e) === 'PATH')) env.unshift(`PATH=${DEFAULT_PATH}`);
  const host = overrides.hostEnv ?? process.env;
  for (const e of overrides.env ?? []) {
    if (e.includes('=')) setEnv(env, e);
    else if (host[e] !== undefined) setEnv(env, `${e}=${host[e]}`);
  }
  let cwd = overrides.workingDir ?? (config.workingDir || '/');
  if (!cwd.startsWith('/')) {
    throw new CommandError(`working directory "${cwd}" must be an absolute path`);
  }
  cwd = cwd.replace(/\/+$/, '') || '/';
  return { args, env, cwd, user: overrides.user ?? config.user };
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

async function readLines(path: string): Promise<string[][]> {
  try {
    return (await readFile(path, 'utf8'))
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

/**
 * Resolves "user", "uid", "user:group", "uid:gid" against the rootfs's /etc/passwd and /etc/group, as runc/
 * containerd do: a name that is missing is an error; a numeric uid that is missing runs with gid 0; groups the
 * user is a member of become additional gids; HOME comes from passwd (default "/").
 */
export async function resolveUser(rootfs: string, user: string): Promise<ResolvedUser> {
  const passwd: PasswdEntry[] = (await readLines(join(rootfs, 'etc/passwd'))).map((f) => ({
    name: f[0] ?? '',
    uid: Number(f[2]),
    gid: Number(f[3]),
    home: f[5] ?? '/',
  }));
  const groups = (await readLines(join(rootfs, 'etc/group'))).map((f) => ({
    name: f[0] ?? '',
    gid: Number(f[2]),
    members: (f[3] ?? '').split(',').filter(Boolean),
  }));
  const [u = '', g] = user.split(':', 2);
  let entry: PasswdEntry | undefined;
  let uid: number;
  let gid: number;
  if (u === '') {
    entry = passwd.find((p) => p.uid === 0);
    uid = 0;
    gid = entry?.gid ?? 0;
  } else if (/^\d+$/.test(u)) {
    uid = Number(u);
    entry = passwd.find((p) => p.uid === uid);
    gid = entry?.gid ?? 0;
  } else {
    entry = passwd.find((p) => p.name === u);
    if (!entry) throw new CommandError(`unable to find user ${u}: no matching entries in the image's /etc/passwd`);
    uid = entry.uid;
    gid = entry.gid;
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const grp = groups.find((x) => x.name === g);
      if (!grp) throw new CommandError(`unable to find group ${g}: no matching entries in the image's /etc/group`);
      gid = grp.gid;
    }
  }
  const additionalGids =
    entry && g === undefined
      ? groups.filter((x) => x.members.includes(entry.name) && x.gid !== gid).map((x) => x.gid)
      : [];
  return { uid, gid, additionalGids, home: entry?.home || '/' };
}

/** The full process for an image: command, env with HOME, cwd, ids. */
export async function resolveProcess(
  rootfs: string,
  config: ImageRuntimeConfig,
  userArgs: string[] = [],
  overrides: CommandOverrides = {},
): Promise<ResolvedCommand & ResolvedUser> {
  const cmd = resolveCommand(config, userArgs, overrides);
  const user = await resolveUser(rootfs, cmd.user);
  if (!cmd.env.some((e) => envKey(e) === 'HOME')) cmd.env.push(`HOME=${user.home}`);
  return { ...cmd, ...user };
}

export interface PrepareOptions extends Omit<PullOptions, 'root'> {
  root: string;
  /** 'missing' (default) pulls when the image is not local; 'never' fails; 'always' pulls first. */
  pullPolicy?: 'missing' | 'never' | 'always';
  snapshotter?: SnapshotFormat;
  /** Directory name under <root>/oci/rootfs (default random). */
  id?: string;
}

export interface PreparedRootfs {
  rootfs: string;
  config: ImageRuntimeConfig;
  /** The image name and ID used. */
  image: { name: string; id: string };
  /** 'overlay' (a mount) or 'merged' (a private copy). */
  mode: SnapshotFormat;
  cleanup(): Promise<void>;
}

interface RootfsMeta {
  image: string;
  id: string;
  format: SnapshotFormat;
  chain: string[];
  created: string;
}

/**
 * Gives a writable root filesystem for a container of `refOrId`: an overlay mount of the image's snapshots
 * when available, else a copy. cleanup() unmounts and deletes it. The image is pulled when missing.
 */
export async function prepareRootfs(refOrId: string, opts: PrepareOptions): Promise<PreparedRootfs> {
  const store = new ContentStore(opts.root);
  await store.init();
  const policy = opts.pullPolicy ?? 'missing';
  let [record] = policy === 'always' ? [] : await findImages(store, refOrId);
  if (!record) {
    if (policy === 'never') throw new ImageNotFoundError(refOrId);
    const r = await pull(refOrId, { ...opts, root: opts.root });
    [record] = await findImages(store, r.name);
    if (!record) throw new ImageNotFoundError(refOrId);
  }
  const gc = await store.gcLock('shared');
  try {
    const img = await loadRecord(store, record);
    const format = opts.snapshotter ?? defaultSnapshotFormat();
    const snap = new Snapshotter(store, format);
    const diffIds = img.config.rootfs?.diff_ids ?? [];
    // Snapshots may be missing (other format, or collected): (re)create them from the blobs.
    const chain = diffIds.every((_, i) => snap.exists(chainIds(diffIds)[i] ?? ''))
      ? chainIds(diffIds)
      : await snap.ensure(img.manifest.layers, diffIds, { zstd: opts.zstd });
    const id = opts.id ?? randomBytes(8).toString('hex');
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) throw new Error(`invalid rootfs id "${id}"`);
    const dir = join(store.dir, 'rootfs', id);
    await mkdir(dir, { recursive: false });
    const meta: RootfsMeta = {
      image: record.name,
      id: record.config,
      format,
      chain,
      created: new Date().toISOString(),
    };
    await writeFile(join(dir, 'meta.json'), JSON.stringify(meta, null, 1) + '\n');
    const rootfs = join(dir, 'rootfs');
    try {
      if (format === 'overlay') {
        const n = native;
        if (!n) throw new Error('overlay rootfs needs the @quark/native addon');
        for (const d of ['upper', 'work', 'rootfs']) await mkdir(join(dir, d), { mode: 0o755 });
        let lowers = chain.map((c) => snap.fsPath(c)).reverse();
        if (lowers.length === 0) {
          await mkdir(join(dir, 'empty'));
          lowers = [join(dir, 'empty')];
        }
        mountOverlay(n, snap.dir, lowers, join(dir, 'upper'), join(dir, 'work'), rootfs, chain.length);
      } else {
        const top = chain[chain.length - 1];
        if (top === undefined) await mkdir(rootfs, { mode: 0o755 });
        else await execFileP('cp', ['-a', '--reflink=auto', snap.fsPath(top), rootfs]);
      }
    } catch (e) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw e;
    }
    let cleaned = false;
    return {
      rootfs,
      config: runtimeConfig(img.config),
      image: { name: record.name, id: record.config },
      mode: format,
      cleanup: async () => {
        if (cleaned) return;
        cleaned = true;
        await releaseRootfs(dir, format);
      },
    };
  } finally {
    await gc.release();
  }
}

/** The kernel takes at most one page of mount options. */
const MAX_MOUNT_DATA = 4000;

/**
 * Mounts overlayfs. Absolute paths when the options fit in a page; otherwise paths relative to the snapshot
 * directory (the kernel resolves them against the caller's cwd), which fits about twice as many layers. The
 * chdir/mount/chdir sequence is synchronous, so no other JavaScript runs while the cwd is changed.
 */
function mountOverlay(
  n: NonNullable<typeof native>,
  base: string,
  lowers: string[],
  upper: string,
  work: string,
  target: string,
  layers: number,
): void {
  const data = `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`;
  if (data.length <= MAX_MOUNT_DATA) {
    n.mount('overlay', target, 'overlay', 0, data);
    return;
  }
  const rel = (p: string): string => relative(base, p);
  const short = `lowerdir=${lowers.map(rel).join(':')},upperdir=${rel(upper)},workdir=${rel(work)}`;
  if (short.length > MAX_MOUNT_DATA) {
    throw new Error(`image has too many layers (${layers}) for one overlay mount: use QUARK_SNAPSHOTTER=merged`);
  }
  const cwd = process.cwd();
  process.chdir(base);
  try {
    n.mount('overlay', target, 'overlay', 0, short);
  } finally {
    process.chdir(cwd);
  }
}

async function releaseRootfs(dir: string, format: SnapshotFormat): Promise<void> {
  if (format === 'overlay' && native) {
    try {
      native.umount(join(dir, 'rootfs'), native.constants.MNT_DETACH);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'ENOENT') throw e;
    }
  }
  await rm(dir, { recursive: true, force: true });
}

/** Chain IDs kept alive by prepared root filesystems (for GC). */
export async function rootfsInUse(store: ContentStore): Promise<{ chains: Set<string>; images: Set<string> }> {
  const chains = new Set<string>();
  const images = new Set<string>();
  for (const id of await readdir(join(store.dir, 'rootfs')).catch(() => [] as string[])) {
    try {
      const m = JSON.parse(await readFile(join(store.dir, 'rootfs', id, 'meta.json'), 'utf8')) as RootfsMeta;
      for (const c of m.chain) chains.add(c);
      images.add(m.id);
    } catch {
      // being created
    }
  }
  return { chains, images };
}
