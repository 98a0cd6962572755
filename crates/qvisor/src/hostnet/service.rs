//! The socket service: decodes one request message, checks everything the
//! guest wrote (header, counts, addresses, option values, every
//! guest-physical range) before any host call, performs the operation on a
//! non-blocking host socket and encodes the answer.

use super::netlink;
use super::notifier::Notifier;
use super::sys as nsys;
use super::table::{Handle, Table};
use crate::memory::GuestMemory;
use crate::sys::Errno;
use qlib::hcall::GuestIovec;
use qlib::hostnet::{
    af, ioctl, ipproto, msg, poll, sock, sockopt_rule, split_request, AddrUse, MsgHeader, Op, OptKind, Reader,
    RecvInfo, Reply, Request, SockAddr, Wire, MAX_BATCH, MAX_IOVECS_PER_MSG, MAX_NETLINK_REQUEST, MAX_OPTLEN,
    MAX_REQUEST, REPLY_SIZE,
};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Host sockets one sandbox may hold unless configured otherwise.
pub const DEFAULT_MAX_SOCKETS: usize = 4096;

/// The readiness registration of one socket.
#[derive(Default)]
struct WatchState {
    /// Watched events (0 = not in the epoll set).
    mask: u32,
    /// Closed by the guest: no new registration.
    closed: bool,
}

/// One host socket.
pub struct Socket {
    fd: nsys::Fd,
    watch: Mutex<WatchState>,
    /// A positive SO_LINGER time the guest set (0 = none): kept here, never
    /// given to the host socket (see `qlib::hostnet::SOCKOPTS`).
    linger: AtomicI32,
}

impl Socket {
    fn new(fd: nsys::Fd) -> Socket {
        Socket { fd, watch: Mutex::new(WatchState::default()), linger: AtomicI32::new(0) }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The sandbox's socket service.
pub struct HostNet {
    table: Mutex<Table<Socket>>,
    notifier: Notifier,
    /// Moves harvested readiness events into the guest's ring; true when it
    /// posted some (set once by the sandbox, `crate::netevents`).
    pump: std::sync::OnceLock<Pump>,
}

/// See [`HostNet::set_pump`].
pub type Pump = Box<dyn Fn(&HostNet) -> bool + Send + Sync>;

/// One parsed message of a send/receive request.
struct Msg {
    name: [u8; 32],
    namelen: usize,
    iov: Vec<[u64; 2]>,
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, Errno> {
    m.lock().map_err(|_| Errno::EIO)
}

/// Descriptor exhaustion on the host is the sandbox's socket limit.
fn fd_limit(e: Errno) -> Errno {
    if e == Errno::EMFILE {
        Errno::ENFILE
    } else {
        e
    }
}

fn sockaddr(bytes: &[u8; 32], len: usize) -> SockAddr {
    SockAddr::from_slice(&bytes[..len.min(32)]).unwrap_or_default()
}

impl HostNet {
    /// A service holding at most `max_sockets` host sockets at once.
    pub fn new(max_sockets: usize) -> Result<HostNet, Errno> {
        Ok(HostNet {
            table: Mutex::new(Table::new(max_sockets)),
            notifier: Notifier::new()?,
            pump: std::sync::OnceLock::new(),
        })
    }

    /// Installs the event pump: after every request the calling (vCPU)
    /// thread posts the events the request made ready (a loopback send makes
    /// the in-sandbox peer readable before `sendmsg` returns) and flags the
    /// reply with [`qlib::hostnet::REPLY_EVENTS`], so the guest wakes the
    /// peer at once, without an interrupt.
    pub fn set_pump(&self, pump: Pump) {
        let _ = self.pump.set(pump);
    }

    /// The readiness notifier (for the transport).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Host sockets currently open.
    pub fn open_sockets(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// Performs the request `msg` and writes the answer (a [`Reply`] header
    /// and its payload) into `out`, replacing its contents. Never panics on
    /// any input; guest memory is reached only through `mem`'s checks.
    pub fn call(&self, mem: &GuestMemory, msg: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.resize(REPLY_SIZE, 0);
        let mut reply = Reply::default();
        match self.dispatch(mem, msg, &mut reply, out) {
            Ok(v) => reply.ret = v as i64,
            Err(e) => {
                out.truncate(REPLY_SIZE);
                reply.ret = e.to_ret();
                reply.handle = 0;
            }
        }
        reply.payload_len = (out.len() - REPLY_SIZE) as u32;
        if self.pump.get().is_some_and(|p| p(self)) {
            reply._reserved |= qlib::hostnet::REPLY_EVENTS;
        }
        out[..REPLY_SIZE].copy_from_slice(reply.as_bytes());
    }

    fn dispatch(&self, mem: &GuestMemory, msg: &[u8], reply: &mut Reply, out: &mut Vec<u8>) -> Result<u64, Errno> {
        if msg.len() > MAX_REQUEST {
            return Err(Errno::EINVAL);
        }
        let (h, payload) = split_request(msg).ok_or(Errno::EINVAL)?;
        if h._reserved != 0 {
            return Err(Errno::EINVAL);
        }
        let op = Op::from_raw(h.op).ok_or(Errno::ENOSYS)?;
        if h.flags != 0 && !matches!(op, Op::SendMsg | Op::RecvMsg | Op::SendMmsg | Op::RecvMmsg) {
            return Err(Errno::EINVAL);
        }
        match op {
            Op::Socket => return self.socket(&h, reply),
            Op::Netlink => return self.netlink(mem, &h, payload, reply),
            Op::Close => return self.close(h.handle),
            _ => {}
        }
        let s = lock(&self.table)?.get(h.handle).ok_or(Errno::EBADF)?;
        let fd = s.raw();
        match op {
            Op::Bind => nsys::bind(fd, Self::addr(payload, AddrUse::Bind)?.as_slice()).map(|_| 0),
            Op::Connect => nsys::connect(fd, Self::addr(payload, AddrUse::Connect)?.as_slice()).map(|_| 0),
            // The guest's int, as the program passed it (the kernel clamps).
            Op::Listen => nsys::listen(fd, h.args[0] as u32 as i32).map(|_| 0),
            Op::Accept => self.accept(&s, &h, reply, out),
            Op::SendMsg => self.send(mem, fd, &h, payload, 1, out),
            Op::SendMmsg => self.send(mem, fd, &h, payload, h.args[0], out),
            Op::RecvMsg => {
                let n = self.recv(mem, fd, &h, payload, 1, out)?;
                // Tell the guest whether the receive queue is empty now, so it
                // can park its next blocking read without asking again (its
                // readiness rule, docs/hostnet.md): vals[0] = 1 when drained.
                // One host ioctl, no guest instructions.
                if n > 0 && h.flags & msg::MSG_PEEK == 0 {
                    reply.vals[0] = u64::from(matches!(nsys::ioctl_int(fd, ioctl::FIONREAD), Ok(0)));
                }
                Ok(n)
            }
            Op::RecvMmsg => self.recv(mem, fd, &h, payload, h.args[0], out),
            Op::Shutdown => match h.args[0] {
                how @ 0..=2 => nsys::shutdown(fd, how).map(|_| 0),
                _ => Err(Errno::EINVAL),
            },
            Op::GetSockName | Op::GetPeerName => {
                let (a, n) = if op == Op::GetSockName { nsys::getsockname(fd)? } else { nsys::getpeername(fd)? };
                out.extend_from_slice(sockaddr(&a, n).as_bytes());
                Ok(0)
            }
            Op::SetSockOpt => Self::setsockopt(&s, &h, payload),
            Op::GetSockOpt => Self::getsockopt(&s, &h, reply, out),
            Op::Ioctl => match h.args[0] {
                r @ (ioctl::FIONREAD | ioctl::SIOCOUTQ) => {
                    reply.vals[0] = nsys::ioctl_int(fd, r)? as u32 as u64;
                    Ok(0)
                }
                _ => Err(Errno::ENOTTY),
            },
            Op::Watch => {
                let mask = u32::try_from(h.args[0]).map_err(|_| Errno::EINVAL)?;
                self.set_watch(&s, h.handle, mask).map(|_| 0)
            }
            Op::Socket | Op::Netlink | Op::Close => Err(Errno::EINVAL),
        }
    }

    /// The single [`SockAddr`] payload of bind/connect.
    fn addr(payload: &[u8], use_: AddrUse) -> Result<SockAddr, Errno> {
        if payload.len() != std::mem::size_of::<SockAddr>() {
            return Err(Errno::EINVAL);
        }
        let mut a = SockAddr::read_from(payload).ok_or(Errno::EINVAL)?;
        a.len = a.check(use_)? as u32;
        Ok(a)
    }

    fn check_mask(mask: u64) -> Result<u32, Errno> {
        match u32::try_from(mask) {
            Ok(m) if m & !poll::WATCHABLE == 0 => Ok(m),
            _ => Err(Errno::EINVAL),
        }
    }

    fn set_watch(&self, s: &Socket, handle: Handle, mask: u32) -> Result<(), Errno> {
        if mask & !poll::WATCHABLE != 0 {
            return Err(Errno::EINVAL);
        }
        let mut w = lock(&s.watch)?;
        if w.closed {
            return Err(Errno::EBADF);
        }
        if mask == 0 {
            if w.mask != 0 {
                self.notifier.unwatch(s.raw())?;
            }
        } else {
            self.notifier.watch(s.raw(), handle, mask, w.mask != 0)?;
        }
        w.mask = mask;
        Ok(())
    }

    /// Enters a new host socket in the table and registers its watch mask.
    fn adopt(&self, fd: nsys::Fd, mask: u32) -> Result<Handle, Errno> {
        let s = Arc::new(Socket::new(fd));
        let h = lock(&self.table)?.insert(s.clone()).map_err(|_| Errno::ENFILE)?;
        if mask != 0 {
            if let Err(e) = self.set_watch(&s, h, mask) {
                lock(&self.table)?.remove(h);
                return Err(e);
            }
        }
        Ok(h)
    }

    fn has_room(&self) -> Result<(), Errno> {
        if lock(&self.table)?.has_room() {
            Ok(())
        } else {
            Err(Errno::ENFILE)
        }
    }

    fn socket(&self, h: &Request, reply: &mut Reply) -> Result<u64, Errno> {
        let domain = match h.args[0] {
            d if d == af::AF_INET as u64 || d == af::AF_INET6 as u64 => d,
            _ => return Err(Errno::EAFNOSUPPORT),
        };
        let ty = u32::try_from(h.args[1]).map_err(|_| Errno::EINVAL)?;
        if ty & !(sock::SOCK_TYPE_MASK | sock::SOCK_NONBLOCK | sock::SOCK_CLOEXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        let base = ty & sock::SOCK_TYPE_MASK;
        let proto = h.args[2];
        match base {
            sock::SOCK_STREAM if proto == 0 || proto == ipproto::IPPROTO_TCP as u64 => {}
            sock::SOCK_DGRAM if proto == 0 || proto == ipproto::IPPROTO_UDP as u64 => {}
            sock::SOCK_STREAM | sock::SOCK_DGRAM => return Err(Errno::EPROTONOSUPPORT),
            // Raw sockets would need CAP_NET_RAW, which the VMM never has.
            sock::SOCK_RAW => return Err(Errno::EPERM),
            _ => return Err(Errno::ESOCKTNOSUPPORT),
        }
        let mask = Self::check_mask(h.args[3])?;
        self.has_room()?;
        let fd = nsys::socket(domain, base as u64, proto).map_err(fd_limit)?;
        reply.handle = self.adopt(fd, mask)?;
        Ok(0)
    }

    fn close(&self, handle: Handle) -> Result<u64, Errno> {
        let s = lock(&self.table)?.remove(handle).ok_or(Errno::EBADF)?;
        let mut w = lock(&s.watch)?;
        w.closed = true;
        if w.mask != 0 {
            // Closing the descriptor would remove it too, but only once no
            // operation in flight on another thread holds the socket.
            let _ = self.notifier.unwatch(s.raw());
            w.mask = 0;
        }
        Ok(0)
    }

    fn accept(&self, s: &Socket, h: &Request, reply: &mut Reply, out: &mut Vec<u8>) -> Result<u64, Errno> {
        let mask = Self::check_mask(h.args[0])?;
        // Leave the connection queued rather than accept and drop it.
        self.has_room()?;
        let (fd, addr, len) = nsys::accept(s.raw()).map_err(fd_limit)?;
        reply.handle = self.adopt(fd, mask)?;
        out.extend_from_slice(sockaddr(&addr, len).as_bytes());
        Ok(0)
    }

    /// Parses `count` messages ([`MsgHeader`] + iovecs) and checks every
    /// guest range; nothing is performed unless all of them are valid.
    fn parse_msgs(mem: &GuestMemory, payload: &[u8], count: u64, addr: Option<AddrUse>) -> Result<Vec<Msg>, Errno> {
        if count == 0 || count > MAX_BATCH as u64 {
            return Err(Errno::EINVAL);
        }
        let mut r = Reader::new(payload);
        let mut msgs = Vec::with_capacity(count as usize);
        let mut ranges: Vec<GuestIovec> = Vec::new();
        for _ in 0..count {
            let m: MsgHeader = r.get().ok_or(Errno::EINVAL)?;
            if m._pad != 0 {
                return Err(Errno::EINVAL);
            }
            if m.iov_count as usize > MAX_IOVECS_PER_MSG {
                return Err(Errno::EMSGSIZE);
            }
            ranges.clear();
            for _ in 0..m.iov_count {
                ranges.push(r.get().ok_or(Errno::EINVAL)?);
            }
            let iov = mem.host_iovecs(&ranges).map_err(|_| Errno::EFAULT)?;
            let mut msg = Msg { name: [0; 32], namelen: 0, iov };
            if let Some(use_) = addr {
                if m.addr.len != 0 {
                    msg.namelen = m.addr.check(use_)?;
                    msg.name = m.addr.bytes;
                }
            }
            msgs.push(msg);
        }
        if r.remaining() != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(msgs)
    }

    fn send(
        &self,
        mem: &GuestMemory,
        fd: RawFd,
        h: &Request,
        payload: &[u8],
        count: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, Errno> {
        if h.flags & !msg::SEND_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        let flags = h.flags | msg::MSG_DONTWAIT | msg::MSG_NOSIGNAL;
        let batch = h.op == Op::SendMmsg as u32;
        let msgs = Self::parse_msgs(mem, payload, count, Some(AddrUse::SendTo))?;
        if !batch {
            let m = &msgs[0];
            let hdr = nsys::MsgHdr::new(m.name.as_ptr(), m.namelen, &m.iov);
            // SAFETY: every iovec was checked to lie inside guest memory,
            // which stays mapped while `mem` is borrowed; the name is ours.
            return unsafe { nsys::sendmsg(fd, &hdr, flags) }.map(|n| n as u64);
        }
        let mut hdrs: Vec<nsys::MMsgHdr> = msgs
            .iter()
            .map(|m| nsys::MMsgHdr { hdr: nsys::MsgHdr::new(m.name.as_ptr(), m.namelen, &m.iov), len: 0, _pad: 0 })
            .collect();
        // SAFETY: as above, for every message; `msgs` outlives the call.
        let n = unsafe { nsys::sendmmsg(fd, &mut hdrs, flags) }?;
        for m in &hdrs {
            out.extend_from_slice(&(m.len as u64).to_le_bytes());
        }
        Ok(n as u64)
    }

    fn recv(
        &self,
        mem: &GuestMemory,
        fd: RawFd,
        h: &Request,
        payload: &[u8],
        count: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, Errno> {
        if h.flags & !msg::RECV_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        // Never block the host thread; MSG_WAITALL is completed by the guest.
        let flags = (h.flags | msg::MSG_DONTWAIT) & !msg::MSG_WAITALL;
        let batch = h.op == Op::RecvMmsg as u32;
        let mut msgs = Self::parse_msgs(mem, payload, count, None)?;
        let mut hdrs: Vec<nsys::MMsgHdr> = msgs
            .iter_mut()
            .map(|m| nsys::MMsgHdr { hdr: nsys::MsgHdr::new(m.name.as_mut_ptr(), 32, &m.iov), len: 0, _pad: 0 })
            .collect();
        let n = if batch {
            // SAFETY: every iovec was checked to lie inside guest memory,
            // which stays mapped while `mem` is borrowed; the names are ours.
            unsafe { nsys::recvmmsg(fd, &mut hdrs, flags) }?
        } else {
            // SAFETY: as above.
            let n = unsafe { nsys::recvmsg(fd, &mut hdrs[0].hdr, flags) }?;
            hdrs[0].len = n as u32;
            1
        };
        let mut ret = n as u64;
        for (i, m) in hdrs.iter().enumerate() {
            let mut info = RecvInfo::default();
            if i < n {
                info.len = m.len as u64;
                info.flags = m.hdr.flags as u32;
                info.addr = sockaddr(&msgs[i].name, m.hdr.namelen as usize);
            }
            out.extend_from_slice(info.as_bytes());
            if !batch {
                ret = info.len;
            }
        }
        Ok(ret)
    }

    fn opt_ids(h: &Request) -> Result<(i32, i32), Errno> {
        match (u32::try_from(h.args[0]), u32::try_from(h.args[1])) {
            (Ok(l), Ok(n)) => Ok((l as i32, n as i32)),
            _ => Err(Errno::EINVAL),
        }
    }

    fn setsockopt(s: &Socket, h: &Request, value: &[u8]) -> Result<u64, Errno> {
        let (level, name) = Self::opt_ids(h)?;
        let rule = sockopt_rule(level, name).filter(|r| r.set).ok_or(Errno::ENOPROTOOPT)?;
        if value.len() > MAX_OPTLEN {
            return Err(Errno::EINVAL);
        }
        let n = rule.kind.set_len(value.len())?;
        if rule.kind == OptKind::Linger {
            let onoff = i32::from_le_bytes([value[0], value[1], value[2], value[3]]);
            let secs = i32::from_le_bytes([value[4], value[5], value[6], value[7]]);
            if onoff != 0 && secs != 0 {
                // A lingering close would block the VMM: keep the time for
                // the guest, give the host socket an ordinary close.
                nsys::setsockopt(s.raw(), level, name, &[0; 8])?;
                s.linger.store(secs, Ordering::Relaxed);
                return Ok(0);
            }
            nsys::setsockopt(s.raw(), level, name, &value[..8])?;
            s.linger.store(0, Ordering::Relaxed);
            return Ok(0);
        }
        nsys::setsockopt(s.raw(), level, name, &value[..n]).map(|_| 0)
    }

    fn getsockopt(s: &Socket, h: &Request, reply: &mut Reply, out: &mut Vec<u8>) -> Result<u64, Errno> {
        let (level, name) = Self::opt_ids(h)?;
        let rule = sockopt_rule(level, name).filter(|r| r.get).ok_or(Errno::ENOPROTOOPT)?;
        let cap = (h.args[2] as usize).min(MAX_OPTLEN);
        let mut buf = [0u8; MAX_OPTLEN];
        let linger = s.linger.load(Ordering::Relaxed);
        let n = if rule.kind == OptKind::Linger && linger != 0 {
            buf[0..4].copy_from_slice(&1i32.to_le_bytes());
            buf[4..8].copy_from_slice(&linger.to_le_bytes());
            cap.min(8)
        } else {
            nsys::getsockopt(s.raw(), level, name, &mut buf[..cap])?
        };
        out.extend_from_slice(&buf[..n]);
        reply.vals[0] = n as u64;
        Ok(0)
    }

    fn netlink(&self, mem: &GuestMemory, h: &Request, payload: &[u8], reply: &mut Reply) -> Result<u64, Errno> {
        if h.handle != 0 {
            return Err(Errno::EINVAL);
        }
        let portid = u32::try_from(h.args[0]).map_err(|_| Errno::EINVAL)?;
        let (req_len, iov_count) = (h.args[1], h.args[2]);
        if req_len > MAX_NETLINK_REQUEST as u64 || iov_count > MAX_IOVECS_PER_MSG as u64 {
            return Err(Errno::EINVAL);
        }
        if payload.len() as u64 != iov_count * 16 + req_len {
            return Err(Errno::EINVAL);
        }
        let mut r = Reader::new(payload);
        let ranges: Vec<GuestIovec> = (0..iov_count).map(|_| r.get().ok_or(Errno::EINVAL)).collect::<Result<_, _>>()?;
        let request = r.bytes(req_len as usize).ok_or(Errno::EINVAL)?;
        // Check the destination before asking the kernel anything.
        mem.host_iovecs(&ranges).map_err(|_| Errno::EFAULT)?;
        let blob = netlink::request(request, portid)?;
        let room: u64 = ranges.iter().map(|r| r.len).sum();
        if blob.len() as u64 > room {
            reply.vals[0] = blob.len() as u64;
            return Err(Errno::ENOBUFS);
        }
        let mut at = 0usize;
        for r in &ranges {
            let n = (r.len as usize).min(blob.len() - at);
            mem.write(r.gpa, &blob[at..at + n]).map_err(|_| Errno::EFAULT)?;
            at += n;
            if at == blob.len() {
                break;
            }
        }
        Ok(blob.len() as u64)
    }
}
