//! The socket service under confinement: a child process drops every
//! capability and installs the base seccomp allowlist plus
//! `hostnet::seccomp::RULES` (KILL_PROCESS for anything else), then drives
//! every operation. If the rules missed a system call the service makes,
//! the child dies of SIGSYS. Planted violations prove the filter is live.

use qlib::hcall::GuestIovec;
use qlib::hostnet::{ioctl, ip, ipproto, ipv6, msg, netlink as nl, poll, shut, so, tcp, Event};
use qlib::linux::Errno;
use qvisor::confine::seccomp;
use qvisor::hostnet::client::{Client, SendMsg};
use qvisor::hostnet::netlink::build_request;
use qvisor::hostnet::HostNet;
use qvisor::memory::GuestMemory;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TX: u64 = 0x10_0000;
const RX: u64 = 0x40_0000;

fn in_child(name: &str, case: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HOSTNET_CHILD", name)
        .env("HOSTNET_CASE", case)
        .output()
        .unwrap()
}

fn is_child(name: &str) -> bool {
    std::env::var("HOSTNET_CHILD").as_deref() == Ok(name)
}

/// What the sandbox does before its first guest instruction.
fn confine() {
    qvisor::confine::drop_privileges(4096).unwrap();
    seccomp::install(&qvisor::hostnet::seccomp::standalone_filter(seccomp::ALLOWED)).unwrap();
}

fn iov(gpa: u64, len: u64) -> GuestIovec {
    GuestIovec { gpa, len }
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, Errno>) -> T {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(Errno::EAGAIN) if t0.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{what}: {}", e.name()),
        }
    }
}

fn workload(c: &mut Client, mem: &GuestMemory) {
    let sol = ipproto::SOL_SOCKET;
    for v6 in [false, true] {
        let any: SocketAddr = if v6 { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
        // TCP: listen, non-blocking connect, accept, data both ways.
        let l = c.tcp(v6, poll::EPOLLIN).unwrap();
        c.setsockopt_int(l, sol, so::SO_REUSEADDR, 1).unwrap();
        c.setsockopt_int(l, sol, so::SO_REUSEPORT, 1).unwrap();
        c.bind(l, &any).unwrap();
        c.listen(l, 8).unwrap();
        let at = c.sockname(l).unwrap();
        let h = c.tcp(v6, poll::WATCHABLE).unwrap();
        match c.connect(h, &at) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => panic!("connect: {}", e.name()),
        }
        let (a, _) = eventually("accept", || c.accept(l, poll::WATCHABLE));
        assert_eq!(c.getsockopt_int(h, sol, so::SO_ERROR).unwrap(), 0);
        c.peername(h).unwrap();
        mem.write(TX, b"confined").unwrap();
        eventually("send", || c.send(h, &[iov(TX, 4), iov(TX + 4, 4)], None, msg::MSG_MORE));
        let got = eventually("recv", || c.recv(a, &[iov(RX, 64)], msg::MSG_PEEK));
        assert!(got.len > 0);
        c.recv(a, &[iov(RX, 64)], msg::MSG_WAITALL).unwrap();
        let (n, _) = c.sendmmsg(a, &[SendMsg { iov: vec![iov(TX, 8)], to: None }], 0).unwrap();
        assert_eq!(n, 1);
        eventually("recvmmsg", || c.recvmmsg(h, &[vec![iov(RX, 64)]], 0));
        // Every allowlisted option kind.
        for (level, name, v) in [
            (sol, so::SO_KEEPALIVE, 1),
            (sol, so::SO_RCVBUF, 1 << 16),
            (sol, so::SO_SNDBUF, 1 << 16),
            (ipproto::IPPROTO_TCP, tcp::TCP_NODELAY, 1),
            (ipproto::IPPROTO_TCP, tcp::TCP_CORK, 0),
            (ipproto::IPPROTO_TCP, tcp::TCP_KEEPIDLE, 60),
            (ipproto::IPPROTO_TCP, tcp::TCP_KEEPINTVL, 10),
            (ipproto::IPPROTO_TCP, tcp::TCP_KEEPCNT, 3),
        ] {
            c.setsockopt_int(a, level, name, v).unwrap();
            c.getsockopt_int(a, level, name).unwrap();
        }
        for name in [so::SO_TYPE, so::SO_DOMAIN, so::SO_PROTOCOL, so::SO_ACCEPTCONN] {
            c.getsockopt_int(a, sol, name).unwrap();
        }
        if v6 {
            c.getsockopt_int(a, ipproto::IPPROTO_IPV6, ipv6::IPV6_TCLASS).unwrap();
        } else {
            c.setsockopt_int(a, ipproto::IPPROTO_IP, ip::IP_TOS, 0x10).unwrap();
            c.getsockopt_int(a, ipproto::IPPROTO_IP, ip::IP_TTL).unwrap();
        }
        assert_eq!(c.getsockopt(a, ipproto::IPPROTO_TCP, tcp::TCP_INFO, 512).unwrap()[0], tcp::TCP_ESTABLISHED);
        c.ioctl(a, ioctl::FIONREAD).unwrap();
        c.ioctl(a, ioctl::SIOCOUTQ).unwrap();
        let linger = [1i32.to_le_bytes(), 5i32.to_le_bytes()].concat();
        c.setsockopt(a, sol, so::SO_LINGER, &linger).unwrap();
        c.getsockopt(a, sol, so::SO_LINGER, 8).unwrap();
        // Readiness through the notifier.
        c.shutdown(a, shut::SHUT_WR).unwrap();
        let t0 = Instant::now();
        loop {
            c.net.notifier().wait(Some(Duration::from_millis(100))).unwrap();
            let mut evs: Vec<Event> = Vec::new();
            c.net.notifier().drain(&mut evs).unwrap();
            if evs.iter().any(|e| e.handle == h && e.revents & poll::EPOLLRDHUP != 0) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "no RDHUP");
        }
        c.watch(h, 0).unwrap();
        c.watch(h, poll::EPOLLIN).unwrap();
        for x in [a, h, l] {
            c.close(x).unwrap();
        }

        // UDP with batches and options.
        let u = c.udp(v6, 0).unwrap();
        let w = c.udp(v6, 0).unwrap();
        c.bind(u, &any).unwrap();
        let to = c.sockname(u).unwrap();
        c.setsockopt_int(w, sol, so::SO_BROADCAST, 1).unwrap();
        if v6 {
            c.setsockopt_int(w, ipproto::IPPROTO_IPV6, ipv6::IPV6_V6ONLY, 1).unwrap();
            c.setsockopt_int(w, ipproto::IPPROTO_IPV6, ipv6::IPV6_MULTICAST_HOPS, 2).unwrap();
        } else {
            c.setsockopt_int(w, ipproto::IPPROTO_IP, ip::IP_MULTICAST_TTL, 2).unwrap();
            let mreqn = [[239u8, 1, 2, 3], [0; 4], 1i32.to_le_bytes()].concat();
            c.setsockopt(w, ipproto::IPPROTO_IP, ip::IP_ADD_MEMBERSHIP, &mreqn).unwrap();
        }
        let m = SendMsg { iov: vec![iov(TX, 8)], to: Some(to) };
        assert_eq!(c.sendmmsg(w, &[m.clone(), m], 0).unwrap().0, 2);
        let got = eventually("recvmmsg", || c.recvmmsg(u, &[vec![iov(RX, 64)], vec![iov(RX + 64, 64)]], 0));
        assert_eq!(got.len(), 2);
        c.send(w, &[iov(TX, 8)], Some(&to), 0).unwrap();
        eventually("recv", || c.recv(u, &[iov(RX, 4)], msg::MSG_TRUNC));
        c.close(u).unwrap();
        c.close(w).unwrap();
    }
    // Netlink dumps.
    for (ty, body) in [(nl::RTM_GETLINK, 16), (nl::RTM_GETADDR, 8), (nl::RTM_GETROUTE, 12)] {
        let req = build_request(ty, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 1, &vec![0; body]);
        assert!(c.netlink(1, &req, &[iov(RX, 1 << 20)]).unwrap() > 0);
    }
}

#[test]
fn the_service_runs_under_its_seccomp_rules() {
    const NAME: &str = "the_service_runs_under_its_seccomp_rules";
    if !is_child(NAME) {
        let out = in_child(NAME, "work");
        assert!(
            out.status.success(),
            "the confined service failed ({}; signal 31 = a system call missing from the rules):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let mem = GuestMemory::new(16 << 20).unwrap();
    let net = HostNet::new(64).unwrap();
    confine();
    let mut c = Client::new(&net, &mem);
    workload(&mut c, &mem);
    // A service created after confinement works too (epoll_create1 is listed).
    let late = HostNet::new(8).unwrap();
    let mut c = Client::new(&late, &mem);
    workload(&mut c, &mem);
    std::process::exit(0);
}

#[test]
fn the_filter_kills_what_the_rules_do_not_list() {
    const NAME: &str = "the_filter_kills_what_the_rules_do_not_list";
    let cases = ["socketpair", "packet", "bindtodevice", "siocsifflags", "netlink-audit"];
    if !is_child(NAME) {
        for case in cases {
            let out = in_child(NAME, case);
            assert_eq!(
                out.status.signal(),
                Some(31),
                "{case}: expected death by SIGSYS, got {}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return;
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd() as u64;
    confine();
    let case = std::env::var("HOSTNET_CASE").unwrap();
    let (n, args) = match case.as_str() {
        "socketpair" => (qvisor::sys::nr::SOCKETPAIR, [1, 1, 0, 0, 0, 0]),
        "packet" => (qvisor::sys::nr::SOCKET, [17, 3, 0x0300, 0, 0, 0]),
        "bindtodevice" => (qvisor::sys::nr::SETSOCKOPT, [fd, 1, 25, 0, 0, 0]),
        "siocsifflags" => (qvisor::sys::nr::IOCTL, [fd, 0x8914, 0, 0, 0, 0]),
        "netlink-audit" => (qvisor::sys::nr::SOCKET, [16, 3, 9, 0, 0, 0]),
        other => panic!("unknown case {other}"),
    };
    // SAFETY: the call must never run: the filter kills the process first
    // (the pointer arguments are null, so even a wrongly allowed call would
    // only fail with EFAULT).
    let r = unsafe { qvisor::sys::syscall6(n, args[0], args[1], args[2], args[3], args[4], args[5]) };
    panic!("{case}: the filter let the call through: {r:?}");
}
