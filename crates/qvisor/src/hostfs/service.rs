//! The file service: decodes and checks one request, performs it with
//! fd-relative host system calls beneath the root, and answers.
//!
//! Order of every operation: decode the op and flags, check that unused
//! arguments are zero, check every guest range (paths, names, iovec lists,
//! output buffers) and copy the small inputs (paths, names, iovec lists) into
//! host memory **once**, look up the handles, and only then make the host
//! calls. A bad field therefore fails before anything is read, written,
//! created or changed.
//!
//! Confinement (docs/hostfs.md "Confinement" explains each rule):
//! * paths are resolved only by `openat2` with `RESOLVE_BENEATH` (or
//!   `RESOLVE_IN_ROOT`) and `RESOLVE_NO_MAGICLINKS`, relative to a handle
//!   that was itself resolved that way from the root;
//! * operations on a final component take a single name (no `/`, not `.`
//!   or `..`) and use the `*at` call that does not follow it;
//! * operations on an object found by following symlinks use its handle
//!   (`AT_EMPTY_PATH` / `f*` calls), never a path string;
//! * device nodes are never opened (checked before and after the open
//!   unless the root is mounted `nodev`, where the host kernel refuses
//!   them) and never created; FIFOs and sockets are not opened for I/O;
//! * a read-only service refuses every mutation with EROFS.

use super::sys::{self as fs, Name, Path, XattrTarget};
use super::table::Table;
use crate::memory::{GuestMemory, Pod};
use crate::sys::Errno;
use qlib::hcall::GuestIovec;
use qlib::hostfs::{
    check_name, falloc, open, rename, req, resolve, statx_mask, sync, unlink, utime, xattr, xattr_name_allowed, Op,
    Request, Response, Statfs, Statx, MAX_IOVECS, MAX_PATH, NAME_MAX, OFFSET_CURRENT, RESPONSE_SIZE, STATFS_SIZE,
    STATX_SIZE, STAT_SIZE, XATTR_LIST_MAX, XATTR_NAME_MAX, XATTR_SIZE_MAX,
};
use qlib::linux::consts::mode::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFMT, S_IFREG, S_IFSOCK};
use qlib::linux::types::{Stat, Timespec};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

// SAFETY: repr(C) structs of integers without padding (qlib asserts sizes
// and offsets); every bit pattern is valid.
unsafe impl Pod for Statx {}
// SAFETY: as above.
unsafe impl Pod for Statfs {}

/// Default limit on open handles (files the guest holds open plus the
/// handles its dentry cache keeps). The VMM's RLIMIT_NOFILE must exceed it.
pub const DEFAULT_MAX_HANDLES: usize = 16384;
/// Distinct host filesystems beneath the root that get their own `st_dev`.
const MAX_DEVS: usize = 1024;
/// Iovecs kept on the stack; longer lists use one heap buffer.
const INLINE_IOVECS: usize = 32;

const O_PATH: u64 = open::O_PATH as u64;
const O_NOFOLLOW: u64 = open::O_NOFOLLOW as u64;
const O_DIRECTORY: u64 = open::O_DIRECTORY as u64;
const O_NONBLOCK: u64 = open::O_NONBLOCK as u64;
const O_NOCTTY: u64 = open::O_NOCTTY as u64;

/// Why the service could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFsError {
    /// The root descriptor does not name a directory.
    NotADirectory,
    /// A host call on the root failed.
    Host { op: &'static str, errno: Errno },
}

impl std::fmt::Display for HostFsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostFsError::NotADirectory => {
                write!(
                    f,
                    "the hostfs root is not a directory: pass an O_PATH descriptor of the container root directory"
                )
            }
            HostFsError::Host { op, errno } => write!(
                f,
                "{op} on the hostfs root failed: {} ({}); check that the container root exists and is readable",
                errno.description(),
                errno.name()
            ),
        }
    }
}

impl std::error::Error for HostFsError {}

/// One handle's host object.
struct Node {
    fd: OwnedFd,
    /// Opened for I/O (not O_PATH).
    opened: bool,
    /// Host identity, to recognise the root directory.
    dev: u64,
    ino: u64,
    /// File type bits of `st_mode`.
    ftype: u32,
}

impl Node {
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The xattr target for `name` in this directory, or this handle
    /// itself (an opened descriptor, or `.` of an O_PATH directory; an
    /// O_PATH non-directory has no way to name itself: EBADF).
    fn xattr<'a>(&self, name: &'a Option<Name>, dot: &'a Name) -> Result<XattrTarget<'a>, Errno> {
        match name {
            Some(n) => Ok(XattrTarget::At(self.fd(), n)),
            None if self.opened => Ok(XattrTarget::Fd(self.fd())),
            None if self.ftype == S_IFDIR => Ok(XattrTarget::At(self.fd(), dot)),
            None => Err(Errno::EBADF),
        }
    }
}

/// Counters (relaxed; for logs and benchmarks).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub open_handles: u64,
}

/// The confined file service for one root directory.
pub struct HostFs {
    root: OwnedFd,
    readonly: bool,
    /// The root's mount is `nodev`: the host kernel refuses device opens.
    nodev: bool,
    root_dev: u64,
    root_ino: u64,
    table: Mutex<Table<Node>>,
    devs: Mutex<Vec<u64>>,
    counters: Counters,
}

type Reply = Result<Response, Errno>;

fn zero(args: &[u64]) -> Result<(), Errno> {
    if args.iter().all(|&a| a == 0) {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

fn flags_in(flags: u32, allowed: u32) -> Result<(), Errno> {
    if flags & !allowed == 0 {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

fn fault<E>(_: E) -> Errno {
    Errno::EFAULT
}

/// Copies a single component name out of guest memory (ENAMETOOLONG,
/// EFAULT, EINVAL per [`check_name`]).
fn read_name(mem: &GuestMemory, gpa: u64, len: u64) -> Result<Name, Errno> {
    if len > NAME_MAX as u64 {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut n = Name::empty();
    let dst = n.space(len as usize).ok_or(Errno::ENAMETOOLONG)?;
    mem.read(gpa, dst).map_err(fault)?;
    if !n.seal(len as usize) {
        return Err(Errno::EINVAL);
    }
    check_name(n.bytes())?;
    Ok(n)
}

/// A name, or `None` (the handle itself) when `len == 0`.
fn read_name_or_self(mem: &GuestMemory, gpa: u64, len: u64) -> Result<Option<Name>, Errno> {
    if len == 0 {
        return Ok(None);
    }
    read_name(mem, gpa, len).map(Some)
}

/// Copies a path out of guest memory (ENAMETOOLONG, EFAULT, EINVAL on NUL).
fn read_path(mem: &GuestMemory, gpa: u64, len: u64) -> Result<Path, Errno> {
    if len > MAX_PATH as u64 {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut p = Path::empty();
    let dst = p.space(len as usize).ok_or(Errno::ENAMETOOLONG)?;
    mem.read(gpa, dst).map_err(fault)?;
    if !p.seal(len as usize) {
        return Err(Errno::EINVAL);
    }
    Ok(p)
}

/// Copies an extended-attribute name: ERANGE when empty or too long,
/// EOPNOTSUPP outside `user.*` and `security.capability`.
fn read_xattr_name(mem: &GuestMemory, gpa: u64, len: u64) -> Result<Name, Errno> {
    if len == 0 || len > XATTR_NAME_MAX as u64 {
        return Err(Errno::ERANGE);
    }
    let mut n = Name::empty();
    let dst = n.space(len as usize).ok_or(Errno::ERANGE)?;
    mem.read(gpa, dst).map_err(fault)?;
    if !n.seal(len as usize) {
        return Err(Errno::EINVAL);
    }
    if !xattr_name_allowed(n.bytes()) {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(n)
}

/// The host address of a checked guest output range.
fn out(mem: &GuestMemory, gpa: u64, len: u64) -> Result<u64, Errno> {
    mem.check(gpa, len).map_err(fault)
}

/// The `stat_gpa` argument: checked when [`req::STAT`] is set, else zero.
fn stat_target(mem: &GuestMemory, flags: u32, gpa: u64) -> Result<Option<u64>, Errno> {
    if flags & req::STAT != 0 {
        mem.check(gpa, STAT_SIZE).map_err(fault)?;
        Ok(Some(gpa))
    } else if gpa != 0 {
        Err(Errno::EINVAL)
    } else {
        Ok(None)
    }
}

/// Host iovecs for a guest iovec list, every range checked. Lives on the
/// stack for one call; the inline variant is large on purpose (no heap
/// allocation for the common short lists).
#[allow(clippy::large_enum_variant)]
enum Iovecs {
    Inline([[u64; 2]; INLINE_IOVECS], usize),
    Heap(Vec<[u64; 2]>),
}

impl Iovecs {
    fn as_slice(&self) -> &[[u64; 2]] {
        match self {
            Iovecs::Inline(a, n) => &a[..*n],
            Iovecs::Heap(v) => v,
        }
    }
}

fn iovecs(mem: &GuestMemory, gpa: u64, count: u64) -> Result<Iovecs, Errno> {
    if count > MAX_IOVECS as u64 {
        return Err(Errno::EINVAL);
    }
    let n = count as usize;
    mem.check(gpa, count * 16).map_err(fault)?;
    let one = |i: usize| -> Result<[u64; 2], Errno> {
        let g: GuestIovec = mem.read_obj(gpa + 16 * i as u64).map_err(fault)?;
        Ok([mem.check(g.gpa, g.len).map_err(fault)?, g.len])
    };
    if n <= INLINE_IOVECS {
        let mut a = [[0u64; 2]; INLINE_IOVECS];
        for (i, slot) in a.iter_mut().enumerate().take(n) {
            *slot = one(i)?;
        }
        Ok(Iovecs::Inline(a, n))
    } else {
        (0..n).map(one).collect::<Result<Vec<_>, _>>().map(Iovecs::Heap)
    }
}

/// Refuses file types the service never opens for I/O.
fn refuse_type(mode: u32) -> Result<(), Errno> {
    match mode & S_IFMT {
        S_IFCHR | S_IFBLK => Err(Errno::EACCES),
        S_IFIFO | S_IFSOCK => Err(Errno::ENXIO),
        _ => Ok(()),
    }
}

/// The host `dev_t` encoding of (major, minor).
const fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xfff) << 8) | ((ma & 0xffff_f000) << 32) | (mi & 0xff) | ((mi & 0xffff_ff00) << 12)
}

fn valid_nsec(ns: u64) -> bool {
    ns < 1_000_000_000 || ns == utime::UTIME_NOW || ns == utime::UTIME_OMIT
}

impl HostFs {
    /// Serves the directory `root` (an O_PATH descriptor), with
    /// [`DEFAULT_MAX_HANDLES`] handles.
    ///
    /// Sets the process umask to 0: the guest applies its own umask to the
    /// modes it sends, and the host must not mask them again.
    pub fn new(root: OwnedFd, readonly: bool) -> Result<HostFs, HostFsError> {
        HostFs::with_capacity(root, readonly, DEFAULT_MAX_HANDLES)
    }

    /// As [`HostFs::new`] with at most `max_handles` open handles.
    pub fn with_capacity(root: OwnedFd, readonly: bool, max_handles: usize) -> Result<HostFs, HostFsError> {
        let st = fs::fstat(root.as_raw_fd()).map_err(|errno| HostFsError::Host { op: "fstat", errno })?;
        if st.st_mode & S_IFMT != S_IFDIR {
            return Err(HostFsError::NotADirectory);
        }
        let sfs = fs::fstatfs(root.as_raw_fd()).map_err(|errno| HostFsError::Host { op: "fstatfs", errno })?;
        fs::umask(0);
        Ok(HostFs {
            root,
            readonly,
            nodev: sfs.f_flags & fs::ST_NODEV != 0,
            root_dev: st.st_dev,
            root_ino: st.st_ino,
            table: Mutex::new(Table::new(max_handles)),
            devs: Mutex::new(Vec::new()),
            counters: Counters::default(),
        })
    }

    /// True when the service refuses every mutation.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// True when the root's mount is `nodev` (the host kernel itself refuses
    /// to open device nodes, so the service skips its own pre-open check).
    pub fn root_is_nodev(&self) -> bool {
        self.nodev
    }

    /// Counters and the number of open handles.
    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.counters.requests.load(Relaxed),
            errors: self.counters.errors.load(Relaxed),
            bytes_read: self.counters.bytes_read.load(Relaxed),
            bytes_written: self.counters.bytes_written.load(Relaxed),
            open_handles: self.table.lock().map(|t| t.len() as u64).unwrap_or(0),
        }
    }

    /// The entry point of a transport: `request` holds the bytes it copied
    /// out of guest memory (exactly `REQUEST_SIZE` of them); the answer is
    /// the response bytes to carry back. Never panics on any input.
    pub fn handle(&self, mem: &GuestMemory, request: &[u8]) -> [u8; RESPONSE_SIZE] {
        let resp = match Request::from_bytes(request) {
            Some(r) => self.call(mem, &r),
            None => {
                self.counters.requests.fetch_add(1, Relaxed);
                self.counters.errors.fetch_add(1, Relaxed);
                Response::err(Errno::EINVAL)
            }
        };
        resp.to_bytes()
    }

    /// Performs a decoded request.
    pub fn call(&self, mem: &GuestMemory, r: &Request) -> Response {
        self.counters.requests.fetch_add(1, Relaxed);
        match self.dispatch(mem, r) {
            Ok(resp) => resp,
            Err(e) => {
                self.counters.errors.fetch_add(1, Relaxed);
                Response::err(e)
            }
        }
    }

    fn node(&self, h: u64) -> Result<Arc<Node>, Errno> {
        self.table.lock().map_err(|_| Errno::EIO)?.get(h).ok_or(Errno::EBADF)
    }

    /// EMFILE when no handle can be added (checked before an operation that
    /// creates one, so a full table fails before anything is created).
    fn room(&self) -> Result<(), Errno> {
        if self.table.lock().map_err(|_| Errno::EIO)?.has_room() {
            Ok(())
        } else {
            Err(Errno::EMFILE)
        }
    }

    fn resolve_bits(flags: u64) -> u64 {
        let mut r = fs::RESOLVE_NO_MAGICLINKS;
        r |= if flags & resolve::IN_ROOT as u64 != 0 { fs::RESOLVE_IN_ROOT } else { fs::RESOLVE_BENEATH };
        if flags & resolve::NO_SYMLINKS as u64 != 0 {
            r |= fs::RESOLVE_NO_SYMLINKS;
        }
        r
    }

    /// The guest-visible device number of a host device.
    fn guest_dev(&self, host: u64) -> u64 {
        if host == self.root_dev {
            return qlib::hostfs::ROOT_DEV;
        }
        let Ok(mut devs) = self.devs.lock() else { return MAX_DEVS as u64 };
        match devs.iter().position(|&d| d == host) {
            Some(i) => i as u64 + 1,
            None if devs.len() < MAX_DEVS - 1 => {
                devs.push(host);
                devs.len() as u64
            }
            None => MAX_DEVS as u64,
        }
    }

    fn sanitize(&self, st: Stat) -> Stat {
        let dev_node = matches!(st.st_mode & S_IFMT, S_IFCHR | S_IFBLK);
        Stat { st_dev: self.guest_dev(st.st_dev), st_rdev: if dev_node { st.st_rdev } else { 0 }, ..st }
    }

    fn sanitize_statx(&self, mut sx: Statx) -> Statx {
        let dev = self.guest_dev(makedev(sx.stx_dev_major, sx.stx_dev_minor));
        sx.stx_dev_major = 0;
        sx.stx_dev_minor = dev as u32;
        if !matches!(sx.stx_mode as u32 & S_IFMT, S_IFCHR | S_IFBLK) {
            sx.stx_rdev_major = 0;
            sx.stx_rdev_minor = 0;
        }
        sx.stx_mask &= statx_mask::SERVED;
        sx.stx_mnt_id = 0;
        sx.stx_dio_mem_align = 0;
        sx.stx_dio_offset_align = 0;
        sx._spare3 = [0; 12];
        sx
    }

    /// Registers a new descriptor as a handle and answers with it (and its
    /// stat when asked).
    fn new_handle(&self, mem: &GuestMemory, fd: OwnedFd, opened: bool, st: Stat, st_at: Option<u64>) -> Reply {
        let node = Arc::new(Node { fd, opened, dev: st.st_dev, ino: st.st_ino, ftype: st.st_mode & S_IFMT });
        let h = self.table.lock().map_err(|_| Errno::EIO)?.insert(node).map_err(|_| Errno::EMFILE)?;
        let st = self.sanitize(st);
        if let Some(at) = st_at {
            mem.write_obj(at, &st).map_err(fault)?;
        }
        Ok(Response::ok(0, h, st.st_mode as u64))
    }

    /// Answers with a stat (when asked) and the mode.
    fn stat_reply(&self, mem: &GuestMemory, st: Stat, st_at: Option<u64>) -> Reply {
        let st = self.sanitize(st);
        if let Some(at) = st_at {
            mem.write_obj(at, &st).map_err(fault)?;
        }
        Ok(Response::ok(0, 0, st.st_mode as u64))
    }

    /// After creating `name` in `dir`: a handle and/or stat when asked.
    fn created(&self, mem: &GuestMemory, dir: RawFd, name: &Name, flags: u32, st_at: Option<u64>) -> Reply {
        if flags & req::HANDLE != 0 {
            let fd = fs::openat2(dir, name, O_PATH | O_NOFOLLOW, 0, fs::RESOLVE_BENEATH | fs::RESOLVE_NO_MAGICLINKS)?;
            let st = fs::fstat(fd.as_raw_fd())?;
            return self.new_handle(mem, fd, false, st, st_at);
        }
        if st_at.is_some() {
            return self.stat_reply(mem, fs::fstatat_nofollow(dir, name)?, st_at);
        }
        Ok(Response::ok(0, 0, 0))
    }

    fn dispatch(&self, mem: &GuestMemory, r: &Request) -> Reply {
        let op = Op::from_raw(r.op).ok_or(Errno::ENOSYS)?;
        if self.readonly && op.mutates() {
            return Err(Errno::EROFS);
        }
        let a = &r.args;
        match op {
            Op::Root => {
                flags_in(r.flags, req::STAT)?;
                zero(&a[1..])?;
                let st_at = stat_target(mem, r.flags, a[0])?;
                if r.handle != 0 {
                    return Err(Errno::EINVAL);
                }
                self.room()?;
                let dot = Name::dot();
                let fd = fs::openat2(
                    self.root.as_raw_fd(),
                    &dot,
                    O_PATH | O_DIRECTORY,
                    0,
                    fs::RESOLVE_BENEATH | fs::RESOLVE_NO_MAGICLINKS,
                )?;
                let st = fs::fstat(fd.as_raw_fd())?;
                self.new_handle(mem, fd, false, st, st_at)
            }
            Op::Walk => {
                flags_in(r.flags, resolve::ALL | req::STAT | req::HANDLE)?;
                zero(&a[3..])?;
                let st_at = stat_target(mem, r.flags, a[2])?;
                let path = read_path(mem, a[0], a[1])?;
                let dir = self.node(r.handle)?;
                let want_handle = r.flags & req::HANDLE != 0;
                let nofollow = r.flags & resolve::NOFOLLOW != 0;
                if want_handle {
                    self.room()?;
                } else if nofollow && check_name(path.bytes()).is_ok() {
                    // One plain component, not followed: a single
                    // newfstatat beneath the directory ("." and ".." never
                    // take this path).
                    let name = Name::from_bytes(path.bytes()).ok_or(Errno::EINVAL)?;
                    return self.stat_reply(mem, fs::fstatat_nofollow(dir.fd(), &name)?, st_at);
                }
                let fd = fs::openat2(
                    dir.fd(),
                    &path,
                    O_PATH | if nofollow { O_NOFOLLOW } else { 0 },
                    0,
                    Self::resolve_bits(r.flags as u64),
                )?;
                let st = fs::fstat(fd.as_raw_fd())?;
                if want_handle {
                    self.new_handle(mem, fd, false, st, st_at)
                } else {
                    self.stat_reply(mem, st, st_at)
                }
            }
            Op::Open => {
                let f = r.flags & !req::STAT;
                flags_in(f, open::ALLOWED)?;
                zero(&a[5..])?;
                if a[3] & !((resolve::IN_ROOT | resolve::NO_SYMLINKS) as u64) != 0 {
                    return Err(Errno::EINVAL);
                }
                let st_at = stat_target(mem, r.flags, a[4])?;
                let creat = f & open::O_CREAT != 0 && f & open::O_PATH == 0;
                let mode = a[2];
                if (creat && mode > 0o7777) || (!creat && mode != 0) {
                    return Err(Errno::EINVAL);
                }
                let path = read_path(mem, a[0], a[1])?;
                let dir = self.node(r.handle)?;
                self.room()?;
                let (fd, opened, st) = self.open(dir.fd(), &path, f, mode, Self::resolve_bits(a[3]))?;
                self.new_handle(mem, fd, opened, st, st_at)
            }
            Op::Close => {
                flags_in(r.flags, 0)?;
                zero(a)?;
                self.table.lock().map_err(|_| Errno::EIO)?.remove(r.handle).ok_or(Errno::EBADF)?;
                Ok(Response::ok(0, 0, 0))
            }
            Op::Stat => {
                flags_in(r.flags, 0)?;
                zero(&a[1..])?;
                mem.check(a[0], STAT_SIZE).map_err(fault)?;
                let n = self.node(r.handle)?;
                self.stat_reply(mem, fs::fstat(n.fd())?, Some(a[0]))
            }
            Op::Statx => {
                flags_in(r.flags, 0)?;
                zero(&a[2..])?;
                let mask = u32::try_from(a[0]).map_err(|_| Errno::EINVAL)?;
                mem.check(a[1], STATX_SIZE).map_err(fault)?;
                let n = self.node(r.handle)?;
                let sx = self.sanitize_statx(fs::statx(n.fd(), mask)?);
                mem.write_obj(a[1], &sx).map_err(fault)?;
                Ok(Response::ok(0, 0, sx.stx_mode as u64))
            }
            Op::Getdents => {
                flags_in(r.flags, 0)?;
                zero(&a[2..])?;
                let hva = out(mem, a[0], a[1])?;
                let n = self.node(r.handle)?;
                // SAFETY: [hva, hva + len) was checked to lie in guest memory.
                let got = unsafe { fs::getdents64(n.fd(), hva, a[1].min(1 << 30)) }?;
                if n.dev == self.root_dev && n.ino == self.root_ino {
                    self.hide_root_parent(mem, a[0], got);
                }
                Ok(Response::ok(got, 0, 0))
            }
            Op::Readlink => {
                flags_in(r.flags, 0)?;
                zero(&a[4..])?;
                let name = read_name_or_self(mem, a[0], a[1])?;
                let hva = out(mem, a[2], a[3])?;
                let n = self.node(r.handle)?;
                let name = name.unwrap_or_else(Name::empty);
                // SAFETY: [hva, hva + len) was checked to lie in guest memory.
                let got = unsafe { fs::readlinkat(n.fd(), &name, hva, a[3].min(i32::MAX as u64)) }?;
                Ok(Response::ok(got, 0, 0))
            }
            Op::Read | Op::Write => {
                flags_in(r.flags, 0)?;
                zero(&a[3..])?;
                let write = op == Op::Write;
                let off = match a[0] {
                    OFFSET_CURRENT => None,
                    o if o > i64::MAX as u64 => return Err(Errno::EINVAL),
                    o => Some(o),
                };
                let iov = iovecs(mem, a[1], a[2])?;
                let n = self.node(r.handle)?;
                if !n.opened {
                    return Err(Errno::EBADF);
                }
                // SAFETY: every host iovec was checked to lie in guest memory.
                let done = unsafe { fs::rw(n.fd(), iov.as_slice(), off, write) }?;
                let counter = if write { &self.counters.bytes_written } else { &self.counters.bytes_read };
                counter.fetch_add(done, Relaxed);
                let pos = match off {
                    None => fs::lseek(n.fd(), 0, qlib::hostfs::seek::SEEK_CUR)?,
                    Some(_) => 0,
                };
                Ok(Response::ok(done, 0, pos))
            }
            Op::Sync => {
                flags_in(r.flags, sync::DATA)?;
                zero(a)?;
                let n = self.node(r.handle)?;
                fs::fsync(n.fd(), r.flags & sync::DATA != 0)?;
                Ok(Response::ok(0, 0, 0))
            }
            Op::Truncate => {
                flags_in(r.flags, 0)?;
                zero(&a[1..])?;
                if a[0] > i64::MAX as u64 {
                    return Err(Errno::EINVAL);
                }
                let n = self.node(r.handle)?;
                fs::ftruncate(n.fd(), a[0])?;
                Ok(Response::ok(0, 0, 0))
            }
            Op::Allocate => {
                flags_in(r.flags, 0)?;
                zero(&a[3..])?;
                if a[0] & !falloc::ALLOWED != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let n = self.node(r.handle)?;
                fs::fallocate(n.fd(), a[0], a[1], a[2])?;
                Ok(Response::ok(0, 0, 0))
            }
            Op::Seek => {
                flags_in(r.flags, 0)?;
                zero(&a[2..])?;
                if a[1] > qlib::hostfs::seek::SEEK_HOLE {
                    return Err(Errno::EINVAL);
                }
                let n = self.node(r.handle)?;
                Ok(Response::ok(fs::lseek(n.fd(), a[0], a[1])?, 0, 0))
            }
            Op::Mkdir => {
                flags_in(r.flags, req::STAT | req::HANDLE)?;
                zero(&a[4..])?;
                if a[2] > 0o7777 {
                    return Err(Errno::EINVAL);
                }
                let st_at = stat_target(mem, r.flags, a[3])?;
                let name = read_name(mem, a[0], a[1])?;
                let dir = self.node(r.handle)?;
                if r.flags & req::HANDLE != 0 {
                    self.room()?;
                }
                fs::mkdirat(dir.fd(), &name, a[2])?;
                self.created(mem, dir.fd(), &name, r.flags, st_at)
            }
            Op::Mknod => {
                flags_in(r.flags, req::STAT | req::HANDLE)?;
                zero(&a[4..])?;
                let mode = a[2];
                if mode & !(S_IFMT as u64 | 0o7777) != 0 {
                    return Err(Errno::EINVAL);
                }
                match mode as u32 & S_IFMT {
                    0 | S_IFREG | S_IFIFO | S_IFSOCK => {}
                    S_IFCHR | S_IFBLK => return Err(Errno::EPERM),
                    _ => return Err(Errno::EINVAL),
                }
                let st_at = stat_target(mem, r.flags, a[3])?;
                let name = read_name(mem, a[0], a[1])?;
                let dir = self.node(r.handle)?;
                if r.flags & req::HANDLE != 0 {
                    self.room()?;
                }
                fs::mknodat(dir.fd(), &name, mode)?;
                self.created(mem, dir.fd(), &name, r.flags, st_at)
            }
            Op::Unlink => {
                flags_in(r.flags, unlink::AT_REMOVEDIR)?;
                zero(&a[2..])?;
                let name = read_name(mem, a[0], a[1])?;
                let dir = self.node(r.handle)?;
                fs::unlinkat(dir.fd(), &name, r.flags as u64)?;
                Ok(Response::ok(0, 0, 0))
            }
            Op::Rename | Op::Link => {
                let allowed = if op == Op::Rename { rename::RENAME_NOREPLACE | rename::RENAME_EXCHANGE } else { 0 };
                flags_in(r.flags, allowed)?;
                zero(&a[5..])?;
                let old = read_name(mem, a[0], a[1])?;
                let new = read_name(mem, a[3], a[4])?;
                let old_dir = self.node(r.handle)?;
                let new_dir = self.node(a[2])?;
                if op == Op::Rename {
                    fs::renameat2(old_dir.fd(), &old, new_dir.fd(), &new, r.flags as u64)?;
                } else {
                    fs::linkat(old_dir.fd(), &old, new_dir.fd(), &new)?;
                }
                Ok(Response::ok(0, 0, 0))
            }
            Op::Symlink => {
                flags_in(r.flags, req::STAT | req::HANDLE)?;
                zero(&a[5..])?;
                let st_at = stat_target(mem, r.flags, a[4])?;
                let name = read_name(mem, a[0], a[1])?;
                let target = read_path(mem, a[2], a[3])?;
                let dir = self.node(r.handle)?;
                if r.flags & req::HANDLE != 0 {
                    self.room()?;
                }
                fs::symlinkat(&target, dir.fd(), &name)?;
                self.created(mem, dir.fd(), &name, r.flags, st_at)
            }
            Op::Chmod => {
                flags_in(r.flags, 0)?;
                zero(&a[3..])?;
                if a[2] > 0o7777 {
                    return Err(Errno::EINVAL);
                }
                let name = read_name_or_self(mem, a[0], a[1])?;
                let n = self.node(r.handle)?;
                match name {
                    None if n.opened => fs::fchmod(n.fd(), a[2])?,
                    None => fs::fchmodat2(n.fd(), &Name::empty(), a[2], fs::AT_EMPTY_PATH)?,
                    Some(name) => fs::fchmodat2(n.fd(), &name, a[2], fs::AT_SYMLINK_NOFOLLOW)?,
                }
                Ok(Response::ok(0, 0, 0))
            }
            Op::Chown => {
                flags_in(r.flags, 0)?;
                zero(&a[4..])?;
                if a[2] > u32::MAX as u64 || a[3] > u32::MAX as u64 {
                    return Err(Errno::EINVAL);
                }
                let name = read_name_or_self(mem, a[0], a[1])?;
                let n = self.node(r.handle)?;
                match name {
                    None => fs::fchownat(n.fd(), &Name::empty(), a[2], a[3], fs::AT_EMPTY_PATH)?,
                    Some(name) => fs::fchownat(n.fd(), &name, a[2], a[3], fs::AT_SYMLINK_NOFOLLOW)?,
                }
                Ok(Response::ok(0, 0, 0))
            }
            Op::Utimens => {
                flags_in(r.flags, 0)?;
                if !valid_nsec(a[3]) || !valid_nsec(a[5]) {
                    return Err(Errno::EINVAL);
                }
                let times = [
                    Timespec { tv_sec: a[2] as i64, tv_nsec: a[3] as i64 },
                    Timespec { tv_sec: a[4] as i64, tv_nsec: a[5] as i64 },
                ];
                let name = read_name_or_self(mem, a[0], a[1])?;
                let n = self.node(r.handle)?;
                match name {
                    None => fs::utimensat(n.fd(), &Name::empty(), &times, fs::AT_EMPTY_PATH)?,
                    Some(name) => fs::utimensat(n.fd(), &name, &times, fs::AT_SYMLINK_NOFOLLOW)?,
                }
                Ok(Response::ok(0, 0, 0))
            }
            Op::Statfs => {
                flags_in(r.flags, 0)?;
                zero(&a[1..])?;
                mem.check(a[0], STATFS_SIZE).map_err(fault)?;
                let n = self.node(r.handle)?;
                let mut sfs = fs::fstatfs(n.fd())?;
                sfs.f_fsid = [0, 0];
                if self.readonly {
                    sfs.f_flags |= fs::ST_RDONLY;
                }
                mem.write_obj(a[0], &sfs).map_err(fault)?;
                Ok(Response::ok(0, 0, 0))
            }
            Op::GetXattr => {
                flags_in(r.flags, 0)?;
                let name = read_name_or_self(mem, a[0], a[1])?;
                let xname = read_xattr_name(mem, a[2], a[3])?;
                let (hva, len) =
                    if a[5] == 0 { (0, 0) } else { (out(mem, a[4], a[5])?, a[5].min(XATTR_SIZE_MAX as u64)) };
                let n = self.node(r.handle)?;
                let dot = Name::dot();
                // SAFETY: [hva, hva + len) was checked to lie in guest memory
                // (or is empty: a size query).
                let got = unsafe { fs::getxattr(n.xattr(&name, &dot)?, &xname, hva, len) }?;
                Ok(Response::ok(got, 0, 0))
            }
            Op::SetXattr => {
                flags_in(r.flags, xattr::XATTR_CREATE | xattr::XATTR_REPLACE)?;
                let name = read_name_or_self(mem, a[0], a[1])?;
                let xname = read_xattr_name(mem, a[2], a[3])?;
                if a[5] > XATTR_SIZE_MAX as u64 {
                    return Err(Errno::E2BIG);
                }
                let hva = if a[5] == 0 { 0 } else { out(mem, a[4], a[5])? };
                let n = self.node(r.handle)?;
                let dot = Name::dot();
                // SAFETY: [hva, hva + len) was checked to lie in guest memory.
                unsafe { fs::setxattr(n.xattr(&name, &dot)?, &xname, hva, a[5], r.flags as u64) }?;
                Ok(Response::ok(0, 0, 0))
            }
            Op::ListXattr => {
                flags_in(r.flags, 0)?;
                zero(&a[4..])?;
                let name = read_name_or_self(mem, a[0], a[1])?;
                if a[3] != 0 {
                    out(mem, a[2], a[3])?;
                }
                let n = self.node(r.handle)?;
                let dot = Name::dot();
                let target = n.xattr(&name, &dot)?;
                let mut buf = vec![0u8; XATTR_LIST_MAX];
                let got = fs::listxattr(target, &mut buf)?;
                let kept = filter_xattr_list(&mut buf[..got.min(XATTR_LIST_MAX)]);
                if a[3] != 0 {
                    if kept as u64 > a[3] {
                        return Err(Errno::ERANGE);
                    }
                    mem.write(a[2], &buf[..kept]).map_err(fault)?;
                }
                Ok(Response::ok(kept as u64, 0, 0))
            }
            Op::RemoveXattr => {
                flags_in(r.flags, 0)?;
                zero(&a[4..])?;
                let name = read_name_or_self(mem, a[0], a[1])?;
                let xname = read_xattr_name(mem, a[2], a[3])?;
                let n = self.node(r.handle)?;
                let dot = Name::dot();
                fs::removexattr(n.xattr(&name, &dot)?, &xname)?;
                Ok(Response::ok(0, 0, 0))
            }
        }
    }

    /// Opens `path` beneath `dir`. Returns the descriptor, whether it is
    /// opened for I/O (not O_PATH), and its stat.
    fn open(&self, dir: RawFd, path: &Path, f: u32, mode: u64, res: u64) -> Result<(OwnedFd, bool, Stat), Errno> {
        let f = f as u64;
        if f & O_PATH != 0 {
            // Like open(2), O_PATH ignores every flag but these.
            let fd = fs::openat2(dir, path, O_PATH | (f & (O_DIRECTORY | O_NOFOLLOW)), 0, res)?;
            let st = fs::fstat(fd.as_raw_fd())?;
            return Ok((fd, false, st));
        }
        let acc = f & open::O_ACCMODE as u64;
        if acc == open::O_ACCMODE as u64 {
            return Err(Errno::EINVAL);
        }
        let keep = (open::O_ACCMODE
            | open::O_CREAT
            | open::O_EXCL
            | open::O_TRUNC
            | open::O_APPEND
            | open::O_DIRECTORY
            | open::O_NOFOLLOW
            | open::O_SYNC) as u64;
        let mut hf = (f & keep) | O_NONBLOCK | O_NOCTTY;
        let mut mode = if f & open::O_CREAT as u64 != 0 { mode } else { 0 };
        let creat = open::O_CREAT as u64;
        let excl = open::O_EXCL as u64;
        // Read-only: no write access, no truncation, and O_CREAT only
        // opens what exists (EROFS if it would create, EEXIST with O_EXCL).
        let mut ro_creat = false;
        if self.readonly {
            if acc != open::O_RDONLY as u64 || f & open::O_TRUNC as u64 != 0 {
                return Err(Errno::EROFS);
            }
            if hf & creat != 0 {
                ro_creat = true;
                hf &= !(creat | excl);
                mode = 0;
            }
        }
        if !self.nodev {
            // Without a nodev mount, look before opening so a device's
            // driver is never invoked (an O_PATH open does not call it).
            match fs::openat2(dir, path, O_PATH | (hf & (O_NOFOLLOW | O_DIRECTORY)), 0, res) {
                Ok(p) => refuse_type(fs::fstat(p.as_raw_fd())?.st_mode)?,
                Err(Errno::ENOENT) if hf & creat != 0 || ro_creat => {}
                Err(e) => return Err(e),
            }
        }
        let fd = match fs::openat2(dir, path, hf, mode, res) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if ro_creat => return Err(Errno::EROFS),
            Err(e) => return Err(e),
        };
        if ro_creat && f & excl != 0 {
            return Err(Errno::EEXIST);
        }
        let st = fs::fstat(fd.as_raw_fd())?;
        // After the open: only regular files and directories are served
        // (a node swapped in since the check above is refused here).
        refuse_type(st.st_mode)?;
        match st.st_mode & S_IFMT {
            S_IFREG | S_IFDIR => Ok((fd, true, st)),
            _ => Err(Errno::EACCES),
        }
    }

    /// Rewrites the inode number of the root directory's `..` record (the
    /// host directory above the root) to the root's own, as Linux shows at a
    /// filesystem root. The records are in guest memory, which the guest may
    /// change meanwhile: every read is bounds-checked.
    fn hide_root_parent(&self, mem: &GuestMemory, gpa: u64, len: u64) {
        let mut pos = 0u64;
        while pos + 20 <= len {
            let mut rl = [0u8; 2];
            if mem.read(gpa + pos + 16, &mut rl).is_err() {
                return;
            }
            let reclen = u16::from_le_bytes(rl) as u64;
            if reclen < 20 || pos + reclen > len {
                return;
            }
            let mut name = [0u8; 3];
            if reclen >= 22 && mem.read(gpa + pos + 19, &mut name).is_ok() && &name == b"..\0" {
                let _ = mem.write_obj(gpa + pos, &self.root_ino);
                return;
            }
            pos += reclen;
        }
    }
}

/// Keeps only the names the guest may see in a NUL-separated xattr list
/// (compacted in place); returns the new length.
fn filter_xattr_list(buf: &mut [u8]) -> usize {
    let mut w = 0;
    let mut r = 0;
    while r < buf.len() {
        let end = buf[r..].iter().position(|&c| c == 0).map_or(buf.len(), |p| r + p);
        if end < buf.len() && xattr_name_allowed(&buf[r..end]) {
            buf.copy_within(r..=end, w);
            w += end - r + 1;
        }
        r = end + 1;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_lists_are_filtered() {
        let mut b = *b"user.a\0security.selinux\0security.capability\0trusted.x\0user.bb\0";
        let n = filter_xattr_list(&mut b);
        assert_eq!(&b[..n], b"user.a\0security.capability\0user.bb\0");
        let mut unterminated = *b"user.a\0user.b";
        let n = filter_xattr_list(&mut unterminated);
        assert_eq!(&unterminated[..n], b"user.a\0");
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(259, 0x12345), 0x1231_0345);
        assert_eq!(makedev(0x1000, 0), 0x1000_0000_0000);
    }

    #[test]
    fn types_that_are_never_opened() {
        assert_eq!(refuse_type(S_IFCHR | 0o666), Err(Errno::EACCES));
        assert_eq!(refuse_type(S_IFBLK), Err(Errno::EACCES));
        assert_eq!(refuse_type(S_IFIFO), Err(Errno::ENXIO));
        assert_eq!(refuse_type(S_IFSOCK), Err(Errno::ENXIO));
        assert_eq!(refuse_type(S_IFREG), Ok(()));
        assert_eq!(refuse_type(S_IFDIR), Ok(()));
    }
}
