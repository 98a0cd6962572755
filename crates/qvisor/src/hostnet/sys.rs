//! The host system calls of the socket service, fenced here: socket calls,
//! message I/O on host iovecs, epoll, namespaces and limits. Every wrapper
//! returns the kernel's `Errno`; callers add meaning.

use crate::sys::{self, nr, Errno};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// `SOCK_NONBLOCK | SOCK_CLOEXEC`: every host socket is created so.
pub const NONBLOCK_CLOEXEC: u64 = 0o4000 | 0o2000000;
/// `EPOLL_CLOEXEC`.
pub const EPOLL_CLOEXEC: u64 = 0o2000000;
/// `EPOLLET`.
pub const EPOLLET: u32 = 1 << 31;
/// `EPOLL_CTL_ADD`, `EPOLL_CTL_DEL`, `EPOLL_CTL_MOD`.
pub const EPOLL_CTL_ADD: u64 = 1;
pub const EPOLL_CTL_DEL: u64 = 2;
pub const EPOLL_CTL_MOD: u64 = 3;

/// `struct msghdr`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MsgHdr {
    pub name: u64,
    pub namelen: u32,
    pub _pad: u32,
    pub iov: u64,
    pub iovlen: u64,
    pub control: u64,
    pub controllen: u64,
    pub flags: i32,
    pub _pad2: u32,
}

/// `struct mmsghdr`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MMsgHdr {
    pub hdr: MsgHdr,
    pub len: u32,
    pub _pad: u32,
}

const _: () = assert!(std::mem::size_of::<MsgHdr>() == 56);
const _: () = assert!(std::mem::size_of::<MMsgHdr>() == 64);

impl MsgHdr {
    /// A header naming `name` (address bytes, may be empty) and host iovecs.
    pub fn new(name: *const u8, namelen: usize, iov: &[[u64; 2]]) -> MsgHdr {
        MsgHdr {
            name: if namelen == 0 { 0 } else { name as u64 },
            namelen: namelen as u32,
            _pad: 0,
            iov: iov.as_ptr() as u64,
            iovlen: iov.len() as u64,
            control: 0,
            controllen: 0,
            flags: 0,
            _pad2: 0,
        }
    }
}

/// An owned descriptor closed with a plain close(2). (std's `OwnedFd` also
/// calls fcntl(F_GETFD) on drop in debug builds, a system call the VMM's
/// seccomp filter need not allow.)
#[derive(Debug)]
pub struct Fd(RawFd);

impl Fd {
    /// Takes ownership of a descriptor a system call returned.
    fn from_ret(fd: u64) -> Fd {
        Fd(fd as RawFd)
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is open for as long as `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor; nothing uses it after drop.
        let _ = unsafe { sys::syscall3(nr::CLOSE, self.0 as u64, 0, 0) };
    }
}

/// `socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol)`.
pub fn socket(domain: u64, ty: u64, protocol: u64) -> Result<Fd, Errno> {
    // SAFETY: integer arguments.
    unsafe { sys::syscall3(nr::SOCKET, domain, ty | NONBLOCK_CLOEXEC, protocol) }.map(Fd::from_ret)
}

/// `bind(fd, addr)`.
pub fn bind(fd: RawFd, addr: &[u8]) -> Result<(), Errno> {
    // SAFETY: `addr` is valid for its length.
    unsafe { sys::syscall3(nr::BIND, fd as u64, addr.as_ptr() as u64, addr.len() as u64) }.map(|_| ())
}

/// `connect(fd, addr)`.
pub fn connect(fd: RawFd, addr: &[u8]) -> Result<(), Errno> {
    // SAFETY: `addr` is valid for its length.
    unsafe { sys::syscall3(nr::CONNECT, fd as u64, addr.as_ptr() as u64, addr.len() as u64) }.map(|_| ())
}

/// `listen(fd, backlog)`.
pub fn listen(fd: RawFd, backlog: i32) -> Result<(), Errno> {
    // SAFETY: integer arguments.
    unsafe { sys::syscall3(nr::LISTEN, fd as u64, backlog as i64 as u64, 0) }.map(|_| ())
}

/// `accept4(fd, &addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new socket
/// and the peer's address (bytes, length).
pub fn accept(fd: RawFd) -> Result<(Fd, [u8; 32], usize), Errno> {
    let mut addr = [0u8; 32];
    let mut len: u32 = 32;
    // SAFETY: `addr` holds `len` bytes; `len` is a valid socklen_t.
    let nfd = unsafe {
        sys::syscall6(
            nr::ACCEPT4,
            fd as u64,
            addr.as_mut_ptr() as u64,
            &mut len as *mut u32 as u64,
            NONBLOCK_CLOEXEC,
            0,
            0,
        )
    }?;
    Ok((Fd::from_ret(nfd), addr, (len as usize).min(32)))
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: RawFd, how: u64) -> Result<(), Errno> {
    // SAFETY: integer arguments.
    unsafe { sys::syscall3(nr::SHUTDOWN, fd as u64, how, 0) }.map(|_| ())
}

fn name_call(n: u64, fd: RawFd) -> Result<([u8; 32], usize), Errno> {
    let mut addr = [0u8; 32];
    let mut len: u32 = 32;
    // SAFETY: `addr` holds `len` bytes; `len` is a valid socklen_t.
    unsafe { sys::syscall3(n, fd as u64, addr.as_mut_ptr() as u64, &mut len as *mut u32 as u64) }?;
    Ok((addr, (len as usize).min(32)))
}

/// `getsockname(fd)`: address bytes and length.
pub fn getsockname(fd: RawFd) -> Result<([u8; 32], usize), Errno> {
    name_call(nr::GETSOCKNAME, fd)
}

/// `getpeername(fd)`: address bytes and length.
pub fn getpeername(fd: RawFd) -> Result<([u8; 32], usize), Errno> {
    name_call(nr::GETPEERNAME, fd)
}

/// `setsockopt(fd, level, name, val)`.
pub fn setsockopt(fd: RawFd, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
    // SAFETY: `val` is valid for its length.
    unsafe {
        sys::syscall6(
            nr::SETSOCKOPT,
            fd as u64,
            level as i64 as u64,
            name as i64 as u64,
            val.as_ptr() as u64,
            val.len() as u64,
            0,
        )
    }
    .map(|_| ())
}

/// `getsockopt(fd, level, name, buf)`: the length the kernel returned.
pub fn getsockopt(fd: RawFd, level: i32, name: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` bytes; `len` is a valid socklen_t.
    unsafe {
        sys::syscall6(
            nr::GETSOCKOPT,
            fd as u64,
            level as i64 as u64,
            name as i64 as u64,
            buf.as_mut_ptr() as u64,
            &mut len as *mut u32 as u64,
            0,
        )
    }?;
    Ok((len as usize).min(buf.len()))
}

/// An ioctl whose argument is an `int` the kernel fills (FIONREAD, SIOCOUTQ).
pub fn ioctl_int(fd: RawFd, req: u64) -> Result<i32, Errno> {
    let mut v: i32 = 0;
    // SAFETY: `v` is a valid int for the kernel to fill.
    unsafe { sys::ioctl(fd, req, &mut v as *mut i32 as u64) }?;
    Ok(v)
}

/// `sendmsg(fd, hdr, flags)`.
///
/// # Safety
/// The header's name and every iovec must describe memory readable for
/// their lengths while the call runs.
pub unsafe fn sendmsg(fd: RawFd, hdr: &MsgHdr, flags: u32) -> Result<usize, Errno> {
    // SAFETY: forwarded contract; `hdr` is a valid msghdr.
    unsafe { sys::syscall3(nr::SENDMSG, fd as u64, hdr as *const MsgHdr as u64, flags as u64) }.map(|n| n as usize)
}

/// `recvmsg(fd, hdr, flags)`; the kernel updates `hdr.namelen` and `hdr.flags`.
///
/// # Safety
/// The header's name and every iovec must describe memory writable for
/// their lengths while the call runs.
pub unsafe fn recvmsg(fd: RawFd, hdr: &mut MsgHdr, flags: u32) -> Result<usize, Errno> {
    // SAFETY: forwarded contract; `hdr` is a valid msghdr.
    unsafe { sys::syscall3(nr::RECVMSG, fd as u64, hdr as *mut MsgHdr as u64, flags as u64) }.map(|n| n as usize)
}

/// `sendmmsg(fd, msgs, flags)`: messages sent; the kernel fills `len`.
///
/// # Safety
/// As for [`sendmsg`], for every message.
pub unsafe fn sendmmsg(fd: RawFd, msgs: &mut [MMsgHdr], flags: u32) -> Result<usize, Errno> {
    // SAFETY: forwarded contract; `msgs` is a valid mmsghdr array.
    unsafe { sys::syscall6(nr::SENDMMSG, fd as u64, msgs.as_mut_ptr() as u64, msgs.len() as u64, flags as u64, 0, 0) }
        .map(|n| n as usize)
}

/// `recvmmsg(fd, msgs, flags, NULL)`: messages received.
///
/// # Safety
/// As for [`recvmsg`], for every message.
pub unsafe fn recvmmsg(fd: RawFd, msgs: &mut [MMsgHdr], flags: u32) -> Result<usize, Errno> {
    // SAFETY: forwarded contract; `msgs` is a valid mmsghdr array; no timeout.
    unsafe { sys::syscall6(nr::RECVMMSG, fd as u64, msgs.as_mut_ptr() as u64, msgs.len() as u64, flags as u64, 0, 0) }
        .map(|n| n as usize)
}

/// `sendmsg` of host memory (not guest memory) to `name`.
pub fn send_to(fd: RawFd, data: &[u8], name: &[u8], flags: u32) -> Result<usize, Errno> {
    let iov = [[data.as_ptr() as u64, data.len() as u64]];
    let hdr = MsgHdr::new(name.as_ptr(), name.len(), &iov);
    // SAFETY: the iovec and the name describe live host buffers.
    unsafe { sendmsg(fd, &hdr, flags) }
}

/// `recvmsg` into host memory: (bytes, message flags).
pub fn recv_into(fd: RawFd, buf: &mut [u8], flags: u32) -> Result<(usize, i32), Errno> {
    let iov = [[buf.as_mut_ptr() as u64, buf.len() as u64]];
    let mut hdr = MsgHdr::new(std::ptr::null(), 0, &iov);
    // SAFETY: the iovec describes a live, writable host buffer.
    let n = unsafe { recvmsg(fd, &mut hdr, flags) }?;
    Ok((n, hdr.flags))
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll_create() -> Result<Fd, Errno> {
    // SAFETY: integer argument.
    unsafe { sys::syscall3(nr::EPOLL_CREATE1, EPOLL_CLOEXEC, 0, 0) }.map(Fd::from_ret)
}

/// `epoll_ctl(epfd, op, fd, {events, data})`.
pub fn epoll_ctl(epfd: RawFd, op: u64, fd: RawFd, events: u32, data: u64) -> Result<(), Errno> {
    // struct epoll_event is packed on x86-64: u32 events, u64 data.
    let mut ev = [0u8; 12];
    ev[0..4].copy_from_slice(&events.to_ne_bytes());
    ev[4..12].copy_from_slice(&data.to_ne_bytes());
    // SAFETY: `ev` is a valid epoll_event (12 bytes).
    unsafe { sys::syscall6(nr::EPOLL_CTL, epfd as u64, op, fd as u64, ev.as_ptr() as u64, 0, 0) }.map(|_| ())
}

/// `epoll_wait(epfd, out, timeout_ms)`: fills `out` with (events, data).
pub fn epoll_wait(epfd: RawFd, out: &mut [[u8; 12]], timeout_ms: i32) -> Result<usize, Errno> {
    // SAFETY: `out` holds `out.len()` packed epoll_events.
    unsafe {
        sys::syscall6(
            nr::EPOLL_WAIT,
            epfd as u64,
            out.as_mut_ptr() as u64,
            out.len() as u64,
            timeout_ms as i64 as u64,
            0,
            0,
        )
    }
    .map(|n| n as usize)
}

/// `open(path, O_RDONLY | O_CLOEXEC)`.
pub fn open_readonly(path: &std::ffi::CStr) -> Result<Fd, Errno> {
    const O_CLOEXEC: u64 = 0o2000000;
    // SAFETY: valid C string.
    unsafe { sys::syscall6(nr::OPENAT, (-100i64) as u64, path.as_ptr() as u64, O_CLOEXEC, 0, 0, 0) }.map(Fd::from_ret)
}

/// `setns(fd, nstype)`.
pub fn setns(fd: &Fd, nstype: u64) -> Result<(), Errno> {
    // SAFETY: integer arguments; a descriptor we own.
    unsafe { sys::syscall3(nr::SETNS, fd.as_raw_fd() as u64, nstype, 0) }.map(|_| ())
}

/// `unshare(flags)`.
pub fn unshare(flags: u64) -> Result<(), Errno> {
    // SAFETY: integer argument.
    unsafe { sys::syscall3(nr::UNSHARE, flags, 0, 0) }.map(|_| ())
}

/// `prlimit64(0, resource, new, &old)`: the previous (soft, hard) limits.
pub fn prlimit(resource: u64, new: Option<(u64, u64)>) -> Result<(u64, u64), Errno> {
    let lim = new.map(|(s, h)| [s, h]);
    let mut old = [0u64; 2];
    let new_ptr = lim.as_ref().map(|l| l.as_ptr() as u64).unwrap_or(0);
    // SAFETY: `lim` (when given) and `old` are valid struct rlimit64s.
    unsafe { sys::syscall6(nr::PRLIMIT64, 0, resource, new_ptr, old.as_mut_ptr() as u64, 0, 0) }?;
    Ok((old[0], old[1]))
}

/// `struct ifreq` with the flags member (`ifr_name[16]`, `short ifr_flags`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IfreqFlags {
    pub name: [u8; 16],
    pub flags: i16,
    pub _pad: [u8; 22],
}

const _: () = assert!(std::mem::size_of::<IfreqFlags>() == 40);

/// `ioctl(fd, SIOCGIFFLAGS / SIOCSIFFLAGS, ifr)`.
pub fn ifreq_flags(fd: RawFd, req: u64, ifr: &mut IfreqFlags) -> Result<(), Errno> {
    // SAFETY: `ifr` is a valid struct ifreq (40 bytes).
    unsafe { sys::ioctl(fd, req, ifr as *mut IfreqFlags as u64) }.map(|_| ())
}
