//! The sandbox's network namespace (`--net none|host|ns:PATH`) and the
//! descriptor limit the socket service needs.
//!
//! Every step here needs privileges the VMM drops before the guest runs
//! (confine::drop_privileges), so [`prepare`] and [`raise_nofile`] run
//! during start-up, in the sandbox child, before any thread is spawned
//! (namespaces are per thread: a thread created earlier would stay in the
//! old namespace) and before the filesystem is isolated (`ns:PATH` and
//! `/proc/sys` must still be reachable):
//!
//! | mode | what `prepare` does | privilege used |
//! |------|---------------------|----------------|
//! | `none` | (the VMM has already unshared CLONE_NEWNET) brings `lo` up; lets unprivileged programs bind ports < 1024 in this namespace | CAP_NET_ADMIN in the new namespace |
//! | `host` | nothing: the host's namespace and interfaces, including services on its loopback | none |
//! | `ns:PATH` | `setns(open(PATH), CLONE_NEWNET)`; brings `lo` up if it is down; unprivileged ports as for `none` | CAP_SYS_ADMIN (setns), CAP_NET_ADMIN |
//!
//! After start-up the VMM holds no capability at all: host sockets need
//! none for TCP/UDP, NETLINK_ROUTE dumps need none. In `host` mode a bind to
//! a port below `net.ipv4.ip_unprivileged_port_start` (1024 by default)
//! fails with EACCES, and that is deliberate: the sandbox gets no
//! NET_BIND_SERVICE on the host (see docs/hostnet.md).

use super::sys as nsys;
use crate::sys::Errno;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const CLONE_NEWNET: u64 = 0x4000_0000;
const SIOCGIFFLAGS: u64 = 0x8913;
const SIOCSIFFLAGS: u64 = 0x8914;
const IFF_UP: i16 = 0x1;
const RLIMIT_NOFILE: u64 = 7;
/// Where the namespace's lowest unprivileged port is set.
pub const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
/// Descriptors the VMM needs besides host sockets and file handles: KVM,
/// VM, vCPU and statistics descriptors, guest memory, logs, epoll, netlink
/// sockets in flight, eventfds of the transport.
pub const NOFILE_RESERVE: u64 = 256;

/// The `--net` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A fresh namespace with loopback only (the default).
    None,
    /// The host's namespace.
    Host,
    /// An existing namespace: a file such as `/run/netns/NAME` (from
    /// `ip netns add` or CNI) or `/proc/PID/ns/net`.
    Ns(PathBuf),
}

impl Mode {
    /// Parses `none`, `host` or `ns:/absolute/path`.
    pub fn parse(s: &str) -> Result<Mode, NetnsError> {
        match s {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            _ => match s.strip_prefix("ns:") {
                Some(p) if p.starts_with('/') => Ok(Mode::Ns(PathBuf::from(p))),
                _ => Err(NetnsError::BadMode(s.to_string())),
            },
        }
    }

    /// True when the VMM must unshare CLONE_NEWNET itself (before `prepare`).
    pub fn unshares(&self) -> bool {
        *self == Mode::None
    }
}

/// A namespace step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsError {
    /// `--net` value not understood.
    BadMode(String),
    /// The namespace file could not be opened.
    Open { path: PathBuf, errno: Errno },
    /// `setns` refused the file.
    Join { path: PathBuf, errno: Errno },
    /// `none` mode, but the calling thread's namespace is not fresh (it has
    /// interfaces besides `lo`, or `lo` is up already): most likely the
    /// host's. Refusing to change the host's loopback and sysctls.
    NotFresh,
    /// Bringing the loopback interface up failed.
    Loopback { step: &'static str, errno: Errno },
    /// Setting the namespace's unprivileged port range failed.
    Sysctl { errno: Errno },
    /// RLIMIT_NOFILE could not be raised.
    Nofile { wanted: u64, hard: u64, errno: Errno },
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetnsError::BadMode(s) => {
                write!(f, "invalid --net {s:?}: use none, host or ns:/path/to/netns (e.g. ns:/run/netns/NAME)")
            }
            NetnsError::Open { path, errno } if *errno == Errno::EACCES || *errno == Errno::EPERM => write!(
                f,
                "cannot open network namespace {}: {} ({}); opening it needs the VMM's start-up privileges, before it drops its capabilities",
                path.display(),
                errno.description(),
                errno.name()
            ),
            NetnsError::Open { path, errno } => write!(
                f,
                "cannot open network namespace {}: {} ({}); create it with `ip netns add NAME` or pass the path the container runtime gave",
                path.display(),
                errno.description(),
                errno.name()
            ),
            NetnsError::Join { path, errno } if *errno == Errno::EINVAL => write!(
                f,
                "{} is not a network namespace (expected a file such as /run/netns/NAME or /proc/PID/ns/net)",
                path.display()
            ),
            NetnsError::Join { path, errno } => write!(
                f,
                "cannot join network namespace {}: {} ({}); joining needs CAP_SYS_ADMIN, before the VMM drops its capabilities",
                path.display(),
                errno.description(),
                errno.name()
            ),
            NetnsError::NotFresh => write!(
                f,
                "--net none, but the VMM's network namespace is not a fresh one (it has interfaces besides a down lo): unshare(CLONE_NEWNET) must come before preparing it"
            ),
            NetnsError::Loopback { step, errno } => write!(
                f,
                "cannot bring the loopback interface up ({step}): {} ({}); this needs CAP_NET_ADMIN in the sandbox's namespace, before the VMM drops its capabilities",
                errno.description(),
                errno.name()
            ),
            NetnsError::Sysctl { errno } => write!(
                f,
                "cannot write {UNPRIVILEGED_PORT_START}: {} ({}); /proc must be mounted and the VMM still privileged",
                errno.description(),
                errno.name()
            ),
            NetnsError::Nofile { wanted, hard, errno } => write!(
                f,
                "cannot raise the VMM's descriptor limit to {wanted} (hard limit {hard}): {} ({}); above the hard limit this needs CAP_SYS_RESOURCE before the VMM drops its capabilities, and never beyond fs.nr_open; or start the sandbox with a higher `ulimit -Hn`, or lower the sandbox's socket limit",
                errno.description(),
                errno.name()
            ),
        }
    }
}

impl std::error::Error for NetnsError {}

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prepared {
    /// The loopback interface was down and is now up.
    pub loopback_raised: bool,
    /// Ports below 1024 are bindable without privilege in the namespace.
    pub unprivileged_ports: bool,
}

/// Sets up the calling thread's network namespace for `mode` (see the
/// module table). Call it in the sandbox child after
/// `confine::unshare_namespaces` (which must unshare CLONE_NEWNET exactly
/// when [`Mode::unshares`]), before any thread is spawned, before the
/// filesystem is isolated and before capabilities are dropped.
pub fn prepare(mode: &Mode) -> Result<Prepared, NetnsError> {
    match mode {
        Mode::Host => Ok(Prepared::default()),
        Mode::None => {
            if !is_fresh().map_err(|errno| NetnsError::Loopback { step: "RTM_GETLINK", errno })? {
                return Err(NetnsError::NotFresh);
            }
            let loopback_raised = bring_loopback_up()?;
            allow_unprivileged_ports()?;
            Ok(Prepared { loopback_raised, unprivileged_ports: true })
        }
        Mode::Ns(path) => {
            join(path)?;
            let loopback_raised = bring_loopback_up()?;
            allow_unprivileged_ports()?;
            Ok(Prepared { loopback_raised, unprivileged_ports: true })
        }
    }
}

/// `unshare(CLONE_NEWNET)` for the calling thread: a fresh namespace with
/// a loopback interface that is down. (The sandbox does this in
/// `confine::unshare_namespaces`; tests and tools use this.)
pub fn unshare() -> Result<(), NetnsError> {
    nsys::unshare(CLONE_NEWNET).map_err(|errno| NetnsError::Join { path: PathBuf::from("(new namespace)"), errno })
}

/// `setns(open(path), CLONE_NEWNET)` for the calling thread.
pub fn join(path: &Path) -> Result<(), NetnsError> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| NetnsError::Open { path: path.to_path_buf(), errno: Errno::EINVAL })?;
    let fd = nsys::open_readonly(&c).map_err(|errno| NetnsError::Open { path: path.to_path_buf(), errno })?;
    nsys::setns(&fd, CLONE_NEWNET).map_err(|errno| NetnsError::Join { path: path.to_path_buf(), errno })
}

/// The identity (device, inode) of the calling thread's network namespace.
pub fn current() -> Result<(u64, u64), std::io::Error> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino()))
}

/// True when the calling thread's namespace is as `unshare(CLONE_NEWNET)`
/// leaves it: a single interface, `lo`, which is down.
pub fn is_fresh() -> Result<bool, Errno> {
    use qlib::hostnet::netlink::{IFLA_IFNAME, NLM_F_DUMP, NLM_F_REQUEST, RTM_GETLINK, RTM_NEWLINK};
    let req = super::netlink::build_request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, &[0; 16]);
    let blob = super::netlink::request(&req, 0)?;
    let mut links = Vec::new();
    for (ty, _, p) in super::netlink::messages(&blob) {
        if ty == RTM_NEWLINK && p.len() >= 16 {
            let name = super::netlink::attributes(&p[16..]).find(|(t, _)| *t == IFLA_IFNAME).map(|(_, d)| d.to_vec());
            links.push(name.unwrap_or_default());
        }
    }
    Ok(links == [b"lo\0".to_vec()] && !loopback_is_up()?)
}

fn lo_request() -> nsys::IfreqFlags {
    let mut ifr = nsys::IfreqFlags::default();
    ifr.name[..2].copy_from_slice(b"lo");
    ifr
}

/// Whether `lo` is up in the calling thread's namespace.
pub fn loopback_is_up() -> Result<bool, Errno> {
    let s = nsys::socket(qlib::hostnet::af::AF_INET as u64, 2, 0)?;
    let mut ifr = lo_request();
    nsys::ifreq_flags(s.as_raw_fd(), SIOCGIFFLAGS, &mut ifr)?;
    Ok(ifr.flags & IFF_UP != 0)
}

/// Brings `lo` up (SIOCSIFFLAGS on an AF_INET socket); returns whether it
/// was down. The kernel then assigns 127.0.0.1/8 and ::1 itself.
pub fn bring_loopback_up() -> Result<bool, NetnsError> {
    let s = nsys::socket(qlib::hostnet::af::AF_INET as u64, 2, 0)
        .map_err(|errno| NetnsError::Loopback { step: "socket", errno })?;
    let mut ifr = lo_request();
    nsys::ifreq_flags(s.as_raw_fd(), SIOCGIFFLAGS, &mut ifr)
        .map_err(|errno| NetnsError::Loopback { step: "SIOCGIFFLAGS", errno })?;
    if ifr.flags & IFF_UP != 0 {
        return Ok(false);
    }
    ifr.flags |= IFF_UP;
    nsys::ifreq_flags(s.as_raw_fd(), SIOCSIFFLAGS, &mut ifr)
        .map_err(|errno| NetnsError::Loopback { step: "SIOCSIFFLAGS", errno })?;
    Ok(true)
}

/// Sets `net.ipv4.ip_unprivileged_port_start = 0` in the calling thread's
/// namespace (the sysctl is per namespace; it also governs IPv6), so a
/// server in the sandbox binds :80 although the VMM has no
/// NET_BIND_SERVICE. Never called for `host` mode.
pub fn allow_unprivileged_ports() -> Result<(), NetnsError> {
    std::fs::write(UNPRIVILEGED_PORT_START, b"0")
        .map_err(|e| NetnsError::Sysctl { errno: Errno(e.raw_os_error().unwrap_or(5) as u16) })
}

/// The RLIMIT_NOFILE the VMM needs for `max_sockets` host sockets plus
/// `other_handles` (e.g. open files of the container root).
pub fn nofile_needed(max_sockets: usize, other_handles: usize) -> u64 {
    max_sockets as u64 + other_handles as u64 + NOFILE_RESERVE
}

/// The process's RLIMIT_NOFILE (soft, hard).
pub fn nofile() -> Result<(u64, u64), Errno> {
    nsys::prlimit(RLIMIT_NOFILE, None)
}

/// Raises the process's RLIMIT_NOFILE (soft and hard) to `limit` if it is
/// lower; above the current hard limit this needs CAP_SYS_RESOURCE, so do
/// it before capabilities are dropped. Returns the limit now in force.
pub fn raise_nofile(limit: u64) -> Result<u64, NetnsError> {
    let (soft, hard) =
        nsys::prlimit(RLIMIT_NOFILE, None).map_err(|errno| NetnsError::Nofile { wanted: limit, hard: 0, errno })?;
    if soft >= limit {
        return Ok(soft);
    }
    let new = (limit, hard.max(limit));
    nsys::prlimit(RLIMIT_NOFILE, Some(new)).map_err(|errno| NetnsError::Nofile { wanted: limit, hard, errno })?;
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_clear_errors() {
        assert_eq!(Mode::parse("none"), Ok(Mode::None));
        assert_eq!(Mode::parse("host"), Ok(Mode::Host));
        assert_eq!(Mode::parse("ns:/run/netns/x"), Ok(Mode::Ns(PathBuf::from("/run/netns/x"))));
        let e = Mode::parse("ns:relative").unwrap_err();
        assert!(e.to_string().contains("ns:/path/to/netns"), "{e}");
        assert!(Mode::parse("bridge").is_err());
        assert!(Mode::None.unshares() && !Mode::Host.unshares());
        let j = NetnsError::Join { path: "/tmp".into(), errno: Errno::EINVAL }.to_string();
        assert!(j.contains("is not a network namespace"), "{j}");
    }

    #[test]
    fn none_mode_refuses_a_namespace_that_is_not_fresh() {
        // The test runs in the namespace it was started in, whose loopback
        // is up: `prepare(None)` must not touch it.
        assert!(loopback_is_up().unwrap(), "the test runner's namespace has lo up");
        assert!(!is_fresh().unwrap());
        assert_eq!(prepare(&Mode::None), Err(NetnsError::NotFresh));
    }

    #[test]
    fn nofile_budget() {
        assert_eq!(nofile_needed(4096, 4096), 8192 + NOFILE_RESERVE);
    }
}
