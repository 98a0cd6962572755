// `quark run IMAGE` end to end: an image from a real docker-registry whose
// rootfs holds a static program (show.c), run by the real CLI in a real
// sandbox (KVM): the image config (Entrypoint, Cmd, Env, WorkingDir, User)
// and docker's overrides reach the program, its exit status is quark's, and
// the prepared root filesystem is gone afterwards, also after a signal.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildBusybox,
  push,
  requireTools,
  startProxy,
  startRegistry,
  tempDir,
  type Registry,
  type TempDir,
} from '../oci/helpers.js';
import {
  buildShow,
  ENOSYS,
  mountsUnder,
  parseShow,
  preparedRootfs,
  quark,
  requireKvm,
  showLayer,
  type CliResult,
  type ShowOutput,
} from './helpers.js';

let dir: TempDir;
let reg: Registry;
let ref: string;
let root: string;
let showBinary: string;

/** The image's own PATH (buildBusybox sets it) and HOME of its user `app` (from its /etc/passwd). */
const IMAGE_PATH = 'PATH=/usr/sbin:/usr/bin:/sbin:/bin';

test.before(async () => {
  requireTools();
  requireKvm();
  dir = tempDir('cli-run');
  showBinary = buildShow(join(dir.path, 'show'));
  reg = await startRegistry(dir.path);
  const layout = await buildBusybox(dir.path, {
    layers: [showLayer(showBinary)],
    entrypoint: ['./show', 'from-entrypoint'],
    cmd: ['from-cmd'],
    env: ['GREETING=hello', 'EXIT=3'],
    workdir: '/app',
    user: 'app',
  });
  ref = `${reg.host}/show:1`;
  await push(layout, 'latest', ref, { format: 'oci' });
  root = join(dir.path, 'root');
  const pulled = await quark(['pull', '-q', ref, '--root', root]);
  if (pulled.status !== 0) throw new Error(`quark pull failed: ${pulled.stderr}`);
});

test.after.always(async () => {
  await reg?.stop();
  // A failed run may have left overlay mounts: detach them so the directory can go.
  if (dir) for (const m of mountsUnder(dir.path).reverse()) spawnSync('umount', ['-l', m]);
  dir?.cleanup();
});

/** Runs `quark run --root ROOT ARGS...` and checks that no prepared rootfs or mount is left. */
async function run(t: { deepEqual(a: unknown, b: unknown, m?: string): void }, args: string[], env = {}) {
  const r = await quark(['run', '--root', root, ...args], { env });
  t.deepEqual(preparedRootfs(root), [], 'the prepared rootfs is removed');
  t.deepEqual(mountsUnder(root), [], 'no mount is left under the root');
  return { r, show: parseShow(r.stdout) };
}

/**
 * The working directory the program ran in, from getcwd and from the path of a relative program
 * (/proc/self/exe names the file itself, as on Linux): whichever works must agree,
 * and at least one must.
 */
function checkCwd(
  t: { is(a: unknown, b: unknown, m?: string): void; true(a: boolean, m?: string): void },
  show: ShowOutput,
  cwd: string,
  exe: string,
): void {
  t.true(show.cwd !== null || show.exe !== '', 'the program can tell its working directory');
  if (show.cwd !== null) t.is(show.cwd, cwd, 'getcwd');
  else t.is(show.cwdErrno, ENOSYS, 'getcwd fails only because the guest kernel lacks it');
  if (show.exe !== '') t.is(show.exe, exe, 'a relative program was found in the working directory');
}

function ok(t: { is(a: unknown, b: unknown, m?: string): void }, r: CliResult, status: number): void {
  t.is(r.status, status, `exit status; stderr: ${r.stderr}`);
  t.is(r.stderr, '', 'quark prints nothing of its own when the image is local');
}

test.serial("the image's Entrypoint, Cmd, Env, WorkingDir and User; its exit status is quark's", async (t) => {
  const { r, show } = await run(t, [ref]);
  ok(t, r, 3);
  t.deepEqual(show.argv, ['./show', 'from-entrypoint', 'from-cmd']);
  t.deepEqual(show.env, [IMAGE_PATH, 'GREETING=hello', 'EXIT=3', 'HOME=/home/app']);
  checkCwd(t, show, '/app', '/app/show');
  t.is(show.uid, 1000);
  t.is(show.gid, 1000);
  t.deepEqual(show.rest, []);
});

test.serial("arguments replace the image's Cmd; -e, -w and -u override like docker run", async (t) => {
  const { r, show } = await run(
    t,
    ['-e', 'GREETING=bye', '-e', 'EXTRA=1', '-e', 'EXIT', '-w', '/app/', '-u', '65534', ref, 'x', '-y', '--z'],
    { EXIT: '42' },
  );
  ok(t, r, 42);
  t.deepEqual(show.argv, ['./show', 'from-entrypoint', 'x', '-y', '--z'], 'options after IMAGE are the program’s');
  t.deepEqual(show.env, [IMAGE_PATH, 'GREETING=bye', 'EXIT=42', 'EXTRA=1', 'HOME=/nonexistent']);
  checkCwd(t, show, '/app', '/app/show');
  t.is(show.uid, 65534);
  t.is(show.gid, 65534);
});

test.serial('--entrypoint replaces the Entrypoint and drops the Cmd; -w moves the working directory', async (t) => {
  const { r, show } = await run(t, ['--entrypoint', '../show', '-w', '/app/sub', '-u', '0:10', '-e', 'EXIT=0', ref]);
  ok(t, r, 0);
  t.deepEqual(show.argv, ['../show']);
  checkCwd(t, show, '/app/sub', '/app/show');
  t.is(show.uid, 0);
  t.is(show.gid, 10);
  t.true(show.env.includes('HOME=/root'));
  const withArgs = await run(t, ['--entrypoint', '/app/show', '-e', 'EXIT=5', ref, '--', 'a', 'b c']);
  ok(t, withArgs.r, 5);
  t.deepEqual(withArgs.show.argv, ['/app/show', 'a', 'b c']);
});

test.serial('an image ID runs like its name; --debug prints the sandbox, log and rootfs on stderr', async (t) => {
  const ins = await quark(['inspect', ref, '--root', root]);
  const id = (JSON.parse(ins.stdout) as { Id: string }).Id;
  const log = join(dir.path, 'debug.log');
  const { r, show } = await run(t, ['--debug', '--log', log, '--pull', 'never', id.slice(7, 19)]);
  t.is(r.status, 3, r.stderr);
  t.deepEqual(show.argv, ['./show', 'from-entrypoint', 'from-cmd']);
  t.regex(
    r.stderr,
    new RegExp(
      `^quark: sandbox [0-9a-f]{16}, log ${log}, image ${ref} \\(${id}\\), rootfs ${root}/oci/rootfs/[0-9a-f]{16}/rootfs \\((overlay|merged)\\)\\n$`,
    ),
  );
});

test.serial(
  'the copying snapshotter (what unprivileged hosts use) gives the same run and is removed too',
  async (t) => {
    const { r, show } = await run(t, ['--debug', '--log', join(dir.path, 'merged.log'), ref], {
      QUARK_SNAPSHOTTER: 'merged',
    });
    t.is(r.status, 3, r.stderr);
    t.regex(r.stderr, /, rootfs \S+ \(merged\)\n$/);
    t.deepEqual(show.argv, ['./show', 'from-entrypoint', 'from-cmd']);
    t.deepEqual(show.env, [IMAGE_PATH, 'GREETING=hello', 'EXIT=3', 'HOME=/home/app']);
  },
);

test.serial('a program that is not in the image: 127, and the rootfs is still removed', async (t) => {
  const { r } = await run(t, ['--entrypoint', '/no/such/program', ref]);
  t.is(r.status, 127, r.stderr);
});

test.serial('a user the image does not know: a clear error, 125, nothing left', async (t) => {
  const { r } = await run(t, ['-u', 'nobody-here', ref]);
  t.is(r.status, 125);
  t.is(r.stderr, "quark run: unable to find user nobody-here: no matching entries in the image's /etc/passwd\n");
});

test.serial('SIGTERM to quark reaches the program; the rootfs is removed after it exits', async (t) => {
  let during: { rootfs: string[]; mounts: string[] } | undefined;
  const r = await quark(['run', '--root', root, '-e', 'SLEEP=1', ref], {
    onSpawn: (child, out) => {
      const poll = setInterval(() => {
        if (!out.stdout().includes('ready\n')) return;
        clearInterval(poll);
        during = { rootfs: preparedRootfs(root), mounts: mountsUnder(root) };
        child.kill('SIGTERM');
      }, 20);
      child.on('exit', () => clearInterval(poll));
    },
  });
  t.is(r.status, 143, r.stderr);
  t.is(r.signal, null, 'quark exits with the status, not by the signal');
  t.regex(r.stdout, /ready\ngot SIGTERM\n$/);
  t.is(during?.rootfs.length, 1, 'a private rootfs existed while the program ran');
  t.true((during?.mounts.length ?? 0) <= 1);
  t.deepEqual(preparedRootfs(root), []);
  t.deepEqual(mountsUnder(root), []);
});

test.serial('a signal while the rootfs is being prepared calls the run off and removes the rootfs', async (t) => {
  // Hold the store's GC lock exclusively: quark, which has its signal handlers in place by then, waits for
  // it (shared) inside prepareRootfs; /proc/locks shows it blocked there.
  const holder = spawn('flock', ['--no-fork', '-x', join(root, 'oci', 'gc.lock'), 'sleep', '600'], { stdio: 'ignore' });
  const holderGone = new Promise((r) => holder.on('exit', r));
  try {
    const r = await quark(['run', '--root', root, ref], {
      onSpawn: (child) => {
        const poll = setInterval(() => {
          const blocked = readFileSync('/proc/locks', 'utf8')
            .split('\n')
            .some((l) => / -> FLOCK\s+ADVISORY\s+READ\s+(\d+) /.exec(l)?.[1] === String(child.pid));
          if (!blocked) return;
          clearInterval(poll);
          child.kill('SIGTERM');
          // Give the handler a moment to run, then let quark take the lock and prepare the rootfs.
          setTimeout(() => holder.kill('SIGKILL'), 200);
        }, 20);
        child.on('exit', () => clearInterval(poll));
      },
    });
    t.is(r.status, 143, r.stderr);
    t.is(r.signal, null);
    t.is(r.stdout, '', 'the program never ran');
    t.deepEqual(preparedRootfs(root), []);
    t.deepEqual(mountsUnder(root), []);
  } finally {
    holder.kill('SIGKILL');
    await holderGone;
  }
});

test.serial('busybox from the image runs in the sandbox', async (t) => {
  const { r } = await run(t, ['--entrypoint', '/bin/busybox', ref, 'echo', 'hello', 'from', 'busybox']);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, 'hello from busybox\n');
});

test.serial('each run gets a private, writable copy of the image', async (t) => {
  const busybox = ['-u', '0', '--entrypoint', '/bin/busybox', ref];
  const write = await run(t, [...busybox, 'sh', '-c', 'echo written > /app/new && cat /app/new']);
  t.is(write.r.status, 0, write.r.stderr);
  t.is(write.r.stdout, 'written\n');
  const next = await run(t, [...busybox, 'ls', '/app']);
  t.is(next.r.status, 0, next.r.stderr);
  t.is(next.r.stdout, 'show\nsub\n', "the first run's file is gone with its rootfs");
  // The image's user (app, uid 1000) may not write to root's /app.
  const denied = await run(t, ['--entrypoint', '/bin/busybox', ref, 'sh', '-c', 'echo x > /app/new']);
  t.is(denied.r.status, 1);
  t.regex(denied.r.stderr, /can't create \/app\/new: Permission denied/);
});

test.serial('run pulls a missing image (--pull missing, the default) and with --pull always', async (t) => {
  const fresh = join(dir.path, 'fresh-root');
  const first = await quark(['run', '--root', fresh, '-e', 'EXIT=0', ref]);
  t.is(first.status, 0, first.stderr);
  t.regex(first.stderr, new RegExp(`^quark: image "${ref}" is not present locally; pulling it\\n`));
  t.regex(first.stderr, /layer [a-f0-9]{12}: downloaded/);
  t.deepEqual(parseShow(first.stdout).argv, ['./show', 'from-entrypoint', 'from-cmd']);
  const images = await quark(['images', '-q', '--root', fresh]);
  t.regex(images.stdout, /^[0-9a-f]{12}\n$/, 'the pulled image stays in the store');

  const again = await quark(['run', '--root', fresh, '--pull', 'always', '-q', '-e', 'EXIT=0', ref]);
  t.is(again.status, 0, again.stderr);
  t.is(again.stderr, '', '-q: no progress');
  t.deepEqual(preparedRootfs(fresh), []);
  t.deepEqual(mountsUnder(fresh), []);

  // A pull that fails: a clear error, 125, nothing prepared.
  const unreachable = await quark(['run', '--root', fresh, '-q', '127.0.0.1:1/none:1']);
  t.is(unreachable.status, 125);
  t.regex(unreachable.stderr, /^quark run: manifest 127\.0\.0\.1:1\/none:1: .*failed after \d+ attempts/m);
  t.deepEqual(preparedRootfs(fresh), []);
});

test.serial('a signal while run pulls ends quark with nothing prepared; the next run resumes the pull', async (t) => {
  // A proxy in front of the registry holds every blob download until released.
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const proxy = await startProxy(reg.host, async (req) => {
    if ((req.url ?? '').includes('/blobs/')) await gate;
    return false;
  });
  try {
    const viaProxy = `${proxy.host}/show:1`;
    const fresh = join(dir.path, 'interrupted-root');
    const r = await quark(['run', '--root', fresh, viaProxy], {
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (!proxy.seen.some((s) => s.path.includes('/blobs/'))) return;
          clearInterval(poll);
          child.kill('SIGTERM');
        }, 20);
        child.on('exit', () => clearInterval(poll));
      },
    });
    t.is(r.signal, 'SIGTERM', `quark ended by the signal while pulling; stderr: ${r.stderr}`);
    t.is(r.stdout, '', 'the program never ran');
    t.deepEqual(preparedRootfs(fresh), []);
    t.deepEqual(mountsUnder(fresh), []);
    release();
    const again = await quark(['run', '--root', fresh, '-q', viaProxy]);
    t.is(again.status, 3, again.stderr);
    t.deepEqual(parseShow(again.stdout).argv, ['./show', 'from-entrypoint', 'from-cmd']);
    t.deepEqual(preparedRootfs(fresh), []);
  } finally {
    release();
    await proxy.close();
  }
});

test.serial('--rootfs DIR still runs a program from a directory, with or without --', async (t) => {
  const rootfs = join(dir.path, 'plain-rootfs');
  showLayer(showBinary)(rootfs);
  const a = await quark(['run', '--rootfs', rootfs, '-e', 'EXIT=7', '-w', '/app', './show', '-x']);
  t.is(a.status, 7, a.stderr);
  const show = parseShow(a.stdout);
  t.deepEqual(show.argv, ['./show', '-x']);
  t.deepEqual(show.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'EXIT=7']);
  checkCwd(t, show, '/app', '/app/show');
  const b = await quark(['run', '--rootfs', rootfs, '--', '/app/show', 'y']);
  t.is(b.status, 0, b.stderr);
  t.deepEqual(parseShow(b.stdout).argv, ['/app/show', 'y']);
  const none = await quark(['run', '--rootfs', rootfs]);
  t.is(none.status, 125);
  t.regex(none.stderr, /^quark run: no command given/);
});
