//! Lock-free rings in shared memory, addressed by offsets only.
//!
//! The same bytes are mapped at different addresses in the guest kernel, the
//! sandbox process and other host processes, so nothing in shared memory is a
//! pointer: a ring is found by its offset in a [`Region`] and every position
//! is a free-running `u32` reduced modulo the (power-of-two) capacity.
//!
//! - [`spsc`]: bounded single-producer single-consumer ring of fixed-size `T: Pod` messages;
//! - [`slots`]: the same ring with a slot size chosen at run time (raw bytes);
//! - [`mpmc`]: bounded multi-producer multi-consumer ring (Vyukov, a sequence number per slot);
//! - [`stream`]: single-producer single-consumer byte stream with zero-copy windows;
//! - [`wake`]: the waiting-flag protocol (signal the peer only when it sleeps) and the [`Wake`] hook;
//! - [`host`] (feature `std`): memfd mappings, eventfd wakeups, fd handover, peer-death detection.
//!
//! The core is `#![no_std]`, allocation-free and float-free (the guest kernel
//! builds it without SSE). All `unsafe` of the core lives in `raw.rs`; the
//! host system calls live in `host/sys.rs`. See README.md for the layout, the
//! orderings, the wakeup protocol and its proof.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![deny(clippy::float_arithmetic)]

mod ends;
pub mod error;
pub mod layout;
pub mod mpmc;
mod raw;
pub mod slots;
pub mod spsc;
pub mod stream;
pub mod wake;

#[cfg(feature = "std")]
pub mod host;
#[cfg(any(test, feature = "std"))]
#[doc(hidden)]
pub mod testkit;

pub use error::{Error, Result};
pub use layout::{Kind, CONTROL_SIZE, MAGIC, VERSION};
#[cfg(any(test, feature = "std"))]
pub use raw::heap;
pub use raw::{Pod, Region, Window};
pub use wake::{Poll, Wake, DEFAULT_POLL_BUDGET};
