//! hostfs: the host side of the guest's container root (and, later, bind
//! mounts): a confined file service the guest kernel's VFS calls by
//! messages (`qlib::hostfs`).
//!
//! The service is transport-agnostic: whoever carries a request (the
//! synchronous VMM call today, shmq rings with host I/O threads later)
//! copies the 64 request bytes out of guest memory once and calls
//! [`HostFs::handle`] with them and the guest memory; the 32 answer bytes go
//! back the same way. File data moves straight between host files and guest
//! frames (`preadv`/`pwritev` on host iovecs into the guest mapping,
//! `getdents64`/`readlinkat`/`fgetxattr` writing into checked guest ranges).
//!
//! * [`service`]: request checking, the operations, confinement;
//! * [`table`]: the per-sandbox handle table (generations, EMFILE);
//! * [`seccomp`]: what the VMM's seccomp allowlist must add;
//! * [`testkit`]: a protocol driver and temporary trees for tests;
//! * `sys`: the host system calls (all of this module's unsafe code).
//!
//! docs/hostfs.md documents the protocol, the confinement rules, the
//! capabilities the VMM needs and how to wire the service in.

pub mod seccomp;
pub mod service;
mod sys;
pub mod table;
pub mod testkit;

pub use seccomp::{SECCOMP_RULES, SECCOMP_SYSCALLS};
pub use service::{HostFs, HostFsError, Stats, DEFAULT_MAX_HANDLES};
