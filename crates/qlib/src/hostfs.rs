//! hostfs: the message protocol between the guest kernel's VFS and the VMM's
//! confined file service (`qvisor::hostfs`).
//!
//! The container root directory (and, later, OCI bind mounts) lives on the
//! host. The guest never names host paths or host descriptors: it names
//! **host handles**, opaque `u64`s that index a per-sandbox table owned by the
//! VMM (`generation << 32 | index`, never 0, so a closed and reused slot
//! refuses stale handles). Paths are always relative to a directory handle
//! (like the `*at` system calls) and are resolved by the host kernel beneath
//! that directory, which itself lies beneath the root.
//!
//! Every request is one fixed 64-byte [`Request`]; every answer is one fixed
//! 32-byte [`Response`]. The protocol does not care how messages travel (the
//! synchronous VMM-call page today, shmq rings with host I/O threads later):
//! a transport copies the request bytes out of guest memory once, calls the
//! service and carries the response back.
//!
//! Everything larger than a response lives in guest memory and is named by
//! guest-physical ranges: path strings and names as `(gpa, len)` (no NUL),
//! file data as lists of [`GuestIovec`]s (the host runs `preadv`/`pwritev`
//! straight on the guest frames), and outputs (`struct stat`, [`Statx`],
//! [`Statfs`], `linux_dirent64` records, link targets, xattr values) as
//! `(gpa)` or `(gpa, len)` buffers the host writes directly. The host checks
//! every range before it performs any part of the operation, so a bad range
//! fails with EFAULT and nothing is read, written, created or changed.
//!
//! Conventions:
//! * all integers little-endian (x86-64); [`Request::to_bytes`] /
//!   [`Request::from_bytes`] encode field by field (no unsafe code);
//! * `Response::ret >= 0` is a result, `-4095 <= ret < 0` is `-errno`
//!   ([`crate::linux::Errno`], Linux numbers);
//! * arguments an operation does not use must be zero, and so must unknown
//!   flag bits (EINVAL otherwise), so they can gain meaning later;
//! * a *name* is one path component: 1..=255 bytes, no `/`, no NUL, not `.`
//!   or `..` ([`check_name`]); where an operation accepts "a name or the
//!   handle itself", a name of length 0 means the handle itself;
//! * a *path* is 0..=4095 bytes without NUL, resolved by the host with
//!   `openat2` ([`resolve`]): never above the directory handle, never
//!   through `/proc` magic links.
//!
//! The layout of every message is tabulated in docs/hostfs.md.

use crate::hcall::GuestIovec;
use crate::linux::Errno;

/// Protocol version (a transport exchanges it once when it attaches).
pub const VERSION: u32 = 1;

/// Bytes of a [`Request`].
pub const REQUEST_SIZE: usize = 64;
/// Bytes of a [`Response`].
pub const RESPONSE_SIZE: usize = 32;
/// Longest path (Linux's PATH_MAX without the NUL).
pub const MAX_PATH: usize = 4095;
/// Longest name (one component).
pub const NAME_MAX: usize = 255;
/// Most [`GuestIovec`]s one read or write may name (Linux's `UIO_MAXIOV`).
pub const MAX_IOVECS: usize = 1024;
/// Longest extended-attribute name.
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended-attribute value.
pub const XATTR_SIZE_MAX: usize = 65536;
/// Largest extended-attribute name list.
pub const XATTR_LIST_MAX: usize = 65536;
/// Bytes of a `struct stat` output.
pub const STAT_SIZE: u64 = 144;
/// Bytes of a [`Statx`] output.
pub const STATX_SIZE: u64 = 256;
/// Bytes of a [`Statfs`] output.
pub const STATFS_SIZE: u64 = 120;
/// `Read`/`Write` offset meaning "at the handle's file position, advancing
/// it" (for `O_APPEND` handles: at the end of the file).
pub const OFFSET_CURRENT: u64 = u64::MAX;
/// `Chown` uid/gid meaning "leave unchanged".
pub const ID_KEEP: u64 = u32::MAX as u64;
/// `st_dev` of the root's filesystem as the guest sees it. Other host
/// filesystems beneath the root (bind mounts) get 1, 2, ... in the order the
/// service first meets them, so `(st_dev, st_ino)` stays unique without
/// revealing host device numbers.
pub const ROOT_DEV: u64 = 0;

/// Operations.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A new `O_PATH` handle to the root directory.
    Root = 1,
    /// Look up a path (one component or several) beneath a directory.
    Walk = 2,
    /// Open (and maybe create) a file beneath a directory.
    Open = 3,
    /// Release a handle.
    Close = 4,
    /// `fstat` a handle.
    Stat = 5,
    /// `statx` a handle.
    Statx = 6,
    /// `getdents64` on a directory opened for reading.
    Getdents = 7,
    /// `readlinkat` of a symlink handle or a name in a directory.
    Readlink = 8,
    /// `preadv` into guest frames.
    Read = 9,
    /// `pwritev` from guest frames.
    Write = 10,
    /// `fsync`/`fdatasync`.
    Sync = 11,
    /// `ftruncate`.
    Truncate = 12,
    /// `fallocate`.
    Allocate = 13,
    /// `lseek` (`SEEK_SET/CUR/END/DATA/HOLE`).
    Seek = 14,
    /// `mkdirat`.
    Mkdir = 15,
    /// `mknodat` of FIFOs, sockets and regular files (never devices).
    Mknod = 16,
    /// `unlinkat` (with `AT_REMOVEDIR` for directories).
    Unlink = 17,
    /// `renameat2` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    Rename = 18,
    /// `linkat` without following (both ends beneath the root).
    Link = 19,
    /// `symlinkat`.
    Symlink = 20,
    /// `fchmod` / `fchmodat(AT_SYMLINK_NOFOLLOW)`.
    Chmod = 21,
    /// `fchown` / `fchownat(AT_SYMLINK_NOFOLLOW)` (lchown semantics).
    Chown = 22,
    /// `utimensat` of a handle or (without following) a name.
    Utimens = 23,
    /// `fstatfs`.
    Statfs = 24,
    /// `lgetxattr` of a name in a directory or of a handle (`user.*` and
    /// `security.capability` only).
    GetXattr = 25,
    /// `lsetxattr` (`user.*` and `security.capability` only).
    SetXattr = 26,
    /// `llistxattr`, filtered to the names the guest may see.
    ListXattr = 27,
    /// `lremovexattr` (`user.*` and `security.capability` only).
    RemoveXattr = 28,
}

impl Op {
    /// Every operation, in number order.
    pub const ALL: [Op; 28] = [
        Op::Root,
        Op::Walk,
        Op::Open,
        Op::Close,
        Op::Stat,
        Op::Statx,
        Op::Getdents,
        Op::Readlink,
        Op::Read,
        Op::Write,
        Op::Sync,
        Op::Truncate,
        Op::Allocate,
        Op::Seek,
        Op::Mkdir,
        Op::Mknod,
        Op::Unlink,
        Op::Rename,
        Op::Link,
        Op::Symlink,
        Op::Chmod,
        Op::Chown,
        Op::Utimens,
        Op::Statfs,
        Op::GetXattr,
        Op::SetXattr,
        Op::ListXattr,
        Op::RemoveXattr,
    ];

    /// Decodes an operation number.
    pub const fn from_raw(v: u32) -> Option<Op> {
        if v >= 1 && v as usize <= Op::ALL.len() {
            Some(Op::ALL[v as usize - 1])
        } else {
            None
        }
    }

    /// True for operations that change the filesystem (refused with EROFS on
    /// a read-only mount).
    pub const fn mutates(self) -> bool {
        matches!(
            self,
            Op::Write
                | Op::Truncate
                | Op::Allocate
                | Op::Mkdir
                | Op::Mknod
                | Op::Unlink
                | Op::Rename
                | Op::Link
                | Op::Symlink
                | Op::Chmod
                | Op::Chown
                | Op::Utimens
                | Op::SetXattr
                | Op::RemoveXattr
        )
    }
}

/// Bits of [`Request::flags`] shared by several operations (bits 30 and 31;
/// the lower bits are operation-specific).
pub mod req {
    /// Write a `struct stat` (144 bytes) of the object at the operation's
    /// `stat_gpa` argument (`Root`, `Walk`, `Open`, `Mkdir`, `Mknod`,
    /// `Symlink`).
    pub const STAT: u32 = 1 << 31;
    /// Return a new `O_PATH` handle to the object in `Response::handle`
    /// (`Walk`, `Mkdir`, `Mknod`, `Symlink`; `Root` and `Open` always do).
    pub const HANDLE: u32 = 1 << 30;
}

/// How `Walk` and `Open` resolve their path (always with
/// `RESOLVE_NO_MAGICLINKS`; never above the directory handle).
pub mod resolve {
    /// `RESOLVE_IN_ROOT`: the directory handle acts as the root: `..` stops
    /// there and absolute symlinks resolve from there. Without it,
    /// `RESOLVE_BENEATH`: `..` above the directory or an absolute symlink
    /// fails with EXDEV.
    pub const IN_ROOT: u32 = 1 << 0;
    /// `RESOLVE_NO_SYMLINKS`: any symlink on the way fails with ELOOP (the
    /// guest resolves symlinks itself and walks again component by
    /// component).
    pub const NO_SYMLINKS: u32 = 1 << 1;
    /// (`Walk` only) do not follow a symlink in the final component: the
    /// handle names the link itself. `Open` uses `O_NOFOLLOW` instead.
    pub const NOFOLLOW: u32 = 1 << 2;
    /// All resolve bits.
    pub const ALL: u32 = IN_ROOT | NO_SYMLINKS | NOFOLLOW;
}

/// `open` flags the service accepts (Linux values). `O_NONBLOCK`,
/// `O_NOCTTY`, `O_CLOEXEC` and `O_LARGEFILE` are accepted and ignored (the
/// host always uses `O_NONBLOCK | O_NOCTTY | O_CLOEXEC`); `O_TMPFILE`,
/// `O_DIRECT`, `O_NOATIME` and unknown bits are refused with EINVAL.
pub mod open {
    pub const O_RDONLY: u32 = 0;
    pub const O_WRONLY: u32 = 1;
    pub const O_RDWR: u32 = 2;
    pub const O_ACCMODE: u32 = 3;
    pub const O_CREAT: u32 = 0o100;
    pub const O_EXCL: u32 = 0o200;
    pub const O_NOCTTY: u32 = 0o400;
    pub const O_TRUNC: u32 = 0o1000;
    pub const O_APPEND: u32 = 0o2000;
    pub const O_NONBLOCK: u32 = 0o4000;
    pub const O_DSYNC: u32 = 0o10000;
    pub const O_LARGEFILE: u32 = 0o100000;
    pub const O_DIRECTORY: u32 = 0o200000;
    pub const O_NOFOLLOW: u32 = 0o400000;
    pub const O_CLOEXEC: u32 = 0o2000000;
    pub const O_SYNC: u32 = 0o4010000;
    pub const O_PATH: u32 = 0o10000000;
    /// Every accepted bit.
    pub const ALLOWED: u32 = O_ACCMODE
        | O_CREAT
        | O_EXCL
        | O_NOCTTY
        | O_TRUNC
        | O_APPEND
        | O_NONBLOCK
        | O_DSYNC
        | O_LARGEFILE
        | O_DIRECTORY
        | O_NOFOLLOW
        | O_CLOEXEC
        | O_SYNC
        | O_PATH;
}

/// `Unlink` flags.
pub mod unlink {
    /// Remove a directory (`rmdir`).
    pub const AT_REMOVEDIR: u32 = 0x200;
}

/// `Rename` flags (`renameat2`). `RENAME_WHITEOUT` is refused.
pub mod rename {
    pub const RENAME_NOREPLACE: u32 = 1;
    pub const RENAME_EXCHANGE: u32 = 2;
}

/// `Sync` flags.
pub mod sync {
    /// `fdatasync` instead of `fsync`.
    pub const DATA: u32 = 1;
}

/// `Seek` whence values.
pub mod seek {
    pub const SEEK_SET: u64 = 0;
    pub const SEEK_CUR: u64 = 1;
    pub const SEEK_END: u64 = 2;
    pub const SEEK_DATA: u64 = 3;
    pub const SEEK_HOLE: u64 = 4;
}

/// `Allocate` mode bits (`fallocate`).
pub mod falloc {
    pub const KEEP_SIZE: u64 = 0x01;
    pub const PUNCH_HOLE: u64 = 0x02;
    pub const COLLAPSE_RANGE: u64 = 0x08;
    pub const ZERO_RANGE: u64 = 0x10;
    pub const INSERT_RANGE: u64 = 0x20;
    pub const UNSHARE_RANGE: u64 = 0x40;
    /// Every accepted bit (others: EOPNOTSUPP).
    pub const ALLOWED: u64 = KEEP_SIZE | PUNCH_HOLE | COLLAPSE_RANGE | ZERO_RANGE | INSERT_RANGE | UNSHARE_RANGE;
}

/// `SetXattr` flags.
pub mod xattr {
    pub const XATTR_CREATE: u32 = 1;
    pub const XATTR_REPLACE: u32 = 2;
    /// The one `security.` attribute the guest may use.
    pub const SECURITY_CAPABILITY: &[u8] = b"security.capability";
    /// The namespace the guest may use freely.
    pub const USER_PREFIX: &[u8] = b"user.";
}

/// Special `tv_nsec` values of `Utimens`.
pub mod utime {
    pub const UTIME_NOW: u64 = (1 << 30) - 1;
    pub const UTIME_OMIT: u64 = (1 << 30) - 2;
}

/// A request (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// [`Op`] number.
    pub op: u32,
    /// Operation flags ([`req`] bits 30/31 plus operation-specific bits).
    pub flags: u32,
    /// The handle the operation works on (a directory for name-based
    /// operations); 0 for `Root`.
    pub handle: u64,
    /// Operation arguments (see [`Op`] and docs/hostfs.md); unused ones 0.
    pub args: [u64; 6],
}

/// A response (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Result (`>= 0`) or `-errno`.
    pub ret: i64,
    /// A new handle (`Root`, `Open`, and `Walk`/`Mkdir`/`Mknod`/`Symlink`
    /// with [`req::HANDLE`]), else 0.
    pub handle: u64,
    /// Operation-specific value: `st_mode` of the object (`Root`, `Walk`,
    /// `Open`, `Stat`, creations), the file position after `Read`/`Write`
    /// at [`OFFSET_CURRENT`], else 0.
    pub aux: u64,
    /// Zero.
    pub _reserved: u64,
}

const _: () = assert!(core::mem::size_of::<Request>() == REQUEST_SIZE);
const _: () = assert!(core::mem::size_of::<Response>() == RESPONSE_SIZE);

const fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]])
}

const fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl Request {
    /// A request for `op` with the given handle, flags and arguments.
    pub const fn new(op: Op, handle: u64, flags: u32, args: [u64; 6]) -> Request {
        Request { op: op as u32, flags, handle, args }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> [u8; REQUEST_SIZE] {
        let mut b = [0u8; REQUEST_SIZE];
        b[0..4].copy_from_slice(&self.op.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        put64(&mut b, 8, self.handle);
        for (i, a) in self.args.iter().enumerate() {
            put64(&mut b, 16 + 8 * i, *a);
        }
        b
    }

    /// Decodes wire bytes; `None` unless exactly [`REQUEST_SIZE`] long.
    pub const fn from_bytes(b: &[u8]) -> Option<Request> {
        if b.len() != REQUEST_SIZE {
            return None;
        }
        let mut args = [0u64; 6];
        let mut i = 0;
        while i < 6 {
            args[i] = le64(b, 16 + 8 * i);
            i += 1;
        }
        Some(Request { op: le32(b, 0), flags: le32(b, 4), handle: le64(b, 8), args })
    }
}

impl Response {
    /// A successful response.
    pub const fn ok(ret: u64, handle: u64, aux: u64) -> Response {
        Response { ret: ret as i64, handle, aux, _reserved: 0 }
    }

    /// A failed response.
    pub const fn err(e: Errno) -> Response {
        Response { ret: e.to_ret(), handle: 0, aux: 0, _reserved: 0 }
    }

    /// The result as `Result`.
    pub const fn result(&self) -> Result<u64, Errno> {
        match Errno::from_ret(self.ret) {
            Some(e) => Err(e),
            None => Ok(self.ret as u64),
        }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> [u8; RESPONSE_SIZE] {
        let mut b = [0u8; RESPONSE_SIZE];
        put64(&mut b, 0, self.ret as u64);
        put64(&mut b, 8, self.handle);
        put64(&mut b, 16, self.aux);
        put64(&mut b, 24, self._reserved);
        b
    }

    /// Decodes wire bytes; `None` unless exactly [`RESPONSE_SIZE`] long.
    pub const fn from_bytes(b: &[u8]) -> Option<Response> {
        if b.len() != RESPONSE_SIZE {
            return None;
        }
        Some(Response { ret: le64(b, 0) as i64, handle: le64(b, 8), aux: le64(b, 16), _reserved: le64(b, 24) })
    }
}

/// A `(gpa, len)` string in guest memory, as two request arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestStr {
    /// Guest-physical address of the first byte.
    pub gpa: u64,
    /// Length in bytes (no NUL).
    pub len: u64,
}

/// Request constructors: the one place that spells out which argument
/// carries what (docs/hostfs.md tabulates the same).
pub mod build {
    use super::{GuestStr, Op, Request};

    /// `Root`: a new handle to the root; `stat_gpa` used with [`super::req::STAT`].
    pub const fn root(flags: u32, stat_gpa: u64) -> Request {
        Request::new(Op::Root, 0, flags, [stat_gpa, 0, 0, 0, 0, 0])
    }

    /// `Walk`: `flags` = [`super::resolve`] bits | [`super::req`] bits.
    pub const fn walk(dir: u64, path: GuestStr, flags: u32, stat_gpa: u64) -> Request {
        Request::new(Op::Walk, dir, flags, [path.gpa, path.len, stat_gpa, 0, 0, 0])
    }

    /// `Open`: `flags` = [`super::open`] bits | [`super::req::STAT`]; `resolve` =
    /// [`super::resolve`] bits (`IN_ROOT`, `NO_SYMLINKS`).
    pub const fn open(dir: u64, path: GuestStr, flags: u32, mode: u32, resolve: u32, stat_gpa: u64) -> Request {
        Request::new(Op::Open, dir, flags, [path.gpa, path.len, mode as u64, resolve as u64, stat_gpa, 0])
    }

    /// `Close`.
    pub const fn close(h: u64) -> Request {
        Request::new(Op::Close, h, 0, [0; 6])
    }

    /// `Stat`: a `struct stat` of the handle at `stat_gpa`.
    pub const fn stat(h: u64, stat_gpa: u64) -> Request {
        Request::new(Op::Stat, h, 0, [stat_gpa, 0, 0, 0, 0, 0])
    }

    /// `Statx`: a [`super::Statx`] of the handle at `out_gpa`.
    pub const fn statx(h: u64, mask: u32, out_gpa: u64) -> Request {
        Request::new(Op::Statx, h, 0, [mask as u64, out_gpa, 0, 0, 0, 0])
    }

    /// `Getdents`: `linux_dirent64` records into `out`.
    pub const fn getdents(h: u64, out: GuestStr) -> Request {
        Request::new(Op::Getdents, h, 0, [out.gpa, out.len, 0, 0, 0, 0])
    }

    /// `Readlink` of `name` in directory `h` (or of `h` itself when
    /// `name.len == 0`) into `out`.
    pub const fn readlink(h: u64, name: GuestStr, out: GuestStr) -> Request {
        Request::new(Op::Readlink, h, 0, [name.gpa, name.len, out.gpa, out.len, 0, 0])
    }

    /// `Read` at `offset` into the `count` [`super::GuestIovec`]s at `iov_gpa`.
    pub const fn read(h: u64, offset: u64, iov_gpa: u64, count: u64) -> Request {
        Request::new(Op::Read, h, 0, [offset, iov_gpa, count, 0, 0, 0])
    }

    /// `Write` at `offset` from the `count` [`super::GuestIovec`]s at `iov_gpa`.
    pub const fn write(h: u64, offset: u64, iov_gpa: u64, count: u64) -> Request {
        Request::new(Op::Write, h, 0, [offset, iov_gpa, count, 0, 0, 0])
    }

    /// `Sync` (`flags` = [`super::sync::DATA`] for fdatasync).
    pub const fn sync(h: u64, flags: u32) -> Request {
        Request::new(Op::Sync, h, flags, [0; 6])
    }

    /// `Truncate` to `len`.
    pub const fn truncate(h: u64, len: u64) -> Request {
        Request::new(Op::Truncate, h, 0, [len, 0, 0, 0, 0, 0])
    }

    /// `Allocate`.
    pub const fn allocate(h: u64, mode: u64, offset: u64, len: u64) -> Request {
        Request::new(Op::Allocate, h, 0, [mode, offset, len, 0, 0, 0])
    }

    /// `Seek`.
    pub const fn seek(h: u64, offset: i64, whence: u64) -> Request {
        Request::new(Op::Seek, h, 0, [offset as u64, whence, 0, 0, 0, 0])
    }

    /// `Mkdir` of `name` in `dir`.
    pub const fn mkdir(dir: u64, name: GuestStr, mode: u32, flags: u32, stat_gpa: u64) -> Request {
        Request::new(Op::Mkdir, dir, flags, [name.gpa, name.len, mode as u64, stat_gpa, 0, 0])
    }

    /// `Mknod` of `name` in `dir` (`mode` includes the file type).
    pub const fn mknod(dir: u64, name: GuestStr, mode: u32, flags: u32, stat_gpa: u64) -> Request {
        Request::new(Op::Mknod, dir, flags, [name.gpa, name.len, mode as u64, stat_gpa, 0, 0])
    }

    /// `Unlink` of `name` in `dir` (`flags` = [`super::unlink::AT_REMOVEDIR`]).
    pub const fn unlink(dir: u64, name: GuestStr, flags: u32) -> Request {
        Request::new(Op::Unlink, dir, flags, [name.gpa, name.len, 0, 0, 0, 0])
    }

    /// `Rename` of `old` in `old_dir` to `new` in `new_dir`.
    pub const fn rename(old_dir: u64, old: GuestStr, new_dir: u64, new: GuestStr, flags: u32) -> Request {
        Request::new(Op::Rename, old_dir, flags, [old.gpa, old.len, new_dir, new.gpa, new.len, 0])
    }

    /// `Link`: a new name `new` in `new_dir` for `old` in `old_dir`.
    pub const fn link(old_dir: u64, old: GuestStr, new_dir: u64, new: GuestStr) -> Request {
        Request::new(Op::Link, old_dir, 0, [old.gpa, old.len, new_dir, new.gpa, new.len, 0])
    }

    /// `Symlink`: `name` in `dir` pointing at `target`.
    pub const fn symlink(dir: u64, name: GuestStr, target: GuestStr, flags: u32, stat_gpa: u64) -> Request {
        Request::new(Op::Symlink, dir, flags, [name.gpa, name.len, target.gpa, target.len, stat_gpa, 0])
    }

    /// `Chmod` of `name` in `h` (or `h` itself when `name.len == 0`).
    pub const fn chmod(h: u64, name: GuestStr, mode: u32) -> Request {
        Request::new(Op::Chmod, h, 0, [name.gpa, name.len, mode as u64, 0, 0, 0])
    }

    /// `Chown` of `name` in `h` (or `h` itself); [`super::ID_KEEP`] keeps.
    pub const fn chown(h: u64, name: GuestStr, uid: u64, gid: u64) -> Request {
        Request::new(Op::Chown, h, 0, [name.gpa, name.len, uid, gid, 0, 0])
    }

    /// `Utimens` of `name` in `h` (or `h` itself): `(sec, nsec)` of atime
    /// and mtime; `nsec` may be [`super::utime`] `UTIME_NOW`/`UTIME_OMIT`.
    pub const fn utimens(h: u64, name: GuestStr, atime: (i64, u64), mtime: (i64, u64)) -> Request {
        Request::new(Op::Utimens, h, 0, [name.gpa, name.len, atime.0 as u64, atime.1, mtime.0 as u64, mtime.1])
    }

    /// `Statfs`: a [`super::Statfs`] at `out_gpa`.
    pub const fn statfs(h: u64, out_gpa: u64) -> Request {
        Request::new(Op::Statfs, h, 0, [out_gpa, 0, 0, 0, 0, 0])
    }

    /// `GetXattr` of attribute `xname` of `name` in directory `h` (or of
    /// `h` itself when `name.len == 0`) into `out` (`out.len == 0`: the size
    /// only).
    pub const fn getxattr(h: u64, name: GuestStr, xname: GuestStr, out: GuestStr) -> Request {
        Request::new(Op::GetXattr, h, 0, [name.gpa, name.len, xname.gpa, xname.len, out.gpa, out.len])
    }

    /// `SetXattr` of attribute `xname` of `name` in `h` (or `h` itself) to
    /// `value` (`flags` = [`super::xattr`] bits).
    pub const fn setxattr(h: u64, name: GuestStr, xname: GuestStr, value: GuestStr, flags: u32) -> Request {
        Request::new(Op::SetXattr, h, flags, [name.gpa, name.len, xname.gpa, xname.len, value.gpa, value.len])
    }

    /// `ListXattr` of `name` in `h` (or `h` itself) into `out` (`out.len ==
    /// 0`: the size only).
    pub const fn listxattr(h: u64, name: GuestStr, out: GuestStr) -> Request {
        Request::new(Op::ListXattr, h, 0, [name.gpa, name.len, out.gpa, out.len, 0, 0])
    }

    /// `RemoveXattr` of attribute `xname` of `name` in `h` (or `h` itself).
    pub const fn removexattr(h: u64, name: GuestStr, xname: GuestStr) -> Request {
        Request::new(Op::RemoveXattr, h, 0, [name.gpa, name.len, xname.gpa, xname.len, 0, 0])
    }
}

/// Checks a single path component: 1..=[`NAME_MAX`] bytes, no `/`, no NUL,
/// not `.` or `..` (EINVAL; ENAMETOOLONG when too long).
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// True for extended-attribute names the guest may get, set, list and
/// remove: `user.<something>` and `security.capability`.
pub fn xattr_name_allowed(name: &[u8]) -> bool {
    (name.len() > xattr::USER_PREFIX.len() && name.starts_with(xattr::USER_PREFIX))
        || name == xattr::SECURITY_CAPABILITY
}

/// `struct statx_timestamp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatxTimestamp {
    pub tv_sec: i64,
    pub tv_nsec: u32,
    pub _reserved: i32,
}

/// `struct statx` (256 bytes). The host reports `stx_dev_major = 0`,
/// `stx_dev_minor` = the guest-visible device index (see [`ROOT_DEV`]), and
/// clears the mount id, subvolume and direct-I/O fields (and their mask
/// bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statx {
    pub stx_mask: u32,
    pub stx_blksize: u32,
    pub stx_attributes: u64,
    pub stx_nlink: u32,
    pub stx_uid: u32,
    pub stx_gid: u32,
    pub stx_mode: u16,
    pub _spare0: u16,
    pub stx_ino: u64,
    pub stx_size: u64,
    pub stx_blocks: u64,
    pub stx_attributes_mask: u64,
    pub stx_atime: StatxTimestamp,
    pub stx_btime: StatxTimestamp,
    pub stx_ctime: StatxTimestamp,
    pub stx_mtime: StatxTimestamp,
    pub stx_rdev_major: u32,
    pub stx_rdev_minor: u32,
    pub stx_dev_major: u32,
    pub stx_dev_minor: u32,
    pub stx_mnt_id: u64,
    pub stx_dio_mem_align: u32,
    pub stx_dio_offset_align: u32,
    pub _spare3: [u64; 12],
}

/// `statx` mask bits.
pub mod statx_mask {
    pub const STATX_TYPE: u32 = 0x1;
    pub const STATX_MODE: u32 = 0x2;
    pub const STATX_NLINK: u32 = 0x4;
    pub const STATX_UID: u32 = 0x8;
    pub const STATX_GID: u32 = 0x10;
    pub const STATX_ATIME: u32 = 0x20;
    pub const STATX_MTIME: u32 = 0x40;
    pub const STATX_CTIME: u32 = 0x80;
    pub const STATX_INO: u32 = 0x100;
    pub const STATX_SIZE: u32 = 0x200;
    pub const STATX_BLOCKS: u32 = 0x400;
    pub const STATX_BASIC_STATS: u32 = 0x7ff;
    pub const STATX_BTIME: u32 = 0x800;
    pub const STATX_MNT_ID: u32 = 0x1000;
    pub const STATX_DIOALIGN: u32 = 0x2000;
    pub const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    pub const STATX_SUBVOL: u32 = 0x8000;
    /// What the service reports (others are cleared).
    pub const SERVED: u32 = STATX_BASIC_STATS | STATX_BTIME;
}

/// `struct statfs` (x86-64, 120 bytes). The host clears `f_fsid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statfs {
    pub f_type: i64,
    pub f_bsize: i64,
    pub f_blocks: u64,
    pub f_bfree: u64,
    pub f_bavail: u64,
    pub f_files: u64,
    pub f_ffree: u64,
    pub f_fsid: [i32; 2],
    pub f_namelen: i64,
    pub f_frsize: i64,
    pub f_flags: i64,
    pub f_spare: [i64; 4],
}

const _: () = assert!(core::mem::size_of::<StatxTimestamp>() == 16);
const _: () = assert!(core::mem::size_of::<Statx>() == STATX_SIZE as usize);
const _: () = assert!(core::mem::offset_of!(Statx, stx_atime) == 64);
const _: () = assert!(core::mem::offset_of!(Statx, stx_rdev_major) == 128);
const _: () = assert!(core::mem::offset_of!(Statx, stx_mnt_id) == 144);
const _: () = assert!(core::mem::size_of::<Statfs>() == STATFS_SIZE as usize);
const _: () = assert!(core::mem::size_of::<crate::linux::types::Stat>() == STAT_SIZE as usize);
const _: () = assert!(core::mem::size_of::<GuestIovec>() == 16);

/// One `linux_dirent64` record as [`dirents`] yields it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dirent<'a> {
    /// Inode number.
    pub ino: u64,
    /// Offset cookie of the next record (for `Seek` with `SEEK_SET`).
    pub off: i64,
    /// `DT_*` type.
    pub d_type: u8,
    /// The name (without its NUL).
    pub name: &'a [u8],
}

/// `d_type` values.
pub mod dt {
    pub const DT_UNKNOWN: u8 = 0;
    pub const DT_FIFO: u8 = 1;
    pub const DT_CHR: u8 = 2;
    pub const DT_DIR: u8 = 4;
    pub const DT_BLK: u8 = 6;
    pub const DT_REG: u8 = 8;
    pub const DT_LNK: u8 = 10;
    pub const DT_SOCK: u8 = 12;
}

/// Iterates over the `linux_dirent64` records in `buf` (as `Getdents`
/// wrote them); stops at the first malformed record.
pub fn dirents(buf: &[u8]) -> impl Iterator<Item = Dirent<'_>> {
    let mut pos = 0usize;
    core::iter::from_fn(move || {
        let rest = buf.get(pos..)?;
        if rest.len() < 19 {
            return None;
        }
        let reclen = u16::from_le_bytes([rest[16], rest[17]]) as usize;
        if reclen < 20 || reclen > rest.len() {
            return None;
        }
        let name_area = &rest[19..reclen];
        let n = name_area.iter().position(|&c| c == 0)?;
        pos += reclen;
        Some(Dirent { ino: le64(rest, 0), off: le64(rest, 8) as i64, d_type: rest[18], name: &name_area[..n] })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = build::rename(7, GuestStr { gpa: 1, len: 2 }, 9, GuestStr { gpa: 3, len: 4 }, 1);
        let b = r.to_bytes();
        assert_eq!(Request::from_bytes(&b), Some(r));
        assert_eq!(Request::from_bytes(&b[..63]), None);
        assert_eq!(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), Op::Rename as u32);
        let s = Response::ok(5, 1 << 32, 0o100644);
        assert_eq!(Response::from_bytes(&s.to_bytes()), Some(s));
        assert_eq!(Response::err(Errno::ENOENT).result(), Err(Errno::ENOENT));
        assert_eq!(s.result(), Ok(5));
    }

    #[test]
    fn op_numbers() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as u32, i as u32 + 1);
            assert_eq!(Op::from_raw(i as u32 + 1), Some(*op));
        }
        assert_eq!(Op::from_raw(0), None);
        assert_eq!(Op::from_raw(Op::ALL.len() as u32 + 1), None);
        assert!(Op::Write.mutates() && !Op::Read.mutates() && !Op::Open.mutates());
    }

    #[test]
    fn names() {
        assert_eq!(check_name(b"a"), Ok(()));
        assert_eq!(check_name(b"..."), Ok(()));
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(check_name(&[b'x'; 256]), Err(Errno::ENAMETOOLONG));
        assert_eq!(check_name(&[b'x'; 255]), Ok(()));
        assert!(xattr_name_allowed(b"user.x"));
        assert!(xattr_name_allowed(b"security.capability"));
        assert!(!xattr_name_allowed(b"user."));
        assert!(!xattr_name_allowed(b"trusted.x"));
        assert!(!xattr_name_allowed(b"security.selinux"));
        assert!(!xattr_name_allowed(b"system.posix_acl_access"));
    }

    #[test]
    fn dirent_parsing() {
        // Two records: "a" (reclen 24) and "bc" (reclen 24), then garbage.
        let mut buf = [0u8; 56];
        buf[0] = 5;
        buf[8] = 1;
        buf[16] = 24;
        buf[18] = dt::DT_REG;
        buf[19] = b'a';
        buf[24] = 6;
        buf[32] = 2;
        buf[40] = 24;
        buf[42] = dt::DT_DIR;
        buf[43] = b'b';
        buf[44] = b'c';
        buf[48] = 0xff;
        let v: [Option<Dirent>; 3] = {
            let mut it = dirents(&buf);
            [it.next(), it.next(), it.next()]
        };
        assert_eq!(v[0], Some(Dirent { ino: 5, off: 1, d_type: dt::DT_REG, name: b"a" }));
        assert_eq!(v[1], Some(Dirent { ino: 6, off: 2, d_type: dt::DT_DIR, name: b"bc" }));
        assert_eq!(v[2], None);
    }
}
