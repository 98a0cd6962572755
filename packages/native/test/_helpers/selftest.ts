// Builds (if needed) and loads crates/napi-selftest, the test-only addon that
// exercises every feature of crates/napi. It is kept out of the product addon;
// cargo makes the build a no-op when `npm run build` already built it.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

export interface ProbeStats {
  created: number;
  finalized: number;
}

export interface Probe {
  label(): string;
  readonly calls: number;
}

export interface ProbeClass {
  new (label: string): Probe;
  stats(): ProbeStats;
  readonly prototype: Probe;
}

export interface SharedRegion {
  /** A new external ArrayBuffer over the region (no copy). */
  arrayBuffer(): ArrayBuffer;
  /** A Rust thread sleeps `delayMs`, then atomically stores `value` at byte `offset`. */
  writeLater(delayMs: number, offset: number, value: number): void;
  /** A Rust thread fills the region with `byte`; resolves with the region's length. */
  fill(byte: number): Promise<number>;
}

export interface SharedRegionClass {
  new (length: number): SharedRegion;
  stats(): { mapped: number; unmapped: number };
}

export interface CheckedArgs {
  name: string;
  count: number;
  flag: boolean;
  length: number;
  sum: number;
  optional: number | null;
}

export interface Selftest {
  checkArgs(name: string, count: number, flag: boolean, data: Uint8Array, optional?: number | null): CheckedArgs;
  strings(list: string[]): string[];
  bigAdd(a: bigint, b: bigint): bigint;
  echoBytes(bytes: Uint8Array): Buffer;
  callTwice(callback: (x: number) => number, x: number): number;
  throwOs(errno: number, path?: string): never;
  panicNow(message: string): never;
  Probe: ProbeClass;
  labelOf(probe: Probe): string;
  resolveAfter(ms: number, value: string): Promise<string>;
  rejectAfter(ms: number, errno: number): Promise<void>;
  panicInThread(message: string): Promise<void>;
  dropPromise(): Promise<void>;
  settleWithObject(): Promise<{ thread: string }>;
  SharedRegion: SharedRegionClass;
  sumInScopes(n: number): number;
  callFromThread(callback: (i: number) => number, n: number): Promise<number[]>;
  answer: number;
  count(): number;
}

function targetDir(): string {
  const meta = execFileSync('cargo', ['metadata', '--offline', '--format-version', '1', '--no-deps'], {
    cwd: repoRoot,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return (JSON.parse(meta) as { target_directory: string }).target_directory;
}

/** Builds the selftest addon with cargo (release, like scripts/build.mjs) and loads it. */
export function loadSelftest(): Selftest {
  execFileSync('cargo', ['build', '--release', '--offline', '--quiet', '-p', 'napi-selftest'], {
    cwd: repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const module = { exports: {} };
  process.dlopen(module, join(targetDir(), 'release', 'libnapi_selftest.so'));
  return module.exports as Selftest;
}
