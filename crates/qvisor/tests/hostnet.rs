//! The socket service driven through encoded requests, with real guest
//! memory (a memfd mapping, as in a sandbox) and real host sockets: TCP
//! and UDP over loopback against std::net peers, readiness through the
//! notifier, netlink dumps of the real namespace, and hostile requests.

use qlib::hcall::GuestIovec;
use qlib::hostnet::{
    encode_request, ioctl, ip, ipproto, ipv6, msg, netlink as nl, poll, shut, so, split_reply, tcp, Event, MsgHeader,
    Op, Request, SockAddr, Wire, MAX_REQUEST,
};
use qlib::linux::Errno;
use qvisor::hostnet::client::{Client, SendMsg};
use qvisor::hostnet::netlink::{attributes, build_request, messages};
use qvisor::hostnet::{HostNet, Notifier};
use qvisor::memory::GuestMemory;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const MEM: u64 = 16 << 20;
const TX: u64 = 0x10_0000;
const RX: u64 = 0x40_0000;

fn iov(gpa: u64, len: u64) -> GuestIovec {
    GuestIovec { gpa, len }
}

fn setup(max: usize) -> (HostNet, GuestMemory) {
    (HostNet::new(max).expect("epoll"), GuestMemory::new(MEM).expect("guest memory"))
}

fn lo(v6: bool) -> SocketAddr {
    if v6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    }
}

/// Retries `f` while it reports EAGAIN (the host never blocks; a guest
/// would park on readiness), for at most 5 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, Errno>) -> T {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(Errno::EAGAIN) if t0.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{what}: {} ({})", e.name(), e.description()),
        }
    }
}

/// Readiness events seen so far, accumulated per handle.
#[derive(Default)]
struct Seen {
    by_handle: HashMap<u64, u32>,
}

impl Seen {
    /// Waits (through the notifier) until `h` has reported any of `bits`;
    /// returns and forgets everything `h` reported.
    fn until(&mut self, n: &Notifier, h: u64, bits: u32) -> u32 {
        let t0 = Instant::now();
        loop {
            let got = self.by_handle.get(&h).copied().unwrap_or(0);
            if got & bits != 0 {
                self.by_handle.remove(&h);
                return got;
            }
            let left = Duration::from_secs(5).saturating_sub(t0.elapsed());
            assert!(!left.is_zero(), "no readiness {bits:#x} for handle {h:#x} within 5 s (saw {got:#x})");
            n.wait(Some(left)).unwrap();
            self.collect(n);
        }
    }

    fn collect(&mut self, n: &Notifier) {
        let mut evs: Vec<Event> = Vec::new();
        n.drain(&mut evs).unwrap();
        for e in evs {
            *self.by_handle.entry(e.handle).or_default() |= e.revents;
        }
    }

    /// Everything `h` reported within `quiet`, and forgets it.
    fn settle(&mut self, n: &Notifier, h: u64, quiet: Duration) -> u32 {
        let t0 = Instant::now();
        while t0.elapsed() < quiet {
            n.wait(Some(quiet - t0.elapsed())).unwrap();
            self.collect(n);
        }
        self.collect(n);
        self.by_handle.remove(&h).unwrap_or(0)
    }
}

/// A service socket that connected to a host listener, and the host's end.
fn service_connects(c: &mut Client, v6: bool, watch: u32) -> (u64, TcpStream) {
    let l = TcpListener::bind(lo(v6)).unwrap();
    let h = c.tcp(v6, watch).unwrap();
    match c.connect(h, &l.local_addr().unwrap()) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => panic!("connect: {}", e.name()),
    }
    let (s, _) = l.accept().unwrap();
    // The client side is established once the server has accepted.
    assert_eq!(c.peername(h).unwrap(), l.local_addr().unwrap());
    (h, s)
}

/// A service listener, a host client connected to it, and the accepted
/// service socket.
fn host_connects(c: &mut Client, v6: bool, watch: u32) -> (u64, u64, TcpStream) {
    let l = c.tcp(v6, 0).unwrap();
    c.bind(l, &lo(v6)).unwrap();
    c.listen(l, 16).unwrap();
    let at = c.sockname(l).unwrap();
    let s = TcpStream::connect(at).unwrap();
    let (h, peer) = eventually("accept", || c.accept(l, watch));
    assert_eq!(peer, Some(s.local_addr().unwrap()), "accept reports the peer");
    (l, h, s)
}

fn put(mem: &GuestMemory, gpa: u64, data: &[u8]) -> GuestIovec {
    mem.write(gpa, data).unwrap();
    iov(gpa, data.len() as u64)
}

fn get(mem: &GuestMemory, gpa: u64, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    mem.read(gpa, &mut b).unwrap();
    b
}

#[test]
fn tcp_echo_both_directions_v4_and_v6() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    for v6 in [false, true] {
        // The service connects out to a host server.
        let (h, mut s) = service_connects(&mut c, v6, 0);
        let msg = b"hello from the guest";
        // Two guest ranges, sent as one message straight from guest memory.
        let a = put(&mem, TX, &msg[..5]);
        let b = put(&mem, TX + 0x3000, &msg[5..]);
        assert_eq!(c.send(h, &[a, b], None, 0).unwrap(), msg.len());
        let mut got = vec![0; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, msg);
        s.write_all(b"and back").unwrap();
        let info = eventually("recv", || c.recv(h, &[iov(RX, 4), iov(RX + 0x5000, 100)], 0));
        assert_eq!(info.len, 8);
        assert_eq!(info.addr.len, 0, "no source address on a connected stream");
        assert_eq!(get(&mem, RX, 4), b"and ");
        assert_eq!(get(&mem, RX + 0x5000, 4), b"back");
        c.close(h).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "orderly close after everything was read");

        // A host client connects to a service listener.
        let (l, h, mut s) = host_connects(&mut c, v6, 0);
        assert_eq!(c.getsockopt_int(l, ipproto::SOL_SOCKET, so::SO_ACCEPTCONN).unwrap(), 1);
        s.write_all(b"ping").unwrap();
        let info = eventually("recv", || c.recv(h, &[iov(RX, 64)], 0));
        assert_eq!(get(&mem, RX, info.len as usize), b"ping");
        let pong = put(&mem, TX, b"pong");
        assert_eq!(c.send(h, &[pong], None, msg::MSG_NOSIGNAL).unwrap(), 4);
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"pong");
        // No pending connection: EAGAIN at once, never a blocked host thread.
        assert_eq!(c.accept(l, 0).unwrap_err(), Errno::EAGAIN);
        c.close(h).unwrap();
        c.close(l).unwrap();
    }
    assert_eq!(net.open_sockets(), 0);
}

#[test]
fn half_close_and_reset_on_close_with_unread_data() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let (l, h, mut s) = host_connects(&mut c, false, 0);
    // The service half-closes: the host sees EOF but can still send.
    c.shutdown(h, shut::SHUT_WR).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "EOF after SHUT_WR");
    s.write_all(b"still open").unwrap();
    let info = eventually("recv", || c.recv(h, &[iov(RX, 64)], 0));
    assert_eq!(get(&mem, RX, info.len as usize), b"still open");
    let one = put(&mem, TX, b"x");
    assert_eq!(c.send(h, &[one], None, 0).unwrap_err(), Errno::EPIPE, "EPIPE, and the VMM took no SIGPIPE");
    // The host half-closes too: the service reads EOF.
    s.shutdown(Shutdown::Write).unwrap();
    let info = eventually("eof", || {
        c.recv(h, &[iov(RX, 64)], 0).and_then(|i| if i.len == 0 { Ok(i) } else { Err(Errno::EAGAIN) })
    });
    assert_eq!(info.len, 0);
    c.close(h).unwrap();

    // Unread data at close: the peer gets a reset, not an orderly EOF.
    let at = c.sockname(l).unwrap();
    let mut s = TcpStream::connect(at).unwrap();
    let (h, _) = eventually("accept", || c.accept(l, 0));
    s.write_all(b"never read").unwrap();
    eventually("data arrives", || match c.ioctl(h, ioctl::FIONREAD) {
        Ok(10) => Ok(()),
        Ok(_) => Err(Errno::EAGAIN),
        Err(e) => Err(e),
    });
    c.close(h).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let e = s.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");

    // SO_LINGER {1, 0}: an abortive close (RST) on request.
    let mut s = TcpStream::connect(at).unwrap();
    let (h, _) = eventually("accept", || c.accept(l, 0));
    let linger0 = [1i32.to_le_bytes(), 0i32.to_le_bytes()].concat();
    c.setsockopt(h, ipproto::SOL_SOCKET, so::SO_LINGER, &linger0).unwrap();
    assert_eq!(c.getsockopt(h, ipproto::SOL_SOCKET, so::SO_LINGER, 8).unwrap(), linger0);
    c.close(h).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionReset);
    c.close(l).unwrap();
}

#[test]
fn a_positive_linger_time_never_blocks_the_vmm() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let (l, h, s) = host_connects(&mut c, false, 0);
    // Fill the connection: the host peer reads nothing.
    let chunk = put(&mem, TX, &vec![0x5a; 256 << 10]);
    let mut sent = 0;
    loop {
        match c.send(h, &[chunk], None, 0) {
            Ok(n) => sent += n,
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("send: {}", e.name()),
        }
    }
    assert!(sent > 0);
    let linger5 = [1i32.to_le_bytes(), 5i32.to_le_bytes()].concat();
    c.setsockopt(h, ipproto::SOL_SOCKET, so::SO_LINGER, &linger5).unwrap();
    assert_eq!(c.getsockopt(h, ipproto::SOL_SOCKET, so::SO_LINGER, 8).unwrap(), linger5, "the guest sees its value");
    assert!(c.ioctl(h, ioctl::SIOCOUTQ).unwrap() > 0, "unsent data is queued");
    let t0 = Instant::now();
    c.close(h).unwrap();
    assert!(t0.elapsed() < Duration::from_millis(500), "close took {:?}: the host socket lingered", t0.elapsed());
    drop(s);
    c.close(l).unwrap();
}

#[test]
fn nonblocking_connect_to_a_closed_port_reports_econnrefused() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped: nobody listens
    let h = c.tcp(false, poll::EPOLLOUT).unwrap();
    let mut seen = Seen::default();
    // An unconnected socket reports its state once at registration.
    seen.settle(net.notifier(), h, Duration::from_millis(20));
    let r = c.connect(h, &closed);
    assert!(matches!(r, Err(Errno::EINPROGRESS) | Err(Errno::ECONNREFUSED)), "connect: {r:?}");
    if r == Err(Errno::EINPROGRESS) {
        let ev = seen.until(net.notifier(), h, poll::EPOLLOUT | poll::EPOLLERR | poll::EPOLLHUP);
        assert!(ev & poll::EPOLLERR != 0, "a refused connection reports EPOLLERR: {ev:#x}");
        assert_eq!(c.getsockopt_int(h, ipproto::SOL_SOCKET, so::SO_ERROR).unwrap(), Errno::ECONNREFUSED.0 as i32);
    }
    assert_eq!(c.getsockopt_int(h, ipproto::SOL_SOCKET, so::SO_ERROR).unwrap(), 0, "SO_ERROR clears on read");
    assert_eq!(c.peername(h).unwrap_err(), Errno::ENOTCONN);
    c.close(h).unwrap();
}

#[test]
fn udp_with_sendmmsg_recvmmsg_and_truncation() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    for v6 in [false, true] {
        let a = c.udp(v6, 0).unwrap();
        let b = c.udp(v6, 0).unwrap();
        c.bind(a, &lo(v6)).unwrap();
        c.bind(b, &lo(v6)).unwrap();
        let (aa, ba) = (c.sockname(a).unwrap(), c.sockname(b).unwrap());
        let m0 = put(&mem, TX, b"first");
        let m1a = put(&mem, TX + 0x100, b"sec");
        let m1b = put(&mem, TX + 0x2000, b"ond");
        let m2 = put(&mem, TX + 0x300, &[7u8; 1000]);
        let msgs = [
            SendMsg { iov: vec![m0], to: Some(ba) },
            SendMsg { iov: vec![m1a, m1b], to: Some(ba) },
            SendMsg { iov: vec![m2], to: Some(ba) },
        ];
        let (n, lens) = c.sendmmsg(a, &msgs, 0).unwrap();
        assert_eq!(n, 3);
        assert_eq!(lens, [5, 6, 1000]);
        let slots: Vec<Vec<GuestIovec>> = (0..4).map(|i| vec![iov(RX + i * 0x1000, 0x1000)]).collect();
        let got = eventually("recvmmsg", || c.recvmmsg(b, &slots, 0));
        assert_eq!(got.len(), 3, "all three datagrams in one host call");
        assert_eq!(got.iter().map(|i| i.len).collect::<Vec<_>>(), [5, 6, 1000]);
        for i in &got {
            assert_eq!(qvisor::hostnet::client::from_wire(&i.addr), Some(aa), "source address");
        }
        assert_eq!(get(&mem, RX, 5), b"first");
        assert_eq!(get(&mem, RX + 0x1000, 6), b"second");
        assert_eq!(get(&mem, RX + 0x2000, 1000), vec![7u8; 1000]);
        assert_eq!(c.recvmmsg(b, &slots, 0).unwrap_err(), Errno::EAGAIN);

        // A host peer, and MSG_TRUNC reporting the real datagram length.
        let peer = UdpSocket::bind(lo(v6)).unwrap();
        peer.send_to(&[1u8; 300], ba).unwrap();
        let info = eventually("recv", || c.recv(b, &[iov(RX, 100)], msg::MSG_TRUNC));
        assert_eq!(info.len, 300, "MSG_TRUNC returns the datagram's length");
        assert!(info.flags & msg::MSG_TRUNC != 0);
        assert_eq!(qvisor::hostnet::client::from_wire(&info.addr), Some(peer.local_addr().unwrap()));
        // sendmsg to the host peer.
        let d = put(&mem, TX, b"to host");
        let to = peer.local_addr().unwrap();
        assert_eq!(c.send(a, &[d], Some(&to), 0).unwrap(), 7);
        let mut buf = [0u8; 64];
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"to host"[..], aa));
        // connect() then send without an address; AF_UNSPEC dissolves it.
        c.connect(a, &to).unwrap();
        assert_eq!(c.send(a, &[d], None, 0).unwrap(), 7);
        peer.recv_from(&mut buf).unwrap();
        let unspec = SockAddr::from_slice(&[0, 0]).unwrap();
        let r = c.request(Op::Connect, a, 0, [0; 5], |w| {
            w.put(&unspec);
        });
        assert_eq!(r.result(), Ok(0));
        assert_eq!(c.send(a, &[d], None, 0).unwrap_err(), Errno::EDESTADDRREQ);
        c.close(a).unwrap();
        c.close(b).unwrap();
    }
}

#[test]
fn peek_and_waitall_never_block_the_host() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let (l, h, mut s) = host_connects(&mut c, false, 0);
    // Nothing to read: EAGAIN even without MSG_DONTWAIT (the guest parks).
    assert_eq!(c.recv(h, &[iov(RX, 16)], 0).unwrap_err(), Errno::EAGAIN);
    assert_eq!(c.recv(h, &[iov(RX, 16)], msg::MSG_WAITALL).unwrap_err(), Errno::EAGAIN);
    s.write_all(b"abcdef").unwrap();
    eventually("data", || match c.ioctl(h, ioctl::FIONREAD) {
        Ok(6) => Ok(()),
        Ok(_) => Err(Errno::EAGAIN),
        Err(e) => Err(e),
    });
    let info = c.recv(h, &[iov(RX, 3)], msg::MSG_PEEK).unwrap();
    assert_eq!((info.len, get(&mem, RX, 3)), (3, b"abc".to_vec()));
    assert_eq!(c.ioctl(h, ioctl::FIONREAD).unwrap(), 6, "PEEK consumed nothing");
    // MSG_WAITALL with more room than data: the host returns what is there
    // at once; completing the read is the guest's loop.
    let t0 = Instant::now();
    let info = c.recv(h, &[iov(RX, 100)], msg::MSG_WAITALL).unwrap();
    assert_eq!(info.len, 6);
    // Blocking would wait for data that never comes; 1 s tolerates a loaded host.
    assert!(t0.elapsed() < Duration::from_secs(1), "MSG_WAITALL blocked the host for {:?}", t0.elapsed());
    assert_eq!(get(&mem, RX, 6), b"abcdef");
    // The guest's MSG_WAITALL loop: partial reads until the buffer is full.
    let writer = std::thread::spawn(move || {
        for part in [&b"12"[..], b"345", b"67890"] {
            std::thread::sleep(Duration::from_millis(5));
            s.write_all(part).unwrap();
        }
        s
    });
    let mut have = 0u64;
    while have < 10 {
        match c.recv(h, &[iov(RX + have, 10 - have)], msg::MSG_WAITALL) {
            Ok(i) => have += i.len,
            Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{}", e.name()),
        }
    }
    assert_eq!(get(&mem, RX, 10), b"1234567890");
    drop(writer.join().unwrap());
    // Unknown flags are a guest bug, refused before any host call.
    assert_eq!(c.recv(h, &[iov(RX, 1)], 0x4000_0000).unwrap_err(), Errno::EINVAL);
    assert_eq!(c.send(h, &[iov(TX, 1)], None, msg::MSG_PEEK).unwrap_err(), Errno::EINVAL);
    c.close(h).unwrap();
    c.close(l).unwrap();
}

#[test]
fn socket_names() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    for v6 in [false, true] {
        let (h, s) = service_connects(&mut c, v6, 0);
        assert_eq!(c.sockname(h).unwrap(), s.peer_addr().unwrap());
        assert_eq!(c.peername(h).unwrap(), s.local_addr().unwrap());
        c.close(h).unwrap();
    }
    let u = c.udp(false, 0).unwrap();
    assert_eq!(c.sockname(u).unwrap(), "0.0.0.0:0".parse::<SocketAddr>().unwrap(), "unbound");
    assert_eq!(c.peername(u).unwrap_err(), Errno::ENOTCONN);
    // Bad addresses: checked by the host, native errors from the kernel.
    let mut short = SockAddr::inet([127, 0, 0, 1], 0);
    short.len = 8;
    let r = c.request(Op::Bind, u, 0, [0; 5], |w| {
        w.put(&short);
    });
    assert_eq!(r.result(), Err(Errno::EINVAL));
    let v6addr: SocketAddr = "[::1]:0".parse().unwrap();
    assert!(c.bind(u, &v6addr).is_err(), "an IPv6 address on an IPv4 socket");
    let unix = SockAddr::from_slice(&[1, 0, b'/', b't', b'm', b'p']).unwrap();
    let r = c.request(Op::Connect, u, 0, [0; 5], |w| {
        w.put(&unix);
    });
    assert_eq!(r.result(), Err(Errno::EAFNOSUPPORT));
    // Socket kinds the host does not create.
    assert_eq!(c.socket(1, 1, 0, 0).unwrap_err(), Errno::EAFNOSUPPORT, "AF_UNIX lives in the guest");
    assert_eq!(c.socket(16, 3, 0, 0).unwrap_err(), Errno::EAFNOSUPPORT, "AF_NETLINK lives in the guest");
    assert_eq!(c.socket(2, 3, 1, 0).unwrap_err(), Errno::EPERM, "no raw sockets");
    assert_eq!(c.socket(2, 1, 132, 0).unwrap_err(), Errno::EPROTONOSUPPORT, "no SCTP");
    assert_eq!(c.socket(2, 5, 0, 0).unwrap_err(), Errno::ESOCKTNOSUPPORT);
    assert_eq!(c.socket(2, 1 | 0x100, 0, 0).unwrap_err(), Errno::EINVAL, "unknown type flags");
    let nb = c.socket(2, 1 | 0o4000 | 0o2000000, 6, 0).unwrap();
    c.close(nb).unwrap();
    c.close(u).unwrap();
}

#[test]
fn socket_option_allowlist() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let (l, h, _s) = host_connects(&mut c, false, 0);
    let sol = ipproto::SOL_SOCKET;
    for (level, name, v) in [
        (sol, so::SO_REUSEADDR, 1),
        (sol, so::SO_REUSEPORT, 1),
        (sol, so::SO_KEEPALIVE, 1),
        (ipproto::IPPROTO_TCP, tcp::TCP_NODELAY, 1),
        (ipproto::IPPROTO_TCP, tcp::TCP_CORK, 1),
        (ipproto::IPPROTO_TCP, tcp::TCP_KEEPIDLE, 30),
        (ipproto::IPPROTO_TCP, tcp::TCP_KEEPINTVL, 7),
        (ipproto::IPPROTO_TCP, tcp::TCP_KEEPCNT, 4),
        (ipproto::IPPROTO_IP, ip::IP_TTL, 33),
        (ipproto::IPPROTO_IP, ip::IP_TOS, 0x10),
    ] {
        c.setsockopt_int(h, level, name, v).unwrap_or_else(|e| panic!("set {level}/{name}: {}", e.name()));
        assert_eq!(c.getsockopt_int(h, level, name).unwrap(), v, "{level}/{name}");
    }
    c.setsockopt_int(h, sol, so::SO_RCVBUF, 65536).unwrap();
    assert!(c.getsockopt_int(h, sol, so::SO_RCVBUF).unwrap() >= 65536, "the kernel doubles it");
    assert_eq!(c.getsockopt_int(h, sol, so::SO_TYPE).unwrap(), 1);
    assert_eq!(c.getsockopt_int(h, sol, so::SO_DOMAIN).unwrap(), 2);
    assert_eq!(c.getsockopt_int(h, sol, so::SO_PROTOCOL).unwrap(), 6);
    assert_eq!(c.getsockopt_int(h, sol, so::SO_ACCEPTCONN).unwrap(), 0);
    assert_eq!(c.getsockopt_int(h, sol, so::SO_ERROR).unwrap(), 0);
    let info = c.getsockopt(h, ipproto::IPPROTO_TCP, tcp::TCP_INFO, 512).unwrap();
    assert!(info.len() >= 104, "tcp_info of {} bytes", info.len());
    assert_eq!(info[0], tcp::TCP_ESTABLISHED, "tcpi_state");
    // A short buffer gets a short answer, as natively.
    assert_eq!(c.getsockopt(h, ipproto::IPPROTO_TCP, tcp::TCP_INFO, 8).unwrap().len(), 8);

    // Refused: options the guest handles, privileged or unknown ones, writes
    // of read-only ones, wrong lengths.
    let tv = [0u8; 16];
    assert_eq!(c.setsockopt(h, sol, so::SO_RCVTIMEO_OLD, &tv).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt(h, sol, so::SO_SNDTIMEO_NEW, &tv).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt_int(h, sol, 33 /* SO_RCVBUFFORCE */, 1 << 20).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt_int(h, sol, 25 /* SO_BINDTODEVICE */, 0).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt_int(h, sol, so::SO_ERROR, 0).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt(h, ipproto::IPPROTO_TCP, tcp::TCP_INFO, &[0; 104]).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt_int(h, 999, 1, 1).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt(h, sol, so::SO_KEEPALIVE, &[1, 0]).unwrap_err(), Errno::EINVAL);
    assert_eq!(c.getsockopt(h, sol, so::SO_RCVTIMEO_OLD, 16).unwrap_err(), Errno::ENOPROTOOPT);
    assert_eq!(c.setsockopt(h, sol, so::SO_KEEPALIVE, &[0; 600]).unwrap_err(), Errno::EINVAL, "longer than MAX_OPTLEN");

    // IPv6 and multicast basics on UDP sockets.
    let u6 = c.udp(true, 0).unwrap();
    c.setsockopt_int(u6, ipproto::IPPROTO_IPV6, ipv6::IPV6_V6ONLY, 1).unwrap();
    assert_eq!(c.getsockopt_int(u6, ipproto::IPPROTO_IPV6, ipv6::IPV6_V6ONLY).unwrap(), 1);
    c.setsockopt_int(u6, ipproto::IPPROTO_IPV6, ipv6::IPV6_UNICAST_HOPS, 9).unwrap();
    assert_eq!(c.getsockopt_int(u6, ipproto::IPPROTO_IPV6, ipv6::IPV6_UNICAST_HOPS).unwrap(), 9);
    let u4 = c.udp(false, 0).unwrap();
    c.setsockopt_int(u4, ipproto::IPPROTO_IP, ip::IP_MULTICAST_TTL, 3).unwrap();
    assert_eq!(c.getsockopt_int(u4, ipproto::IPPROTO_IP, ip::IP_MULTICAST_TTL).unwrap(), 3);
    c.setsockopt_int(u4, ipproto::IPPROTO_IP, ip::IP_MULTICAST_LOOP, 0).unwrap();
    assert_eq!(c.getsockopt_int(u4, ipproto::IPPROTO_IP, ip::IP_MULTICAST_LOOP).unwrap(), 0);
    c.setsockopt_int(u4, ipproto::SOL_SOCKET, so::SO_BROADCAST, 1).unwrap();
    // ip_mreqn { multiaddr 239.1.2.3, address 0, ifindex 1 (lo) }.
    let mreqn = [[239u8, 1, 2, 3], [0; 4], 1i32.to_le_bytes()].concat();
    c.setsockopt(u4, ipproto::IPPROTO_IP, ip::IP_ADD_MEMBERSHIP, &mreqn).unwrap();
    c.setsockopt(u4, ipproto::IPPROTO_IP, ip::IP_DROP_MEMBERSHIP, &mreqn).unwrap();
    assert_eq!(c.setsockopt(u4, ipproto::IPPROTO_IP, ip::IP_ADD_MEMBERSHIP, &mreqn[..6]).unwrap_err(), Errno::EINVAL);
    assert_eq!(c.getsockopt(u4, ipproto::IPPROTO_IP, ip::IP_ADD_MEMBERSHIP, 12).unwrap_err(), Errno::ENOPROTOOPT);
    for s in [h, l, u6, u4] {
        c.close(s).unwrap();
    }
}

#[test]
fn ioctls() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let (l, h, mut s) = host_connects(&mut c, false, 0);
    assert_eq!(c.ioctl(h, ioctl::FIONREAD).unwrap(), 0);
    s.write_all(&[9; 100]).unwrap();
    eventually("FIONREAD", || match c.ioctl(h, ioctl::FIONREAD) {
        Ok(100) => Ok(()),
        Ok(_) => Err(Errno::EAGAIN),
        Err(e) => Err(e),
    });
    assert_eq!(c.ioctl(h, ioctl::SIOCOUTQ).unwrap(), 0, "nothing unacknowledged");
    assert_eq!(c.ioctl(h, 0x8912 /* SIOCGIFCONF */).unwrap_err(), Errno::ENOTTY);
    assert_eq!(c.ioctl(h, 0x5421 /* FIONBIO: the guest's */).unwrap_err(), Errno::ENOTTY);
    c.close(h).unwrap();
    c.close(l).unwrap();
}

#[test]
fn readiness_events_for_accept_read_write_and_hangup() {
    let (net, mem) = setup(64);
    let n = net.notifier();
    let mut seen = Seen::default();
    let mut c = Client::new(&net, &mem);
    let all = poll::EPOLLIN | poll::EPOLLOUT | poll::EPOLLRDHUP | poll::EPOLLPRI;

    // Accept readiness on a listener.
    let l = c.tcp(false, poll::EPOLLIN).unwrap();
    c.bind(l, &lo(false)).unwrap();
    c.listen(l, 8).unwrap();
    seen.settle(n, l, Duration::from_millis(20));
    let at = c.sockname(l).unwrap();
    let mut s = TcpStream::connect(at).unwrap();
    assert!(seen.until(n, l, poll::EPOLLIN) & poll::EPOLLIN != 0);
    let (h, _) = c.accept(l, all).unwrap();

    // Registration reports the current state once: writable.
    let ev = seen.until(n, h, poll::EPOLLOUT);
    assert_eq!(ev & (poll::EPOLLIN | poll::EPOLLHUP | poll::EPOLLERR), 0, "{ev:#x}");
    // Edge-triggered: no repeats while nothing changes.
    assert_eq!(seen.settle(n, h, Duration::from_millis(50)), 0);

    // Data arrives: one IN edge.
    s.write_all(b"data").unwrap();
    assert!(seen.until(n, h, poll::EPOLLIN) & poll::EPOLLIN != 0);
    assert_eq!(c.recv(h, &[iov(RX, 64)], 0).unwrap().len, 4);
    assert_eq!(c.recv(h, &[iov(RX, 64)], 0).unwrap_err(), Errno::EAGAIN);
    assert_eq!(seen.settle(n, h, Duration::from_millis(30)) & poll::EPOLLIN, 0, "no level-triggered repeats");
    // After EAGAIN, new data is a new edge.
    s.write_all(b"more").unwrap();
    assert!(seen.until(n, h, poll::EPOLLIN) & poll::EPOLLIN != 0);
    c.recv(h, &[iov(RX, 64)], 0).unwrap();

    // Write readiness: fill the connection until EAGAIN, then let the host
    // drain it: an OUT edge.
    let chunk = put(&mem, TX, &vec![1u8; 1 << 20]);
    let mut sent = 0usize;
    loop {
        match c.send(h, &[chunk], None, 0) {
            Ok(k) => sent += k,
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("{}", e.name()),
        }
    }
    seen.settle(n, h, Duration::from_millis(10));
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < sent {
            got += s.read(&mut buf).unwrap();
        }
        s
    });
    assert!(seen.until(n, h, poll::EPOLLOUT) & poll::EPOLLOUT != 0);
    let s = reader.join().unwrap();

    // The peer closes: IN | RDHUP; after our own shutdown: HUP.
    s.shutdown(Shutdown::Write).unwrap();
    let ev = seen.until(n, h, poll::EPOLLRDHUP);
    assert!(ev & poll::EPOLLIN != 0, "EOF is readable: {ev:#x}");
    c.shutdown(h, shut::SHUT_WR).unwrap();
    assert!(seen.until(n, h, poll::EPOLLHUP) & poll::EPOLLHUP != 0);
    drop(s);

    // Unwatched and closed sockets report nothing more.
    let (h2, mut s2) = service_connects(&mut c, false, poll::EPOLLIN);
    c.watch(h2, 0).unwrap();
    s2.write_all(b"x").unwrap();
    assert_eq!(seen.settle(n, h2, Duration::from_millis(30)), 0, "unwatched");
    c.watch(h2, poll::EPOLLIN).unwrap();
    assert!(seen.until(n, h2, poll::EPOLLIN) & poll::EPOLLIN != 0, "re-watching reports the pending data");
    c.close(h2).unwrap();
    s2.write_all(b"y").unwrap_or(());
    assert_eq!(seen.settle(n, h2, Duration::from_millis(30)), 0, "closed");
    assert_eq!(c.watch(h2, poll::EPOLLIN).unwrap_err(), Errno::EBADF);
    assert_eq!(c.watch(h, 0x8000_0000).unwrap_err(), Errno::EINVAL, "EPOLLET etc. are the host's business");
    c.close(h).unwrap();
    c.close(l).unwrap();
}

#[test]
fn notifier_wait_sleeps_until_an_event() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let (h, mut s) = service_connects(&mut c, false, poll::EPOLLIN);
    let mut evs = Vec::new();
    net.notifier().drain(&mut evs).unwrap();
    // Nothing pending: a timed wait sleeps its time out.
    let t0 = Instant::now();
    assert_eq!(net.notifier().wait(Some(Duration::from_millis(50))).unwrap(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(45));
    // An event 100 ms later ends an unbounded wait then, not before.
    let w = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(b"wake").unwrap();
        s
    });
    let t0 = Instant::now();
    let pending = net.notifier().wait(None).unwrap();
    let waited = t0.elapsed();
    assert!(pending >= 1);
    assert!(waited >= Duration::from_millis(90) && waited < Duration::from_secs(2), "{waited:?}");
    evs.clear();
    net.notifier().drain(&mut evs).unwrap();
    assert!(evs.iter().any(|e| e.handle == h && e.revents & poll::EPOLLIN != 0), "{evs:?}");
    // The epoll descriptor is there for transports that wait on several sources.
    use std::os::fd::AsRawFd;
    assert!(net.notifier().fd().as_raw_fd() > 2);
    drop(w.join().unwrap());
    c.close(h).unwrap();
}

fn nl_request(ty: u16, body: &[u8]) -> Vec<u8> {
    build_request(ty, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 0x5eed, body)
}

/// Interface names `ip -o link show` lists, sorted.
fn ip_links() -> Vec<String> {
    let ip =
        std::process::Command::new("ip").args(["-o", "link", "show"]).output().expect("iproute2 (scripts/prereqs.txt)");
    let mut names: Vec<String> = String::from_utf8_lossy(&ip.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap().to_string()))
        .collect();
    names.sort();
    names
}

fn link_names(blob: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for (ty, _, p) in messages(blob) {
        if ty == nl::RTM_NEWLINK {
            for (at, data) in attributes(&p[16..]) {
                if at == nl::IFLA_IFNAME {
                    names.push(String::from_utf8_lossy(data.split(|&b| b == 0).next().unwrap()).into_owned());
                }
            }
        }
    }
    names
}

#[test]
fn netlink_dumps_of_the_real_namespace() {
    let (net, mem) = setup(8);
    let mut c = Client::new(&net, &mem);
    let out = [iov(RX, 0x4000), iov(RX + 0x10000, 0x40000)];

    // RTM_GETLINK: every interface of this namespace, as `ip link` lists it.
    let n = c.netlink(4242, &nl_request(nl::RTM_GETLINK, &[0; 16]), &out).unwrap();
    let blob = [get(&mem, RX, n.min(0x4000)), get(&mem, RX + 0x10000, n.saturating_sub(0x4000))].concat();
    let all: Vec<_> = messages(&blob).collect();
    assert!(all.iter().all(|(_, h, _)| h[3] == 4242 && h[2] == 0x5eed), "port id rewritten, sequence kept");
    assert_eq!(all.last().unwrap().0, nl::NLMSG_DONE);
    let names = link_names(&blob);
    assert!(names.contains(&"lo".to_string()), "{names:?}");
    // Compare with iproute2, retrying while other programs change the
    // interfaces under us (a dump bracketed by two equal `ip` listings).
    let mut tries = 0;
    loop {
        let before = ip_links();
        let n = c.netlink(4242, &nl_request(nl::RTM_GETLINK, &[0; 16]), &out).unwrap();
        let blob = [get(&mem, RX, n.min(0x4000)), get(&mem, RX + 0x10000, n.saturating_sub(0x4000))].concat();
        let mut names = link_names(&blob);
        names.sort();
        if before == ip_links() || tries == 10 {
            assert_eq!(names, before, "the dump lists the namespace's real interfaces");
            break;
        }
        tries += 1;
    }

    // RTM_GETADDR: loopback's 127.0.0.1.
    let n = c.netlink(1, &nl_request(nl::RTM_GETADDR, &[0; 8]), &out[..1]).unwrap();
    let blob = get(&mem, RX, n);
    let mut v4 = Vec::new();
    for (ty, _, p) in messages(&blob) {
        if ty == nl::RTM_NEWADDR && p[0] == 2 {
            for (at, d) in attributes(&p[8..]) {
                if at == nl::IFA_ADDRESS {
                    v4.push([d[0], d[1], d[2], d[3]]);
                }
            }
        }
    }
    assert!(v4.contains(&[127, 0, 0, 1]), "{v4:?}");

    // RTM_GETROUTE: at least the local route for 127.0.0.1.
    let n = c.netlink(1, &nl_request(nl::RTM_GETROUTE, &[0; 12]), &out[..1]).unwrap();
    let routes = messages(&get(&mem, RX, n)).filter(|(t, _, _)| *t == nl::RTM_NEWROUTE).count();
    assert!(routes >= 1);

    // Too small a buffer: ENOBUFS with the size needed, nothing written.
    mem.write(RX + 0x200000, &[0xee; 64]).unwrap();
    let (e, need) = c.netlink(1, &nl_request(nl::RTM_GETLINK, &[0; 16]), &[iov(RX + 0x200000, 64)]).unwrap_err();
    assert_eq!(e, Errno::ENOBUFS);
    assert!(need > 64);
    assert_eq!(get(&mem, RX + 0x200000, 64), vec![0xee; 64]);
    assert!(c.netlink(1, &nl_request(nl::RTM_GETLINK, &[0; 16]), &[iov(RX + 0x200000, need)]).is_ok());

    // Read-only: no changes to the namespace, nothing but the three dumps.
    let mut newaddr = [0u8; 8];
    newaddr[0] = 2;
    let add = build_request(nl::RTM_NEWADDR, nl::NLM_F_REQUEST | 0x400 | 0x200 /* CREATE|EXCL */, 1, &newaddr);
    assert_eq!(c.netlink(1, &add, &out).unwrap_err().0, Errno::EPERM);
    for ty in
        [nl::RTM_NEWLINK, nl::RTM_DELLINK, nl::RTM_SETLINK, nl::RTM_DELADDR, nl::RTM_NEWROUTE, nl::RTM_DELROUTE, 30]
    {
        assert_eq!(c.netlink(1, &build_request(ty, nl::NLM_F_REQUEST, 1, &[0; 16]), &out).unwrap_err().0, Errno::EPERM);
    }
    // Guest memory outside the guest: EFAULT before the kernel is asked.
    assert_eq!(c.netlink(1, &nl_request(nl::RTM_GETLINK, &[0; 16]), &[iov(MEM - 8, 64)]).unwrap_err().0, Errno::EFAULT);
    // A handle or a length mismatch is malformed.
    let r = c.request(Op::Netlink, 5, 0, [1, 32, 0, 0, 0], |w| {
        w.bytes(&nl_request(nl::RTM_GETLINK, &[0; 16]));
    });
    assert_eq!(r.result(), Err(Errno::EINVAL));
    assert_eq!(net.open_sockets(), 0, "netlink uses no handles");
}

#[test]
fn out_of_range_guest_memory_is_efault_and_nothing_is_sent() {
    let (net, mem) = setup(64);
    let mut c = Client::new(&net, &mem);
    let a = c.udp(false, 0).unwrap();
    let b = c.udp(false, 0).unwrap();
    c.bind(b, &lo(false)).unwrap();
    let to = c.sockname(b).unwrap();
    let good = put(&mem, TX, b"good");
    for bad in [iov(MEM - 2, 4), iov(MEM, 1), iov(u64::MAX - 1, 4), iov(0, MEM + 1), iov(1 << 62, 1)] {
        assert_eq!(c.send(a, &[good, bad], Some(&to), 0).unwrap_err(), Errno::EFAULT, "{bad:?}");
        let (r, _) = (
            c.sendmmsg(a, &[SendMsg { iov: vec![good], to: Some(to) }, SendMsg { iov: vec![bad], to: Some(to) }], 0),
            0,
        );
        assert_eq!(r.unwrap_err(), Errno::EFAULT, "a batch is checked whole before anything is sent");
    }
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(c.ioctl(b, ioctl::FIONREAD).unwrap(), 0, "nothing was sent");
    // A receive into memory outside the guest leaves the datagram queued.
    assert_eq!(c.send(a, &[good], Some(&to), 0).unwrap(), 4);
    assert_eq!(
        eventually("queued", || c.recv(b, &[iov(MEM, 16)], 0).map(|_| ()).or_else(|e| if e == Errno::EFAULT {
            Ok(())
        } else {
            Err(e)
        })),
        ()
    );
    let info = eventually("recv", || c.recv(b, &[iov(RX, 16)], 0));
    assert_eq!(get(&mem, RX, info.len as usize), b"good");
    // Too many iovecs for one message.
    let many = vec![iov(TX, 1); qlib::hostnet::MAX_IOVECS_PER_MSG + 1];
    assert_eq!(c.send(a, &many, Some(&to), 0).unwrap_err(), Errno::EMSGSIZE);
    c.close(a).unwrap();
    c.close(b).unwrap();
}

#[test]
fn handle_exhaustion_and_stale_handles() {
    let (net, mem) = setup(8);
    let mut c = Client::new(&net, &mem);
    let l = c.tcp(false, 0).unwrap();
    c.bind(l, &lo(false)).unwrap();
    c.listen(l, 8).unwrap();
    let at = c.sockname(l).unwrap();
    let mut hs: Vec<u64> = (0..7).map(|_| c.udp(false, 0).unwrap()).collect();
    assert_eq!(net.open_sockets(), 8);
    assert_eq!(c.udp(false, 0).unwrap_err(), Errno::ENFILE, "the sandbox's socket limit");
    // A full table leaves a pending connection queued instead of dropping it.
    let mut s = TcpStream::connect(at).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(c.accept(l, 0).unwrap_err(), Errno::ENFILE);
    let freed = hs.pop().unwrap();
    c.close(freed).unwrap();
    let (h, _) = eventually("accept", || c.accept(l, 0));
    s.write_all(b"ok").unwrap();
    assert_eq!(eventually("recv", || c.recv(h, &[iov(RX, 8)], 0)).len, 2);
    // Stale and forged handles.
    assert_eq!(c.close(freed).unwrap_err(), Errno::EBADF, "double close");
    assert_eq!(c.sockname(freed).unwrap_err(), Errno::EBADF);
    assert_ne!(h, freed, "a reused slot gets a new handle");
    for forged in [0, 1, u64::MAX, h ^ (1 << 32), h + 1] {
        assert_eq!(c.ioctl(forged, ioctl::FIONREAD).unwrap_err(), Errno::EBADF, "{forged:#x}");
    }
    for x in hs.into_iter().chain([h, l]) {
        c.close(x).unwrap();
    }
    assert_eq!(net.open_sockets(), 0);
}

#[test]
fn malformed_requests() {
    let (net, mem) = setup(8);
    let mut c = Client::new(&net, &mem);
    let h = c.udp(false, 0).unwrap();
    let mut buf = vec![0u8; 512];
    let hdr = |op: u32| Request { op, handle: h, ..Request::default() };
    // Short header, unknown op, reserved bits, flags on an op without them.
    assert_eq!(c.raw(&[1, 0, 0]).result(), Err(Errno::EINVAL));
    let n = encode_request(&mut buf, hdr(99), |_| {}).unwrap();
    assert_eq!(c.raw(&buf[..n]).result(), Err(Errno::ENOSYS));
    let n = encode_request(&mut buf, Request { _reserved: 1, ..hdr(Op::Close as u32) }, |_| {}).unwrap();
    assert_eq!(c.raw(&buf[..n]).result(), Err(Errno::EINVAL));
    let n = encode_request(&mut buf, Request { flags: 1, ..hdr(Op::Close as u32) }, |_| {}).unwrap();
    assert_eq!(c.raw(&buf[..n]).result(), Err(Errno::EINVAL));
    // Payload length beyond the message; trailing bytes after the messages.
    let n = encode_request(&mut buf, hdr(Op::SendMsg as u32), |w| {
        w.put(&MsgHeader { iov_count: 2, ..MsgHeader::default() }).put(&iov(TX, 1));
    })
    .unwrap();
    assert_eq!(c.raw(&buf[..n]).result(), Err(Errno::EINVAL), "fewer iovecs than announced");
    assert_eq!(c.raw(&buf[..n - 1]).result(), Err(Errno::EINVAL), "truncated message");
    let n = encode_request(&mut buf, hdr(Op::RecvMsg as u32), |w| {
        w.put(&MsgHeader { iov_count: 1, ..MsgHeader::default() }).put(&iov(RX, 1)).bytes(&[0]);
    })
    .unwrap();
    assert_eq!(c.raw(&buf[..n]).result(), Err(Errno::EINVAL), "trailing garbage");
    // Batches of 0 or more than MAX_BATCH.
    assert_eq!(c.recvmmsg(h, &[], 0).unwrap_err(), Errno::EINVAL);
    let big: Vec<Vec<GuestIovec>> = (0..65).map(|_| vec![iov(RX, 1)]).collect();
    assert_eq!(c.recvmmsg(h, &big, 0).unwrap_err(), Errno::EINVAL);
    // Oversized request.
    let huge = vec![0u8; MAX_REQUEST + 1];
    assert_eq!(c.raw(&huge).result(), Err(Errno::EINVAL));
    c.close(h).unwrap();
}

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs `name` (a test of this binary) in a child process with
/// HOSTNET_CHILD=name and returns its output; the test body checks the
/// variable to know its role.
fn in_child(name: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HOSTNET_CHILD", name)
        .output()
        .unwrap()
}

fn is_child(name: &str) -> bool {
    std::env::var("HOSTNET_CHILD").as_deref() == Ok(name)
}

fn child_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "child failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn garbage_requests_never_panic() {
    // Random addresses must not reach real networks: the loop runs in a
    // child process in a fresh network namespace with loopback only.
    if !is_child("garbage_requests_never_panic") {
        child_ok(&in_child("garbage_requests_never_panic"));
        return;
    }
    qvisor::hostnet::netns::unshare().unwrap();
    qvisor::hostnet::netns::prepare(&qvisor::hostnet::netns::Mode::None).unwrap();
    let (net, mem) = setup(32);
    let mut c = Client::new(&net, &mem);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Real sockets for the requests to hit: a bound UDP socket, a listener
    // and connected pairs, on the ports the random addresses use.
    let mut live: Vec<u64> = Vec::new();
    let mut u = c.udp(false, 0).unwrap();
    c.bind(u, &"127.0.0.1:40000".parse().unwrap()).unwrap();
    let mut l = c.tcp(false, poll::EPOLLIN).unwrap();
    c.bind(l, &"127.0.0.1:40001".parse().unwrap()).unwrap();
    c.listen(l, 64).unwrap();
    // The listener only serves Accept (a random shutdown would end it).
    live.push(u);
    let mut buf = vec![0u8; 16384];
    let mut out = Vec::new();
    let mut succeeded = [0u32; 19];
    let mut events = Vec::new();
    let t0 = Instant::now();
    const ROUNDS: u32 = 50_000;
    for round in 0..ROUNDS {
        let plausible = rng.below(4) != 0;
        let op = if plausible { 1 + rng.below(18) as u32 } else { rng.below(24) as u32 };
        let handle = match rng.below(8) {
            _ if plausible && op == Op::Accept as u32 && rng.below(2) == 0 => l,
            _ if plausible && op != Op::Close as u32 && rng.below(3) == 0 => u,
            0 => rng.next(),
            1 => 0,
            _ if !live.is_empty() => live[rng.below(live.len() as u64) as usize],
            _ => 0,
        };
        let mut args = [0u64; 5];
        for a in &mut args {
            *a = match rng.below(4) {
                0 => rng.next(),
                1 => rng.below(64),
                _ => 0,
            };
        }
        let mut flags = if rng.below(4) == 0 { rng.next() as u32 } else { 0 };
        let port = (40000 + rng.below(3)) as u16;
        let addr = |rng: &mut Rng| {
            let mut a = SockAddr::inet([127, 0, 0, 1], port);
            if rng.below(4) == 0 {
                a.len = rng.below(40) as u32;
                a.bytes[0] = [0, 1, 2, 10, 16][rng.below(5) as usize];
            }
            a
        };
        let range = |rng: &mut Rng| {
            if rng.below(8) == 0 {
                iov(rng.next(), rng.below(1 << 20))
            } else {
                iov(TX + rng.below(0x10000), rng.below(3000))
            }
        };
        let mut payload: Vec<u8> = Vec::new();
        if plausible {
            flags = 0;
            match Op::from_raw(op).unwrap() {
                Op::Socket => {
                    args = [[2, 10][rng.below(2) as usize], 1 + rng.below(2), 0, rng.below(8) & 7, 0];
                }
                Op::Bind | Op::Connect => payload.extend_from_slice(addr(&mut rng).as_bytes()),
                Op::Accept | Op::Watch => args[0] = rng.next() & poll::WATCHABLE as u64,
                Op::Listen | Op::Shutdown => args[0] = rng.below(4),
                Op::SendMsg | Op::RecvMsg | Op::SendMmsg | Op::RecvMmsg => {
                    let batch = matches!(Op::from_raw(op), Some(Op::SendMmsg | Op::RecvMmsg));
                    let count = if batch { 1 + rng.below(4) } else { 1 };
                    args[0] = count;
                    flags = [0, msg::MSG_PEEK, msg::MSG_DONTWAIT, msg::MSG_TRUNC, msg::MSG_MORE][rng.below(5) as usize];
                    for _ in 0..count {
                        let n = rng.below(4);
                        let to = if rng.below(2) == 0 { addr(&mut rng) } else { SockAddr::default() };
                        payload.extend_from_slice(MsgHeader { addr: to, iov_count: n as u32, _pad: 0 }.as_bytes());
                        for _ in 0..n {
                            payload.extend_from_slice(range(&mut rng).as_bytes());
                        }
                    }
                }
                Op::SetSockOpt | Op::GetSockOpt => {
                    let r = qlib::hostnet::SOCKOPTS[rng.below(qlib::hostnet::SOCKOPTS.len() as u64) as usize];
                    args = [r.level as u32 as u64, r.name as u32 as u64, rng.below(300), 0, 0];
                    let v: Vec<u8> = (0..rng.below(24)).map(|_| rng.below(4) as u8).collect();
                    payload.extend_from_slice(&v);
                }
                Op::Ioctl => args[0] = [ioctl::FIONREAD, ioctl::SIOCOUTQ, rng.next()][rng.below(3) as usize],
                Op::Netlink => {
                    let req = build_request(
                        [nl::RTM_GETLINK, nl::RTM_GETADDR, nl::RTM_GETROUTE, nl::RTM_NEWADDR][rng.below(4) as usize],
                        nl::NLM_F_REQUEST
                            | [0, nl::NLM_F_DUMP, nl::NLM_F_ACK, rng.next() as u16][rng.below(4) as usize],
                        round,
                        &[0; 16],
                    );
                    let out = if rng.below(4) == 0 { range(&mut rng) } else { iov(RX, 0x10000) };
                    args = [rng.below(100), req.len() as u64, 1, 0, 0];
                    payload.extend_from_slice(out.as_bytes());
                    payload.extend_from_slice(&req);
                }
                Op::Close | Op::GetSockName | Op::GetPeerName => {}
            }
        } else {
            for _ in 0..rng.below(6) {
                match rng.below(4) {
                    0 => payload.extend_from_slice(addr(&mut rng).as_bytes()),
                    1 => payload.extend_from_slice(
                        MsgHeader { iov_count: rng.below(5) as u32, ..MsgHeader::default() }.as_bytes(),
                    ),
                    2 => payload.extend_from_slice(range(&mut rng).as_bytes()),
                    _ => payload.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
                }
            }
        }
        let mut req = Request { op, flags, handle, args, ..Request::default() };
        if rng.below(100) == 0 {
            req._reserved = 1;
        }
        let n = encode_request(&mut buf, req, |w| {
            w.bytes(&payload);
        })
        .unwrap();
        // Sometimes truncate or corrupt the encoded message itself.
        let len = match rng.below(16) {
            0 => rng.below(n as u64 + 1) as usize,
            1 => {
                let i = rng.below(n as u64) as usize;
                buf[i] ^= rng.next() as u8;
                n
            }
            _ => n,
        };
        net.call(&mem, &buf[..len], &mut out);
        let (reply, payload) = split_reply(&out).expect("well-formed reply");
        assert_eq!(payload.len(), reply.payload_len as usize);
        if reply.ret >= 0 && (op as usize) < succeeded.len() && len == n {
            succeeded[op as usize] += 1;
        }
        if reply.handle != 0 {
            live.push(reply.handle);
        }
        if op == Op::Close as u32 && reply.ret == 0 {
            live.retain(|&x| x != handle);
        }
        // A (corrupted) request may have closed a fixture: make it again.
        if c.sockname(u).is_err() {
            u = c.udp(false, 0).unwrap();
            c.bind(u, &"127.0.0.1:40000".parse().unwrap()).unwrap();
            live.insert(0, u);
        }
        if c.sockname(l).is_err() {
            l = c.tcp(false, poll::EPOLLIN).unwrap();
            c.bind(l, &"127.0.0.1:40001".parse().unwrap()).unwrap();
            c.listen(l, 64).unwrap();
        }
        if live.len() > 24 {
            let h = live.swap_remove(1);
            let _ = c.close(h);
        }
        if round % 64 == 0 {
            events.clear();
            net.notifier().drain(&mut events).unwrap();
        }
    }
    eprintln!("fuzz: {ROUNDS} requests in {:?}; successes per op {:?}", t0.elapsed(), &succeeded[1..]);
    for (op, &n) in succeeded.iter().enumerate().skip(1) {
        assert!(n > 0, "op {op} never succeeded: the generator does not reach it");
    }
    // Legitimate use still works after the storm.
    for h in live.into_iter().chain([l]) {
        let _ = c.close(h);
    }
    assert_eq!(net.open_sockets(), 0, "every handle accounted for");
    let h = c.udp(false, 0).unwrap();
    c.bind(h, &lo(false)).unwrap();
    let to = c.sockname(h).unwrap();
    let d = put(&mem, TX, b"alive");
    assert_eq!(c.send(h, &[d], Some(&to), 0).unwrap(), 5);
    assert_eq!(eventually("recv", || c.recv(h, &[iov(RX, 8)], 0)).len, 5);
}

#[test]
fn many_datagrams_keep_order_and_the_overhead_is_printed() {
    // 20,000 datagrams through the service on a connected UDP pair, each
    // received whole and in order. The cost the service adds to a host
    // sendmsg/recvmsg (decode, checks, table lookup, encode) is printed as a
    // JSON line against std's UdpSocket; it is a figure, not a pass/fail
    // bound (timings of a loaded CI host are not a test).
    let (net, mem) = setup(8);
    let mut c = Client::new(&net, &mem);
    let a = c.udp(false, 0).unwrap();
    let b = c.udp(false, 0).unwrap();
    c.bind(b, &lo(false)).unwrap();
    let to = c.sockname(b).unwrap();
    c.connect(a, &to).unwrap();
    let d = put(&mem, TX, &[3u8; 64]);
    const N: u32 = 20_000;
    let t0 = Instant::now();
    for i in 0..N {
        mem.write(TX, &i.to_le_bytes()).unwrap();
        assert_eq!(c.send(a, &[d], None, 0).unwrap(), 64);
        assert_eq!(c.recv(b, &[iov(RX, 64)], 0).unwrap().len, 64, "datagram {i}");
        assert_eq!(get(&mem, RX, 4), i.to_le_bytes(), "datagram {i} arrived in order");
    }
    let service = t0.elapsed() / N;
    let x = UdpSocket::bind("127.0.0.1:0").unwrap();
    let y = UdpSocket::bind("127.0.0.1:0").unwrap();
    x.connect(y.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 64];
    let t0 = Instant::now();
    for _ in 0..N {
        x.send(&[3u8; 64]).unwrap();
        y.recv(&mut buf).unwrap();
    }
    let native = t0.elapsed() / N;
    eprintln!(
        "{{\"name\":\"hostnet udp 64B send+recv\",\"value\":{},\"unit\":\"ns\",\"baseline\":{},\"baseline_name\":\"std UdpSocket\",\"ratio\":{:.2}}}",
        service.as_nanos(),
        native.as_nanos(),
        service.as_nanos() as f64 / native.as_nanos().max(1) as f64
    );
    let _ = (Wire::as_bytes(&Request::default()), 0);
}
