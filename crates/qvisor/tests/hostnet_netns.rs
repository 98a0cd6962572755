//! Network namespace modes and the descriptor limit, each in a child
//! process (this test binary run again with HOSTNET_CHILD set) so that
//! namespace changes and dropped capabilities never touch the test runner.
//! Needs root (as the sandbox does): the tests fail loudly otherwise.

use qlib::hcall::GuestIovec;
use qlib::hostnet::{netlink as nl, poll};
use qlib::linux::Errno;
use qvisor::hostnet::client::Client;
use qvisor::hostnet::netlink::{attributes, build_request, messages};
use qvisor::hostnet::netns::{self, Mode, NetnsError, Prepared, UNPRIVILEGED_PORT_START};
use qvisor::hostnet::HostNet;
use qvisor::memory::GuestMemory;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const RX: u64 = 0x40_0000;
const TX: u64 = 0x10_0000;

fn in_child(name: &str, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    let (dev, ino) = netns::current().unwrap();
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HOSTNET_CHILD", name)
        .env("HOSTNET_PARENT_NS", format!("{dev}:{ino}"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The network namespace of the test runner that started this child.
fn parent_ns() -> (u64, u64) {
    let v = std::env::var("HOSTNET_PARENT_NS").unwrap();
    let (d, i) = v.split_once(':').unwrap();
    (d.parse().unwrap(), i.parse().unwrap())
}

fn is_child(name: &str) -> bool {
    std::env::var("HOSTNET_CHILD").as_deref() == Ok(name)
}

fn child_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
        .unwrap();
    assert_eq!(uid, "0", "these tests need root (namespaces), as quark-sandbox does");
}

/// Interface names `ip -o link show` lists, sorted.
fn ip_links() -> Vec<String> {
    let ip = Command::new("ip").args(["-o", "link", "show"]).output().expect("iproute2 (scripts/prereqs.txt)");
    let mut names: Vec<String> = String::from_utf8_lossy(&ip.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap().to_string()))
        .collect();
    names.sort();
    names
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

/// Interface names and IPv4 addresses the namespace reports over netlink.
fn dump(c: &mut Client, mem: &GuestMemory) -> (Vec<String>, Vec<[u8; 4]>) {
    let out = [iov(RX, 0x40000)];
    let mut names = Vec::new();
    let n =
        c.netlink(7, &build_request(nl::RTM_GETLINK, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 1, &[0; 16]), &out).unwrap();
    let mut blob = vec![0; n];
    mem.read(RX, &mut blob).unwrap();
    for (ty, _, p) in messages(&blob) {
        if ty == nl::RTM_NEWLINK {
            for (a, d) in attributes(&p[16..]) {
                if a == nl::IFLA_IFNAME {
                    names.push(String::from_utf8_lossy(d.split(|&b| b == 0).next().unwrap()).into_owned());
                }
            }
        }
    }
    let n =
        c.netlink(7, &build_request(nl::RTM_GETADDR, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 2, &[0; 8]), &out).unwrap();
    let mut blob = vec![0; n];
    mem.read(RX, &mut blob).unwrap();
    let mut addrs = Vec::new();
    for (ty, _, p) in messages(&blob) {
        if ty == nl::RTM_NEWADDR && p[0] == 2 {
            for (a, d) in attributes(&p[8..]) {
                if a == nl::IFA_ADDRESS {
                    addrs.push([d[0], d[1], d[2], d[3]]);
                }
            }
        }
    }
    names.sort();
    (names, addrs)
}

/// A TCP exchange between two service sockets over `at`'s loopback.
fn loopback_echo(c: &mut Client, mem: &GuestMemory, at: &str) {
    let addr: SocketAddr = at.parse().unwrap();
    let l = c.tcp(addr.is_ipv6(), 0).unwrap();
    c.bind(l, &addr).unwrap();
    c.listen(l, 4).unwrap();
    let bound = c.sockname(l).unwrap();
    let h = c.tcp(addr.is_ipv6(), poll::EPOLLOUT).unwrap();
    match c.connect(h, &bound) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => panic!("connect {bound}: {}", e.name()),
    }
    let (a, _) = eventually("accept", || c.accept(l, 0));
    mem.write(TX, b"loopback").unwrap();
    eventually("send", || c.send(h, &[iov(TX, 8)], None, 0));
    let got = eventually("recv", || c.recv(a, &[iov(RX, 64)], 0));
    let mut b = vec![0; got.len as usize];
    mem.read(RX, &mut b).unwrap();
    assert_eq!(b, b"loopback");
    for x in [a, h, l] {
        c.close(x).unwrap();
    }
}

fn setup() -> (HostNet, GuestMemory) {
    (HostNet::new(256).unwrap(), GuestMemory::new(16 << 20).unwrap())
}

#[test]
fn none_mode_is_a_fresh_namespace_with_loopback_up() {
    const NAME: &str = "none_mode_is_a_fresh_namespace_with_loopback_up";
    if !is_child(NAME) {
        require_root();
        return child_ok(&in_child(NAME, &[]));
    }
    // What the sandbox does: unshare(CLONE_NEWNET), then prepare.
    netns::unshare().unwrap();
    assert_ne!(netns::current().unwrap(), parent_ns());
    assert!(netns::is_fresh().unwrap());
    assert!(!netns::loopback_is_up().unwrap(), "lo starts down in a new namespace");
    let p = netns::prepare(&Mode::None).unwrap();
    assert_eq!(p, Prepared { loopback_raised: true, unprivileged_ports: true });
    assert!(netns::loopback_is_up().unwrap());
    assert_eq!(std::fs::read_to_string(UNPRIVILEGED_PORT_START).unwrap().trim(), "0");
    // Then the VMM drops every capability: the service needs none.
    qvisor::confine::drop_privileges(4096).unwrap();
    let (net, mem) = setup();
    let mut c = Client::new(&net, &mem);
    loopback_echo(&mut c, &mem, "127.0.0.1:0");
    loopback_echo(&mut c, &mem, "[::1]:0");
    let (names, addrs) = dump(&mut c, &mem);
    assert_eq!(names, ["lo"], "loopback only");
    assert_eq!(addrs, [[127, 0, 0, 1]]);
    // A server in the sandbox binds port 80 without NET_BIND_SERVICE.
    loopback_echo(&mut c, &mem, "127.0.0.1:80");
    // Nothing outside: no route to the host's networks.
    let h = c.udp(false, 0).unwrap();
    mem.write(TX, b"x").unwrap();
    let r = c.send(h, &[iov(TX, 1)], Some(&"192.0.2.1:9".parse().unwrap()), 0);
    assert_eq!(r.unwrap_err(), Errno::ENETUNREACH);
    // Capabilities are gone: preparing again now fails, with a clear message.
    // (A non-dumpable process without capabilities may not even open its own
    // namespace file; with it open, setns would be EPERM.)
    let e = netns::prepare(&Mode::Ns("/proc/self/ns/net".into())).unwrap_err();
    assert!(
        matches!(e, NetnsError::Join { errno: Errno::EPERM, .. } | NetnsError::Open { errno: Errno::EACCES, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("capabilities"), "{e}");
    std::process::exit(0);
}

#[test]
fn host_mode_shares_the_host_namespace_without_privileges() {
    const NAME: &str = "host_mode_shares_the_host_namespace_without_privileges";
    if !is_child(NAME) {
        require_root();
        // A service on the host's loopback, for the sandbox to reach.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(b"host!").unwrap();
            b
        });
        let out = in_child(NAME, &[("HOSTNET_PORT", port.to_string())]);
        child_ok(&out);
        assert_eq!(&server.join().unwrap(), b"guest");
        return;
    }
    assert_eq!(netns::prepare(&Mode::Host).unwrap(), Prepared::default(), "host mode changes nothing");
    assert_eq!(netns::current().unwrap(), parent_ns());
    let start: u16 = std::fs::read_to_string(UNPRIVILEGED_PORT_START).unwrap().trim().parse().unwrap();
    let (net, mem) = setup();
    let mut c = Client::new(&net, &mem);
    // The host's own interfaces, as `ip link` lists them (retrying while
    // other programs change them: a dump bracketed by equal listings).
    for tries in 0.. {
        let before = ip_links();
        let (names, _) = dump(&mut c, &mem);
        if before == ip_links() || tries == 10 {
            assert_eq!(names, before);
            break;
        }
    }
    // From here on without any capability (as the confined VMM).
    qvisor::confine::drop_privileges(4096).unwrap();
    // Services on the host's loopback are reachable.
    let port: u16 = std::env::var("HOSTNET_PORT").unwrap().parse().unwrap();
    let h = c.tcp(false, 0).unwrap();
    match c.connect(h, &SocketAddr::from(([127, 0, 0, 1], port))) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => panic!("{}", e.name()),
    }
    mem.write(TX, b"guest").unwrap();
    eventually("send", || c.send(h, &[iov(TX, 5)], None, 0));
    let got = eventually("recv", || c.recv(h, &[iov(RX, 8)], 0));
    let mut b = vec![0; got.len as usize];
    mem.read(RX, &mut b).unwrap();
    assert_eq!(b, b"host!");
    // Privileged host ports stay privileged: no NET_BIND_SERVICE for the VMM.
    let l = c.tcp(false, 0).unwrap();
    let r = c.bind(l, &SocketAddr::from(([127, 0, 0, 1], 80)));
    if start > 80 {
        assert_eq!(r.unwrap_err(), Errno::EACCES, "port 80 below ip_unprivileged_port_start={start}");
    } else {
        r.unwrap();
    }
    std::process::exit(0);
}

/// `ip netns add NAME`, deleted on drop.
struct NamedNetns(String);

impl NamedNetns {
    fn new(name: &str) -> NamedNetns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let ok = Command::new("ip").args(["netns", "add", name]).status().expect("iproute2 (scripts/prereqs.txt)");
        assert!(ok.success(), "ip netns add {name}");
        NamedNetns(name.to_string())
    }

    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").arg("-n").arg(&self.0).args(args).output().unwrap();
        assert!(out.status.success(), "ip -n {} {args:?}: {}", self.0, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn ns_mode_joins_a_named_namespace() {
    const NAME: &str = "ns_mode_joins_a_named_namespace";
    if !is_child(NAME) {
        require_root();
        let ns = NamedNetns::new(&format!("quark-hostnet-{}", std::process::id()));
        // A mark only this namespace has.
        ns.ip(&["addr", "add", "10.213.7.1/32", "dev", "lo"]);
        assert!(!ns.ip(&["link", "show", "lo"]).contains(",UP"), "lo starts down");
        child_ok(&in_child(NAME, &[("HOSTNET_NETNS", ns.path())]));
        // The sandbox's changes are visible from outside, in that namespace only.
        assert!(ns.ip(&["link", "show", "lo"]).contains(",UP"));
        let sysctl =
            Command::new("ip").args(["netns", "exec", &ns.0, "cat", UNPRIVILEGED_PORT_START]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&sysctl.stdout).trim(), "0");
        let host = std::fs::read_to_string(UNPRIVILEGED_PORT_START).unwrap();
        assert_ne!(host.trim(), "0", "the host's own setting is untouched");
        let path = ns.path();
        drop(ns);
        assert!(!std::path::Path::new(&path).exists(), "cleaned up");
        return;
    }
    let path = std::env::var("HOSTNET_NETNS").unwrap();
    let p = netns::prepare(&Mode::parse(&format!("ns:{path}")).unwrap()).unwrap();
    assert_eq!(p, Prepared { loopback_raised: true, unprivileged_ports: true });
    assert_ne!(netns::current().unwrap(), parent_ns());
    qvisor::confine::drop_privileges(4096).unwrap();
    let (net, mem) = setup();
    let mut c = Client::new(&net, &mem);
    let (names, addrs) = dump(&mut c, &mem);
    assert_eq!(names, ["lo"]);
    assert!(addrs.contains(&[10, 213, 7, 1]), "the named namespace's own address: {addrs:?}");
    loopback_echo(&mut c, &mem, "10.213.7.1:0");
    loopback_echo(&mut c, &mem, "127.0.0.1:0");
    std::process::exit(0);
}

#[test]
fn ns_mode_errors_say_what_to_do() {
    // Failures change nothing, so they run in the test process.
    let before = netns::current().unwrap();
    let e = netns::prepare(&Mode::Ns("/nonexistent/netns/x".into())).unwrap_err();
    assert!(matches!(e, NetnsError::Open { errno: Errno::ENOENT, .. }), "{e:?}");
    assert!(e.to_string().contains("ip netns add"), "{e}");
    let e = netns::prepare(&Mode::Ns("/proc/self/ns/uts".into())).unwrap_err();
    assert!(matches!(e, NetnsError::Join { errno: Errno::EINVAL, .. }), "{e:?}");
    assert!(e.to_string().contains("is not a network namespace"), "{e}");
    assert_eq!(netns::current().unwrap(), before, "still in the test's namespace");
    assert!(Mode::parse("ns:").is_err());
}

fn has_cap(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap().split_whitespace().nth(1).unwrap();
    u64::from_str_radix(eff, 16).unwrap() & (1 << bit) != 0
}

#[test]
fn the_descriptor_limit_follows_the_socket_limit() {
    const NAME: &str = "the_descriptor_limit_follows_the_socket_limit";
    if !is_child(NAME) {
        return child_ok(&in_child(NAME, &[]));
    }
    let sys_resource = has_cap(24);
    let (soft, hard) = netns::nofile().unwrap();
    assert!(soft <= hard);
    assert_eq!(netns::raise_nofile(hard).unwrap(), hard);
    assert_eq!(netns::nofile().unwrap(), (hard, hard));
    // Above the hard limit only with CAP_SYS_RESOURCE (this host's root may
    // lack it; the error says so).
    let r = netns::raise_nofile(hard + 1000);
    if sys_resource {
        assert_eq!(r.unwrap(), hard + 1000);
    } else {
        let e = r.unwrap_err();
        assert!(matches!(e, NetnsError::Nofile { errno: Errno::EPERM, .. }), "{e:?}");
        assert!(e.to_string().contains("CAP_SYS_RESOURCE"), "{e}");
    }
    // The confined VMM's limit (confine::drop_privileges) bounds the sockets:
    // host descriptor exhaustion is the sandbox's ENFILE, and raising the
    // limit afterwards is impossible, so it must be sized before.
    let (net, mem) = (HostNet::new(1000).unwrap(), GuestMemory::new(1 << 20).unwrap());
    let mut c = Client::new(&net, &mem);
    // Descriptors below the coming limit that are in use (minus read_dir's own).
    let open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().parse::<u32>().unwrap() < 64)
        .count()
        - 1;
    assert!(open < 48, "{open} descriptors open already");
    qvisor::confine::drop_privileges(64).unwrap();
    let mut n = 0;
    let err = loop {
        match c.udp(false, 0) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Errno::ENFILE);
    assert_eq!(n, 64 - open, "sockets under a limit of 64 descriptors with {open} in use");
    if !sys_resource {
        assert!(netns::raise_nofile(netns::nofile_needed(1000, 0)).is_err());
    }
    std::process::exit(0);
}
