// `quark run`: run a program in a new sandbox, from an OCI image (its root
// filesystem prepared by @quark/oci, its config applied like `docker run`)
// or from a root filesystem directory (--rootfs).
import type { Argv, CommandModule, Options } from 'yargs';
// @quark/oci is loaded only to run an image (see loadOci): `quark run --rootfs` starts faster without it.
import type { OciGlobalArgs, PreparedRootfs } from '@quark/oci';
import { logPathFor } from '../logs.js';
import {
  EXIT_SANDBOX_FAILED,
  findSandboxBinary,
  FORWARDED_SIGNALS,
  newSandboxId,
  runSandbox,
  withDefaultPath,
  type NetMode,
  type SandboxOptions,
} from '../sandbox.js';

export type PullPolicy = 'missing' | 'never' | 'always';

export interface RunArgs extends OciGlobalArgs {
  /** Image reference or ID (absent with --rootfs). */
  image?: string;
  rootfs?: string;
  /** When to pull the image (default missing). */
  pull?: PullPolicy;
  platform?: string;
  quiet?: boolean;
  entrypoint?: string;
  'read-only'?: boolean;
  cpus?: number;
  memory?: string;
  env?: (string | number)[];
  /** Working directory (default: the image's WorkingDir, else /). */
  workdir?: string;
  user?: string;
  hostname?: string;
  'pids-limit'?: number;
  net?: NetMode;
  debug?: boolean;
  log?: string;
  id?: string;
  command?: (string | number)[];
  /** Arguments after `--` (yargs' populate-- setting). */
  '--'?: (string | number)[];
}

/** The options of `quark run` (the global image options come from @quark/oci). */
export const runOptions = {
  rootfs: {
    type: 'string',
    describe: 'Run from this root filesystem directory instead of an image',
  },
  pull: {
    choices: ['missing', 'never', 'always'],
    describe: 'Pull the image: when it is not local (default missing), never, or always before running',
  },
  platform: { type: 'string', describe: 'os/arch[/variant] to pull from a multi-platform image' },
  quiet: { alias: 'q', type: 'boolean', describe: 'No pull progress output' },
  entrypoint: {
    type: 'string',
    describe: "Program that replaces the image's Entrypoint (and drops its Cmd); '' clears the Entrypoint",
  },
  env: {
    alias: 'e',
    type: 'string',
    array: true,
    describe: "Environment variable KEY=VALUE, or KEY to copy the caller's value (repeatable)",
  },
  workdir: {
    alias: ['w', 'cwd'],
    type: 'string',
    describe: "Working directory inside the sandbox (default: the image's WorkingDir, else /)",
  },
  user: {
    alias: 'u',
    type: 'string',
    describe: "USER[:GROUP] or UID[:GID] of the program (default: the image's User, else root)",
  },
  'read-only': { type: 'boolean', default: false, describe: 'Serve the root filesystem read-only' },
  cpus: { type: 'number', default: 1, describe: 'Virtual CPUs' },
  memory: { type: 'string', default: '256M', describe: 'Guest memory (e.g. 128M, 1G)' },
  hostname: { type: 'string', describe: 'Hostname inside the sandbox (default: the sandbox id)' },
  'pids-limit': { type: 'number', default: 1024, describe: 'Most tasks inside the sandbox' },
  net: {
    type: 'string',
    default: 'none',
    describe:
      "Network: none (a fresh namespace with loopback only), host (the host's namespace, including services on its loopback) or ns:PATH (an existing namespace, e.g. ns:/run/netns/NAME)",
    coerce: (v: string): NetMode => {
      if (v === 'none' || v === 'host' || /^ns:\/./.test(v)) return v as NetMode;
      throw new Error(`invalid --net ${JSON.stringify(v)}: use none, host or ns:/path/to/netns`);
    },
  },
  debug: {
    type: 'boolean',
    default: false,
    describe: 'Verbose guest-kernel log; print the sandbox id, log and rootfs',
  },
  log: { type: 'string', describe: 'Log file (default: $QUARK_LOG, or one file per sandbox)' },
  id: { type: 'string', describe: 'Sandbox id (default: random)' },
} satisfies Record<string, Options>;

/** Names (with dashes, aliases included) of the options in `options` that take a value. */
export function valueOptions(options: Record<string, Options>): Set<string> {
  const out = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type === 'boolean' || o.type === 'count') continue;
    const aliases = o.alias === undefined ? [] : Array.isArray(o.alias) ? o.alias : [o.alias];
    for (const n of [name, ...aliases]) out.add(n.length === 1 ? `-${n}` : `--${n}`);
  }
  return out;
}

/**
 * True for `quark run --rootfs …` (the command first, as usual): such a run needs no image code, so the CLI
 * can start without loading @quark/oci.
 */
export function isRootfsRun(args: string[]): boolean {
  if (args[0] !== 'run') return false;
  const takesValue = valueOptions(runOptions);
  for (let i = 1; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--rootfs' || a.startsWith('--rootfs=')) return true;
    if (a === '--' || !a.startsWith('-')) return false;
    if (!a.includes('=') && takesValue.has(a)) i++;
  }
  return false;
}

export function normalizeRunArgs(args: string[], takesValue: Set<string>): string[] {
  /** Index of the first positional at or after `from`, or -1 (also at `--`). */
  const firstPositional = (from: number): { at: number; rootfs: boolean } => {
    let rootfs = false;
    for (let i = from; i < args.length; i++) {
      const a = args[i] ?? '';
      if (a === '--') return { at: -1, rootfs };
      if (a.startsWith('-') && a !== '-') {
        const name = a.includes('=') ? a.slice(0, a.indexOf('=')) : a;
        if (name === '--rootfs') rootfs = true;
        if (!a.includes('=') && takesValue.has(name)) i++;
        continue;
      }
      return { at: i, rootfs };
    }
    return { at: -1, rootfs };
  };
  const cmd = firstPositional(0).at;
  if (cmd < 0 || args[cmd] !== 'run') return args;
  const { at, rootfs } = firstPositional(cmd + 1);
  if (at < 0) return args;
  if (rootfs) return [...args.slice(0, at), '--', ...args.slice(at)];
  if (at + 1 >= args.length || args[at + 1] === '--') return args;
  return [...args.slice(0, at + 1), '--', ...args.slice(at + 1)];
}

/**
 * The `run` command; `globalOptions` are the image store and registry options (@quark/oci's
 * ociGlobalOptions), or none when the CLI runs only `run --rootfs`.
 */
export function createRunCommand(globalOptions: Record<string, Options>): CommandModule<object, RunArgs> {
  return {
    command: 'run [image] [command..]',
    describe: 'Run a program in a new sandbox (a KVM VM with the Quark guest kernel), from an image or a directory',
    builder: (y: Argv) =>
      y
        .usage(
          '$0 run [options] IMAGE [COMMAND [ARG...]]\n$0 run [options] --rootfs DIR COMMAND [ARG...]\n\n' +
            'Runs a program in a new sandbox. With IMAGE (a reference or an image ID) the image is pulled when ' +
            "missing, a private writable root filesystem is prepared from it, and the image's Entrypoint, Cmd, " +
            'Env, WorkingDir and User apply as with `docker run`; the root filesystem is removed when the sandbox ' +
            "ends. Options go before IMAGE: everything after it is the program's command line.",
        )
        .options(globalOptions)
        .options(runOptions)
        .positional('image', { type: 'string', describe: 'Image reference (e.g. busybox, host:5000/app:1) or ID' })
        .positional('command', {
          type: 'string',
          array: true,
          describe: "Program and arguments (default: the image's Entrypoint + Cmd; arguments replace Cmd)",
        })
        .example('$0 run busybox echo hello', 'Pull busybox if it is not local and print hello from a sandbox')
        .example('$0 run --pull never -e GREETING=hi -w /tmp -u 1000 app:1', "Run app:1's own command, as uid 1000")
        .example('$0 run --entrypoint /bin/sh busybox -c "ls -l /"', "Replace the image's entrypoint")
        .example('$0 run --insecure-registry reg.lan:5000 reg.lan:5000/app', 'An image from a plain-HTTP registry')
        .example('$0 run --rootfs ./rootfs -- /bin/echo hello', 'A program from a directory')
        .example('$0 run --rootfs ./rootfs --cpus 2 --memory 512M -e FOO=1 /app', 'Two vCPUs, 512 MiB, one variable')
        .epilog(
          "Exit status: the program's; 128+N if killed by signal N; 125 if quark or the sandbox failed (image not " +
            'found, pull error, guest kernel panic, ...); 126/127 if the program cannot be executed / was not found. ' +
            "Diagnostics go to the log file, never to the program's output. Signals (INT, TERM, HUP, QUIT) are " +
            "forwarded to the program. PATH defaults to Docker's.",
        ) as unknown as Argv<RunArgs>,
    handler: async (argv) => {
      process.exitCode = await run(argv);
    },
  };
}

/** The image code, loaded when an image is run. */
const loadOci = () => import('@quark/oci');
type Oci = Awaited<ReturnType<typeof loadOci>>;

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 };

/** Where `run` writes its own messages (progress, errors). */
export interface RunIo {
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

/** `-e KEY` copies the caller's value when it has one (docker's rule); `-e KEY=VALUE` is kept. */
function hostEnv(env: string[], host: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  for (const e of env) {
    if (e.includes('=')) out.push(e);
    else if (host[e] !== undefined) out.push(`${e}=${host[e]}`);
  }
  return out;
}

/** Runs the command; returns the exit status (errors are printed, with status 125). */
export async function run(argv: RunArgs, io: RunIo = { stderr: process.stderr }): Promise<number> {
  const say = (s: string) => io.stderr.write(`${s}\n`);
  try {
    const command = [...(argv.command ?? []), ...(argv['--'] ?? [])].map(String);
    if (argv.rootfs !== undefined) {
      // The first positional was parsed as the image: with --rootfs it is the program.
      if (argv.image !== undefined) command.unshift(argv.image);
      for (const o of ['pull', 'platform', 'entrypoint'] as const) {
        if (argv[o] !== undefined) throw new Error(`--${o} applies to images, not to --rootfs`);
      }
      return await runRootfs(argv, argv.rootfs, command, say);
    }
    if (argv.image === undefined || argv.image === '') {
      throw new Error('give an IMAGE to run, or --rootfs DIR and a command; see `quark run --help`');
    }
    return await runImage(argv, argv.image, command, io, say);
  } catch (e) {
    say(`quark run: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env['QUARK_DEBUG'] && e instanceof Error && e.stack) say(e.stack);
    return EXIT_SANDBOX_FAILED;
  }
}

function sandboxBase(argv: RunArgs, say: (s: string) => void, extra = ''): SandboxOptions {
  const id = argv.id ?? newSandboxId();
  const log = argv.log ?? logPathFor(id);
  if (argv.debug) say(`quark: sandbox ${id}, log ${log}${extra}`);
  return {
    readOnly: argv['read-only'] ?? false,
    cpus: argv.cpus ?? 1,
    memory: argv.memory ?? '256M',
    hostname: argv.hostname,
    pidsLimit: argv['pids-limit'] ?? 1024,
    net: argv.net ?? 'none',
    debug: argv.debug ?? false,
    log,
    id,
  };
}

async function runRootfs(argv: RunArgs, rootfs: string, command: string[], say: (s: string) => void) {
  if (command.length === 0) {
    throw new Error('no command given: quark run --rootfs DIR [options] COMMAND [ARG...]');
  }
  const binary = findSandboxBinary();
  const result = await runSandbox(
    {
      ...sandboxBase(argv, say),
      rootfs,
      env: withDefaultPath(hostEnv((argv.env ?? []).map(String))),
      cwd: argv.workdir ?? '/',
      user: argv.user,
      argv: command,
    },
    binary,
  );
  return result.status;
}

/**
 * Makes sure the image is in the local store according to the pull policy and returns the name (or ID) to
 * prepare. A pull is not interruptible cleanly, but it needs no cleanup either: the store keeps partial
 * downloads for the next pull and never shows half a blob, so a signal may end the process here.
 */
async function ensureImage(oci: Oci, argv: RunArgs, image: string, root: string, io: RunIo): Promise<string> {
  const policy = argv.pull ?? 'missing';
  if (policy !== 'always') {
    const store = new oci.ContentStore(root);
    await store.init();
    const [found] = await oci.findImages(store, image);
    if (found) {
      if (argv.platform === undefined) return image;
      const want = oci.parsePlatform(argv.platform);
      const { config } = await oci.loadImage(store, image);
      const have = { os: config.os, architecture: config.architecture, variant: config.variant };
      if (oci.platformMatches(want, have)) return image;
      if (policy === 'never') {
        throw new Error(
          `image "${image}" is local for ${oci.formatPlatform(have)}, not ${argv.platform}, and --pull never ` +
            'forbids pulling',
        );
      }
    } else if (policy === 'never') {
      throw new Error(
        `image "${image}" is not in the local store and --pull never forbids pulling it: ` +
          `pull it first (quark pull ${image}) or use --pull missing`,
      );
    }
    if (!argv.quiet) {
      const what = found ? ` for ${argv.platform}` : '';
      io.stderr.write(`quark: image "${image}" is not present locally${what}; pulling it\n`);
    }
  }
  if (/^(sha256:)?[a-f0-9]{64}$/.test(image)) {
    throw new Error(
      `"${image}" is an image ID, which cannot be pulled: pull the image by name (or run a local one with --pull missing)`,
    );
  }
  const progress = argv.quiet ? undefined : new oci.PullProgress(io.stderr);
  const res = await oci.pull(image, {
    root,
    ...oci.registryOptions(argv),
    ...(argv.platform !== undefined ? { platform: argv.platform } : {}),
    onEvent: (e) => progress?.event(e),
  });
  progress?.finish();
  return res.name;
}

async function runImage(argv: RunArgs, image: string, command: string[], io: RunIo, say: (s: string) => void) {
  // Fail before pulling when no sandbox can be started.
  const binary = findSandboxBinary();
  const oci = await loadOci();
  const root = argv.root ?? oci.defaultRoot();
  const name = await ensureImage(oci, argv, image, root, io);

  // From here on a private rootfs may exist: signals are held until it is prepared (then the run is called
  // off and the rootfs removed), forwarded to the program by runSandbox while the sandbox runs, and ignored
  // while the rootfs is removed, so that it is always removed.
  let phase: 'preparing' | 'running' | 'cleaning' = 'preparing';
  let pending: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals) => {
    if (phase === 'preparing') pending ??= s;
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);
  try {
    const prepared: PreparedRootfs = await oci.prepareRootfs(name, {
      root,
      ...oci.registryOptions(argv),
      pullPolicy: 'never',
    });
    try {
      const proc = await oci.resolveProcess(prepared.rootfs, prepared.config, command, {
        ...(argv.entrypoint !== undefined ? { entrypoint: argv.entrypoint } : {}),
        env: (argv.env ?? []).map(String),
        ...(argv.workdir !== undefined ? { workingDir: argv.workdir } : {}),
        ...(argv.user !== undefined ? { user: argv.user } : {}),
      });
      const opts = sandboxBase(
        argv,
        say,
        `, image ${prepared.image.name} (${prepared.image.id}), rootfs ${prepared.rootfs} (${prepared.mode})`,
      );
      if (pending) return 128 + (SIGNAL_NUMBERS[pending] ?? 1);
      phase = 'running';
      const result = await runSandbox(
        {
          ...opts,
          rootfs: prepared.rootfs,
          env: proc.env,
          cwd: proc.cwd,
          // quark-sandbox takes UID[:GID]; supplementary groups are not passed yet.
          user: `${proc.uid}:${proc.gid}`,
          argv: proc.args,
        },
        binary,
      );
      return result.status;
    } finally {
      phase = 'cleaning';
      try {
        await prepared.cleanup();
      } catch (e) {
        // The program's status stays the exit status; the leak is reported.
        say(
          `quark run: could not remove the root filesystem ${prepared.rootfs}: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    }
  } finally {
    for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
  }
}
