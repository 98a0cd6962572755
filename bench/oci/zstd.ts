// Measures the two zstd decoders @quark/oci can use on layer-like data:
// Debian's `zstd -dc` (a child process, streamed) and fzstd (pure JS).
// Usage: npx tsx bench/oci/zstd.ts [--quick]   (prints JSON lines)
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { decompressStream, type ZstdImpl } from '../../packages/oci/src/decompress.js';

const quick = process.argv.includes('--quick');

/** Layer-like input: the busybox binary and text, repeated to the target size. */
function corpus(bytes: number): Buffer {
  const parts: Buffer[] = [];
  const bb = readFileSync('/bin/busybox');
  const text = Buffer.from(readFileSync('/usr/share/common-licenses/GPL-3', 'utf8'));
  let n = 0;
  while (n < bytes) {
    parts.push(bb, text);
    n += bb.length + text.length;
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

async function decode(blob: Buffer, impl: ZstdImpl): Promise<number> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < blob.length; i += 1 << 16) chunks.push(blob.subarray(i, i + (1 << 16)));
  const { stream, done } = decompressStream(Readable.from(chunks), 'zstd', impl);
  let n = 0;
  for await (const c of stream) n += c.length;
  await done;
  return n;
}

async function best(blob: Buffer, impl: ZstdImpl, runs: number): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await decode(blob, impl);
    min = Math.min(min, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return min;
}

const size = quick ? 16 << 20 : 96 << 20;
const raw = corpus(size);
const blob = execFileSync('zstd', ['-q', '-c', '-3'], { input: raw, maxBuffer: 1 << 30 });
const runs = quick ? 2 : 4;
const bin = await best(blob, 'binary', runs);
const js = await best(blob, 'fzstd', runs);
const mbps = (ms: number): number => Math.round((size / (1 << 20) / (ms / 1000)) * 10) / 10;
console.log(
  JSON.stringify({
    name: 'zstd_decode_binary_MiBps',
    value: mbps(bin),
    unit: 'MiB/s',
    baseline: mbps(js),
    baseline_name: 'fzstd',
    ratio: Math.round((mbps(bin) / mbps(js)) * 100) / 100,
  }),
);
const small = execFileSync('zstd', ['-q', '-c'], { input: raw.subarray(0, 64 << 10) });
const smallBin = await best(small, 'binary', 5);
const smallJs = await best(small, 'fzstd', 5);
console.log(
  JSON.stringify({
    name: 'zstd_decode_64KiB_binary_ms',
    value: Math.round(smallBin * 100) / 100,
    unit: 'ms',
    baseline: Math.round(smallJs * 100) / 100,
    baseline_name: 'fzstd',
    ratio: Math.round((smallBin / smallJs) * 100) / 100,
  }),
);
