// The TypeScript face of the addon (crates/native). Hand-written: there is no
// napi-derive here to generate it. test/exports.test.ts reads this file with
// the TypeScript compiler and checks that the loaded addon has exactly these
// exports with these shapes, so the two cannot drift apart silently.

/** How KVM is provided on this host (see shared/probes/PVM.md §1). */
export type KvmFlavour = 'vmx' | 'svm' | 'pvm' | 'unknown' | 'absent';

export interface KvmFacts {
  /** `/dev/kvm` exists. */
  present: boolean;
  path: '/dev/kvm';
  /** `/dev/kvm` opened read-write and answered `KVM_GET_API_VERSION`. */
  accessible: boolean;
  /**
   * `vmx`/`svm`: hardware virtualization (kvm_intel/kvm_amd, or the CPU flag when KVM is built in);
   * `pvm`: kvm_pvm without kvm_intel/kvm_amd (compat mode: guest supervisor code is emulated);
   * `unknown`: /dev/kvm exists but nothing tells which; `absent`: no /dev/kvm.
   */
  flavour: KvmFlavour;
  /** `KVM_GET_API_VERSION` (12 on every Linux since 2.6.22), `null` when not accessible. */
  apiVersion: number | null;
  /** One human-readable line: what was found and, when something is missing, what to do. */
  detail: string;
}

export interface CgroupFacts {
  /** `hybrid`: cgroup v1 controllers plus a cgroup2 mount (systemd's "hybrid" layout). */
  version: 1 | 2 | 'hybrid' | 'none';
  /** Root of the hierarchy (`/sys/fs/cgroup`); empty when `version` is `none`. */
  mountpoint: string;
}

export interface HostFacts {
  kvm: KvmFacts;
  cgroup: CgroupFacts;
  /** The kernel can mount overlayfs (listed in /proc/filesystems, or the module is available). */
  overlayfs: boolean;
  /** Effective uid 0. */
  root: boolean;
  /** Kernel release (`uname -r`). */
  kernel: string;
}

/** Linux constants for the calls below. */
export interface NativeConstants {
  readonly MS_RDONLY: number;
  readonly MS_NOSUID: number;
  readonly MS_NODEV: number;
  readonly MS_NOEXEC: number;
  readonly MS_REMOUNT: number;
  readonly MS_BIND: number;
  readonly MS_MOVE: number;
  readonly MS_REC: number;
  readonly MS_PRIVATE: number;
  readonly MS_SLAVE: number;
  readonly MS_SHARED: number;
  readonly MNT_FORCE: number;
  readonly MNT_DETACH: number;
  readonly S_IFMT: number;
  readonly S_IFIFO: number;
  readonly S_IFCHR: number;
  readonly S_IFBLK: number;
  readonly S_IFREG: number;
  readonly S_IFSOCK: number;
  readonly XATTR_CREATE: number;
  readonly XATTR_REPLACE: number;
}

export type LockOp = 'shared' | 'exclusive' | 'unlock';

/**
 * An OS error thrown (or rejected) by the addon, shaped like Node's own `fs` errors:
 * `ENOENT: no such file or directory, mknod '/x'`.
 */
export interface NativeSystemError extends Error {
  /** `'ENOENT'`, `'EEXIST'`, ... */
  code: string;
  /** Negative, like Node: `-2` for ENOENT. */
  errno: number;
  /** The failing system call: `'mknod'`, `'lsetxattr'`, `'flock'`, `'mount'`, `'umount2'`, ... */
  syscall: string;
  /** The path the call was about, when there is one. */
  path?: string;
}

/** Options of {@link NativeAddon.createRing}. */
export interface RingOptions {
  /** Slots in each direction: a power of two from 2 to 2^20. */
  slots: number;
  /** Largest message in bytes: 1 to 65532. */
  slotSize: number;
}

/** Options of {@link NativeAddon.createStream}. */
export interface StreamOptions {
  /** Bytes buffered in each direction: a power of two from 64 to 2^29. */
  capacity: number;
}

/**
 * What both kinds of shared-memory channel offer. A channel is duplex: two single-producer single-consumer
 * rings in one sealed memfd (crates/shmq), one per direction. Nothing blocks the JS thread: `push`/`pop`/`write`/
 * `read` return at once, `wait`/`waitWritable` return promises settled from a Rust thread that sleeps on an
 * eventfd (no CPU while idle). Errors carry a `code`: `ERR_SHMQ_CLOSED` (this side was closed, or the peer
 * closed its end), `ERR_SHMQ_PEER_GONE` (the peer process died without closing: its socket hung up),
 * `ERR_SHMQ_CORRUPT` (the shared memory holds something impossible).
 */
export interface ShmChannel {
  /**
   * Creator only: the handover descriptor (a Unix socket carrying the memfd and eventfds). Pass it to the peer
   * process, e.g. as an entry of a child's `stdio`, then close your copy with `fs.closeSync` so the peer's death
   * can be noticed. `null` on the attaching side (the ring owns the descriptor it was given).
   */
  readonly fd: number | null;
  /** Resolves when something can be read (or the peer ended its direction); rejects with `ERR_SHMQ_PEER_GONE`. */
  wait(): Promise<void>;
  /** Resolves when there is room to write (or the peer stopped reading: the next write throws). */
  waitWritable(): Promise<void>;
  /** The peer ended its direction with `end()` and everything it sent was read. */
  ended(): boolean;
  /** Ends this side's direction: the peer reads what is buffered, then `ended()` is true there. */
  end(): void;
  /** Ends both directions, rejects pending waits with `ERR_SHMQ_CLOSED` and unmaps the memory. */
  close(): void;
}

/** A message channel ({@link NativeAddon.createRing}): whole messages of up to `slotSize` bytes, in order. */
export interface ShmRing extends ShmChannel {
  readonly kind: 'messages';
  readonly slots: number;
  readonly slotSize: number;
  /** Appends one message; `false` when the ring is full (wait with `waitWritable`). RangeError if too long. */
  push(data: Uint8Array): boolean;
  /** The oldest message (a copy), or `null` when none is there. */
  pop(): Buffer | null;
}

/** A byte-stream channel ({@link NativeAddon.createStream}). */
export interface ShmStream extends ShmChannel {
  readonly kind: 'stream';
  readonly capacity: number;
  /** Copies as much of `data` as fits; returns the bytes taken (0 when full). */
  write(data: Uint8Array): number;
  /** Up to `max` (default 65536) buffered bytes, or `null` when none are there. */
  read(max?: number): Buffer | null;
}

/**
 * Everything the addon exports. Argument mistakes throw Node-style `TypeError`/`RangeError`s
 * (`code: 'ERR_INVALID_ARG_TYPE' | 'ERR_OUT_OF_RANGE' | 'ERR_INVALID_ARG_VALUE'`); failed system calls
 * throw a {@link NativeSystemError}.
 */
export interface NativeAddon {
  /** KVM, cgroup, overlayfs, root and kernel facts of this host. */
  hostFacts(): HostFacts;
  /** mknod(2). `mode` includes the file type (`S_IFCHR`, `S_IFBLK`, `S_IFIFO`, ...); `dev` comes from `makedev`. */
  mknod(path: string, mode: number, dev: number): void;
  /** The `dev_t` of a device number pair, as glibc's `makedev` (what `fs.Stats.rdev` holds). */
  makedev(major: number, minor: number): number;
  /** lsetxattr(2): sets an extended attribute without following a final symlink. `flags`: `XATTR_CREATE`/`XATTR_REPLACE`. */
  lsetxattr(path: string, name: string, value: Uint8Array, flags?: number): void;
  /** lgetxattr(2): the attribute's value, or `null` when it does not exist (ENODATA). */
  lgetxattr(path: string, name: string): Buffer | null;
  /** llistxattr(2): the names of the attributes (only those the caller may see). */
  llistxattr(path: string): string[];
  /**
   * flock(2) on an open file descriptor. Returns `true` once the lock is taken (or released), `false` when
   * `nonBlocking` and another open file holds a conflicting lock. Blocking mode blocks the JS thread: prefer
   * `flockAsync`.
   */
  flock(fd: number, op: LockOp, nonBlocking: boolean): boolean;
  /**
   * A blocking flock(2) taken on a Rust thread; resolves when the lock is held (the pending promise keeps the
   * event loop alive). Keep `fd` open until the promise settles.
   */
  flockAsync(fd: number, op: 'shared' | 'exclusive'): Promise<void>;
  /** mount(2). `null` source/fstype/data pass NULL (e.g. for `MS_BIND` or propagation changes). */
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  /** umount2(2); `flags` e.g. `MNT_DETACH`. */
  umount(target: string, flags: number): void;
  /** A new message channel in shared memory; hand `ring.fd` to the peer, which calls `attachRing`. */
  createRing(options: RingOptions): ShmRing;
  /** The peer's side of a message channel, from the handover descriptor (the ring takes it over and closes it). */
  attachRing(fd: number): ShmRing;
  /** A new byte-stream channel in shared memory; hand `stream.fd` to the peer, which calls `attachStream`. */
  createStream(options: StreamOptions): ShmStream;
  /** The peer's side of a byte-stream channel, from the handover descriptor (taken over and closed). */
  attachStream(fd: number): ShmStream;
  readonly constants: NativeConstants;
}
