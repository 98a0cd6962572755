// Platform selection from an index / manifest list.
import type { Descriptor, Platform } from './types.js';

const ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

export function hostPlatform(): Platform {
  const architecture = ARCH[process.arch] ?? process.arch;
  const p: Platform = { os: 'linux', architecture };
  if (architecture === 'arm64') p.variant = 'v8';
  return p;
}

/** Parses "os/arch[/variant]" (e.g. linux/arm64/v8). */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new Error(`invalid platform "${s}": expected os/arch[/variant], e.g. linux/amd64`);
  }
  const p: Platform = { os: parts[0] ?? '', architecture: normaliseArch(parts[1] ?? '') };
  if (parts[2]) p.variant = parts[2];
  return p;
}

function normaliseArch(a: string): string {
  if (a === 'x86_64' || a === 'x86-64') return 'amd64';
  if (a === 'aarch64') return 'arm64';
  return a;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** True when an image built for `have` runs on `want` (arm64's variant v8 is the default). */
export function platformMatches(want: Platform, have: Platform): boolean {
  if (have.os !== want.os || normaliseArch(have.architecture) !== want.architecture) return false;
  if (!want.variant) return true;
  const hv = have.variant ?? (want.architecture === 'arm64' ? 'v8' : undefined);
  return hv === want.variant || (hv === undefined && want.architecture !== 'arm');
}

/** Picks the manifest for `want` from an index; a clear error lists what the index offers. */
export function selectManifest(manifests: Descriptor[], want: Platform, what: string): Descriptor {
  const candidates = manifests.filter((m) => m.platform && platformMatches(want, m.platform));
  // Prefer an exact variant match over a variant-less entry.
  const exact = candidates.find((m) => (m.platform?.variant ?? '') === (want.variant ?? ''));
  const pick = exact ?? candidates[0];
  if (pick) return pick;
  const offered = manifests.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ');
  throw new Error(`${what}: no image for platform ${formatPlatform(want)} (the index offers: ${offered || 'nothing'})`);
}
