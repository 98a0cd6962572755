//! hostnet: the host side of the guest's AF_INET/AF_INET6 sockets.
//!
//! The guest kernel asks the VMM, by messages (`qlib::hostnet`), to own real
//! host sockets inside the sandbox's network namespace; the VMM names them
//! to the guest by handles, never by descriptors. The service is
//! transport-agnostic: whoever carries a request (the synchronous VMM call
//! today, shmq rings later) calls [`HostNet::call`] with the request bytes
//! and the guest memory, and carries the answer back.
//!
//! * [`service`]: request decoding and checking, the handle table, the
//!   socket operations (non-blocking host sockets, data straight between
//!   host sockets and guest frames, never SIGPIPE);
//! * [`notifier`]: one host epoll for all sockets, producing readiness
//!   events for the guest;
//! * [`netlink`]: read-only NETLINK_ROUTE dumps from the real namespace;
//! * [`netns`]: `--net none|host|ns:PATH`, loopback, RLIMIT_NOFILE;
//! * [`seccomp`]: what the VMM's seccomp allowlist must add;
//! * [`client`]: a host-side driver of the protocol for tests;
//! * `sys`: the host system calls (all of this module's unsafe code).
//!
//! See docs/hostnet.md for the protocol, the readiness rule the guest
//! follows, and how the VMM wires the service in.

pub mod client;
pub mod netlink;
pub mod netns;
pub mod notifier;
pub mod seccomp;
pub mod service;
mod sys;
pub mod table;

pub use notifier::Notifier;
pub use service::{HostNet, DEFAULT_MAX_SOCKETS};
