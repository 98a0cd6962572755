// Loader of Quark's Node-API addon (crates/native, built by `npm run build` into
// packages/native/quark-native.<platform>.node) and its typed API.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from './types.js';

export type * from './types.js';

/** The addon's file name for this platform, as `napi build --platform` names it. */
export const ADDON_FILE = `quark-native.${process.platform}-${process.arch}${process.platform === 'linux' ? '-gnu' : ''}.node`;

/** packages/native: the parent of src/ (running from source) and of dist/ (built). */
const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));

/** Where the addon is expected. */
export const ADDON_PATH = join(packageDir, ADDON_FILE);

/** Thrown when the addon is missing or cannot be loaded. */
export class AddonLoadError extends Error {
  readonly code = 'ERR_QUARK_NATIVE_LOAD';
  constructor(
    message: string,
    readonly path: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'AddonLoadError';
  }
}

/** Loads the addon at `path` (default {@link ADDON_PATH}), explaining what to do when that fails. */
export function loadAddon(path: string = ADDON_PATH): NativeAddon {
  if (!existsSync(path)) {
    throw new AddonLoadError(
      `@quark/native: the native addon ${path} does not exist. Build it with \`npm run build\` ` +
        '(from the repository root; it needs cargo) and try again.',
      path,
    );
  }
  const require = createRequire(import.meta.url);
  try {
    return require(path) as NativeAddon;
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new AddonLoadError(
      `@quark/native: cannot load the native addon ${path}: ${reason}. Rebuild it with \`npm run build\`.`,
      path,
      { cause: e },
    );
  }
}

/** The loaded addon. */
export const native: NativeAddon = loadAddon();

export const hostFacts: NativeAddon['hostFacts'] = native.hostFacts;
export const mknod: NativeAddon['mknod'] = native.mknod;
export const makedev: NativeAddon['makedev'] = native.makedev;
export const lsetxattr: NativeAddon['lsetxattr'] = native.lsetxattr;
export const lgetxattr: NativeAddon['lgetxattr'] = native.lgetxattr;
export const llistxattr: NativeAddon['llistxattr'] = native.llistxattr;
export const flock: NativeAddon['flock'] = native.flock;
export const flockAsync: NativeAddon['flockAsync'] = native.flockAsync;
export const mount: NativeAddon['mount'] = native.mount;
export const umount: NativeAddon['umount'] = native.umount;
export const constants: NativeAddon['constants'] = native.constants;
export const createRing: NativeAddon['createRing'] = native.createRing;
export const attachRing: NativeAddon['attachRing'] = native.attachRing;
export const createStream: NativeAddon['createStream'] = native.createStream;
export const attachStream: NativeAddon['attachStream'] = native.attachStream;
