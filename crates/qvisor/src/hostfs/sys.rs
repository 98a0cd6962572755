//! The host system calls of the file service: all of hostfs's unsafe code.
//!
//! Every wrapper takes descriptors the caller owns and NUL-terminated host
//! strings ([`CBuf`]); the few that take host addresses inside the guest
//! mapping (`hva`) are `unsafe fn`s whose callers obtained the address from
//! `GuestMemory::check`. Calls interrupted by a signal are restarted.

use crate::sys::{self, nr, Errno};
use qlib::hostfs::{Statfs, Statx};
use qlib::linux::types::{Stat, Timespec};
use std::os::fd::{OwnedFd, RawFd};

/// `openat2` resolve flags.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;
/// `*at` flags.
pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
pub const AT_EMPTY_PATH: u64 = 0x1000;
/// `statx` flag: do whatever `stat` does about synchronisation.
pub const AT_STATX_SYNC_AS_STAT: u64 = 0;
/// `f_flags` bit of a `nodev` mount.
pub const ST_NODEV: i64 = 4;
/// `f_flags` bit of a read-only mount.
pub const ST_RDONLY: i64 = 1;

/// A NUL-terminated host copy of a guest string, on the stack.
pub struct CBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> CBuf<N> {
    /// An empty string (`""`, for `AT_EMPTY_PATH`).
    pub const fn empty() -> CBuf<N> {
        CBuf { buf: [0; N], len: 0 }
    }

    /// `"."`.
    pub const fn dot() -> CBuf<N> {
        let mut c = CBuf { buf: [0; N], len: 1 };
        c.buf[0] = b'.';
        c
    }

    /// Copies `s` (which must not contain NUL and must be shorter than `N`).
    pub fn from_bytes(s: &[u8]) -> Option<CBuf<N>> {
        if s.len() >= N || s.contains(&0) {
            return None;
        }
        let mut c = CBuf::empty();
        c.buf[..s.len()].copy_from_slice(s);
        c.len = s.len();
        Some(c)
    }

    /// The space to fill with `len` bytes (the caller then calls
    /// [`CBuf::seal`]). `None` if `len` does not fit with its NUL.
    pub fn space(&mut self, len: usize) -> Option<&mut [u8]> {
        if len >= N {
            return None;
        }
        self.len = 0;
        self.buf[len] = 0;
        Some(&mut self.buf[..len])
    }

    /// Accepts the `len` bytes written into [`CBuf::space`]; false if they
    /// contain a NUL.
    pub fn seal(&mut self, len: usize) -> bool {
        if len >= N || self.buf[..len].contains(&0) {
            return false;
        }
        self.buf[len] = 0;
        self.len = len;
        true
    }

    /// The bytes without the NUL.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Address of the NUL-terminated string.
    fn ptr(&self) -> u64 {
        debug_assert_eq!(self.buf[self.len], 0);
        self.buf.as_ptr() as u64
    }
}

/// A component name (NAME_MAX + NUL).
pub type Name = CBuf<256>;
/// A path (PATH_MAX including the NUL).
pub type Path = CBuf<4096>;

/// Makes a system call, restarting it when a signal interrupted it.
///
/// # Safety
/// As for [`sys::syscall6`].
unsafe fn call(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> Result<u64, Errno> {
    loop {
        // SAFETY: forwarded contract.
        match unsafe { sys::syscall6(n, a, b, c, d, e, f) } {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// `openat2(dir, path, {flags | O_CLOEXEC, mode, resolve})`, retried a few
/// times when the kernel reports a rename race during `..` resolution
/// (EAGAIN under RESOLVE_BENEATH/IN_ROOT).
pub fn openat2<const N: usize>(
    dir: RawFd,
    path: &CBuf<N>,
    flags: u64,
    mode: u64,
    resolve: u64,
) -> Result<OwnedFd, Errno> {
    const O_CLOEXEC: u64 = 0o2000000;
    let how: [u64; 3] = [flags | O_CLOEXEC, mode, resolve];
    let mut tries = 0;
    loop {
        // SAFETY: `path` is NUL-terminated, `how` is a 24-byte open_how that
        // outlives the call; `dir` is a descriptor the caller holds.
        let r = unsafe { call(nr::OPENAT2, dir as u64, path.ptr(), how.as_ptr() as u64, 24, 0, 0) };
        match r {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            r => return r.map(sys::owned),
        }
    }
}

/// `fstat(fd)`.
pub fn fstat(fd: RawFd) -> Result<Stat, Errno> {
    let mut st = Stat::default();
    // SAFETY: `st` is a writable struct stat of 144 bytes.
    unsafe { call(nr::FSTAT, fd as u64, &mut st as *mut Stat as u64, 0, 0, 0, 0) }?;
    Ok(st)
}

/// `newfstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn fstatat_nofollow(dir: RawFd, name: &Name) -> Result<Stat, Errno> {
    let mut st = Stat::default();
    // SAFETY: NUL-terminated name; `st` is a writable struct stat.
    unsafe { call(nr::NEWFSTATAT, dir as u64, name.ptr(), &mut st as *mut Stat as u64, AT_SYMLINK_NOFOLLOW, 0, 0) }?;
    Ok(st)
}

/// `statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, mask)`.
pub fn statx(fd: RawFd, mask: u32) -> Result<Statx, Errno> {
    let mut st = Statx::default();
    let empty = Name::empty();
    // SAFETY: NUL-terminated empty path; `st` is a writable 256-byte statx.
    unsafe {
        call(
            nr::STATX,
            fd as u64,
            empty.ptr(),
            AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT,
            mask as u64,
            &mut st as *mut Statx as u64,
            0,
        )
    }?;
    Ok(st)
}

/// `fstatfs(fd)`.
pub fn fstatfs(fd: RawFd) -> Result<Statfs, Errno> {
    let mut st = Statfs::default();
    // SAFETY: `st` is a writable 120-byte struct statfs.
    unsafe { call(nr::FSTATFS, fd as u64, &mut st as *mut Statfs as u64, 0, 0, 0, 0) }?;
    Ok(st)
}

/// `getdents64(fd, hva, len)`.
///
/// # Safety
/// `[hva, hva+len)` must be memory the kernel may write (guest memory
/// checked by `GuestMemory::check`).
pub unsafe fn getdents64(fd: RawFd, hva: u64, len: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded contract.
    unsafe { call(nr::GETDENTS64, fd as u64, hva, len, 0, 0, 0) }
}

/// `readlinkat(dir, name, hva, len)` (name `""`: the O_PATH symlink itself).
///
/// # Safety
/// As for [`getdents64`].
pub unsafe fn readlinkat(dir: RawFd, name: &Name, hva: u64, len: u64) -> Result<u64, Errno> {
    // SAFETY: NUL-terminated name; buffer per the caller's contract.
    unsafe { call(nr::READLINKAT, dir as u64, name.ptr(), hva, len, 0, 0) }
}

/// `preadv`/`pwritev` at `off`, or `readv`/`writev` at the file position
/// when `off` is `None`.
///
/// # Safety
/// Every iovec must describe memory the kernel may read (`write`) or write
/// (`!write`): guest memory checked by `GuestMemory::check`.
pub unsafe fn rw(fd: RawFd, iov: &[[u64; 2]], off: Option<u64>, write: bool) -> Result<u64, Errno> {
    let (n, o) = match (off, write) {
        (Some(o), false) => (nr::PREADV, o),
        (Some(o), true) => (nr::PWRITEV, o),
        (None, false) => (nr::READV, 0),
        (None, true) => (nr::WRITEV, 0),
    };
    // SAFETY: `iov` is a live array of host iovecs; their memory is valid
    // per the caller's contract. (pos_h = 0: x86-64 takes the whole offset
    // in pos_l.)
    unsafe { call(n, fd as u64, iov.as_ptr() as u64, iov.len() as u64, o, 0, 0) }
}

/// `lseek(fd, off, whence)`.
pub fn lseek(fd: RawFd, off: u64, whence: u64) -> Result<u64, Errno> {
    // SAFETY: integer arguments.
    unsafe { call(nr::LSEEK, fd as u64, off, whence, 0, 0, 0) }
}

/// `fsync(fd)` or `fdatasync(fd)`.
pub fn fsync(fd: RawFd, data_only: bool) -> Result<(), Errno> {
    let n = if data_only { nr::FDATASYNC } else { nr::FSYNC };
    // SAFETY: integer argument.
    unsafe { call(n, fd as u64, 0, 0, 0, 0, 0) }.map(|_| ())
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: RawFd, len: u64) -> Result<(), Errno> {
    // SAFETY: integer arguments.
    unsafe { call(nr::FTRUNCATE, fd as u64, len, 0, 0, 0, 0) }.map(|_| ())
}

/// `fallocate(fd, mode, off, len)`.
pub fn fallocate(fd: RawFd, mode: u64, off: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: integer arguments.
    unsafe { call(nr::FALLOCATE, fd as u64, mode, off, len, 0, 0) }.map(|_| ())
}

/// `mkdirat(dir, name, mode)`.
pub fn mkdirat(dir: RawFd, name: &Name, mode: u64) -> Result<(), Errno> {
    // SAFETY: NUL-terminated name.
    unsafe { call(nr::MKDIRAT, dir as u64, name.ptr(), mode, 0, 0, 0) }.map(|_| ())
}

/// `mknodat(dir, name, mode, 0)` (never a device number).
pub fn mknodat(dir: RawFd, name: &Name, mode: u64) -> Result<(), Errno> {
    // SAFETY: NUL-terminated name.
    unsafe { call(nr::MKNODAT, dir as u64, name.ptr(), mode, 0, 0, 0) }.map(|_| ())
}

/// `unlinkat(dir, name, flags)`.
pub fn unlinkat(dir: RawFd, name: &Name, flags: u64) -> Result<(), Errno> {
    // SAFETY: NUL-terminated name.
    unsafe { call(nr::UNLINKAT, dir as u64, name.ptr(), flags, 0, 0, 0) }.map(|_| ())
}

/// `renameat2(old_dir, old, new_dir, new, flags)`.
pub fn renameat2(old_dir: RawFd, old: &Name, new_dir: RawFd, new: &Name, flags: u64) -> Result<(), Errno> {
    // SAFETY: NUL-terminated names.
    unsafe { call(nr::RENAMEAT2, old_dir as u64, old.ptr(), new_dir as u64, new.ptr(), flags, 0) }.map(|_| ())
}

/// `linkat(old_dir, old, new_dir, new, 0)`: never follows, never
/// `AT_EMPTY_PATH`.
pub fn linkat(old_dir: RawFd, old: &Name, new_dir: RawFd, new: &Name) -> Result<(), Errno> {
    // SAFETY: NUL-terminated names.
    unsafe { call(nr::LINKAT, old_dir as u64, old.ptr(), new_dir as u64, new.ptr(), 0, 0) }.map(|_| ())
}

/// `symlinkat(target, dir, name)`.
pub fn symlinkat(target: &Path, dir: RawFd, name: &Name) -> Result<(), Errno> {
    // SAFETY: NUL-terminated strings.
    unsafe { call(nr::SYMLINKAT, target.ptr(), dir as u64, name.ptr(), 0, 0, 0) }.map(|_| ())
}

/// `fchmod(fd, mode)` (an opened descriptor).
pub fn fchmod(fd: RawFd, mode: u64) -> Result<(), Errno> {
    // SAFETY: integer arguments.
    unsafe { call(nr::FCHMOD, fd as u64, mode, 0, 0, 0, 0) }.map(|_| ())
}

/// `fchmodat2(dir, name, mode, flags)`.
pub fn fchmodat2(dir: RawFd, name: &Name, mode: u64, flags: u64) -> Result<(), Errno> {
    // SAFETY: NUL-terminated name.
    unsafe { call(nr::FCHMODAT2, dir as u64, name.ptr(), mode, flags, 0, 0) }.map(|_| ())
}

/// `fchownat(dir, name, uid, gid, flags)`.
pub fn fchownat(dir: RawFd, name: &Name, uid: u64, gid: u64, flags: u64) -> Result<(), Errno> {
    // SAFETY: NUL-terminated name.
    unsafe { call(nr::FCHOWNAT, dir as u64, name.ptr(), uid, gid, flags, 0) }.map(|_| ())
}

/// `utimensat(dir, name, times, flags)`.
pub fn utimensat(dir: RawFd, name: &Name, times: &[Timespec; 2], flags: u64) -> Result<(), Errno> {
    // SAFETY: NUL-terminated name; `times` is two struct timespec.
    unsafe { call(nr::UTIMENSAT, dir as u64, name.ptr(), times.as_ptr() as u64, flags, 0, 0) }.map(|_| ())
}

/// `struct xattr_args` of the `*xattrat` calls (Linux 6.13).
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// What an xattr call names: an opened descriptor (the `f*xattr` calls) or
/// a name in a directory (the `*xattrat(dir, name, AT_SYMLINK_NOFOLLOW)`
/// calls of Linux 6.13; `"."` for an O_PATH directory itself). The `*at`
/// calls refuse O_PATH descriptors with `AT_EMPTY_PATH` (EBADF).
#[derive(Clone, Copy)]
pub enum XattrTarget<'a> {
    Fd(RawFd),
    At(RawFd, &'a Name),
}

/// `fgetxattr` / `getxattrat` into `[hva, hva+len)` (`len == 0`: the size).
///
/// # Safety
/// As for [`getdents64`].
pub unsafe fn getxattr(t: XattrTarget, xname: &Name, hva: u64, len: u64) -> Result<u64, Errno> {
    match t {
        // SAFETY: NUL-terminated name; buffer per the caller's contract.
        XattrTarget::Fd(fd) => unsafe { call(nr::FGETXATTR, fd as u64, xname.ptr(), hva, len, 0, 0) },
        XattrTarget::At(dir, name) => {
            let args = XattrArgs { value: hva, size: len as u32, flags: 0 };
            // SAFETY: NUL-terminated strings; `args` is a 16-byte
            // xattr_args that outlives the call; buffer per the caller's
            // contract.
            unsafe {
                call(
                    nr::GETXATTRAT,
                    dir as u64,
                    name.ptr(),
                    AT_SYMLINK_NOFOLLOW,
                    xname.ptr(),
                    &args as *const XattrArgs as u64,
                    16,
                )
            }
        }
    }
}

/// `fsetxattr` / `setxattrat` from `[hva, hva+len)`.
///
/// # Safety
/// `[hva, hva+len)` must be readable memory (checked guest memory).
pub unsafe fn setxattr(t: XattrTarget, xname: &Name, hva: u64, len: u64, flags: u64) -> Result<(), Errno> {
    match t {
        // SAFETY: NUL-terminated name; buffer per the caller's contract.
        XattrTarget::Fd(fd) => unsafe { call(nr::FSETXATTR, fd as u64, xname.ptr(), hva, len, flags, 0) }.map(|_| ()),
        XattrTarget::At(dir, name) => {
            let args = XattrArgs { value: hva, size: len as u32, flags: flags as u32 };
            // SAFETY: as for getxattr.
            unsafe {
                call(
                    nr::SETXATTRAT,
                    dir as u64,
                    name.ptr(),
                    AT_SYMLINK_NOFOLLOW,
                    xname.ptr(),
                    &args as *const XattrArgs as u64,
                    16,
                )
            }
            .map(|_| ())
        }
    }
}

/// `flistxattr` / `listxattrat` into a host buffer.
pub fn listxattr(t: XattrTarget, buf: &mut [u8]) -> Result<usize, Errno> {
    let (p, n) = (buf.as_mut_ptr() as u64, buf.len() as u64);
    let r = match t {
        // SAFETY: `buf` is a writable host buffer of its length.
        XattrTarget::Fd(fd) => unsafe { call(nr::FLISTXATTR, fd as u64, p, n, 0, 0, 0) },
        // SAFETY: NUL-terminated name; writable host buffer.
        XattrTarget::At(dir, name) => unsafe {
            call(nr::LISTXATTRAT, dir as u64, name.ptr(), AT_SYMLINK_NOFOLLOW, p, n, 0)
        },
    };
    r.map(|n| n as usize)
}

/// `fremovexattr` / `removexattrat`.
pub fn removexattr(t: XattrTarget, xname: &Name) -> Result<(), Errno> {
    match t {
        // SAFETY: NUL-terminated name.
        XattrTarget::Fd(fd) => unsafe { call(nr::FREMOVEXATTR, fd as u64, xname.ptr(), 0, 0, 0, 0) },
        // SAFETY: NUL-terminated strings.
        XattrTarget::At(dir, name) => unsafe {
            call(nr::REMOVEXATTRAT, dir as u64, name.ptr(), AT_SYMLINK_NOFOLLOW, xname.ptr(), 0, 0)
        },
    }
    .map(|_| ())
}

/// `umask(mask)`; returns the previous mask.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: integer argument; umask cannot fail.
    unsafe { call(nr::UMASK, mask as u64, 0, 0, 0, 0, 0) }.unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbuf_rules() {
        let c = Name::from_bytes(b"abc").unwrap();
        assert_eq!(c.bytes(), b"abc");
        assert!(Name::from_bytes(b"a\0b").is_none());
        assert!(Name::from_bytes(&[b'x'; 256]).is_none());
        assert!(Name::from_bytes(&[b'x'; 255]).is_some());
        let mut c = Name::empty();
        c.space(3).unwrap().copy_from_slice(b"a\0c");
        assert!(!c.seal(3));
        c.space(2).unwrap().copy_from_slice(b"ok");
        assert!(c.seal(2));
        assert_eq!(c.bytes(), b"ok");
        assert!(c.space(256).is_none());
    }
}
