//! The Linux x86-64 ABI the guest kernel implements: numbers, flags and the
//! layouts of structures user programs pass to system calls.

pub mod consts;
pub mod errno;
pub mod sysno;
pub mod types;

pub use errno::Errno;
