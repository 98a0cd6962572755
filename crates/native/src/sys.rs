//! The fence around every raw Linux call of the addon.
//!
//! Declarations are written from glibc's headers (`<sys/stat.h>`,
//! `<sys/xattr.h>`, `<sys/file.h>`, `<sys/mount.h>`, `<sys/ioctl.h>`,
//! `<unistd.h>`; Debian 12, glibc 2.36, x86-64) since the `libc` crate is not
//! available here. Each is wrapped in a safe function returning
//! `std::io::Result`, so nothing outside this module needs `unsafe`.

use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use std::io;
use std::os::fd::AsRawFd;

mod ffi {
    use super::*;

    extern "C" {
        pub fn mknod(path: *const c_char, mode: c_uint, dev: u64) -> c_int;
        pub fn lsetxattr(
            path: *const c_char,
            name: *const c_char,
            value: *const c_void,
            size: usize,
            flags: c_int,
        ) -> c_int;
        pub fn lgetxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: usize) -> isize;
        pub fn llistxattr(path: *const c_char, list: *mut c_char, size: usize) -> isize;
        pub fn flock(fd: c_int, operation: c_int) -> c_int;
        pub fn mount(
            source: *const c_char,
            target: *const c_char,
            fstype: *const c_char,
            flags: c_ulong,
            data: *const c_void,
        ) -> c_int;
        pub fn umount2(target: *const c_char, flags: c_int) -> c_int;
        pub fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
        pub fn geteuid() -> c_uint;
        pub fn poll(fds: *mut super::PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
        pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
        pub fn close(fd: c_int) -> c_int;
    }
}

pub const ENODATA: i32 = 61;
pub const ERANGE: i32 = 34;
pub const EINTR: i32 = 4;
pub const EWOULDBLOCK: i32 = 11;

pub const LOCK_SH: i32 = 1;
pub const LOCK_EX: i32 = 2;
pub const LOCK_NB: i32 = 4;
pub const LOCK_UN: i32 = 8;

/// `KVM_GET_API_VERSION` = `_IO(KVMIO, 0x00)`.
const KVM_GET_API_VERSION: c_ulong = 0xAE00;

fn check(ret: c_long) -> io::Result<c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn ptr_or_null(s: Option<&CStr>) -> *const c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

pub fn mknod(path: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { ffi::mknod(path.as_ptr(), mode, dev) }.into()).map(drop)
}

pub fn lsetxattr(path: &CStr, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and a slice of exactly `value.len()` readable bytes, all outliving the call.
    check(unsafe { ffi::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), flags) }.into())
        .map(drop)
}

/// `None` when the attribute does not exist (`ENODATA`).
pub fn lgetxattr(path: &CStr, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    loop {
        // SAFETY: a size query: NUL-terminated strings, no buffer (size 0).
        let size = unsafe { ffi::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        let size = match check(size as c_long) {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(ENODATA) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` has `buf.len()` writable bytes; the kernel writes at most that many.
        let got = unsafe { ffi::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match check(got as c_long) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(Some(buf));
            }
            // The value grew between the two calls: ask again.
            Err(e) if e.raw_os_error() == Some(ERANGE) => continue,
            Err(e) if e.raw_os_error() == Some(ENODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// The raw list: names, each NUL-terminated.
pub fn llistxattr(path: &CStr) -> io::Result<Vec<u8>> {
    loop {
        // SAFETY: a size query with no buffer.
        let size = unsafe { ffi::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        let size = check(size as c_long)? as usize;
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` has `buf.len()` writable bytes.
        let got = unsafe { ffi::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match check(got as c_long) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

pub fn flock(fd: i32, operation: i32) -> io::Result<()> {
    // SAFETY: flock takes plain integers; a bad descriptor is reported as EBADF.
    check(unsafe { ffi::flock(fd, operation) }.into()).map(drop)
}

pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: every pointer is null or a NUL-terminated string outliving the call (mount(2) accepts null
    // source/fstype/data).
    check(
        unsafe {
            ffi::mount(
                ptr_or_null(source),
                target.as_ptr(),
                ptr_or_null(fstype),
                flags as c_ulong,
                ptr_or_null(data).cast(),
            )
        }
        .into(),
    )
    .map(drop)
}

pub fn umount2(target: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: a NUL-terminated string outliving the call.
    check(unsafe { ffi::umount2(target.as_ptr(), flags) }.into()).map(drop)
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { ffi::geteuid() }
}

/// Opens `path` read-write and asks for `KVM_GET_API_VERSION`.
pub fn kvm_api_version(path: &str) -> io::Result<i32> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    // SAFETY: `file` is an open descriptor for the call's duration; this ioctl takes no argument.
    let version = check(unsafe { ffi::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION) }.into())?;
    Ok(version as i32)
}

/// glibc's `gnu_dev_makedev`.
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32) | ((major & 0x0000_0fff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0x0000_00ff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(1, 3), 0x103);
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(10, 232), 0xae8);
        // Large minor and major use the split encoding.
        assert_eq!(makedev(0, 0x12345), (0x123 << 12 << 8) | 0x45);
        assert_eq!(makedev(0x1000, 0), 1 << 44);
    }

    #[test]
    fn xattr_errors_are_os_errors() {
        let missing = c"/nonexistent/quark-native-test";
        let err = llistxattr(missing).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(2));
        let err = lgetxattr(missing, c"user.x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(2));
    }
}

/// `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollFd {
    pub fd: c_int,
    pub events: i16,
    pub revents: i16,
}

/// poll(2) bits.
pub const POLLIN: i16 = 0x1;
/// Peer closed its end of a stream socket.
pub const POLLRDHUP: i16 = 0x2000;

/// poll(2); `timeout_ms` -1 waits forever. EINTR is retried.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed pollfd array of its length.
        let r = unsafe { ffi::poll(fds.as_mut_ptr(), fds.len() as c_ulong, timeout_ms) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(EINTR) {
            return Err(e);
        }
    }
}

const F_DUPFD_CLOEXEC: c_int = 1030;

/// A close-on-exec duplicate of `fd` (fcntl F_DUPFD_CLOEXEC), owned.
pub fn dup_cloexec(fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer and touches no memory.
    let new = check(unsafe { ffi::fcntl(fd, F_DUPFD_CLOEXEC, 0) }.into())?;
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new as i32) })
}

/// close(2) of a descriptor JavaScript handed over.
pub fn close(fd: i32) -> io::Result<()> {
    // SAFETY: closing a descriptor number touches no memory; JavaScript gave
    // up this descriptor by passing it to attachRing/attachStream.
    check(unsafe { ffi::close(fd) }.into()).map(drop)
}
