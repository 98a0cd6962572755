//! The host system calls shmq needs, behind safe wrappers. The only module of
//! the host extras with `unsafe` (no `libc` crate: declarations for x86-64
//! Linux/glibc are written out here).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};
use crate::raw::{Region, Window};

#[repr(C)]
struct IoVec {
    base: *mut c_void,
    len: usize,
}

#[repr(C)]
struct MsgHdr {
    name: *mut c_void,
    namelen: u32,
    iov: *mut IoVec,
    iovlen: usize,
    control: *mut c_void,
    controllen: usize,
    flags: c_int,
}

#[repr(C)]
struct CmsgHdr {
    len: usize,
    level: c_int,
    kind: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PollFd {
    pub fd: c_int,
    pub events: i16,
    pub revents: i16,
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn memfd_create(name: *const c_char, flags: c_uint) -> c_int;
    fn ftruncate(fd: c_int, len: i64) -> c_int;
    fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, off: i64) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn eventfd(initval: c_uint, flags: c_int) -> c_int;
    fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize;
    fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    fn readv(fd: c_int, iov: *const IoVec, cnt: c_int) -> isize;
    fn writev(fd: c_int, iov: *const IoVec, cnt: c_int) -> isize;
    fn poll(fds: *mut PollFd, n: c_ulong, timeout: c_int) -> c_int;
    fn sendmsg(fd: c_int, msg: *const MsgHdr, flags: c_int) -> isize;
    fn recvmsg(fd: c_int, msg: *mut MsgHdr, flags: c_int) -> isize;
    fn recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize;
    fn syscall(num: c_long, ...) -> c_long;
    fn sched_setaffinity(pid: c_int, size: usize, mask: *const u64) -> c_int;
    fn clock_gettime(clock: c_int, ts: *mut Timespec) -> c_int;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
}

pub const POLLIN: i16 = 0x1;
pub const POLLERR: i16 = 0x8;
pub const POLLHUP: i16 = 0x10;
pub const POLLNVAL: i16 = 0x20;
pub const POLLRDHUP: i16 = 0x2000;
pub const EINTR: i32 = 4;
pub const EAGAIN: i32 = 11;

const MFD_CLOEXEC: c_uint = 1;
const MFD_ALLOW_SEALING: c_uint = 2;
const F_ADD_SEALS: c_int = 1033;
const F_GET_SEALS: c_int = 1034;
pub const F_SEAL_SEAL: c_int = 1;
pub const F_SEAL_SHRINK: c_int = 2;
pub const F_SEAL_GROW: c_int = 4;
const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_SHARED: c_int = 1;
const EFD_NONBLOCK: c_int = 0o4000;
const EFD_CLOEXEC: c_int = 0o2000000;
const SOL_SOCKET: c_int = 1;
const SCM_RIGHTS: c_int = 1;
const MSG_PEEK: c_int = 2;
const MSG_CTRUNC: c_int = 8;
const MSG_DONTWAIT: c_int = 0x40;
const MSG_NOSIGNAL: c_int = 0x4000;
const MSG_CMSG_CLOEXEC: c_int = 0x4000_0000;
const SYS_PIDFD_OPEN: c_long = 434;
const O_NONBLOCK: c_int = 0o4000;
const O_CLOEXEC: c_int = 0o2000000;
const CLOCK_MONOTONIC: c_int = 1;

fn os_err(op: &'static str) -> Error {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    Error::Os { op, errno }
}

fn fd_result(op: &'static str, fd: c_int) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(os_err(op));
    }
    // SAFETY: the kernel just returned this new descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub fn memfd(name: &CStr) -> Result<OwnedFd> {
    // SAFETY: name is a valid NUL-terminated string.
    fd_result("memfd_create", unsafe { memfd_create(name.as_ptr(), MFD_CLOEXEC | MFD_ALLOW_SEALING) })
}

pub fn truncate(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    let len = i64::try_from(len).map_err(|_| Error::InvalidArgument("memfd size too large"))?;
    // SAFETY: plain syscall on a descriptor we borrow.
    if unsafe { ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(os_err("ftruncate"));
    }
    Ok(())
}

pub fn add_seals(fd: BorrowedFd<'_>, seals: c_int) -> Result<()> {
    // SAFETY: F_ADD_SEALS takes an int argument.
    if unsafe { fcntl(fd.as_raw_fd(), F_ADD_SEALS, seals) } != 0 {
        return Err(os_err("fcntl(F_ADD_SEALS)"));
    }
    Ok(())
}

pub fn seals(fd: BorrowedFd<'_>) -> Result<c_int> {
    // SAFETY: F_GET_SEALS takes no argument.
    let r = unsafe { fcntl(fd.as_raw_fd(), F_GET_SEALS) };
    if r < 0 {
        return Err(os_err("fcntl(F_GET_SEALS)"));
    }
    Ok(r)
}

/// A shared read-write mapping of a whole file, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
    region: Region,
}

// SAFETY: the mapping is plain shared memory, reached only through `Region`
// (which is Send + Sync); unmapping happens once, in Drop.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping> {
        if len == 0 {
            return Err(Error::InvalidArgument("cannot map an empty shared region"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr = NULL) cannot
        // overlap anything of ours; arguments are plain values.
        let p = unsafe { mmap(core::ptr::null_mut(), len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.as_raw_fd(), 0) };
        if p as isize == -1 {
            return Err(os_err("mmap"));
        }
        let ptr = p as *mut u8;
        // SAFETY: the mapping is `len` bytes, page aligned, readable and
        // writable, and lives until Drop; the Region is only lent out borrowed
        // from self and no Rust reference to the bytes exists.
        let region = match unsafe { Region::new(ptr, len) } {
            Ok(r) => r,
            Err(e) => {
                // SAFETY: unmapping the mapping we just created.
                unsafe { munmap(p, len) };
                return Err(e);
            }
        };
        Ok(Mapping { ptr, len, region })
    }

    pub fn region(&self) -> &Region {
        &self.region
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; every borrow of the Region ended with &self.
        unsafe { munmap(self.ptr as *mut c_void, self.len) };
    }
}

/// A non-blocking, close-on-exec eventfd.
pub fn new_eventfd() -> Result<OwnedFd> {
    // SAFETY: plain syscall.
    fd_result("eventfd", unsafe { eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) })
}

/// Adds `v` to an eventfd counter.
pub fn eventfd_add(fd: BorrowedFd<'_>, v: u64) -> Result<()> {
    loop {
        // SAFETY: writes 8 bytes from a live u64.
        let r = unsafe { write(fd.as_raw_fd(), &v as *const u64 as *const c_void, 8) };
        if r == 8 {
            return Ok(());
        }
        let e = os_err("write(eventfd)");
        match e {
            Error::Os { errno: EINTR, .. } => continue,
            // The counter is saturated: the sleeper has plenty to wake for.
            Error::Os { errno: EAGAIN, .. } => return Ok(()),
            _ => return Err(e),
        }
    }
}

/// Reads (and resets) an eventfd counter: `Ok(0)` if it was zero.
pub fn eventfd_take(fd: BorrowedFd<'_>) -> Result<u64> {
    let mut v = 0u64;
    loop {
        // SAFETY: reads 8 bytes into a live u64.
        let r = unsafe { read(fd.as_raw_fd(), &mut v as *mut u64 as *mut c_void, 8) };
        if r == 8 {
            return Ok(v);
        }
        let e = os_err("read(eventfd)");
        match e {
            Error::Os { errno: EINTR, .. } => continue,
            Error::Os { errno: EAGAIN, .. } => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// `poll(2)`, retrying on EINTR only when there is no timeout. Returns the number of ready fds.
pub fn poll_fds(fds: &mut [PollFd], timeout_ms: i32) -> Result<usize> {
    loop {
        // SAFETY: the slice is a valid array of pollfd structures.
        let r = unsafe { poll(fds.as_mut_ptr(), fds.len() as c_ulong, timeout_ms) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = os_err("poll");
        if matches!(e, Error::Os { errno: EINTR, .. }) && timeout_ms < 0 {
            continue;
        }
        if matches!(e, Error::Os { errno: EINTR, .. }) {
            return Ok(0);
        }
        return Err(e);
    }
}

fn iovecs(windows: &[Window<'_>]) -> Vec<IoVec> {
    windows.iter().filter(|w| !w.is_empty()).map(|w| IoVec { base: w.as_ptr() as *mut c_void, len: w.len() }).collect()
}

/// `readv(fd, windows)`: the kernel writes straight into ring windows.
pub fn readv_into(fd: BorrowedFd<'_>, windows: &[Window<'_>]) -> Result<usize> {
    let iov = iovecs(windows);
    loop {
        // SAFETY: each iovec describes a live window of the shared mapping
        // that the ring protocol currently reserves for us (free space).
        let r = unsafe { readv(fd.as_raw_fd(), iov.as_ptr(), iov.len() as c_int) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = os_err("readv");
        if !matches!(e, Error::Os { errno: EINTR, .. }) {
            return Err(e);
        }
    }
}

/// `writev(fd, windows)`: the kernel reads straight out of ring windows.
pub fn writev_from(fd: BorrowedFd<'_>, windows: &[Window<'_>]) -> Result<usize> {
    let iov = iovecs(windows);
    loop {
        // SAFETY: each iovec describes a live window of the shared mapping
        // holding data the ring protocol lets us read.
        let r = unsafe { writev(fd.as_raw_fd(), iov.as_ptr(), iov.len() as c_int) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = os_err("writev");
        if !matches!(e, Error::Os { errno: EINTR, .. }) {
            return Err(e);
        }
    }
}

const CMSG_HDR: usize = core::mem::size_of::<CmsgHdr>();
const fn cmsg_align(n: usize) -> usize {
    (n + 7) & !7
}

/// Sends `data` with `fds` attached (SCM_RIGHTS) on a unix socket.
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> Result<()> {
    if data.is_empty() {
        return Err(Error::InvalidArgument("SCM_RIGHTS needs at least one data byte"));
    }
    let payload = core::mem::size_of_val(fds);
    let mut control = vec![0u64; (CMSG_HDR + cmsg_align(payload)).div_ceil(8)];
    let hdr = CmsgHdr { len: CMSG_HDR + payload, level: SOL_SOCKET, kind: SCM_RIGHTS };
    let mut iov = IoVec { base: data.as_ptr() as *mut c_void, len: data.len() };
    let msg = MsgHdr {
        name: core::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.as_mut_ptr() as *mut c_void,
        controllen: control.len() * 8,
        flags: 0,
    };
    // SAFETY: control is 8-byte aligned and large enough for the header and
    // the fd array (computed above); the writes stay inside it.
    unsafe {
        let base = control.as_mut_ptr() as *mut u8;
        core::ptr::write(base as *mut CmsgHdr, hdr);
        core::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, base.add(CMSG_HDR), payload);
    }
    loop {
        // SAFETY: msg points to live buffers described above.
        let r = unsafe { sendmsg(sock.as_raw_fd(), &msg, MSG_NOSIGNAL) };
        if r == data.len() as isize {
            return Ok(());
        }
        if r >= 0 {
            return Err(Error::Protocol("short send of the handover message"));
        }
        let e = os_err("sendmsg");
        if !matches!(e, Error::Os { errno: EINTR, .. }) {
            return Err(e);
        }
    }
}

/// Receives one message and up to `max_fds` descriptors (close-on-exec).
/// Returns the byte count (0: the peer hung up) and the descriptors.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], max_fds: usize) -> Result<(usize, Vec<OwnedFd>)> {
    let space = CMSG_HDR + cmsg_align(max_fds * core::mem::size_of::<RawFd>());
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = IoVec { base: buf.as_mut_ptr() as *mut c_void, len: buf.len() };
    let mut msg = MsgHdr {
        name: core::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.as_mut_ptr() as *mut c_void,
        controllen: control.len() * 8,
        flags: 0,
    };
    let n = loop {
        // SAFETY: msg describes live, writable buffers.
        let r = unsafe { recvmsg(sock.as_raw_fd(), &mut msg, MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = os_err("recvmsg");
        if !matches!(e, Error::Os { errno: EINTR, .. }) {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    let mut off = 0usize;
    let clen = msg.controllen.min(control.len() * 8);
    let base = control.as_ptr() as *const u8;
    while off + CMSG_HDR <= clen {
        // SAFETY: off + CMSG_HDR <= clen <= buffer size, and off is 8-aligned.
        let h = unsafe { core::ptr::read(base.add(off) as *const CmsgHdr) };
        if h.len < CMSG_HDR || off + h.len > clen {
            break;
        }
        if h.level == SOL_SOCKET && h.kind == SCM_RIGHTS {
            let count = (h.len - CMSG_HDR) / core::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: inside the cmsg payload (bounds checked above);
                // unaligned read of an int.
                let fd = unsafe {
                    core::ptr::read_unaligned(
                        base.add(off + CMSG_HDR + i * core::mem::size_of::<RawFd>()) as *const RawFd
                    )
                };
                // SAFETY: SCM_RIGHTS just installed this descriptor in our table; we own it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        off += cmsg_align(h.len);
    }
    if msg.flags & MSG_CTRUNC != 0 {
        return Err(Error::Protocol("the peer sent more descriptors than expected"));
    }
    Ok((n, fds))
}

/// Peeks at a socket without blocking: `Ok(Some(0))` means end of file.
pub fn peek(sock: BorrowedFd<'_>) -> Result<Option<usize>> {
    let mut b = 0u8;
    // SAFETY: one writable byte.
    let r = unsafe { recv(sock.as_raw_fd(), &mut b as *mut u8 as *mut c_void, 1, MSG_PEEK | MSG_DONTWAIT) };
    if r >= 0 {
        return Ok(Some(r as usize));
    }
    match os_err("recv(MSG_PEEK)") {
        Error::Os { errno: EAGAIN | EINTR, .. } => Ok(None),
        e => Err(e),
    }
}

/// `pidfd_open(pid, 0)`: readable once the process exits.
pub fn pidfd_open(pid: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { syscall(SYS_PIDFD_OPEN, pid as c_long, 0 as c_long) };
    fd_result("pidfd_open", r as c_int)
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    let mut mask = [0u64; 16];
    if cpu >= 1024 {
        return Err(Error::InvalidArgument("CPU number out of range"));
    }
    mask[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: the mask is a valid 128-byte cpu_set_t.
    if unsafe { sched_setaffinity(0, core::mem::size_of_val(&mask), mask.as_ptr()) } != 0 {
        return Err(os_err("sched_setaffinity"));
    }
    Ok(())
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes on one host.
pub fn monotonic_ns() -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: writes a timespec we own.
    unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe(nonblocking: bool) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    let flags = O_CLOEXEC | if nonblocking { O_NONBLOCK } else { 0 };
    // SAFETY: fds is a writable array of two ints.
    if unsafe { pipe2(fds.as_mut_ptr(), flags) } != 0 {
        return Err(os_err("pipe2"));
    }
    // SAFETY: the kernel just created both descriptors for us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
