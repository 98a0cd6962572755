// shmq rings between two host processes pinned to different CPUs vs a pipe and
// a Unix stream socket (issue 5): message throughput, one-way and round-trip
// latency with spinning and with sleeping receivers, byte-stream MB/s, and the
// poll budget against the eventfd wake-up cost. The measuring is done by the
// Rust binary crates/shmq/src/bin/shmq-bench.rs (JSON lines on stdout, baselines
// measured in the same run); this entry point builds and runs it.
// Usage: npx tsx bench/shmq/shmq.bench.ts [--quick]
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.includes('--quick') ? ['--quick'] : [];
const r = spawnSync(
  'cargo',
  ['run', '--offline', '--quiet', '--release', '-p', 'shmq', '--bin', 'shmq-bench', '--', ...args],
  {
    cwd: repo,
    stdio: ['ignore', 'inherit', 'inherit'],
  },
);
if (r.error) throw r.error;
process.exit(r.status ?? 1);
