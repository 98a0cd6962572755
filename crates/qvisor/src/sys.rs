//! Raw Linux system calls for the VMM (no libc crate is available offline).
//!
//! This module and `kvm/ioctl.rs` hold the VMM's unsafe code. Each wrapper
//! returns `Result<_, Errno>` with the kernel's error; higher layers turn
//! those into error enums with messages.

use core::arch::asm;
use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub use qlib::linux::Errno;

/// System call numbers used by the VMM.
#[allow(missing_docs)]
pub mod nr {
    pub use qlib::linux::sysno::nr::*;
}

/// Performs a raw system call.
///
/// # Safety
/// The arguments must be valid for system call `n` (pointers to live memory
/// of the right size, descriptors the caller owns, ...).
#[inline(always)]
pub unsafe fn syscall6(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> Result<u64, Errno> {
    let ret: i64;
    // SAFETY: the SYSCALL instruction clobbers RCX and R11 only; the caller
    // guarantees the arguments are valid.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    match Errno::from_ret(ret) {
        Some(err) => Err(err),
        None => Ok(ret as u64),
    }
}

/// Convenience forms with fewer arguments.
///
/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall3(n: u64, a: u64, b: u64, c: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a, b, c, 0, 0, 0) }
}

/// Converts an `Errno` to an `std::io::Error`.
pub fn io_error(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.0 as i32)
}

/// `ioctl(fd, req, arg)`.
///
/// # Safety
/// `arg` must be valid for request `req`.
pub unsafe fn ioctl(fd: RawFd, req: u64, arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded contract.
    unsafe { syscall3(nr::IOCTL, fd as u64, req, arg) }
}

/// Takes ownership of a descriptor a system call returned.
pub fn owned(fd: u64) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// `memfd_create(name, MFD_CLOEXEC)`.
pub fn memfd_create(name: &CStr) -> Result<OwnedFd, Errno> {
    const MFD_CLOEXEC: u64 = 1;
    // SAFETY: `name` is a valid C string.
    unsafe { syscall3(nr::MEMFD_CREATE, name.as_ptr() as u64, MFD_CLOEXEC, 0) }.map(owned)
}

/// A shared mapping of a descriptor (unmapped on drop).
pub struct Mapping {
    addr: u64,
    len: u64,
}

/// Memory protection for [`Mapping::new`].
pub const PROT_RW: u64 = 3;

impl Mapping {
    /// `mmap(NULL, len, prot, MAP_SHARED [| MAP_NORESERVE], fd, 0)`.
    pub fn new(fd: RawFd, len: u64, prot: u64, noreserve: bool) -> Result<Mapping, Errno> {
        const MAP_SHARED: u64 = 1;
        const MAP_NORESERVE: u64 = 0x4000;
        let flags = MAP_SHARED | if noreserve { MAP_NORESERVE } else { 0 };
        // SAFETY: a fresh mapping chosen by the kernel touches no existing memory.
        let addr = unsafe { syscall6(nr::MMAP, 0, len, prot, flags, fd as u64, 0) }?;
        Ok(Mapping { addr, len })
    }

    /// Start address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length mapping (never created).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; nothing references it after drop.
        let _ = unsafe { syscall3(nr::MUNMAP, self.addr, self.len, 0) };
    }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` holds two ints.
    unsafe { syscall3(nr::PIPE2, fds.as_mut_ptr() as u64, 0o2000000, 0) }?;
    Ok((owned(fds[0] as u64), owned(fds[1] as u64)))
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: RawFd, len: u64) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    unsafe { syscall3(nr::FTRUNCATE, fd as u64, len, 0) }.map(|_| ())
}

/// `gettid()`.
pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall3(nr::GETTID, 0, 0, 0) }.unwrap_or(0) as i32
}

/// `getpid()`.
pub fn getpid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall3(nr::GETPID, 0, 0, 0) }.unwrap_or(0) as i32
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill(tgid: i32, tid: i32, sig: u32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    unsafe { syscall3(nr::TGKILL, tgid as u64, tid as u64, sig as u64) }.map(|_| ())
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: u32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    unsafe { syscall3(nr::KILL, pid as i64 as u64, sig as u64, 0) }.map(|_| ())
}

/// `prctl(option, arg2, arg3, arg4, arg5)`.
pub fn prctl(option: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> Result<u64, Errno> {
    // SAFETY: the prctl options we use take integers or valid pointers
    // provided by the caller (see confine/).
    unsafe { syscall6(nr::PRCTL, option, a2, a3, a4, a5, 0) }
}

/// `clock_gettime(clock)` in nanoseconds.
pub fn clock_ns(clock: u64) -> u64 {
    let mut ts = [0i64; 2];
    // SAFETY: `ts` is a valid timespec.
    let _ = unsafe { syscall3(nr::CLOCK_GETTIME, clock, ts.as_mut_ptr() as u64, 0) };
    ts[0] as u64 * 1_000_000_000 + ts[1] as u64
}

/// CLOCK_MONOTONIC.
pub const CLOCK_MONOTONIC: u64 = 1;
/// CLOCK_REALTIME.
pub const CLOCK_REALTIME: u64 = 0;

/// `preadv(fd, iov, n, off)` with host iovecs.
///
/// # Safety
/// Every iovec must describe writable memory the caller may let the kernel fill.
pub unsafe fn preadv(fd: RawFd, iov: &[[u64; 2]], off: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded contract.
    unsafe { syscall6(nr::PREADV, fd as u64, iov.as_ptr() as u64, iov.len() as u64, off, 0, 0) }
}

/// `readv(fd, iov, n)` with host iovecs.
///
/// # Safety
/// As for [`preadv`].
pub unsafe fn readv(fd: RawFd, iov: &[[u64; 2]]) -> Result<u64, Errno> {
    // SAFETY: forwarded contract.
    unsafe { syscall3(nr::READV, fd as u64, iov.as_ptr() as u64, iov.len() as u64) }
}

/// `writev(fd, iov, n)` with host iovecs.
///
/// # Safety
/// Every iovec must describe readable memory.
pub unsafe fn writev(fd: RawFd, iov: &[[u64; 2]]) -> Result<u64, Errno> {
    // SAFETY: forwarded contract.
    unsafe { syscall3(nr::WRITEV, fd as u64, iov.as_ptr() as u64, iov.len() as u64) }
}

/// `RWF_NOWAIT`: fail with EAGAIN instead of blocking (pipes, sockets,
/// cached file data).
pub const RWF_NOWAIT: u64 = 8;

/// `preadv2(fd, iov, n, -1, flags)`: reads at the current position.
///
/// # Safety
/// As for [`preadv`].
pub unsafe fn readv2(fd: RawFd, iov: &[[u64; 2]], flags: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded contract; offset -1 means "current position".
    unsafe { syscall6(nr::PREADV2, fd as u64, iov.as_ptr() as u64, iov.len() as u64, u64::MAX, u64::MAX, flags) }
}

/// `pwritev2(fd, iov, n, -1, flags)`: writes at the current position.
///
/// # Safety
/// As for [`writev`].
pub unsafe fn writev2(fd: RawFd, iov: &[[u64; 2]], flags: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded contract; offset -1 means "current position".
    unsafe { syscall6(nr::PWRITEV2, fd as u64, iov.as_ptr() as u64, iov.len() as u64, u64::MAX, u64::MAX, flags) }
}

/// `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

/// poll(2) event bits.
pub const POLLIN: i16 = 0x1;
/// See [`POLLIN`].
pub const POLLOUT: i16 = 0x4;
/// See [`POLLIN`].
pub const POLLERR: i16 = 0x8;
/// See [`POLLIN`].
pub const POLLHUP: i16 = 0x10;
/// See [`POLLIN`].
pub const POLLNVAL: i16 = 0x20;

/// `ppoll(fds, n, timeout, NULL)`; `timeout_ns` None waits forever. Returns
/// the number of descriptors with events (EINTR is returned, not retried).
pub fn ppoll(fds: &mut [PollFd], timeout_ns: Option<u64>) -> Result<u64, Errno> {
    let ts = timeout_ns.map(|ns| [ns / 1_000_000_000, ns % 1_000_000_000]);
    let tsp = ts.as_ref().map(|t| t.as_ptr() as u64).unwrap_or(0);
    // SAFETY: `fds` is a valid pollfd array of its length; `ts` (if any) a
    // valid timespec that outlives the call; no signal mask.
    unsafe { syscall6(nr::PPOLL, fds.as_mut_ptr() as u64, fds.len() as u64, tsp, 0, 8, 0) }
}

/// glibc's `struct sigaction` on x86-64.
#[repr(C)]
struct SigAction {
    handler: extern "C" fn(i32),
    mask: [u64; 16],
    flags: i32,
    restorer: u64,
}

extern "C" {
    fn sigaction(sig: i32, act: *const SigAction, old: *mut SigAction) -> i32;
    fn pthread_sigmask(how: i32, set: *const [u64; 16], old: *mut [u64; 16]) -> i32;
}

/// Installs `handler` for `sig` (through glibc, which supplies the restorer),
/// without SA_RESTART so blocking calls return EINTR.
pub fn set_signal_handler(sig: u32, handler: extern "C" fn(i32)) -> Result<(), Errno> {
    let act = SigAction { handler, mask: [0; 16], flags: 0, restorer: 0 };
    // SAFETY: `act` is a valid sigaction; the handler is a plain extern fn.
    let r = unsafe { sigaction(sig as i32, &act, std::ptr::null_mut()) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(22) as u16))
    }
}

/// Blocks (`block = true`) or unblocks `sigs` in the calling thread.
pub fn mask_signals(sigs: &[u32], block: bool) {
    let mut set = [0u64; 16];
    for &s in sigs {
        set[((s - 1) / 64) as usize] |= 1 << ((s - 1) % 64);
    }
    // SAFETY: `set` is a valid sigset_t.
    unsafe { pthread_sigmask(if block { 0 } else { 1 }, &set, std::ptr::null_mut()) };
}

/// `waitpid(pid, &status, 0)` retried on EINTR; returns the raw status.
pub fn waitpid(pid: i32) -> Result<i32, Errno> {
    let mut status: i32 = 0;
    loop {
        // SAFETY: `status` is a valid int.
        match unsafe { syscall6(nr::WAIT4, pid as u64, &mut status as *mut i32 as u64, 0, 0, 0, 0) } {
            Ok(_) => return Ok(status),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Exit code a shell would show for a wait status (128 + signal when killed).
pub fn status_to_exit_code(status: i32) -> i32 {
    if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    }
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, 3)`: a second descriptor of the same open file.
pub fn dup_cloexec(fd: RawFd) -> Result<OwnedFd, Errno> {
    const F_DUPFD_CLOEXEC: u64 = 1030;
    // SAFETY: integer arguments only.
    unsafe { syscall3(nr::FCNTL, fd as u64, F_DUPFD_CLOEXEC, 3) }.map(owned)
}

/// The hard RLIMIT_NOFILE of this process.
pub fn nofile_hard_limit() -> Result<u64, Errno> {
    const RLIMIT_NOFILE: u64 = 7;
    let mut lim = [0u64; 2];
    // SAFETY: `lim` is a writable struct rlimit.
    unsafe { syscall6(nr::PRLIMIT64, 0, RLIMIT_NOFILE, 0, lim.as_mut_ptr() as u64, 0, 0) }?;
    Ok(lim[1])
}

unsafe extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
}

/// Makes every thread allocate from glibc's main arena. Threads' own arenas
/// read `/proc/sys/vm/overcommit_memory` the first time they shrink, an
/// `openat` the seccomp filter kills (the socket service's netlink replies
/// are large enough to trigger it on a vCPU thread).
pub fn single_malloc_arena() {
    const M_ARENA_MAX: i32 = -8;
    // SAFETY: mallopt takes integers and only adjusts allocator tunables;
    // called before any other thread exists.
    unsafe { mallopt(M_ARENA_MAX, 1) };
}
