//! What the socket service adds to the VMM's seccomp allowlist
//! (confine/seccomp.rs): the host system calls it makes once the guest runs,
//! with the argument constraints that keep them to TCP/UDP over IPv4/IPv6,
//! NETLINK_ROUTE, the allowlisted socket options and two socket ioctls.
//! Start-up steps (setns, unshare, SIOCSIFFLAGS, the sysctl write,
//! prlimit64) run before the filter and are not listed.
//!
//! [`RULES`] is the list the filter must add (docs/hostnet.md "Wiring");
//! [`fragment`] compiles it to classic BPF and [`standalone_filter`] builds
//! a complete filter (the base allowlist plus these rules) that the tests
//! install to prove the service works under confinement.

use crate::confine::seccomp::{Insn, SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS};
use crate::sys::nr;
use qlib::hostnet::{af, ioctl, ip, ipproto, ipv6, netlink, so, sock, tcp};

/// One argument check: the low 32 bits of argument `arg` equal one of
/// `one_of` (every constrained argument is an `int` or `unsigned int` in
/// the kernel, which ignores the high bits).
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub arg: u8,
    pub one_of: &'static [u32],
}

/// A system call the service makes, allowed when all checks of any one
/// alternative hold (no alternatives = any arguments).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub nr: u64,
    pub name: &'static str,
    pub any_of: &'static [&'static [Check]],
}

const NB: u32 = sock::SOCK_NONBLOCK;
const CE: u32 = sock::SOCK_CLOEXEC;
const fn flavours(t: u32) -> [u32; 4] {
    [t, t | NB, t | CE, t | NB | CE]
}
const STREAM: [u32; 4] = flavours(sock::SOCK_STREAM);
const DGRAM: [u32; 4] = flavours(sock::SOCK_DGRAM);
const RAW: [u32; 4] = flavours(sock::SOCK_RAW);
const INET: [u32; 2] = [af::AF_INET as u32, af::AF_INET6 as u32];

/// socket(): TCP or UDP over IPv4/IPv6, or NETLINK_ROUTE.
const SOCKET: &[&[Check]] = &[
    &[Check { arg: 0, one_of: &INET }, Check { arg: 1, one_of: &STREAM }, Check { arg: 2, one_of: &[0, 6] }],
    &[Check { arg: 0, one_of: &INET }, Check { arg: 1, one_of: &DGRAM }, Check { arg: 2, one_of: &[0, 17] }],
    &[
        Check { arg: 0, one_of: &[af::AF_NETLINK as u32] },
        Check { arg: 1, one_of: &RAW },
        Check { arg: 2, one_of: &[netlink::NETLINK_ROUTE] },
    ],
];

const fn level(l: i32) -> Check {
    Check {
        arg: 1,
        one_of: match l {
            ipproto::SOL_SOCKET => &[ipproto::SOL_SOCKET as u32],
            ipproto::IPPROTO_TCP => &[ipproto::IPPROTO_TCP as u32],
            ipproto::IPPROTO_IP => &[ipproto::IPPROTO_IP as u32],
            _ => &[ipproto::IPPROTO_IPV6 as u32],
        },
    }
}

/// setsockopt(): the settable entries of `qlib::hostnet::SOCKOPTS`
/// (a unit test keeps the two in step).
const SETSOCKOPT: &[&[Check]] = &[
    &[
        level(ipproto::SOL_SOCKET),
        Check {
            arg: 2,
            one_of: &[
                so::SO_REUSEADDR as u32,
                so::SO_REUSEPORT as u32,
                so::SO_KEEPALIVE as u32,
                so::SO_BROADCAST as u32,
                so::SO_LINGER as u32,
                so::SO_RCVBUF as u32,
                so::SO_SNDBUF as u32,
            ],
        },
    ],
    &[
        level(ipproto::IPPROTO_TCP),
        Check {
            arg: 2,
            one_of: &[
                tcp::TCP_NODELAY as u32,
                tcp::TCP_CORK as u32,
                tcp::TCP_KEEPIDLE as u32,
                tcp::TCP_KEEPINTVL as u32,
                tcp::TCP_KEEPCNT as u32,
            ],
        },
    ],
    &[
        level(ipproto::IPPROTO_IP),
        Check {
            arg: 2,
            one_of: &[
                ip::IP_TOS as u32,
                ip::IP_TTL as u32,
                ip::IP_MULTICAST_IF as u32,
                ip::IP_MULTICAST_TTL as u32,
                ip::IP_MULTICAST_LOOP as u32,
                ip::IP_ADD_MEMBERSHIP as u32,
                ip::IP_DROP_MEMBERSHIP as u32,
            ],
        },
    ],
    &[
        level(ipproto::IPPROTO_IPV6),
        Check {
            arg: 2,
            one_of: &[
                ipv6::IPV6_V6ONLY as u32,
                ipv6::IPV6_UNICAST_HOPS as u32,
                ipv6::IPV6_TCLASS as u32,
                ipv6::IPV6_MULTICAST_IF as u32,
                ipv6::IPV6_MULTICAST_HOPS as u32,
                ipv6::IPV6_MULTICAST_LOOP as u32,
                ipv6::IPV6_ADD_MEMBERSHIP as u32,
                ipv6::IPV6_DROP_MEMBERSHIP as u32,
            ],
        },
    ],
];

/// getsockopt(): the readable entries of `qlib::hostnet::SOCKOPTS`.
const GETSOCKOPT: &[&[Check]] = &[
    &[
        level(ipproto::SOL_SOCKET),
        Check {
            arg: 2,
            one_of: &[
                so::SO_REUSEADDR as u32,
                so::SO_REUSEPORT as u32,
                so::SO_KEEPALIVE as u32,
                so::SO_BROADCAST as u32,
                so::SO_LINGER as u32,
                so::SO_RCVBUF as u32,
                so::SO_SNDBUF as u32,
                so::SO_ERROR as u32,
                so::SO_TYPE as u32,
                so::SO_DOMAIN as u32,
                so::SO_PROTOCOL as u32,
                so::SO_ACCEPTCONN as u32,
            ],
        },
    ],
    &[
        level(ipproto::IPPROTO_TCP),
        Check {
            arg: 2,
            one_of: &[
                tcp::TCP_NODELAY as u32,
                tcp::TCP_CORK as u32,
                tcp::TCP_KEEPIDLE as u32,
                tcp::TCP_KEEPINTVL as u32,
                tcp::TCP_KEEPCNT as u32,
                tcp::TCP_INFO as u32,
            ],
        },
    ],
    &[
        level(ipproto::IPPROTO_IP),
        Check {
            arg: 2,
            one_of: &[
                ip::IP_TOS as u32,
                ip::IP_TTL as u32,
                ip::IP_MULTICAST_IF as u32,
                ip::IP_MULTICAST_TTL as u32,
                ip::IP_MULTICAST_LOOP as u32,
            ],
        },
    ],
    &[
        level(ipproto::IPPROTO_IPV6),
        Check {
            arg: 2,
            one_of: &[
                ipv6::IPV6_V6ONLY as u32,
                ipv6::IPV6_UNICAST_HOPS as u32,
                ipv6::IPV6_TCLASS as u32,
                ipv6::IPV6_MULTICAST_IF as u32,
                ipv6::IPV6_MULTICAST_HOPS as u32,
                ipv6::IPV6_MULTICAST_LOOP as u32,
            ],
        },
    ],
];

const ANY: &[&[Check]] = &[];

/// The additions to the VMM's seccomp allowlist. `close`, `read`/`write`
/// and memory management are in the base list already. The existing ioctl
/// branch (which kills any non-KVM ioctl on a descriptor above 2) must test
/// these ioctl requests first.
pub const RULES: &[Rule] = &[
    Rule { nr: nr::SOCKET, name: "socket", any_of: SOCKET },
    Rule { nr: nr::BIND, name: "bind", any_of: ANY },
    Rule { nr: nr::LISTEN, name: "listen", any_of: ANY },
    Rule { nr: nr::ACCEPT4, name: "accept4", any_of: ANY },
    Rule { nr: nr::CONNECT, name: "connect", any_of: ANY },
    Rule { nr: nr::SHUTDOWN, name: "shutdown", any_of: ANY },
    Rule { nr: nr::GETSOCKNAME, name: "getsockname", any_of: ANY },
    Rule { nr: nr::GETPEERNAME, name: "getpeername", any_of: ANY },
    Rule { nr: nr::SENDMSG, name: "sendmsg", any_of: ANY },
    Rule { nr: nr::RECVMSG, name: "recvmsg", any_of: ANY },
    Rule { nr: nr::SENDMMSG, name: "sendmmsg", any_of: ANY },
    Rule { nr: nr::RECVMMSG, name: "recvmmsg", any_of: ANY },
    Rule { nr: nr::SETSOCKOPT, name: "setsockopt", any_of: SETSOCKOPT },
    Rule { nr: nr::GETSOCKOPT, name: "getsockopt", any_of: GETSOCKOPT },
    Rule {
        nr: nr::IOCTL,
        name: "ioctl",
        any_of: &[&[Check { arg: 1, one_of: &[ioctl::FIONREAD as u32, ioctl::SIOCOUTQ as u32] }]],
    },
    Rule { nr: nr::EPOLL_CREATE1, name: "epoll_create1", any_of: &[&[Check { arg: 0, one_of: &[0o2000000] }]] },
    Rule { nr: nr::EPOLL_CTL, name: "epoll_ctl", any_of: ANY },
    Rule { nr: nr::EPOLL_WAIT, name: "epoll_wait", any_of: ANY },
];

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

const fn arg_lo(i: u8) -> u32 {
    16 + 8 * i as u32
}

fn load(k: u32) -> Insn {
    Insn { code: BPF_LD_W_ABS, jt: 0, jf: 0, k }
}

fn ret(k: u32) -> Insn {
    Insn { code: BPF_RET_K, jt: 0, jf: 0, k }
}

fn jeq(k: u32, jt: usize, jf: usize) -> Insn {
    let (jt, jf) = (u8::try_from(jt), u8::try_from(jf));
    Insn { code: BPF_JMP_JEQ_K, jt: jt.expect("BPF jump too long"), jf: jf.expect("BPF jump too long"), k }
}

/// Code for one alternative: falls through to the instruction after it
/// when a check fails, returns ALLOW when all hold.
fn alternative(checks: &[Check]) -> Vec<Insn> {
    // Size: per check one load and one JEQ per value; then RET ALLOW.
    let size: usize = checks.iter().map(|c| 1 + c.one_of.len()).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(size);
    for c in checks {
        out.push(load(arg_lo(c.arg)));
        let n = c.one_of.len();
        for (i, &v) in c.one_of.iter().enumerate() {
            let here = out.len();
            let next_check = here - i + n; // first instruction after this JEQ list
            let fail = size; // the instruction after the alternative
            if i + 1 < n {
                out.push(jeq(v, next_check - here - 1, 0));
            } else {
                out.push(jeq(v, 0, fail - here - 1));
            }
        }
    }
    out.push(ret(SECCOMP_RET_ALLOW));
    out
}

/// Classic BPF for [`RULES`]: expects the system call number in the
/// accumulator, returns ALLOW for an allowed call and otherwise falls
/// through with the number in the accumulator again, so it composes with
/// the rest of a filter: placed right after the number is loaded, the
/// filter's own rules (e.g. its ioctl branch) still judge everything else.
pub fn fragment() -> Vec<Insn> {
    let mut out = Vec::new();
    for r in RULES {
        let mut body = Vec::new();
        if r.any_of.is_empty() {
            body.push(ret(SECCOMP_RET_ALLOW));
        } else {
            for alt in r.any_of {
                body.extend(alternative(alt));
            }
            // No alternative held: reload the number for what follows.
            body.push(load(0));
        }
        out.push(jeq(r.nr as u32, 0, body.len()));
        out.extend(body);
    }
    out
}

/// A complete filter: architecture check, the calls in `base` with any
/// arguments, mmap/mprotect without PROT_EXEC, then [`fragment`]; anything
/// else kills the process. Used by the tests to run the service under
/// confinement (`base` = `confine::seccomp::ALLOWED`).
pub fn standalone_filter(base: &[u64]) -> Vec<Insn> {
    let mut p = vec![load(4), jeq(AUDIT_ARCH_X86_64, 1, 0), ret(SECCOMP_RET_KILL_PROCESS), load(0)];
    for &n in base {
        p.push(jeq(n as u32, 0, 1));
        p.push(ret(SECCOMP_RET_ALLOW));
    }
    for n in [nr::MMAP, nr::MPROTECT] {
        // nr == n: kill when PROT_EXEC is set, else allow; otherwise skip
        // the four instructions with the number still loaded.
        p.push(jeq(n as u32, 0, 4));
        p.push(load(arg_lo(2)));
        p.push(Insn { code: BPF_JMP_JSET_K, jt: 1, jf: 0, k: 4 });
        p.push(ret(SECCOMP_RET_ALLOW));
        p.push(ret(SECCOMP_RET_KILL_PROCESS));
    }
    p.extend(fragment());
    p.push(ret(SECCOMP_RET_KILL_PROCESS));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::seccomp::{evaluate, ALLOWED};
    use qlib::hostnet::{sockopt_rule, SOCKOPTS};

    fn run(n: u64, args: [u64; 6]) -> u32 {
        evaluate(&standalone_filter(ALLOWED), n as u32, args)
    }
    const A: u32 = SECCOMP_RET_ALLOW;
    const K: u32 = SECCOMP_RET_KILL_PROCESS;

    #[test]
    fn sockets_only_of_the_kinds_the_service_makes() {
        for d in [2, 10] {
            for t in STREAM {
                assert_eq!(run(nr::SOCKET, [d, t as u64, 0, 0, 0, 0]), A);
                assert_eq!(run(nr::SOCKET, [d, t as u64, 6, 0, 0, 0]), A);
                assert_eq!(run(nr::SOCKET, [d, t as u64, 132, 0, 0, 0]), K, "SCTP");
            }
            for t in DGRAM {
                assert_eq!(run(nr::SOCKET, [d, t as u64, 17, 0, 0, 0]), A);
                assert_eq!(run(nr::SOCKET, [d, t as u64, 136, 0, 0, 0]), K, "UDP-Lite");
            }
            assert_eq!(run(nr::SOCKET, [d, 3, 1, 0, 0, 0]), K, "raw");
        }
        assert_eq!(run(nr::SOCKET, [16, 3 | 0o2000000 | 0o4000, 0, 0, 0, 0]), A, "NETLINK_ROUTE");
        assert_eq!(run(nr::SOCKET, [16, 3, 9, 0, 0, 0]), K, "NETLINK_AUDIT");
        assert_eq!(run(nr::SOCKET, [1, 1, 0, 0, 0, 0]), K, "AF_UNIX");
        assert_eq!(run(nr::SOCKET, [17, 3, 0, 0, 0, 0]), K, "AF_PACKET");
        assert_eq!(run(nr::SOCKETPAIR, [1, 1, 0, 0, 0, 0]), K);
    }

    #[test]
    fn socket_options_match_the_protocol_allowlist() {
        for level in [ipproto::SOL_SOCKET, ipproto::IPPROTO_IP, ipproto::IPPROTO_TCP, ipproto::IPPROTO_IPV6, 17, 263] {
            for name in 0..100 {
                let rule = sockopt_rule(level, name);
                let args = [5, level as u32 as u64, name as u32 as u64, 0, 4, 0];
                let set = if rule.is_some_and(|r| r.set) { A } else { K };
                let get = if rule.is_some_and(|r| r.get) { A } else { K };
                assert_eq!(run(nr::SETSOCKOPT, args), set, "setsockopt {level}/{name}");
                assert_eq!(run(nr::GETSOCKOPT, args), get, "getsockopt {level}/{name}");
            }
        }
        assert!(SOCKOPTS.len() > 30);
    }

    #[test]
    fn the_rest_of_the_list() {
        for n in [nr::BIND, nr::LISTEN, nr::ACCEPT4, nr::CONNECT, nr::SENDMSG, nr::RECVMMSG, nr::EPOLL_WAIT] {
            assert_eq!(run(n, [9, 1, 2, 3, 4, 5]), A);
        }
        assert_eq!(run(nr::IOCTL, [9, ioctl::FIONREAD, 0, 0, 0, 0]), A);
        assert_eq!(run(nr::IOCTL, [9, ioctl::SIOCOUTQ, 0, 0, 0, 0]), A);
        assert_eq!(run(nr::IOCTL, [9, 0x8914 /* SIOCSIFFLAGS */, 0, 0, 0, 0]), K);
        assert_eq!(run(nr::EPOLL_CREATE1, [0o2000000, 0, 0, 0, 0, 0]), A);
        assert_eq!(run(nr::EPOLL_CREATE1, [0, 0, 0, 0, 0, 0]), K);
        // Start-up-only calls stay forbidden.
        for n in [nr::SETNS, nr::UNSHARE, nr::PRLIMIT64, nr::OPENAT, nr::SENDTO, nr::RECVFROM] {
            assert_eq!(run(n, [0; 6]), K, "syscall {n}");
        }
        // The base list and the exec rule are intact.
        assert_eq!(run(nr::READ, [0; 6]), A);
        assert_eq!(run(nr::MMAP, [0, 4096, 3, 0x22, 0, 0]), A);
        assert_eq!(run(nr::MMAP, [0, 4096, 7, 0x22, 0, 0]), K);
    }

    #[test]
    fn the_fragment_composes_with_a_filter() {
        // Placed before another filter's rules, the fragment allows what it
        // lists and hands everything else on with the number reloaded.
        let mut p = vec![load(0)];
        p.extend(fragment());
        p.push(jeq(nr::IOCTL as u32, 0, 1));
        p.push(ret(0x0005_0000 | 25)); // the "other filter": ioctl -> ENOTTY
        p.push(ret(SECCOMP_RET_KILL_PROCESS));
        assert_eq!(evaluate(&p, nr::IOCTL as u32, [9, ioctl::FIONREAD, 0, 0, 0, 0]), A);
        assert_eq!(evaluate(&p, nr::IOCTL as u32, [9, 0x5401, 0, 0, 0, 0]), 0x0005_0000 | 25);
        assert_eq!(evaluate(&p, nr::SOCKET as u32, [1, 1, 0, 0, 0, 0]), K);
        assert_eq!(evaluate(&p, nr::SOCKET as u32, [2, 1, 0, 0, 0, 0]), A);
    }
}
