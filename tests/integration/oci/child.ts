// Runs one @quark/oci operation in a separate process (for the tests of concurrent processes and of
// unprivileged unpacking). Usage: node --import tsx --conditions=quark-source child.ts '<json>'
// JSON: {"op":"pull","ref":…,"root":…} or {"op":"unpack","tar":…,"dest":…}. Prints one JSON line.
import { createReadStream } from 'node:fs';
import { pull, unpackLayer } from '@quark/oci';

interface Job {
  op: 'pull' | 'unpack';
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
