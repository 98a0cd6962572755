// @quark/oci: OCI images for Quark. See README.md for the design.
export * from './reference.js';
export * from './types.js';
export * from './digest.js';
export { defaultCredentials, parseWwwAuthenticate, type Credentials, type CredentialLookup } from './auth.js';
export { RegistryClient, RegistryError, type RegistryOptions } from './registry.js';
export { ContentStore, type ImageRecord, type IngestProgress } from './store.js';
export {
  TarReader,
  TarFormatError,
  parsePax,
  tarHeader,
  tarPadding,
  tarTrailer,
  buildTar,
  type TarWriteEntry,
  type TarHeader,
  type TarEntryType,
} from './tar.js';
export { decompressStream, sniffCompression, defaultZstdImpl, type ZstdImpl } from './decompress.js';
export {
  unpackLayer,
  cleanEntryPath,
  UnpackError,
  type UnpackOptions,
  type UnpackResult,
  type SnapshotFormat,
} from './unpack.js';
export { Snapshotter, chainIds, overlayAvailable, defaultSnapshotFormat } from './snapshots.js';
export { hostPlatform, parsePlatform, formatPlatform, platformMatches, selectManifest } from './platform.js';
export { pull, type PullOptions, type PullEvent, type PullResult } from './pull.js';
export { findImages, loadImage, ImageNotFoundError, type LocalImage } from './image.js';
export {
  runtimeConfig,
  resolveCommand,
  resolveUser,
  resolveProcess,
  prepareRootfs,
  CommandError,
  DEFAULT_PATH,
  type ImageRuntimeConfig,
  type CommandOverrides,
  type ResolvedCommand,
  type ResolvedUser,
  type PrepareOptions,
  type PreparedRootfs,
} from './runtime.js';
export { collectGarbage, removeImages, type GcResult, type RemoveResult } from './gc.js';
export { native as nativeAddon } from './sys.js';
export { loadArchive, saveArchive, type LoadOptions, type LoadResult, type SaveOptions } from './archive.js';
export {
  createOciCommands,
  ociCommands,
  ociGlobalOptions,
  defaultRoot,
  registryOptions,
  listImageSummaries,
  PullProgress,
  type OciGlobalArgs,
  type CliIo,
  type ImageSummary,
} from './cli/index.js';
