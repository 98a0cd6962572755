//! Sockets (README.md): AF_INET/AF_INET6 over the host's sockets
//! (`inet.rs`, docs/hostnet.md), AF_UNIX in the guest (`unix.rs`),
//! AF_NETLINK NETLINK_ROUTE answered from the host's read-only dumps
//! (`netlink.rs`). This file holds what they share: the [`Socket`] trait,
//! the file object over it, blocking with timeouts, and the readiness events
//! the host posts (`events.rs`).

pub mod events;
pub mod host;
pub mod inet;
pub mod netlink;
pub mod unix;

use crate::fs::file::File;
use crate::fs::iobuf::IoBuf;
use crate::fs::poll::{POLLIN, POLLOUT};
use crate::fs::FileOps;
use crate::task::wait::{WaitQueue, WaitResult};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::linux::types::Stat;
use qlib::linux::Errno;

pub use qlib::hostnet::af::{AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, AF_UNSPEC};
pub use qlib::hostnet::msg::*;
pub use qlib::hostnet::sock::*;

pub const SOL_SOCKET: i32 = 1;
pub const SO_DEBUG: i32 = 1;
pub const SO_PASSCRED: i32 = 16;
pub const SO_PEERCRED: i32 = 17;
pub const SO_RCVLOWAT: i32 = 18;
pub const SO_SNDLOWAT: i32 = 19;
pub const SO_ACCEPTCONN: i32 = 30;
pub const SO_PEEK_OFF: i32 = 42;
pub const SCM_RIGHTS: i32 = 1;
pub const SCM_CREDENTIALS: i32 = 2;
pub const MSG_WAITFORONE: u32 = 0x10000;
pub const MSG_CMSG_CLOEXEC: u32 = 0x4000_0000;
pub const MSG_ERRQUEUE: u32 = 0x2000;

/// Data and ancillary data of one sendmsg.
pub struct SendMsg {
    pub buf: IoBuf,
    /// Destination (`msg_name`), as the program gave it.
    pub addr: Option<Vec<u8>>,
    /// The control bytes (`msg_control`), copied in.
    pub control: Vec<u8>,
}

/// What one recvmsg returns besides the byte count.
#[derive(Default)]
pub struct RecvOut {
    /// Source address (empty: none).
    pub addr: Vec<u8>,
    /// Control messages to copy out (already formatted).
    pub control: Vec<u8>,
    /// `msg_flags`.
    pub flags: u32,
}

/// Per-socket state every family keeps: blocking timeouts.
#[derive(Default)]
pub struct Common {
    /// SO_RCVTIMEO / SO_SNDTIMEO in nanoseconds (0: none).
    pub rcvtimeo: AtomicU64,
    pub sndtimeo: AtomicU64,
}

/// One socket of any family.
pub trait Socket: Send + Sync {
    fn family(&self) -> u16;
    fn sock_type(&self) -> u32;
    fn protocol(&self) -> u32 {
        0
    }
    fn common(&self) -> &Common;
    fn bind(&self, addr: &[u8]) -> Result<(), Errno>;
    fn listen(&self, _backlog: i32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }
    /// A new connection and its peer's address.
    fn accept(&self, _nonblock: bool) -> Result<(Arc<dyn Socket>, Vec<u8>), Errno> {
        Err(Errno::EOPNOTSUPP)
    }
    fn connect(&self, addr: &[u8], nonblock: bool) -> Result<(), Errno>;
    fn sendmsg(&self, m: &mut SendMsg, flags: u32, nonblock: bool) -> Result<usize, Errno>;
    /// `ctl_cap`: room for control messages.
    fn recvmsg(
        &self,
        buf: &mut IoBuf,
        flags: u32,
        nonblock: bool,
        ctl_cap: usize,
        out: &mut RecvOut,
    ) -> Result<usize, Errno>;
    fn shutdown(&self, how: u64) -> Result<(), Errno>;
    fn getsockname(&self) -> Result<Vec<u8>, Errno>;
    fn getpeername(&self) -> Result<Vec<u8>, Errno>;
    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno>;
    fn getsockopt(&self, level: i32, name: i32, cap: usize) -> Result<Vec<u8>, Errno>;
    fn poll(&self) -> u32;
    fn wait_queue(&self) -> &WaitQueue;
    /// FIONREAD and friends.
    fn ioctl(&self, _req: u64, _arg: u64) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }
    /// The last descriptor closed.
    fn release(&self) {}
    /// Inode number for fstat.
    fn ino(&self) -> u64;
}

/// The open file over a socket.
pub struct SockFile(pub Arc<dyn Socket>);

impl SockFile {
    /// A file description for `s` (`O_RDWR` plus `extra` flags).
    pub fn open(s: Arc<dyn Socket>, nonblock: bool) -> Arc<File> {
        let mut flags = qlib::linux::consts::fcntl::O_RDWR as u32;
        if nonblock {
            flags |= qlib::linux::consts::fcntl::O_NONBLOCK as u32;
        }
        File::new(Arc::new(SockFile(s)), None, None, flags)
    }
}

impl FileOps for SockFile {
    fn read(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        let mut out = RecvOut::default();
        self.0.recvmsg(buf, 0, f.nonblocking(), 0, &mut out)
    }
    fn write(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        let mut m = SendMsg { buf: core::mem::replace(buf, IoBuf::user(Vec::new())), addr: None, control: Vec::new() };
        let r = self.0.sendmsg(&mut m, 0, f.nonblocking());
        *buf = m.buf;
        r
    }
    fn seekable(&self) -> bool {
        false
    }
    fn poll(&self, _f: &File) -> u32 {
        self.0.poll()
    }
    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(self.0.wait_queue())
    }
    fn ioctl(&self, _f: &File, req: u64, arg: u64) -> Result<u64, Errno> {
        const SIOCGIFCONF: u64 = 0x8912;
        const SIOCGIFNAME: u64 = 0x8910;
        const SIOCGIFINDEX: u64 = 0x8933;
        match req {
            SIOCGIFCONF => return netlink::ifconf(arg),
            SIOCGIFNAME | SIOCGIFINDEX => return netlink::ifreq(req, arg),
            _ => {}
        }
        self.0.ioctl(req, arg)
    }
    fn release(&self, _f: &File) {
        self.0.release();
    }
    fn stat(&self, _f: &File) -> Result<Stat, Errno> {
        let c = crate::task::process().creds.lock().clone();
        Ok(Stat {
            st_dev: 8,
            st_ino: self.0.ino(),
            st_nlink: 1,
            st_mode: qlib::linux::consts::mode::S_IFSOCK | 0o777,
            st_uid: c.euid,
            st_gid: c.egid,
            st_blksize: 4096,
            ..Stat::default()
        })
    }
    fn as_socket(&self) -> Option<&Arc<dyn Socket>> {
        Some(&self.0)
    }
}

/// Sleeps on `wq` until `cond()` holds. Timeouts end with EAGAIN (as Linux
/// reports an expired SO_RCVTIMEO/SO_SNDTIMEO); a signal ends it with
/// ERESTARTSYS, or EINTR when a timeout is set.
pub fn block(wq: &WaitQueue, cond: impl FnMut() -> bool, timeout_ns: u64) -> Result<(), Errno> {
    let deadline = if timeout_ns == 0 { None } else { Some(crate::time::monotonic_ns().saturating_add(timeout_ns)) };
    match wq.wait_until(cond, true, deadline) {
        WaitResult::Ready => Ok(()),
        WaitResult::TimedOut => Err(Errno::EAGAIN),
        WaitResult::Interrupted => Err(if timeout_ns == 0 { Errno::ERESTARTSYS } else { Errno::EINTR }),
    }
}

/// Raises SIGPIPE on the calling thread (a write to a closed connection
/// without MSG_NOSIGNAL).
pub fn raise_sigpipe() {
    use crate::task::signal;
    let t = crate::task::current_arc();
    let sig = qlib::linux::consts::signal::SIGPIPE;
    signal::send_to_task(&t, sig, signal::SigInfo::kernel(sig));
}

/// Readiness bits a socket's poll reports for "readable" and "writable".
pub const IN: u32 = POLLIN | crate::fs::poll::POLLRDNORM;
pub const OUT: u32 = POLLOUT | crate::fs::poll::POLLWRNORM;

/// Creates a socket of `family`/`ty`/`protocol` (`ty` without flags).
pub fn create(family: u64, ty: u32, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    match family as u16 {
        AF_INET | AF_INET6 => inet::InetSocket::create(family as u16, ty, protocol),
        AF_UNIX => unix::UnixSocket::create(ty, protocol),
        AF_NETLINK => netlink::NetlinkSocket::create(ty, protocol),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// Reads a C `int` option value.
pub fn opt_int(val: &[u8]) -> Result<i32, Errno> {
    if val.len() < 4 {
        return Err(Errno::EINVAL);
    }
    Ok(i32::from_le_bytes([val[0], val[1], val[2], val[3]]))
}

/// A `struct timeval` option value in nanoseconds.
pub fn opt_timeval(val: &[u8]) -> Result<u64, Errno> {
    if val.len() < 16 {
        return Err(Errno::EINVAL);
    }
    let sec = i64::from_le_bytes(val[0..8].try_into().map_err(|_| Errno::EINVAL)?);
    let usec = i64::from_le_bytes(val[8..16].try_into().map_err(|_| Errno::EINVAL)?);
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    if sec < 0 {
        return Ok(0);
    }
    Ok((sec as u64).saturating_mul(1_000_000_000).saturating_add(usec as u64 * 1000))
}

/// Nanoseconds as a `struct timeval`.
pub fn timeval_bytes(ns: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    v.extend_from_slice(&(((ns % 1_000_000_000) / 1000) as i64).to_le_bytes());
    v
}

/// Options every family answers the same way; `None` when not one of them.
pub fn common_getsockopt(s: &dyn Socket, level: i32, name: i32) -> Option<Result<Vec<u8>, Errno>> {
    use qlib::hostnet::so::*;
    if level != SOL_SOCKET {
        return None;
    }
    let int = |v: i32| Some(Ok(v.to_le_bytes().to_vec()));
    match name {
        SO_TYPE => int(s.sock_type() as i32),
        SO_DOMAIN => int(s.family() as i32),
        SO_PROTOCOL => int(s.protocol() as i32),
        SO_RCVTIMEO_OLD | SO_RCVTIMEO_NEW => Some(Ok(timeval_bytes(s.common().rcvtimeo.load(Ordering::Relaxed)))),
        SO_SNDTIMEO_OLD | SO_SNDTIMEO_NEW => Some(Ok(timeval_bytes(s.common().sndtimeo.load(Ordering::Relaxed)))),
        _ => None,
    }
}

/// Options every family sets the same way; `None` when not one of them.
pub fn common_setsockopt(s: &dyn Socket, level: i32, name: i32, val: &[u8]) -> Option<Result<(), Errno>> {
    use qlib::hostnet::so::*;
    if level != SOL_SOCKET {
        return None;
    }
    let set = |slot: &AtomicU64| Some(opt_timeval(val).map(|ns| slot.store(ns, Ordering::Relaxed)));
    match name {
        SO_RCVTIMEO_OLD | SO_RCVTIMEO_NEW => set(&s.common().rcvtimeo),
        SO_SNDTIMEO_OLD | SO_SNDTIMEO_NEW => set(&s.common().sndtimeo),
        _ => None,
    }
}

/// A fresh inode number for a socket.
pub fn new_ino() -> u64 {
    crate::fs::new_ino()
}
