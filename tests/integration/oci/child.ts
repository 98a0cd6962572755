// Runs one @quark/oci operation in a separate process (for the tests of concurrent processes and of
// unprivileged unpacking). Usage: node --import tsx --conditions=quark-source child.ts '<json>'
// JSON: {"op":"pull"|"prepare","ref":…,"root":…} or {"op":"unpack","tar":…,"dest":…}. Prints one JSON line.
import { createReadStream } from 'node:fs';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { prepareRootfs, pull, unpackLayer } from '@quark/oci';

interface Job {
  op: 'pull' | 'unpack' | 'prepare';
  ref?: string;
  root?: string;
  tar?: string;
  dest?: string;
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
try {
  if (job.op === 'pull') {
    const r = await pull(job.ref ?? '', { root: job.root ?? '', backoffMs: 50 });
    console.log(JSON.stringify({ ok: true, name: r.name, config: r.config, uid: process.getuid?.() }));
  } else if (job.op === 'prepare') {
    const p = await prepareRootfs(job.ref ?? '', { root: job.root ?? '' });
    const st = statSync(join(p.rootfs, 'bin/busybox'));
    console.log(
      JSON.stringify({
        ok: true,
        mode: p.mode,
        size: st.size,
        fileMode: st.mode & 0o7777,
        owner: st.uid,
        uid: process.getuid?.(),
      }),
    );
    await p.cleanup();
  } else {
    const r = await unpackLayer(createReadStream(job.tar ?? ''), 'none', job.dest ?? '', { format: 'merged' });
    console.log(JSON.stringify({ ok: true, entries: r.entries, uid: process.getuid?.() }));
  }
} catch (e) {
  console.log(
    JSON.stringify({ ok: false, error: (e as Error).message, name: (e as Error).name, uid: process.getuid?.() }),
  );
  process.exitCode = 1;
}
