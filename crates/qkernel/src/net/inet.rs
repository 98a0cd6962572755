//! AF_INET/AF_INET6 TCP and UDP sockets: each is a host socket owned by the
//! VMM (docs/hostnet.md), named by a handle. Data moves between the host
//! socket and the guest frames behind the program's buffer (the host's
//! sendmsg/recvmsg on guest memory); the guest copies no payload.
//!
//! Readiness rule: the host reports changes (edge); the socket keeps a
//! readiness word. Before an operation that can return EAGAIN the guest
//! clears the bit it depends on; progress sets it again; EAGAIN leaves it
//! clear and a blocking call parks the task until an event sets it. The
//! word may be stale-positive (the next try clears it) but never
//! stale-negative, so no wake-up is lost.

use super::host;
use super::{block, common_getsockopt, common_setsockopt, raise_sigpipe, Common, RecvOut, SendMsg, Socket};
use super::{MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, MSG_WAITALL, SOCK_DGRAM, SOCK_STREAM};
use crate::arch::x86_64::usercopy::write_user;
use crate::fs::iobuf::IoBuf;
use crate::fs::poll::{POLLRDNORM, POLLWRNORM};
use crate::task::wait::WaitQueue;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use qlib::hcall::GuestIovec;
use qlib::hostnet::poll::{EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, WATCHABLE};
use qlib::hostnet::{ipproto, msg, so, MsgHeader, Op, RecvInfo, SockAddr, Wire};
use qlib::linux::Errno;

/// Most bytes one host request moves.
const CHUNK: u64 = 256 << 10;
const FIONREAD: u64 = 0x541b;
const SIOCOUTQ: u64 = 0x5411;

/// A host-backed socket.
pub struct InetSocket {
    handle: u64,
    family: u16,
    ty: u32,
    protocol: u32,
    /// Readiness word (EPOLL* bits), see the module docs.
    ready: AtomicU32,
    wq: WaitQueue,
    common: Common,
    ino: u64,
    /// The host watches the socket (TCP: after listen or connect, so a fresh
    /// socket's "closed" state is never reported as a hang-up).
    watched: AtomicBool,
}

/// Trims a program's address buffer to what the protocol carries.
fn sockaddr(b: &[u8]) -> Result<SockAddr, Errno> {
    if b.len() < 2 {
        return Err(Errno::EINVAL);
    }
    let fam = u16::from_le_bytes([b[0], b[1]]);
    let want = match fam {
        super::AF_INET => b.len().min(16),
        super::AF_INET6 => b.len().min(28),
        _ => b.len().min(qlib::hostnet::SOCKADDR_MAX),
    };
    SockAddr::from_slice(&b[..want]).ok_or(Errno::EINVAL)
}

impl InetSocket {
    /// `socket(family, ty, protocol)` on the host.
    pub fn create(family: u16, ty: u32, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
        let proto = match (ty, protocol as i32) {
            (SOCK_STREAM, 0 | ipproto::IPPROTO_TCP) => ipproto::IPPROTO_TCP as u32,
            (SOCK_DGRAM, 0 | ipproto::IPPROTO_UDP) => ipproto::IPPROTO_UDP as u32,
            (SOCK_STREAM | SOCK_DGRAM, _) => return Err(Errno::EPROTONOSUPPORT),
            (super::SOCK_RAW, _) => return Err(Errno::EPERM),
            _ => return Err(Errno::ESOCKTNOSUPPORT),
        };
        let mask = if ty == SOCK_STREAM { 0 } else { WATCHABLE };
        let handle = host::call(
            Op::Socket,
            0,
            0,
            [family as u64, ty as u64, proto as u64, mask as u64, 0],
            0,
            |_| {},
            |r, _| r.result().map(|_| r.handle),
        )??;
        Ok(Self::wrap(handle, family, ty, proto, ty != SOCK_STREAM))
    }

    fn wrap(handle: u64, family: u16, ty: u32, protocol: u32, watched: bool) -> Arc<InetSocket> {
        let s = Arc::new(InetSocket {
            handle,
            family,
            ty,
            protocol,
            ready: AtomicU32::new(0),
            wq: WaitQueue::new(),
            common: Common::default(),
            ino: super::new_ino(),
            watched: AtomicBool::new(watched),
        });
        super::events::register(handle, &s);
        s
    }

    /// A readiness event from the host.
    pub fn on_event(&self, revents: u32) {
        self.ready.fetch_or(revents, Ordering::AcqRel);
        self.wq.wake_all();
    }

    fn watch(&self) {
        if !self.watched.swap(true, Ordering::AcqRel) {
            let _ = host::simple(Op::Watch, self.handle, [WATCHABLE as u64, 0, 0, 0, 0]);
        }
    }

    fn clear(&self, bits: u32) {
        self.ready.fetch_and(!bits, Ordering::AcqRel);
    }

    fn set(&self, bits: u32) {
        self.ready.fetch_or(bits, Ordering::AcqRel);
    }

    fn has(&self, bits: u32) -> bool {
        self.ready.load(Ordering::Acquire) & bits != 0
    }

    fn so_error(&self) -> Result<i32, Errno> {
        let v = host::call(
            Op::GetSockOpt,
            0,
            self.handle,
            [super::SOL_SOCKET as u64, so::SO_ERROR as u64, 4, 0, 0],
            0,
            |_| {},
            |r, p| r.result().map(|_| if p.len() >= 4 { i32::from_le_bytes([p[0], p[1], p[2], p[3]]) } else { 0 }),
        )??;
        self.clear(EPOLLERR);
        Ok(v)
    }

    fn name(&self, op: Op) -> Result<Vec<u8>, Errno> {
        host::call(
            op,
            0,
            self.handle,
            [0; 5],
            0,
            |_| {},
            |r, p| r.result().map(|_| SockAddr::read_from(p).map(|a| a.as_slice().to_vec()).unwrap_or_default()),
        )?
    }

    /// One SendMsg/RecvMsg over `frames`; also returns the reply's `vals[0]`
    /// (RecvMsg: 1 when the host's receive queue is empty now).
    fn io(&self, op: Op, flags: u32, addr: &SockAddr, frames: &[GuestIovec]) -> Result<(u64, RecvInfo, u64), Errno> {
        let hdr = MsgHeader { addr: *addr, iov_count: frames.len() as u32, _pad: 0 };
        host::call(
            op,
            flags,
            self.handle,
            [0; 5],
            48 + 16 * frames.len(),
            |w| {
                w.put(&hdr).put_all(frames);
            },
            |r, p| r.result().map(|n| (n, RecvInfo::read_from(p).unwrap_or_default(), r.vals[0])),
        )?
    }
}

impl Socket for InetSocket {
    fn family(&self) -> u16 {
        self.family
    }
    fn sock_type(&self) -> u32 {
        self.ty
    }
    fn protocol(&self) -> u32 {
        self.protocol
    }
    fn common(&self) -> &Common {
        &self.common
    }
    fn ino(&self) -> u64 {
        self.ino
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        let sa = sockaddr(addr)?;
        host::with_bytes(Op::Bind, self.handle, [0; 5], sa.as_bytes()).map(|_| ())
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        host::simple(Op::Listen, self.handle, [backlog as i64 as u64, 0, 0, 0, 0])?;
        self.watch();
        Ok(())
    }

    fn accept(&self, nonblock: bool) -> Result<(Arc<dyn Socket>, Vec<u8>), Errno> {
        loop {
            self.clear(EPOLLIN);
            let r = host::call(
                Op::Accept,
                0,
                self.handle,
                [WATCHABLE as u64, 0, 0, 0, 0],
                0,
                |_| {},
                |r, p| {
                    r.result()
                        .map(|_| (r.handle, SockAddr::read_from(p).map(|a| a.as_slice().to_vec()).unwrap_or_default()))
                },
            )?;
            match r {
                Ok((h, peer)) => {
                    self.set(EPOLLIN);
                    let s = Self::wrap(h, self.family, self.ty, self.protocol, true);
                    return Ok((s, peer));
                }
                Err(Errno::EAGAIN) if !nonblock => block(
                    &self.wq,
                    || self.has(EPOLLIN | EPOLLERR | EPOLLHUP),
                    self.common.rcvtimeo.load(Ordering::Relaxed),
                )?,
                Err(e) => return Err(e),
            }
        }
    }

    fn connect(&self, addr: &[u8], nonblock: bool) -> Result<(), Errno> {
        let sa = sockaddr(addr)?;
        if self.ty != SOCK_STREAM {
            return host::with_bytes(Op::Connect, self.handle, [0; 5], sa.as_bytes()).map(|_| ());
        }
        let watched = self.watched.load(Ordering::Acquire);
        if !watched {
            self.clear(EPOLLOUT | EPOLLERR | EPOLLHUP);
        }
        match host::with_bytes(Op::Connect, self.handle, [0; 5], sa.as_bytes()) {
            Ok(_) => {
                self.watch();
                Ok(())
            }
            Err(Errno::EINPROGRESS) => {
                self.watch();
                if nonblock {
                    return Err(Errno::EINPROGRESS);
                }
                loop {
                    match block(
                        &self.wq,
                        || self.has(EPOLLOUT | EPOLLERR | EPOLLHUP),
                        self.common.sndtimeo.load(Ordering::Relaxed),
                    ) {
                        Ok(()) => {}
                        Err(Errno::EAGAIN) => return Err(Errno::EINPROGRESS),
                        Err(e) => return Err(e),
                    }
                    let err = self.so_error()?;
                    if err != 0 {
                        return Err(Errno(err as u16));
                    }
                    match self.name(Op::GetPeerName) {
                        Ok(_) => return Ok(()),
                        Err(Errno::ENOTCONN) => self.clear(EPOLLOUT | EPOLLHUP),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    fn sendmsg(&self, m: &mut SendMsg, flags: u32, nonblock: bool) -> Result<usize, Errno> {
        let addr = match &m.addr {
            Some(a) if self.ty == SOCK_DGRAM => sockaddr(a)?,
            Some(a) if a.len() >= 2 => sockaddr(a)?,
            _ => SockAddr::default(),
        };
        let hflags = flags & msg::SEND_FLAGS;
        let mut total = 0usize;
        loop {
            let frames = if m.buf.remaining() == 0 { Vec::new() } else { m.buf.frames(CHUNK, false)? };
            self.clear(EPOLLOUT);
            match self.io(Op::SendMsg, hflags, &addr, &frames) {
                Ok((n, _, _)) => {
                    self.set(EPOLLOUT);
                    m.buf.consume(n);
                    total += n as usize;
                    if self.ty != SOCK_STREAM || m.buf.remaining() == 0 || nonblock {
                        return Ok(total);
                    }
                }
                Err(Errno::EAGAIN) if !nonblock => {
                    match block(
                        &self.wq,
                        || self.has(EPOLLOUT | EPOLLERR | EPOLLHUP),
                        self.common.sndtimeo.load(Ordering::Relaxed),
                    ) {
                        Ok(()) => {}
                        Err(_) if total > 0 => return Ok(total),
                        Err(e) => return Err(e),
                    }
                }
                Err(Errno::EPIPE) => {
                    if flags & MSG_NOSIGNAL == 0 {
                        raise_sigpipe();
                    }
                    return if total > 0 { Ok(total) } else { Err(Errno::EPIPE) };
                }
                Err(e) => {
                    if total > 0 {
                        return Ok(total);
                    }
                    return Err(e);
                }
            }
        }
    }

    fn recvmsg(
        &self,
        buf: &mut IoBuf,
        flags: u32,
        nonblock: bool,
        _ctl_cap: usize,
        out: &mut RecvOut,
    ) -> Result<usize, Errno> {
        let waitall = flags & MSG_WAITALL != 0 && flags & MSG_PEEK == 0 && self.ty == SOCK_STREAM;
        let hflags = flags & msg::RECV_FLAGS & !MSG_WAITALL;
        let mut total = 0usize;
        let stream = self.ty == SOCK_STREAM;
        let wake = EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP;
        loop {
            // A stream read whose readiness word says "nothing arrived
            // since the host last had nothing" does not ask the host: the
            // word is never stale-negative (the host's next data is an edge
            // that sets the bit, and data a request of this sandbox sends is
            // posted before that request returns, REPLY_EVENTS), so the VMM
            // call would only answer EAGAIN. Blocking reads park at once.
            if stream && buf.remaining() > 0 && self.watched.load(Ordering::Acquire) && !self.has(wake) {
                if nonblock {
                    return if total > 0 { Ok(total) } else { Err(Errno::EAGAIN) };
                }
                match block(&self.wq, || self.has(wake), self.common.rcvtimeo.load(Ordering::Relaxed)) {
                    Ok(()) => {}
                    Err(_) if total > 0 => return Ok(total),
                    Err(e) => return Err(e),
                }
            }
            let frames = if buf.remaining() == 0 { Vec::new() } else { buf.frames(CHUNK, true)? };
            let room: u64 = frames.iter().map(|f| f.len).sum();
            self.clear(EPOLLIN);
            match self.io(Op::RecvMsg, hflags, &SockAddr::default(), &frames) {
                Ok((n, info, drained)) => {
                    // A stream read the host reports as having emptied its
                    // receive queue leaves the bit clear: data arriving since
                    // is an edge that sets it. Otherwise (more queued, end of
                    // file, a peek, a datagram) set it (stale-positive).
                    if !stream || n == 0 || drained != 1 || flags & MSG_PEEK != 0 {
                        self.set(EPOLLIN);
                    }
                    if total == 0 {
                        if self.ty != SOCK_STREAM {
                            out.addr = info.addr.as_slice().to_vec();
                        }
                        out.flags = info.flags & (MSG_TRUNC | msg::MSG_CTRUNC);
                    }
                    buf.consume(n.min(room));
                    total += n as usize;
                    if !waitall || n == 0 || buf.remaining() == 0 {
                        return Ok(total);
                    }
                }
                Err(Errno::EAGAIN) if !nonblock => {
                    match block(
                        &self.wq,
                        || self.has(EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP),
                        self.common.rcvtimeo.load(Ordering::Relaxed),
                    ) {
                        Ok(()) => {}
                        Err(_) if total > 0 => return Ok(total),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => {
                    if e != Errno::EAGAIN {
                        self.clear(EPOLLERR);
                    }
                    return if total > 0 { Ok(total) } else { Err(e) };
                }
            }
        }
    }

    fn shutdown(&self, how: u64) -> Result<(), Errno> {
        host::simple(Op::Shutdown, self.handle, [how, 0, 0, 0, 0]).map(|_| ())
    }

    fn getsockname(&self) -> Result<Vec<u8>, Errno> {
        self.name(Op::GetSockName)
    }

    fn getpeername(&self) -> Result<Vec<u8>, Errno> {
        self.name(Op::GetPeerName)
    }

    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        if let Some(r) = common_setsockopt(self, level, name, val) {
            return r;
        }
        host::with_bytes(Op::SetSockOpt, self.handle, [level as u64, name as u64, 0, 0, 0], val).map(|_| ())
    }

    fn getsockopt(&self, level: i32, name: i32, cap: usize) -> Result<Vec<u8>, Errno> {
        if let Some(r) = common_getsockopt(self, level, name) {
            return r;
        }
        if level == super::SOL_SOCKET && name == so::SO_ERROR {
            return Ok(self.so_error()?.to_le_bytes().to_vec());
        }
        let cap = cap.min(qlib::hostnet::MAX_OPTLEN);
        host::call(
            Op::GetSockOpt,
            0,
            self.handle,
            [level as u64, name as u64, cap as u64, 0, 0],
            0,
            |_| {},
            |r, p| r.result().map(|_| p[..(r.vals[0] as usize).min(p.len())].to_vec()),
        )?
    }

    fn poll(&self) -> u32 {
        if !self.watched.load(Ordering::Acquire) {
            // A TCP socket neither connecting nor listening (Linux: closed).
            return EPOLLOUT | POLLWRNORM | EPOLLHUP;
        }
        let mut w = self.ready.load(Ordering::Acquire);
        if w & EPOLLIN != 0 {
            w |= POLLRDNORM;
        }
        if w & EPOLLOUT != 0 {
            w |= POLLWRNORM;
        }
        w
    }

    fn wait_queue(&self) -> &WaitQueue {
        &self.wq
    }

    fn ioctl(&self, req: u64, arg: u64) -> Result<u64, Errno> {
        match req {
            FIONREAD | SIOCOUTQ => {
                let v = host::call(
                    Op::Ioctl,
                    0,
                    self.handle,
                    [req, 0, 0, 0, 0],
                    0,
                    |_| {},
                    |r, _| r.result().map(|_| r.vals[0]),
                )??;
                write_user(arg, &(v.min(i32::MAX as u64) as i32))?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn release(&self) {
        super::events::unregister(self.handle);
        let _ = host::simple(Op::Close, self.handle, [0; 5]);
    }
}
