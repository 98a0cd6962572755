// Content digests (`sha256:<hex>`).
import { createHash, type Hash } from 'node:crypto';

export class DigestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DigestError';
  }
}

const SHA256 = /^sha256:[a-f0-9]{64}$/;
const SHA512 = /^sha512:[a-f0-9]{128}$/;

/** Checks a digest string and returns its algorithm and hex. */
export function parseDigest(d: string): { algorithm: 'sha256' | 'sha512'; hex: string } {
  if (SHA256.test(d)) return { algorithm: 'sha256', hex: d.slice(7) };
  if (SHA512.test(d)) return { algorithm: 'sha512', hex: d.slice(7) };
  throw new DigestError(`unsupported or malformed digest "${d}" (expected sha256:<64 hex> or sha512:<128 hex>)`);
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function hasherFor(d: string): Hash {
  return createHash(parseDigest(d).algorithm);
}

/** Throws a DigestError naming `what` when `data` does not hash to `expected`. */
export function verifyBytes(data: Buffer, expected: string, what: string): void {
  const h = hasherFor(expected).update(data).digest('hex');
  const actual = `${parseDigest(expected).algorithm}:${h}`;
  if (actual !== expected) throw new DigestError(`${what}: digest mismatch: expected ${expected}, got ${actual}`);
}
