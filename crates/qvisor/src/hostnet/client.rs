//! A host-side driver of the protocol: encodes requests exactly as the
//! guest kernel does (with `qlib::hostnet`'s encoder), passes them to the
//! service with a guest memory, and decodes the answers. The tests,
//! benchmarks and transports' tests use it; the guest has its own.

use super::service::HostNet;
use crate::memory::GuestMemory;
use crate::sys::Errno;
use qlib::hcall::GuestIovec;
use qlib::hostnet::{
    encode_request, split_reply, MsgHeader, Op, Reader, RecvInfo, Reply, Request, SockAddr, Wire, MAX_REQUEST,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// An answer: the header and its payload.
#[derive(Debug, Clone)]
pub struct Answer {
    pub reply: Reply,
    pub payload: Vec<u8>,
}

impl Answer {
    /// `ret` as a result.
    pub fn result(&self) -> Result<u64, Errno> {
        self.reply.result()
    }
}

/// Converts a std address to the wire form.
pub fn to_wire(a: &SocketAddr) -> SockAddr {
    match a {
        SocketAddr::V4(v) => SockAddr::inet(v.ip().octets(), v.port()),
        SocketAddr::V6(v) => SockAddr::inet6(v.ip().octets(), v.port(), v.flowinfo(), v.scope_id()),
    }
}

/// Converts a wire address to a std one (`None` for other families or
/// short addresses).
pub fn from_wire(a: &SockAddr) -> Option<SocketAddr> {
    let b = a.as_slice();
    match a.family() {
        qlib::hostnet::af::AF_INET if b.len() >= 16 => {
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(b[4], b[5], b[6], b[7]), a.port())))
        }
        qlib::hostnet::af::AF_INET6 if b.len() >= 24 => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let scope = if b.len() >= 28 { u32::from_le_bytes([b[24], b[25], b[26], b[27]]) } else { 0 };
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), a.port(), flow, scope)))
        }
        _ => None,
    }
}

/// The unspecified address of `a`'s family.
pub fn unspecified(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }
}

/// One message of a send: guest ranges and an optional destination.
#[derive(Debug, Clone, Default)]
pub struct SendMsg {
    pub iov: Vec<GuestIovec>,
    pub to: Option<SocketAddr>,
}

/// Drives a [`HostNet`] over a [`GuestMemory`].
pub struct Client<'a> {
    pub net: &'a HostNet,
    pub mem: &'a GuestMemory,
    req: Vec<u8>,
    out: Vec<u8>,
}

impl<'a> Client<'a> {
    /// A driver for `net` with guest memory `mem`.
    pub fn new(net: &'a HostNet, mem: &'a GuestMemory) -> Client<'a> {
        Client { net, mem, req: vec![0; MAX_REQUEST], out: Vec::new() }
    }

    /// Sends raw request bytes.
    pub fn raw(&mut self, msg: &[u8]) -> Answer {
        self.net.call(self.mem, msg, &mut self.out);
        let (reply, payload) = split_reply(&self.out).expect("the service always answers with a well-formed reply");
        Answer { reply, payload: payload.to_vec() }
    }

    /// Encodes and sends a request; `payload` appends the payload.
    pub fn request(
        &mut self,
        op: Op,
        handle: u64,
        flags: u32,
        args: [u64; 5],
        payload: impl FnOnce(&mut qlib::hostnet::Writer),
    ) -> Answer {
        let header = Request { op: op as u32, flags, handle, args, ..Request::default() };
        let n = encode_request(&mut self.req, header, payload).expect("request fits MAX_REQUEST");
        let msg = std::mem::take(&mut self.req);
        let a = self.raw(&msg[..n]);
        self.req = msg;
        a
    }

    fn simple(&mut self, op: Op, handle: u64, args: [u64; 5]) -> Result<u64, Errno> {
        self.request(op, handle, 0, args, |_| {}).result()
    }

    /// `socket(domain, ty, proto)` with readiness `watch` mask.
    pub fn socket(&mut self, domain: u16, ty: u32, proto: i32, watch: u32) -> Result<u64, Errno> {
        let a = self.request(Op::Socket, 0, 0, [domain as u64, ty as u64, proto as u64, watch as u64, 0], |_| {});
        a.result().map(|_| a.reply.handle)
    }

    /// A TCP socket for `addr`'s family.
    pub fn tcp(&mut self, v6: bool, watch: u32) -> Result<u64, Errno> {
        let d = if v6 { qlib::hostnet::af::AF_INET6 } else { qlib::hostnet::af::AF_INET };
        self.socket(d, qlib::hostnet::sock::SOCK_STREAM, 0, watch)
    }

    /// A UDP socket.
    pub fn udp(&mut self, v6: bool, watch: u32) -> Result<u64, Errno> {
        let d = if v6 { qlib::hostnet::af::AF_INET6 } else { qlib::hostnet::af::AF_INET };
        self.socket(d, qlib::hostnet::sock::SOCK_DGRAM, 0, watch)
    }

    /// `bind`.
    pub fn bind(&mut self, h: u64, addr: &SocketAddr) -> Result<(), Errno> {
        let a = to_wire(addr);
        self.request(Op::Bind, h, 0, [0; 5], |w| {
            w.put(&a);
        })
        .result()
        .map(|_| ())
    }

    /// `connect` (non-blocking: EINPROGRESS for TCP).
    pub fn connect(&mut self, h: u64, addr: &SocketAddr) -> Result<(), Errno> {
        let a = to_wire(addr);
        self.request(Op::Connect, h, 0, [0; 5], |w| {
            w.put(&a);
        })
        .result()
        .map(|_| ())
    }

    /// `listen`.
    pub fn listen(&mut self, h: u64, backlog: i32) -> Result<(), Errno> {
        self.simple(Op::Listen, h, [backlog as u32 as u64, 0, 0, 0, 0]).map(|_| ())
    }

    /// `accept` (non-blocking): new handle and peer.
    pub fn accept(&mut self, h: u64, watch: u32) -> Result<(u64, Option<SocketAddr>), Errno> {
        let a = self.request(Op::Accept, h, 0, [watch as u64, 0, 0, 0, 0], |_| {});
        a.result()?;
        let peer = SockAddr::read_from(&a.payload).and_then(|s| from_wire(&s));
        Ok((a.reply.handle, peer))
    }

    /// `sendmsg` of guest ranges.
    pub fn send(&mut self, h: u64, iov: &[GuestIovec], to: Option<&SocketAddr>, flags: u32) -> Result<usize, Errno> {
        let hdr = MsgHeader { addr: to.map(to_wire).unwrap_or_default(), iov_count: iov.len() as u32, _pad: 0 };
        self.request(Op::SendMsg, h, flags, [0; 5], |w| {
            w.put(&hdr).put_all(iov);
        })
        .result()
        .map(|n| n as usize)
    }

    /// `recvmsg` into guest ranges.
    pub fn recv(&mut self, h: u64, iov: &[GuestIovec], flags: u32) -> Result<RecvInfo, Errno> {
        let hdr = MsgHeader { iov_count: iov.len() as u32, ..MsgHeader::default() };
        let a = self.request(Op::RecvMsg, h, flags, [0; 5], |w| {
            w.put(&hdr).put_all(iov);
        });
        a.result()?;
        RecvInfo::read_from(&a.payload).ok_or(Errno::EIO)
    }

    /// `sendmmsg`: messages sent and each message's byte count.
    pub fn sendmmsg(&mut self, h: u64, msgs: &[SendMsg], flags: u32) -> Result<(usize, Vec<u64>), Errno> {
        let a = self.request(Op::SendMmsg, h, flags, [msgs.len() as u64, 0, 0, 0, 0], |w| {
            for m in msgs {
                let hdr = MsgHeader {
                    addr: m.to.as_ref().map(to_wire).unwrap_or_default(),
                    iov_count: m.iov.len() as u32,
                    _pad: 0,
                };
                w.put(&hdr).put_all(&m.iov);
            }
        });
        let n = a.result()? as usize;
        let mut r = Reader::new(&a.payload);
        Ok((n, (0..msgs.len()).map_while(|_| r.get::<u64>()).collect()))
    }

    /// `recvmmsg`: one [`RecvInfo`] per message received.
    pub fn recvmmsg(&mut self, h: u64, msgs: &[Vec<GuestIovec>], flags: u32) -> Result<Vec<RecvInfo>, Errno> {
        let a = self.request(Op::RecvMmsg, h, flags, [msgs.len() as u64, 0, 0, 0, 0], |w| {
            for m in msgs {
                w.put(&MsgHeader { iov_count: m.len() as u32, ..MsgHeader::default() }).put_all(m);
            }
        });
        let n = a.result()? as usize;
        let mut r = Reader::new(&a.payload);
        Ok((0..n).map_while(|_| r.get::<RecvInfo>()).collect())
    }

    /// `shutdown`.
    pub fn shutdown(&mut self, h: u64, how: u64) -> Result<(), Errno> {
        self.simple(Op::Shutdown, h, [how, 0, 0, 0, 0]).map(|_| ())
    }

    /// `close`.
    pub fn close(&mut self, h: u64) -> Result<(), Errno> {
        self.simple(Op::Close, h, [0; 5]).map(|_| ())
    }

    fn name(&mut self, op: Op, h: u64) -> Result<SocketAddr, Errno> {
        let a = self.request(op, h, 0, [0; 5], |_| {});
        a.result()?;
        SockAddr::read_from(&a.payload).and_then(|s| from_wire(&s)).ok_or(Errno::EIO)
    }

    /// `getsockname`.
    pub fn sockname(&mut self, h: u64) -> Result<SocketAddr, Errno> {
        self.name(Op::GetSockName, h)
    }

    /// `getpeername`.
    pub fn peername(&mut self, h: u64) -> Result<SocketAddr, Errno> {
        self.name(Op::GetPeerName, h)
    }

    /// `setsockopt`.
    pub fn setsockopt(&mut self, h: u64, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        self.request(Op::SetSockOpt, h, 0, [level as u32 as u64, name as u32 as u64, 0, 0, 0], |w| {
            w.bytes(value);
        })
        .result()
        .map(|_| ())
    }

    /// `setsockopt` of an int.
    pub fn setsockopt_int(&mut self, h: u64, level: i32, name: i32, v: i32) -> Result<(), Errno> {
        self.setsockopt(h, level, name, &v.to_le_bytes())
    }

    /// `getsockopt` with a `cap`-byte buffer.
    pub fn getsockopt(&mut self, h: u64, level: i32, name: i32, cap: usize) -> Result<Vec<u8>, Errno> {
        let a = self.request(Op::GetSockOpt, h, 0, [level as u32 as u64, name as u32 as u64, cap as u64, 0, 0], |_| {});
        a.result()?;
        if a.reply.vals[0] as usize != a.payload.len() {
            return Err(Errno::EIO);
        }
        Ok(a.payload)
    }

    /// `getsockopt` of an int.
    pub fn getsockopt_int(&mut self, h: u64, level: i32, name: i32) -> Result<i32, Errno> {
        let v = self.getsockopt(h, level, name, 4)?;
        Ok(i32::from_le_bytes(v.get(..4).ok_or(Errno::EIO)?.try_into().map_err(|_| Errno::EIO)?))
    }

    /// FIONREAD / SIOCOUTQ.
    pub fn ioctl(&mut self, h: u64, req: u64) -> Result<u64, Errno> {
        let a = self.request(Op::Ioctl, h, 0, [req, 0, 0, 0, 0], |_| {});
        a.result().map(|_| a.reply.vals[0])
    }

    /// Sets the watched readiness events.
    pub fn watch(&mut self, h: u64, mask: u32) -> Result<(), Errno> {
        self.simple(Op::Watch, h, [mask as u64, 0, 0, 0, 0]).map(|_| ())
    }

    /// A netlink request answered into `iov`: bytes written, or the error
    /// and `vals[0]` (bytes needed on ENOBUFS).
    pub fn netlink(&mut self, portid: u32, request: &[u8], iov: &[GuestIovec]) -> Result<usize, (Errno, u64)> {
        let a = self.request(Op::Netlink, 0, 0, [portid as u64, request.len() as u64, iov.len() as u64, 0, 0], |w| {
            w.put_all(iov).bytes(request);
        });
        a.result().map(|n| n as usize).map_err(|e| (e, a.reply.vals[0]))
    }
}
