//! AF_NETLINK, NETLINK_ROUTE: the socket object lives in the guest; each
//! request message goes to the host, which answers read-only
//! RTM_GETLINK/GETADDR/GETROUTE from the sandbox's real namespace
//! (docs/hostnet.md, "Netlink"). Anything else (RTM_NEW*, RTM_DEL*, ...) is
//! answered with an NLMSG_ERROR carrying EPERM, as Linux answers an
//! unprivileged program. Replies are queued as datagrams of whole messages
//! (at most 4 KiB each unless one message is larger), which is how
//! iproute2 and glibc's getifaddrs read them. Also SIOCGIFCONF for any
//! socket, from the same dumps.

use super::host;
use super::{block, common_getsockopt, common_setsockopt, Common, RecvOut, SendMsg, Socket};
use super::{AF_NETLINK, MSG_PEEK, MSG_TRUNC, SOCK_DGRAM, SOCK_RAW, SOL_SOCKET};
use crate::arch::x86_64::usercopy::{copy_to_user, read_user, write_user};
use crate::fs::iobuf::IoBuf;
use crate::fs::poll::{POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::sync::SpinLock;
use crate::task::wait::WaitQueue;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use qlib::hcall::GuestIovec;
use qlib::hostnet::netlink::*;
use qlib::hostnet::{Op, MAX_NETLINK_REPLY, MAX_NETLINK_REQUEST};
use qlib::layout::virt_to_phys;
use qlib::linux::Errno;

const SOL_NETLINK: i32 = 270;
/// Bytes per queued datagram (more when one message is larger).
const DATAGRAM: usize = 4096;

static PORTS: SpinLock<BTreeMap<u32, ()>> = SpinLock::new(BTreeMap::new());
static NEXT_PORT: AtomicU32 = AtomicU32::new(0x8000_0001);

#[derive(Default)]
struct State {
    port: u32,
    rq: VecDeque<Vec<u8>>,
}

/// A NETLINK_ROUTE socket.
pub struct NetlinkSocket {
    ty: u32,
    st: SpinLock<State>,
    wq: WaitQueue,
    common: Common,
    ino: u64,
}

fn nladdr(port: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(12);
    a.extend_from_slice(&AF_NETLINK.to_le_bytes());
    a.extend_from_slice(&0u16.to_le_bytes());
    a.extend_from_slice(&port.to_le_bytes());
    a.extend_from_slice(&0u32.to_le_bytes());
    a
}

/// Asks the host for the answer to one request message; returns the
/// kernel's messages (port ids rewritten to `port`).
pub fn query(port: u32, req: &[u8]) -> Result<Vec<u8>, Errno> {
    let mut cap = 16usize << 10;
    loop {
        let mut buf = alloc::vec![0u8; cap];
        let iov = GuestIovec { gpa: virt_to_phys(buf.as_mut_ptr() as u64), len: cap as u64 };
        let r = host::call(
            Op::Netlink,
            0,
            0,
            [port as u64, req.len() as u64, 1, 0, 0],
            16 + req.len(),
            |w| {
                w.put(&iov).bytes(req);
            },
            |r, _| (r.result(), r.vals[0]),
        )?;
        match r {
            (Ok(n), _) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            (Err(Errno::ENOBUFS), need) if need as usize > cap && need as usize <= MAX_NETLINK_REPLY => {
                cap = need as usize;
            }
            (Err(e), _) => return Err(e),
        }
    }
}

/// A netlink message header's (len, type, flags, seq).
fn header(b: &[u8]) -> Option<(usize, u16, u16, u32)> {
    if b.len() < NLMSG_HDRLEN {
        return None;
    }
    Some((
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
    ))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// NLMSG_ERROR answering `req` with `errno` (0: an acknowledgement).
fn error_msg(req: &[u8], errno: i32, port: u32) -> Vec<u8> {
    let echo = &req[..NLMSG_HDRLEN.min(req.len())];
    let len = NLMSG_HDRLEN + 4 + echo.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_le_bytes());
    m.extend_from_slice(&NLMSG_ERROR.to_le_bytes());
    m.extend_from_slice(&0u16.to_le_bytes());
    m.extend_from_slice(&req.get(8..12).unwrap_or(&[0; 4]).try_into().unwrap_or([0u8; 4]));
    m.extend_from_slice(&port.to_le_bytes());
    m.extend_from_slice(&(-errno).to_le_bytes());
    m.extend_from_slice(echo);
    m
}

impl NetlinkSocket {
    /// `socket(AF_NETLINK, ty, protocol)`.
    pub fn create(ty: u32, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
        if ty != SOCK_RAW && ty != SOCK_DGRAM {
            return Err(Errno::ESOCKTNOSUPPORT);
        }
        if protocol != NETLINK_ROUTE {
            return Err(Errno::EPROTONOSUPPORT);
        }
        Ok(Arc::new(NetlinkSocket {
            ty,
            st: SpinLock::new(State::default()),
            wq: WaitQueue::new(),
            common: Common::default(),
            ino: super::new_ino(),
        }))
    }

    fn port(&self) -> u32 {
        let mut s = self.st.lock();
        if s.port == 0 {
            let mut ports = PORTS.lock();
            let pid = crate::task::process().pid;
            let p = if ports.contains_key(&pid) { NEXT_PORT.fetch_add(1, Ordering::Relaxed) } else { pid };
            ports.insert(p, ());
            s.port = p;
        }
        s.port
    }

    fn enqueue(&self, msgs: &[u8]) {
        let mut s = self.st.lock();
        let mut off = 0;
        let mut cur: Vec<u8> = Vec::new();
        while let Some((len, ..)) = header(&msgs[off..]) {
            if len < NLMSG_HDRLEN || off + len > msgs.len() {
                break;
            }
            let step = align4(len).min(msgs.len() - off);
            if !cur.is_empty() && cur.len() + step > DATAGRAM {
                s.rq.push_back(core::mem::take(&mut cur));
            }
            cur.extend_from_slice(&msgs[off..off + step]);
            off += step;
        }
        if !cur.is_empty() {
            s.rq.push_back(cur);
        }
        drop(s);
        self.wq.wake_all();
    }
}

impl Socket for NetlinkSocket {
    fn family(&self) -> u16 {
        AF_NETLINK
    }
    fn sock_type(&self) -> u32 {
        self.ty
    }
    fn protocol(&self) -> u32 {
        NETLINK_ROUTE
    }
    fn common(&self) -> &Common {
        &self.common
    }
    fn ino(&self) -> u64 {
        self.ino
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        if addr.len() < 12 || u16::from_le_bytes([addr[0], addr[1]]) != AF_NETLINK {
            return Err(Errno::EINVAL);
        }
        let want = u32::from_le_bytes([addr[4], addr[5], addr[6], addr[7]]);
        if want == 0 {
            self.port();
            return Ok(());
        }
        let mut s = self.st.lock();
        if s.port == want {
            return Ok(());
        }
        if s.port != 0 {
            return Err(Errno::EINVAL);
        }
        let mut ports = PORTS.lock();
        if ports.contains_key(&want) {
            return Err(Errno::EADDRINUSE);
        }
        ports.insert(want, ());
        s.port = want;
        Ok(())
    }

    fn connect(&self, addr: &[u8], _nonblock: bool) -> Result<(), Errno> {
        if addr.len() < 2 || u16::from_le_bytes([addr[0], addr[1]]) != AF_NETLINK {
            return Err(Errno::EINVAL);
        }
        self.port();
        Ok(())
    }

    fn sendmsg(&self, m: &mut SendMsg, _flags: u32, _nonblock: bool) -> Result<usize, Errno> {
        let n = m.buf.remaining() as usize;
        if n > 64 << 10 {
            return Err(Errno::EMSGSIZE);
        }
        let mut req = alloc::vec![0u8; n];
        let got = m.buf.read_into(&mut req)?;
        req.truncate(got);
        let port = self.port();
        let mut off = 0;
        while let Some((len, ty, flags, _seq)) = header(&req[off..]) {
            if len < NLMSG_HDRLEN || off + len > req.len() {
                break;
            }
            let msg = &req[off..off + len];
            if flags & NLM_F_REQUEST != 0 {
                let answer = if msg.len() > MAX_NETLINK_REQUEST {
                    Err(Errno::EINVAL)
                } else if ALLOWED_TYPES.contains(&ty) {
                    query(port, msg)
                } else {
                    Err(Errno::EPERM)
                };
                match answer {
                    Ok(b) => self.enqueue(&b),
                    Err(e) => self.enqueue(&error_msg(msg, e.0 as i32, port)),
                }
            }
            off += align4(len);
        }
        Ok(got)
    }

    fn recvmsg(
        &self,
        buf: &mut IoBuf,
        flags: u32,
        nonblock: bool,
        _ctl_cap: usize,
        out: &mut RecvOut,
    ) -> Result<usize, Errno> {
        loop {
            {
                let mut s = self.st.lock();
                if let Some(d) = s.rq.front() {
                    let n = buf.write_from(d)?;
                    let len = d.len();
                    if n < len {
                        out.flags |= MSG_TRUNC;
                    }
                    if flags & MSG_PEEK == 0 {
                        s.rq.pop_front();
                    }
                    out.addr = nladdr(0);
                    return Ok(if flags & MSG_TRUNC != 0 { len } else { n });
                }
            }
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            block(&self.wq, || !self.st.lock().rq.is_empty(), self.common.rcvtimeo.load(Ordering::Relaxed))?;
        }
    }

    fn shutdown(&self, _how: u64) -> Result<(), Errno> {
        Ok(())
    }

    fn getsockname(&self) -> Result<Vec<u8>, Errno> {
        Ok(nladdr(self.st.lock().port))
    }

    fn getpeername(&self) -> Result<Vec<u8>, Errno> {
        Ok(nladdr(0))
    }

    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        if let Some(r) = common_setsockopt(self, level, name, val) {
            return r;
        }
        match level {
            // Extended acks, strict checking, ...: accepted, answers stay plain.
            SOL_NETLINK => super::opt_int(val).map(|_| ()),
            SOL_SOCKET => super::opt_int(val).map(|_| ()),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }

    fn getsockopt(&self, level: i32, name: i32, _cap: usize) -> Result<Vec<u8>, Errno> {
        if let Some(r) = common_getsockopt(self, level, name) {
            return r;
        }
        match (level, name) {
            (SOL_SOCKET, qlib::hostnet::so::SO_RCVBUF | qlib::hostnet::so::SO_SNDBUF) => {
                Ok((212_992i32).to_le_bytes().to_vec())
            }
            (SOL_SOCKET, qlib::hostnet::so::SO_ERROR) => Ok(0i32.to_le_bytes().to_vec()),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }

    fn poll(&self) -> u32 {
        let mut ev = POLLOUT | POLLWRNORM;
        if !self.st.lock().rq.is_empty() {
            ev |= POLLIN | POLLRDNORM;
        }
        ev
    }

    fn wait_queue(&self) -> &WaitQueue {
        &self.wq
    }

    fn release(&self) {
        let p = self.st.lock().port;
        if p != 0 {
            PORTS.lock().remove(&p);
        }
    }
}

/// `ioctl(SIOCGIFCONF)` on any socket: the IPv4 addresses of the
/// namespace's interfaces as `struct ifreq`s (name, sockaddr_in).
pub fn ifconf(arg: u64) -> Result<u64, Errno> {
    // struct ifconf { int ifc_len; (pad); char *ifc_buf; }
    let len: i32 = read_user(arg)?;
    let ubuf: u64 = read_user(arg + 8)?;
    let mut req = [0u8; NLMSG_HDRLEN + 8];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + 8) as u32).to_le_bytes());
    req[4..6].copy_from_slice(&RTM_GETADDR.to_le_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_le_bytes());
    req[16] = super::AF_INET as u8;
    let msgs = query(0, &req)?;
    let mut out: Vec<u8> = Vec::new();
    let mut off = 0;
    while let Some((mlen, ty, ..)) = header(&msgs[off..]) {
        if mlen < NLMSG_HDRLEN || off + mlen > msgs.len() {
            break;
        }
        if ty == RTM_NEWADDR && mlen >= NLMSG_HDRLEN + 8 && msgs[off + 16] == super::AF_INET as u8 {
            let body = &msgs[off + NLMSG_HDRLEN + 8..off + mlen];
            let (mut name, mut addr) = (None, None);
            let mut a = 0;
            while a + 4 <= body.len() {
                let alen = u16::from_le_bytes([body[a], body[a + 1]]) as usize;
                let aty = u16::from_le_bytes([body[a + 2], body[a + 3]]);
                if alen < 4 || a + alen > body.len() {
                    break;
                }
                let v = &body[a + 4..a + alen];
                match aty {
                    IFA_LABEL => name = Some(v.split(|&b| b == 0).next().unwrap_or(v)),
                    IFA_LOCAL if v.len() == 4 => addr = Some(v),
                    IFA_ADDRESS if v.len() == 4 && addr.is_none() => addr = Some(v),
                    _ => {}
                }
                a += align4(alen);
            }
            if let (Some(n), Some(ip)) = (name, addr) {
                let mut r = [0u8; 40];
                let k = n.len().min(15);
                r[..k].copy_from_slice(&n[..k]);
                r[16..18].copy_from_slice(&super::AF_INET.to_le_bytes());
                r[20..24].copy_from_slice(ip);
                out.extend_from_slice(&r);
            }
        }
        off += align4(mlen);
    }
    if ubuf == 0 {
        write_user(arg, &(out.len() as i32))?;
        return Ok(0);
    }
    let fit = (len.max(0) as usize / 40 * 40).min(out.len());
    copy_to_user(ubuf, &out[..fit])?;
    write_user(arg, &(fit as i32))?;
    Ok(0)
}

/// The namespace's links as (index, name) from an RTM_GETLINK dump.
fn links() -> Result<Vec<(i32, Vec<u8>)>, Errno> {
    let mut req = [0u8; NLMSG_HDRLEN + 16];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + 16) as u32).to_le_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_le_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_le_bytes());
    let msgs = query(0, &req)?;
    let mut out = Vec::new();
    let mut off = 0;
    while let Some((mlen, ty, ..)) = header(&msgs[off..]) {
        if mlen < NLMSG_HDRLEN || off + mlen > msgs.len() {
            break;
        }
        if ty == RTM_NEWLINK && mlen >= NLMSG_HDRLEN + 16 {
            let m = &msgs[off..off + mlen];
            let index = i32::from_le_bytes([m[20], m[21], m[22], m[23]]);
            let body = &m[NLMSG_HDRLEN + 16..];
            let mut a = 0;
            while a + 4 <= body.len() {
                let alen = u16::from_le_bytes([body[a], body[a + 1]]) as usize;
                let aty = u16::from_le_bytes([body[a + 2], body[a + 3]]);
                if alen < 4 || a + alen > body.len() {
                    break;
                }
                if aty == IFLA_IFNAME {
                    let v = &body[a + 4..a + alen];
                    out.push((index, v.split(|&b| b == 0).next().unwrap_or(v).to_vec()));
                }
                a += align4(alen);
            }
        }
        off += align4(mlen);
    }
    Ok(out)
}

/// `SIOCGIFINDEX` (name to index) and `SIOCGIFNAME` (index to name) on
/// any socket, from an RTM_GETLINK dump.
pub fn ifreq(req: u64, arg: u64) -> Result<u64, Errno> {
    const SIOCGIFNAME: u64 = 0x8910;
    let mut r = [0u8; 40];
    crate::arch::x86_64::usercopy::copy_from_user(&mut r, arg)?;
    let all = links()?;
    if req == SIOCGIFNAME {
        let index = i32::from_le_bytes([r[16], r[17], r[18], r[19]]);
        let (_, name) = all.iter().find(|(i, _)| *i == index).ok_or(Errno::ENODEV)?;
        let mut n = [0u8; 16];
        let k = name.len().min(15);
        n[..k].copy_from_slice(&name[..k]);
        copy_to_user(arg, &n)?;
        return Ok(0);
    }
    let end = r[..16].iter().position(|&b| b == 0).unwrap_or(16);
    let (index, _) = all.iter().find(|(_, n)| n[..] == r[..end]).ok_or(Errno::ENODEV)?;
    write_user(arg + 16, index)?;
    Ok(0)
}
