// Layer decompression: gzip through zlib, zstd through Debian's `zstd` binary
// (streaming; measured faster than the pure-JS fzstd decoder, see README.md)
// with fzstd as the fallback when the binary is missing, and plain tar.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Transform, type Readable, PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import type { Compression } from './types.js';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Guesses the compression from the first bytes of a blob. */
export function sniffCompression(head: Buffer): Compression {
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  if (head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

export type ZstdImpl = 'binary' | 'fzstd';

const ZSTD_BINARIES = ['/usr/bin/zstd', '/bin/zstd'];
export function zstdBinary(): string | undefined {
  return ZSTD_BINARIES.find((p) => existsSync(p));
}

/** Below this compressed size fzstd wins (no process start-up); above it the binary is ~7x faster (README). */
export const ZSTD_BINARY_MIN_BYTES = 1 << 20;

/**
 * The zstd decoder used by default: the binary for layers of 1 MiB and more when it is installed, fzstd
 * otherwise. QUARK_ZSTD=fzstd|binary forces one.
 */
export function defaultZstdImpl(compressedSize?: number): ZstdImpl {
  const forced = process.env.QUARK_ZSTD;
  if (forced === 'fzstd') return 'fzstd';
  if (forced === 'binary' && zstdBinary()) return 'binary';
  if (compressedSize !== undefined && compressedSize < ZSTD_BINARY_MIN_BYTES) return 'fzstd';
  return zstdBinary() ? 'binary' : 'fzstd';
}

function fzstdTransform(): Transform {
  const holder: { dec?: Decompress } = {};
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        holder.dec?.push(chunk);
        cb();
      } catch (e) {
        cb(new Error(`zstd: ${(e as Error).message}`));
      }
    },
    flush(cb) {
      try {
        holder.dec?.push(new Uint8Array(0), true);
        cb();
      } catch (e) {
        cb(new Error(`zstd: ${(e as Error).message}`));
      }
    },
  });
  holder.dec = new Decompress((data) => {
    // fzstd reuses its window buffer: copy out.
    if (data.length > 0) t.push(Buffer.from(data));
  });
  return t;
}

/** A duplex running `zstd -dc`; stderr is kept for the error message. */
function zstdBinaryStream(bin: string): { input: PassThrough; output: Readable; done: Promise<void> } {
  const child = spawn(bin, ['-dcq', '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const input = new PassThrough();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, sig) => {
      if (code === 0) resolve();
      else reject(new Error(`zstd: ${stderr.trim() || `exited with ${code ?? sig}`}`));
    });
  });
  const feed = pipeline(input, child.stdin).catch((e: NodeJS.ErrnoException) => {
    // EPIPE when zstd exits early on bad data: the exit status carries the real error.
    if (e.code !== 'EPIPE') throw e;
  });
  return { input, output: child.stdout, done: Promise.all([feed, exited]).then(() => undefined) };
}

/**
 * Returns the decompressed byte stream of `src` as an async iterable, and a promise that settles when the
 * decompressor has finished (rejecting on corrupt data).
 */
export function decompressStream(
  src: Readable,
  compression: Compression,
  zstdImpl?: ZstdImpl,
  compressedSize?: number,
): { stream: AsyncIterable<Buffer>; done: Promise<void> } {
  const zstd = zstdImpl ?? defaultZstdImpl(compressedSize);
  if (compression === 'none') return { stream: src, done: Promise.resolve() };
  if (compression === 'gzip') {
    const gunzip = createGunzip({ chunkSize: 128 * 1024 });
    const done = pipeline(src, gunzip).catch((e: Error) => {
      throw new Error(`gzip: ${e.message}`);
    });
    done.catch(() => undefined);
    return { stream: labelled(gunzip, 'gzip'), done };
  }
  if (zstd === 'binary') {
    const bin = zstdBinary();
    if (!bin) throw new Error('zstd binary not found: install Debian package zstd');
    const z = zstdBinaryStream(bin);
    const fed = pipeline(src, z.input);
    const done = Promise.all([fed, z.done]).then(() => undefined);
    done.catch(() => undefined);
    return { stream: labelled(z.output, 'zstd'), done };
  }
  const t = fzstdTransform();
  const done = pipeline(src, t);
  done.catch(() => undefined);
  return { stream: labelled(t, 'zstd'), done };
}

/** Prefixes errors of a decompressor's output with what failed ("gzip: incorrect data check"). */
async function* labelled(stream: AsyncIterable<Buffer>, label: string): AsyncGenerator<Buffer> {
  try {
    yield* stream;
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(`${label}:`) ? msg : `${label}: corrupt layer data: ${msg}`);
  }
}
