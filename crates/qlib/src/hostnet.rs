//! hostnet: the message protocol between the guest kernel's network stack
//! and the VMM's socket service (`qvisor::hostnet`).
//!
//! AF_INET/AF_INET6 sockets of the sandbox are real host sockets that the VMM
//! owns inside the sandbox's network namespace. The guest names them by
//! **host handles** (opaque `u64`s: a table index and a generation, never a
//! host descriptor). Every request is one message of bytes: a [`Request`]
//! header followed by an operation-specific payload; every answer is a
//! [`Reply`] header followed by an operation-specific payload. The protocol
//! does not care how messages travel (the synchronous VMM-call page today,
//! shmq rings tomorrow): a transport moves bytes and calls the service.
//!
//! Bulk data never travels in messages: requests carry lists of
//! guest-physical ranges ([`GuestIovec`]) and the host performs
//! `sendmsg`/`recvmsg` with host iovecs pointing straight into the guest's
//! memory mapping, so neither side copies payload bytes.
//!
//! Conventions:
//! * all integers little-endian (x86-64), structures `#[repr(C)]` of plain
//!   integers with explicit padding, sizes asserted below;
//! * `Reply::ret >= 0` is a result, `-4095 <= ret < 0` is `-errno`
//!   ([`crate::linux::Errno`]);
//! * reserved fields must be zero (the host refuses the request with EINVAL
//!   otherwise, so they can gain meaning later);
//! * socket addresses are inline `sockaddr_in`/`sockaddr_in6` bytes in a
//!   [`SockAddr`], validated by [`SockAddr::check`].
//!
//! Payload of each operation (after the 64-byte [`Request`]) and of its
//! answer (after the 64-byte [`Reply`]):
//!
//! | op | request | answer |
//! |----|---------|--------|
//! | `Socket` | args: domain, type, protocol, watch mask | `handle` |
//! | `Bind`, `Connect` | [`SockAddr`] | — (`Connect`: `-EINPROGRESS` for TCP) |
//! | `Listen` | args: backlog | — |
//! | `Accept` | args: watch mask for the new socket | `handle`; [`SockAddr`] of the peer |
//! | `SendMsg` | flags; [`MsgHeader`] + iovecs | ret = bytes sent |
//! | `RecvMsg` | flags; [`MsgHeader`] + iovecs | ret = bytes; [`RecvInfo`] |
//! | `SendMmsg` | flags; args: count; count × ([`MsgHeader`] + iovecs) | ret = messages sent; count × `u64` bytes |
//! | `RecvMmsg` | flags; args: count; count × ([`MsgHeader`] + iovecs) | ret = messages; count × [`RecvInfo`] |
//! | `Shutdown` | args: how | — |
//! | `Close` | — | — |
//! | `GetSockName`, `GetPeerName` | — | [`SockAddr`] |
//! | `SetSockOpt` | args: level, name; the value bytes | — |
//! | `GetSockOpt` | args: level, name, capacity | `vals[0]` = length; the value bytes |
//! | `Ioctl` | args: request ([`ioctl`]) | `vals[0]` = the integer result |
//! | `Watch` | args: event mask ([`poll`]), 0 = stop | — |
//! | `Netlink` | args: port id, request length, iovec count; iovecs, then the request | ret = reply bytes written; on ENOBUFS `vals[0]` = bytes needed |

use crate::hcall::GuestIovec;
use crate::linux::Errno;

/// Protocol version (a transport exchanges it once when it attaches).
pub const VERSION: u32 = 1;

/// Bytes of a [`Request`] header.
pub const REQUEST_SIZE: usize = 64;
/// Bytes of a [`Reply`] header.
pub const REPLY_SIZE: usize = 64;
/// Largest request the host accepts (header and payload).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Most iovecs one message may name (Linux's `UIO_MAXIOV`).
pub const MAX_IOVECS_PER_MSG: usize = 1024;
/// Most messages one `SendMmsg`/`RecvMmsg` request may carry.
pub const MAX_BATCH: usize = 64;
/// Largest socket-option value (in either direction).
pub const MAX_OPTLEN: usize = 512;
/// Largest netlink request message.
pub const MAX_NETLINK_REQUEST: usize = 1024;
/// Largest netlink reply the host assembles for one request.
pub const MAX_NETLINK_REPLY: usize = 4 << 20;

/// Operations.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a host socket. args: domain ([`af`]), type ([`sock`], the
    /// SOCK_NONBLOCK/SOCK_CLOEXEC bits are the guest's business and ignored),
    /// protocol, initial watch mask ([`poll`]; 0 = none). Answer: `handle`.
    Socket = 1,
    /// `bind` to the [`SockAddr`] in the payload.
    Bind = 2,
    /// `listen`. args: backlog.
    Listen = 3,
    /// Accept one pending connection without blocking (EAGAIN when none).
    /// args: watch mask for the new socket. Answer: `handle` and the peer's
    /// [`SockAddr`].
    Accept = 4,
    /// Start connecting to the [`SockAddr`] in the payload without blocking:
    /// TCP answers `-EINPROGRESS`; completion is EPOLLOUT readiness, the
    /// outcome is `SO_ERROR`.
    Connect = 5,
    /// Send one message. flags: [`msg`] send flags; payload: [`MsgHeader`]
    /// and its iovecs. Answer: bytes sent.
    SendMsg = 6,
    /// Receive one message. flags: [`msg`] receive flags; payload:
    /// [`MsgHeader`] (address ignored) and its iovecs. Answer: bytes and a
    /// [`RecvInfo`]; `vals[0]` = 1 when the socket's receive queue was empty
    /// after a read that returned data (0: unknown or more queued).
    RecvMsg = 7,
    /// Send several messages with one host call. args: count.
    SendMmsg = 8,
    /// Receive several messages with one host call. args: count.
    RecvMmsg = 9,
    /// `shutdown`. args: how ([`shut`]).
    Shutdown = 10,
    /// Close the host socket and release the handle.
    Close = 11,
    /// Local address. Answer: [`SockAddr`].
    GetSockName = 12,
    /// Peer address. Answer: [`SockAddr`].
    GetPeerName = 13,
    /// Set an allowlisted option ([`SOCKOPTS`]). args: level, name; payload:
    /// the value.
    SetSockOpt = 14,
    /// Read an allowlisted option. args: level, name, capacity (at most
    /// [`MAX_OPTLEN`]). Answer: `vals[0]` = length, payload = value.
    GetSockOpt = 15,
    /// `FIONREAD` or `SIOCOUTQ`. args: request. Answer: `vals[0]`.
    Ioctl = 16,
    /// Set the readiness events reported for this socket ([`poll`]; 0 stops
    /// reporting). Registering reports the current state once.
    Watch = 17,
    /// A read-only NETLINK_ROUTE request (RTM_GETLINK/GETADDR/GETROUTE),
    /// answered from the namespace's real configuration. No handle. args:
    /// the guest socket's port id (written into the replies' `nlmsg_pid`),
    /// request length, number of reply iovecs; payload: the iovecs, then the
    /// request bytes. Answer: reply bytes written into the iovecs; ENOBUFS
    /// with `vals[0]` = bytes needed when they do not fit (nothing written).
    Netlink = 18,
}

impl Op {
    /// Decodes an operation number.
    pub const fn from_raw(v: u32) -> Option<Op> {
        Some(match v {
            1 => Op::Socket,
            2 => Op::Bind,
            3 => Op::Listen,
            4 => Op::Accept,
            5 => Op::Connect,
            6 => Op::SendMsg,
            7 => Op::RecvMsg,
            8 => Op::SendMmsg,
            9 => Op::RecvMmsg,
            10 => Op::Shutdown,
            11 => Op::Close,
            12 => Op::GetSockName,
            13 => Op::GetPeerName,
            14 => Op::SetSockOpt,
            15 => Op::GetSockOpt,
            16 => Op::Ioctl,
            17 => Op::Watch,
            18 => Op::Netlink,
            _ => return None,
        })
    }
}

/// Address families.
pub mod af {
    pub const AF_UNSPEC: u16 = 0;
    pub const AF_UNIX: u16 = 1;
    pub const AF_INET: u16 = 2;
    pub const AF_INET6: u16 = 10;
    pub const AF_NETLINK: u16 = 16;
}

/// Socket types and creation flags.
pub mod sock {
    pub const SOCK_STREAM: u32 = 1;
    pub const SOCK_DGRAM: u32 = 2;
    pub const SOCK_RAW: u32 = 3;
    pub const SOCK_SEQPACKET: u32 = 5;
    /// Bits of the type argument that select the type.
    pub const SOCK_TYPE_MASK: u32 = 0xf;
    pub const SOCK_NONBLOCK: u32 = 0o4000;
    pub const SOCK_CLOEXEC: u32 = 0o2000000;
}

/// Protocol numbers and option levels.
pub mod ipproto {
    pub const IPPROTO_IP: i32 = 0;
    pub const IPPROTO_TCP: i32 = 6;
    pub const IPPROTO_UDP: i32 = 17;
    pub const IPPROTO_IPV6: i32 = 41;
    pub const SOL_SOCKET: i32 = 1;
}

/// `SOL_SOCKET` option names.
pub mod so {
    pub const SO_REUSEADDR: i32 = 2;
    pub const SO_TYPE: i32 = 3;
    pub const SO_ERROR: i32 = 4;
    pub const SO_BROADCAST: i32 = 6;
    pub const SO_SNDBUF: i32 = 7;
    pub const SO_RCVBUF: i32 = 8;
    pub const SO_KEEPALIVE: i32 = 9;
    pub const SO_LINGER: i32 = 13;
    pub const SO_REUSEPORT: i32 = 15;
    pub const SO_RCVTIMEO_OLD: i32 = 20;
    pub const SO_SNDTIMEO_OLD: i32 = 21;
    pub const SO_ACCEPTCONN: i32 = 30;
    pub const SO_PROTOCOL: i32 = 38;
    pub const SO_DOMAIN: i32 = 39;
    pub const SO_RCVTIMEO_NEW: i32 = 66;
    pub const SO_SNDTIMEO_NEW: i32 = 67;
}

/// `IPPROTO_TCP` option names.
pub mod tcp {
    pub const TCP_NODELAY: i32 = 1;
    pub const TCP_CORK: i32 = 3;
    pub const TCP_KEEPIDLE: i32 = 4;
    pub const TCP_KEEPINTVL: i32 = 5;
    pub const TCP_KEEPCNT: i32 = 6;
    pub const TCP_INFO: i32 = 11;
    /// `tcpi_state` of an established connection.
    pub const TCP_ESTABLISHED: u8 = 1;
}

/// `IPPROTO_IP` option names.
pub mod ip {
    pub const IP_TOS: i32 = 1;
    pub const IP_TTL: i32 = 2;
    pub const IP_MULTICAST_IF: i32 = 32;
    pub const IP_MULTICAST_TTL: i32 = 33;
    pub const IP_MULTICAST_LOOP: i32 = 34;
    pub const IP_ADD_MEMBERSHIP: i32 = 35;
    pub const IP_DROP_MEMBERSHIP: i32 = 36;
}

/// `IPPROTO_IPV6` option names.
pub mod ipv6 {
    pub const IPV6_UNICAST_HOPS: i32 = 16;
    pub const IPV6_MULTICAST_IF: i32 = 17;
    pub const IPV6_MULTICAST_HOPS: i32 = 18;
    pub const IPV6_MULTICAST_LOOP: i32 = 19;
    pub const IPV6_ADD_MEMBERSHIP: i32 = 20;
    pub const IPV6_DROP_MEMBERSHIP: i32 = 21;
    pub const IPV6_V6ONLY: i32 = 26;
    pub const IPV6_TCLASS: i32 = 67;
}

/// Message flags.
pub mod msg {
    pub const MSG_OOB: u32 = 0x1;
    pub const MSG_PEEK: u32 = 0x2;
    pub const MSG_CTRUNC: u32 = 0x8;
    pub const MSG_TRUNC: u32 = 0x20;
    pub const MSG_DONTWAIT: u32 = 0x40;
    pub const MSG_EOR: u32 = 0x80;
    pub const MSG_WAITALL: u32 = 0x100;
    pub const MSG_NOSIGNAL: u32 = 0x4000;
    pub const MSG_MORE: u32 = 0x8000;
    /// Flags a `SendMsg`/`SendMmsg` request may carry. The host always adds
    /// MSG_DONTWAIT and MSG_NOSIGNAL: it never blocks and never takes SIGPIPE
    /// (the guest raises SIGPIPE itself on EPIPE unless the program asked for
    /// MSG_NOSIGNAL).
    pub const SEND_FLAGS: u32 = MSG_OOB | MSG_DONTWAIT | MSG_EOR | MSG_NOSIGNAL | MSG_MORE;
    /// Flags a `RecvMsg`/`RecvMmsg` request may carry. The host always adds
    /// MSG_DONTWAIT and drops MSG_WAITALL: waiting for the rest is the
    /// guest's job (it parks the task until the socket is readable again).
    pub const RECV_FLAGS: u32 = MSG_OOB | MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT | MSG_WAITALL;
}

/// `shutdown` modes.
pub mod shut {
    pub const SHUT_RD: u64 = 0;
    pub const SHUT_WR: u64 = 1;
    pub const SHUT_RDWR: u64 = 2;
}

/// Readiness bits (the `EPOLL*` values; `revents` of an [`Event`]).
pub mod poll {
    pub const EPOLLIN: u32 = 0x001;
    pub const EPOLLPRI: u32 = 0x002;
    pub const EPOLLOUT: u32 = 0x004;
    pub const EPOLLERR: u32 = 0x008;
    pub const EPOLLHUP: u32 = 0x010;
    pub const EPOLLRDHUP: u32 = 0x2000;
    /// Bits a watch mask may hold (EPOLLERR and EPOLLHUP are always reported).
    pub const WATCHABLE: u32 = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP;
}

/// Socket ioctls the host performs.
pub mod ioctl {
    /// Bytes waiting to be read (`SIOCINQ`).
    pub const FIONREAD: u64 = 0x541b;
    /// Bytes not yet acknowledged by the peer (TCP) or not yet sent (UDP).
    pub const SIOCOUTQ: u64 = 0x5411;
}

/// NETLINK_ROUTE numbers.
pub mod netlink {
    pub const NETLINK_ROUTE: u32 = 0;
    pub const NLMSG_HDRLEN: usize = 16;
    pub const NLMSG_NOOP: u16 = 1;
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const NLM_F_REQUEST: u16 = 0x1;
    pub const NLM_F_MULTI: u16 = 0x2;
    pub const NLM_F_ACK: u16 = 0x4;
    pub const NLM_F_ROOT: u16 = 0x100;
    pub const NLM_F_MATCH: u16 = 0x200;
    pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
    pub const RTM_NEWLINK: u16 = 16;
    pub const RTM_DELLINK: u16 = 17;
    pub const RTM_GETLINK: u16 = 18;
    pub const RTM_SETLINK: u16 = 19;
    pub const RTM_NEWADDR: u16 = 20;
    pub const RTM_DELADDR: u16 = 21;
    pub const RTM_GETADDR: u16 = 22;
    pub const RTM_NEWROUTE: u16 = 24;
    pub const RTM_DELROUTE: u16 = 25;
    pub const RTM_GETROUTE: u16 = 26;
    /// The request types the host answers; every other type gets EPERM.
    pub const ALLOWED_TYPES: [u16; 3] = [RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE];
    /// Flags a request may carry.
    pub const ALLOWED_FLAGS: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP;
    pub const IFLA_IFNAME: u16 = 3;
    pub const IFA_ADDRESS: u16 = 1;
    pub const IFA_LOCAL: u16 = 2;
    pub const IFA_LABEL: u16 = 3;
    pub const RTA_DST: u16 = 1;
    pub const RTA_OIF: u16 = 4;
    pub const RTA_TABLE: u16 = 15;

    /// Checks a netlink request the guest forwards: exactly one message of
    /// an allowed read-only type with allowed flags. Mutating or unknown
    /// types get EPERM, malformed messages EINVAL.
    pub fn check_request(b: &[u8]) -> Result<(), crate::linux::Errno> {
        use crate::linux::Errno;
        if b.len() < NLMSG_HDRLEN || b.len() > super::MAX_NETLINK_REQUEST {
            return Err(Errno::EINVAL);
        }
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_le_bytes([b[4], b[5]]);
        let flags = u16::from_le_bytes([b[6], b[7]]);
        // One message: its length covers the buffer up to alignment padding.
        if len < NLMSG_HDRLEN || len > b.len() || (len + 3) & !3 < b.len() {
            return Err(Errno::EINVAL);
        }
        if !ALLOWED_TYPES.contains(&ty) {
            return Err(Errno::EPERM);
        }
        if flags & NLM_F_REQUEST == 0 || flags & !ALLOWED_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// Plain-data structures that travel in messages.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers (or arrays of them)
/// without implicit padding: every bit pattern must be a valid value and
/// every byte must be initialised.
pub unsafe trait Wire: Copy + Default {
    /// Reads a value from the start of `b` (unaligned), or `None` if `b` is
    /// too short.
    fn read_from(b: &[u8]) -> Option<Self> {
        if b.len() < core::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: `b` holds at least size_of::<Self>() bytes and Self
        // accepts every bit pattern (trait contract); the read is unaligned.
        Some(unsafe { (b.as_ptr() as *const Self).read_unaligned() })
    }

    /// The value's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Self has no padding (trait contract), so all its
        // size_of::<Self>() bytes are initialised; the slice borrows self.
        unsafe { core::slice::from_raw_parts(self as *const Self as *const u8, core::mem::size_of::<Self>()) }
    }
}

/// Request header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// [`Op`] number.
    pub op: u32,
    /// Operation flags (message flags for send/receive), else 0.
    pub flags: u32,
    /// Host handle (0 for `Socket` and `Netlink`).
    pub handle: u64,
    /// Operation arguments (see [`Op`]); unused ones 0.
    pub args: [u64; 5],
    /// Bytes of payload after this header.
    pub payload_len: u32,
    /// Zero.
    pub _reserved: u32,
}

/// Reply header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Result (`>= 0`) or `-errno`.
    pub ret: i64,
    /// New handle (`Socket`, `Accept`), else 0.
    pub handle: u64,
    /// Operation-specific values (see [`Op`]).
    pub vals: [u64; 5],
    /// Bytes of payload after this header.
    pub payload_len: u32,
    /// Flags: [`REPLY_EVENTS`].
    pub _reserved: u32,
}

/// [`Reply`] flag: the host posted readiness events into the guest's ring
/// while serving this request (e.g. a send made an in-sandbox peer
/// readable); the guest drains them now instead of waiting for an interrupt.
pub const REPLY_EVENTS: u32 = 1;

impl Reply {
    /// The result as `Result`.
    pub const fn result(&self) -> Result<u64, Errno> {
        match Errno::from_ret(self.ret) {
            Some(e) => Err(e),
            None => Ok(self.ret as u64),
        }
    }
}

/// Capacity of [`SockAddr::bytes`].
pub const SOCKADDR_MAX: usize = 32;
/// `sizeof(struct sockaddr_in)`.
pub const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub const SOCKADDR_IN6_LEN: usize = 28;
/// The shortest `sockaddr_in6` Linux accepts (RFC 2133, without scope id).
pub const SOCKADDR_IN6_MIN: usize = 24;

/// A socket address as the Linux ABI lays it out (`sockaddr_in` or
/// `sockaddr_in6`, family in host order, port and address in network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockAddr {
    /// Bytes used in `bytes` (0 = no address).
    pub len: u32,
    /// Zero.
    pub _pad: u32,
    /// The address.
    pub bytes: [u8; SOCKADDR_MAX],
}

/// What an address is used for (validation differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrUse {
    /// `bind`.
    Bind,
    /// `connect` (AF_UNSPEC dissolves a datagram association).
    Connect,
    /// The destination of a send.
    SendTo,
}

impl SockAddr {
    /// Wraps `b` (at most [`SOCKADDR_MAX`] bytes).
    pub fn from_slice(b: &[u8]) -> Option<SockAddr> {
        if b.len() > SOCKADDR_MAX {
            return None;
        }
        let mut a = SockAddr { len: b.len() as u32, ..SockAddr::default() };
        a.bytes[..b.len()].copy_from_slice(b);
        Some(a)
    }

    /// An IPv4 address (`addr` and `port` in host order).
    pub fn inet(addr: [u8; 4], port: u16) -> SockAddr {
        let mut a = SockAddr { len: SOCKADDR_IN_LEN as u32, ..SockAddr::default() };
        a.bytes[0..2].copy_from_slice(&af::AF_INET.to_le_bytes());
        a.bytes[2..4].copy_from_slice(&port.to_be_bytes());
        a.bytes[4..8].copy_from_slice(&addr);
        a
    }

    /// An IPv6 address (`port` in host order).
    pub fn inet6(addr: [u8; 16], port: u16, flowinfo: u32, scope_id: u32) -> SockAddr {
        let mut a = SockAddr { len: SOCKADDR_IN6_LEN as u32, ..SockAddr::default() };
        a.bytes[0..2].copy_from_slice(&af::AF_INET6.to_le_bytes());
        a.bytes[2..4].copy_from_slice(&port.to_be_bytes());
        a.bytes[4..8].copy_from_slice(&flowinfo.to_be_bytes());
        a.bytes[8..24].copy_from_slice(&addr);
        a.bytes[24..28].copy_from_slice(&scope_id.to_le_bytes());
        a
    }

    /// The used bytes (empty when `len` is out of range).
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or(&[])
    }

    /// The family field (0 when shorter than 2 bytes).
    pub fn family(&self) -> u16 {
        if self.len < 2 {
            0
        } else {
            u16::from_le_bytes([self.bytes[0], self.bytes[1]])
        }
    }

    /// The port (host order) of an inet address.
    pub fn port(&self) -> u16 {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]])
    }

    /// Validates an address for `use_`: family AF_INET with at least 16
    /// bytes, AF_INET6 with 24..=28 bytes, or (connect only) AF_UNSPEC; the
    /// padding is zero. Returns the length to hand to the host kernel, which
    /// applies the remaining rules (family versus socket domain, ports,
    /// permissions) with native errors. The guest trims a user's longer
    /// buffer (e.g. `sizeof(struct sockaddr_storage)`) to these sizes.
    pub fn check(&self, use_: AddrUse) -> Result<usize, Errno> {
        let len = self.len as usize;
        if self._pad != 0 || len > SOCKADDR_MAX {
            return Err(Errno::EINVAL);
        }
        match self.family() {
            af::AF_INET if len >= SOCKADDR_IN_LEN => Ok(SOCKADDR_IN_LEN),
            af::AF_INET6 if (SOCKADDR_IN6_MIN..=SOCKADDR_IN6_LEN).contains(&len) => Ok(len),
            af::AF_UNSPEC if use_ == AddrUse::Connect && len >= 2 => Ok(len.min(SOCKADDR_IN_LEN)),
            af::AF_INET | af::AF_INET6 => Err(Errno::EINVAL),
            _ if len < 2 => Err(Errno::EINVAL),
            _ => Err(Errno::EAFNOSUPPORT),
        }
    }
}

/// One message of a send or receive request: an optional destination and
/// the number of [`GuestIovec`]s that follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgHeader {
    /// Destination (`len` 0 = none; ignored for receives).
    pub addr: SockAddr,
    /// Number of [`GuestIovec`]s following this header.
    pub iov_count: u32,
    /// Zero.
    pub _pad: u32,
}

/// What a receive produced for one message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvInfo {
    /// Bytes received (the full datagram length with MSG_TRUNC).
    pub len: u64,
    /// Output message flags (MSG_TRUNC, MSG_CTRUNC, MSG_OOB, MSG_EOR).
    pub flags: u32,
    /// Zero.
    pub _pad: u32,
    /// Source address (`len` 0 for connected stream sockets).
    pub addr: SockAddr,
}

/// A readiness event the host posts to the guest: host handle and
/// `EPOLL*` bits ([`poll`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Host handle of the socket.
    pub handle: u64,
    /// Readiness bits.
    pub revents: u32,
    /// Zero.
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Request>() == REQUEST_SIZE);
const _: () = assert!(core::mem::size_of::<Reply>() == REPLY_SIZE);
const _: () = assert!(core::mem::size_of::<SockAddr>() == 40);
const _: () = assert!(core::mem::size_of::<MsgHeader>() == 48);
const _: () = assert!(core::mem::size_of::<RecvInfo>() == 56);
const _: () = assert!(core::mem::size_of::<Event>() == 16);
const _: () = assert!(core::mem::size_of::<GuestIovec>() == 16);
const _: () = assert!(core::mem::offset_of!(Request, payload_len) == 56);
const _: () = assert!(core::mem::offset_of!(Reply, payload_len) == 56);
const _: () = assert!(core::mem::offset_of!(RecvInfo, addr) == 16);

// SAFETY: repr(C) structs of integers without implicit padding (the sizes
// and offsets asserted above equal the sums of their fields).
unsafe impl Wire for Request {}
// SAFETY: as above.
unsafe impl Wire for Reply {}
// SAFETY: as above.
unsafe impl Wire for SockAddr {}
// SAFETY: as above.
unsafe impl Wire for MsgHeader {}
// SAFETY: as above.
unsafe impl Wire for RecvInfo {}
// SAFETY: as above.
unsafe impl Wire for Event {}
// SAFETY: two u64s, no padding.
unsafe impl Wire for GuestIovec {}
// SAFETY: an integer.
unsafe impl Wire for u64 {}
// SAFETY: an integer.
unsafe impl Wire for u32 {}

/// How a socket option's value is shaped (the host checks the length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// An `int`.
    Int,
    /// `struct linger`: a positive linger time is kept by the host and
    /// honoured by the guest (see [`SOCKOPTS`]).
    Linger,
    /// `struct tcp_info` (read only).
    TcpInfo,
    /// `in_addr`, `ip_mreq` or `ip_mreqn` (IP_MULTICAST_IF).
    IpMulticastIf,
    /// `ip_mreq` or `ip_mreqn`.
    IpMreq,
    /// `ipv6_mreq`.
    Ipv6Mreq,
}

/// One allowlisted socket option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptRule {
    pub level: i32,
    pub name: i32,
    pub kind: OptKind,
    /// `setsockopt` allowed.
    pub set: bool,
    /// `getsockopt` allowed.
    pub get: bool,
}

const fn rw(level: i32, name: i32, kind: OptKind) -> OptRule {
    OptRule { level, name, kind, set: true, get: true }
}
const fn ro(level: i32, name: i32, kind: OptKind) -> OptRule {
    OptRule { level, name, kind, set: false, get: true }
}
const fn wo(level: i32, name: i32, kind: OptKind) -> OptRule {
    OptRule { level, name, kind, set: true, get: false }
}

/// The socket options the host performs on host sockets; everything else is
/// refused with ENOPROTOOPT (wrong lengths with EINVAL).
///
/// Options the **guest** handles itself and never forwards: SO_RCVTIMEO and
/// SO_SNDTIMEO (blocking is the guest's: host sockets never block), the
/// SOCK_NONBLOCK/O_NONBLOCK state, and a positive SO_LINGER time — the host
/// socket is never given one (Linux would block the VMM thread in `close`
/// regardless of O_NONBLOCK); the host remembers the value for
/// `getsockopt`, and the guest waits for SIOCOUTQ to drain (up to the
/// linger time) before it sends `Close`. SO_LINGER with a zero time (RST on
/// close) is applied to the host socket.
pub const SOCKOPTS: &[OptRule] = {
    use ipproto::*;
    use OptKind::*;
    &[
        rw(SOL_SOCKET, so::SO_REUSEADDR, Int),
        rw(SOL_SOCKET, so::SO_REUSEPORT, Int),
        rw(SOL_SOCKET, so::SO_KEEPALIVE, Int),
        rw(SOL_SOCKET, so::SO_BROADCAST, Int),
        rw(SOL_SOCKET, so::SO_LINGER, Linger),
        rw(SOL_SOCKET, so::SO_RCVBUF, Int),
        rw(SOL_SOCKET, so::SO_SNDBUF, Int),
        ro(SOL_SOCKET, so::SO_ERROR, Int),
        ro(SOL_SOCKET, so::SO_TYPE, Int),
        ro(SOL_SOCKET, so::SO_DOMAIN, Int),
        ro(SOL_SOCKET, so::SO_PROTOCOL, Int),
        ro(SOL_SOCKET, so::SO_ACCEPTCONN, Int),
        rw(IPPROTO_TCP, tcp::TCP_NODELAY, Int),
        rw(IPPROTO_TCP, tcp::TCP_CORK, Int),
        rw(IPPROTO_TCP, tcp::TCP_KEEPIDLE, Int),
        rw(IPPROTO_TCP, tcp::TCP_KEEPINTVL, Int),
        rw(IPPROTO_TCP, tcp::TCP_KEEPCNT, Int),
        ro(IPPROTO_TCP, tcp::TCP_INFO, TcpInfo),
        rw(IPPROTO_IP, ip::IP_TOS, Int),
        rw(IPPROTO_IP, ip::IP_TTL, Int),
        rw(IPPROTO_IP, ip::IP_MULTICAST_IF, IpMulticastIf),
        rw(IPPROTO_IP, ip::IP_MULTICAST_TTL, Int),
        rw(IPPROTO_IP, ip::IP_MULTICAST_LOOP, Int),
        wo(IPPROTO_IP, ip::IP_ADD_MEMBERSHIP, IpMreq),
        wo(IPPROTO_IP, ip::IP_DROP_MEMBERSHIP, IpMreq),
        rw(IPPROTO_IPV6, ipv6::IPV6_V6ONLY, Int),
        rw(IPPROTO_IPV6, ipv6::IPV6_UNICAST_HOPS, Int),
        rw(IPPROTO_IPV6, ipv6::IPV6_TCLASS, Int),
        rw(IPPROTO_IPV6, ipv6::IPV6_MULTICAST_IF, Int),
        rw(IPPROTO_IPV6, ipv6::IPV6_MULTICAST_HOPS, Int),
        rw(IPPROTO_IPV6, ipv6::IPV6_MULTICAST_LOOP, Int),
        wo(IPPROTO_IPV6, ipv6::IPV6_ADD_MEMBERSHIP, Ipv6Mreq),
        wo(IPPROTO_IPV6, ipv6::IPV6_DROP_MEMBERSHIP, Ipv6Mreq),
    ]
};

/// Options the guest implements without asking the host.
pub const GUEST_SOCKOPTS: &[(i32, i32)] = &[
    (ipproto::SOL_SOCKET, so::SO_RCVTIMEO_OLD),
    (ipproto::SOL_SOCKET, so::SO_SNDTIMEO_OLD),
    (ipproto::SOL_SOCKET, so::SO_RCVTIMEO_NEW),
    (ipproto::SOL_SOCKET, so::SO_SNDTIMEO_NEW),
];

/// The allowlist entry for (`level`, `name`).
pub fn sockopt_rule(level: i32, name: i32) -> Option<&'static OptRule> {
    SOCKOPTS.iter().find(|r| r.level == level && r.name == name)
}

impl OptKind {
    /// Checks a `setsockopt` value length; returns how many bytes to pass.
    pub const fn set_len(self, len: usize) -> Result<usize, Errno> {
        match self {
            OptKind::Int if len >= 4 => Ok(4),
            OptKind::Linger if len >= 8 => Ok(8),
            OptKind::IpMulticastIf if len >= 12 => Ok(12),
            OptKind::IpMulticastIf if len >= 8 => Ok(8),
            OptKind::IpMulticastIf if len >= 4 => Ok(4),
            OptKind::IpMreq if len >= 12 => Ok(12),
            OptKind::IpMreq if len >= 8 => Ok(8),
            OptKind::Ipv6Mreq if len >= 20 => Ok(20),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// Appends wire structures to a byte buffer (for building requests and
/// replies without allocation). Overflow is sticky: [`Writer::finish`]
/// reports it.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    /// Writes into `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, len: 0, overflow: false }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + b.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(b);
                self.len += b.len();
            }
            _ => self.overflow = true,
        }
        self
    }

    /// Appends a wire structure.
    pub fn put<T: Wire>(&mut self, v: &T) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// Appends several wire structures.
    pub fn put_all<T: Wire>(&mut self, vs: &[T]) -> &mut Self {
        for v in vs {
            self.put(v);
        }
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The length written, or `None` if the buffer was too small.
    pub fn finish(self) -> Option<usize> {
        if self.overflow {
            None
        } else {
            Some(self.len)
        }
    }
}

/// Encodes a request: the header (with `payload_len` filled in) followed by
/// whatever `payload` appends. Returns the message length, or `None` if
/// `buf` is too small.
pub fn encode_request(buf: &mut [u8], mut header: Request, payload: impl FnOnce(&mut Writer)) -> Option<usize> {
    let (head, rest) = buf.split_at_mut_checked(REQUEST_SIZE)?;
    let mut w = Writer::new(rest);
    payload(&mut w);
    let n = w.finish()?;
    header.payload_len = u32::try_from(n).ok()?;
    head.copy_from_slice(header.as_bytes());
    Some(REQUEST_SIZE + n)
}

/// Reads wire structures from a byte buffer in order.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// The next wire structure.
    pub fn get<T: Wire>(&mut self) -> Option<T> {
        let v = T::read_from(self.buf.get(self.pos..)?)?;
        self.pos += core::mem::size_of::<T>();
        Some(v)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Splits a message into its header and payload; `None` if it is shorter
/// than the header or than the payload length it declares.
pub fn split_request(msg: &[u8]) -> Option<(Request, &[u8])> {
    let h = Request::read_from(msg)?;
    let payload = msg.get(REQUEST_SIZE..REQUEST_SIZE.checked_add(h.payload_len as usize)?)?;
    Some((h, payload))
}

/// Splits an answer into its header and payload.
pub fn split_reply(msg: &[u8]) -> Option<(Reply, &[u8])> {
    let h = Reply::read_from(msg)?;
    let payload = msg.get(REPLY_SIZE..REPLY_SIZE.checked_add(h.payload_len as usize)?)?;
    Some((h, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        for v in 0..40 {
            if let Some(op) = Op::from_raw(v) {
                assert_eq!(op as u32, v);
            }
        }
        assert_eq!(Op::from_raw(18), Some(Op::Netlink));
        assert_eq!(Op::from_raw(0), None);
    }

    #[test]
    fn encode_and_split() {
        let mut buf = [0u8; 256];
        let hdr = Request { op: Op::SendMsg as u32, handle: 7, ..Request::default() };
        let iov = GuestIovec { gpa: 0x1000, len: 5 };
        let n = encode_request(&mut buf, hdr, |w| {
            w.put(&MsgHeader { iov_count: 1, ..MsgHeader::default() }).put(&iov);
        })
        .unwrap();
        assert_eq!(n, 64 + 48 + 16);
        let (h, p) = split_request(&buf[..n]).unwrap();
        assert_eq!(h.handle, 7);
        assert_eq!(h.payload_len, 64);
        let mut r = Reader::new(p);
        assert_eq!(r.get::<MsgHeader>().unwrap().iov_count, 1);
        assert_eq!(r.get::<GuestIovec>(), Some(iov));
        assert_eq!(r.get::<u64>(), None);
        // Too small a buffer is reported, not truncated.
        assert_eq!(
            encode_request(&mut buf[..70], hdr, |w| {
                w.put(&iov);
            }),
            None
        );
        // A declared payload longer than the message is refused.
        assert!(split_request(&buf[..n - 1]).is_none());
    }

    #[test]
    fn addresses_are_checked() {
        let a = SockAddr::inet([127, 0, 0, 1], 8080);
        assert_eq!(a.check(AddrUse::Bind), Ok(16));
        assert_eq!(a.port(), 8080);
        let mut long = a;
        long.len = 32;
        assert_eq!(long.check(AddrUse::Connect), Ok(16), "a longer buffer is trimmed");
        long.len = 33;
        assert_eq!(long.check(AddrUse::Connect), Err(Errno::EINVAL));
        let mut short = a;
        short.len = 15;
        assert_eq!(short.check(AddrUse::Bind), Err(Errno::EINVAL));
        let b = SockAddr::inet6([0; 16], 1, 0, 0);
        assert_eq!(b.check(AddrUse::SendTo), Ok(28));
        let mut c = b;
        c.len = 24;
        assert_eq!(c.check(AddrUse::SendTo), Ok(24));
        c.len = 23;
        assert_eq!(c.check(AddrUse::SendTo), Err(Errno::EINVAL));
        let unspec = SockAddr::from_slice(&[0, 0]).unwrap();
        assert_eq!(unspec.check(AddrUse::Connect), Ok(2));
        assert_eq!(unspec.check(AddrUse::Bind), Err(Errno::EAFNOSUPPORT));
        let unix = SockAddr::from_slice(&[1, 0, b'/', b'x']).unwrap();
        assert_eq!(unix.check(AddrUse::Connect), Err(Errno::EAFNOSUPPORT));
        let mut pad = a;
        pad._pad = 1;
        assert_eq!(pad.check(AddrUse::Bind), Err(Errno::EINVAL));
    }

    #[test]
    fn netlink_requests_are_read_only() {
        let mut m = [0u8; 32];
        m[0..4].copy_from_slice(&32u32.to_le_bytes());
        m[4..6].copy_from_slice(&netlink::RTM_GETLINK.to_le_bytes());
        m[6..8].copy_from_slice(&(netlink::NLM_F_REQUEST | netlink::NLM_F_DUMP).to_le_bytes());
        assert_eq!(netlink::check_request(&m), Ok(()));
        m[4..6].copy_from_slice(&netlink::RTM_NEWADDR.to_le_bytes());
        assert_eq!(netlink::check_request(&m), Err(Errno::EPERM));
        m[4..6].copy_from_slice(&netlink::RTM_GETADDR.to_le_bytes());
        m[6..8].copy_from_slice(&0x800u16.to_le_bytes());
        assert_eq!(netlink::check_request(&m), Err(Errno::EINVAL), "no NLM_F_REQUEST");
        m[6..8].copy_from_slice(&netlink::NLM_F_REQUEST.to_le_bytes());
        m[0..4].copy_from_slice(&20u32.to_le_bytes());
        assert_eq!(netlink::check_request(&m), Err(Errno::EINVAL), "trailing second message");
        assert_eq!(netlink::check_request(&m[..20]), Ok(()));
        assert_eq!(netlink::check_request(&m[..10]), Err(Errno::EINVAL));
    }

    #[test]
    fn sockopt_allowlist() {
        let r = sockopt_rule(ipproto::SOL_SOCKET, so::SO_ERROR).unwrap();
        assert!(r.get && !r.set);
        assert!(sockopt_rule(ipproto::SOL_SOCKET, so::SO_RCVTIMEO_OLD).is_none());
        assert_eq!(OptKind::Int.set_len(3), Err(Errno::EINVAL));
        assert_eq!(OptKind::Int.set_len(8), Ok(4));
        assert_eq!(OptKind::IpMreq.set_len(12), Ok(12));
        assert_eq!(OptKind::TcpInfo.set_len(200), Err(Errno::EINVAL));
        for (i, a) in SOCKOPTS.iter().enumerate() {
            assert!(SOCKOPTS[i + 1..].iter().all(|b| (a.level, a.name) != (b.level, b.name)), "duplicate {a:?}");
        }
    }
}
