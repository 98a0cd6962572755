//! qlib: the one definition of everything that crosses the Quark VM boundary.
//!
//! Both sides compile this crate: `qkernel` (the guest kernel, built for the host
//! target without SSE) and `qvisor` (the host VMM). Anything the guest and the
//! host must agree on — physical memory layout, boot parameters, VMM-call
//! numbers and message formats, the statistics page, and the Linux ABI the guest
//! implements — is defined here exactly once.
//!
//! Rules for this crate:
//! * `no_std`, no allocation, no floating point, no `core::fmt` in code the guest
//!   calls (the precompiled `core` formatting code uses SSE, which kills the VM
//!   on hosts that emulate supervisor code).
//! * Structures shared through memory are `#[repr(C)]` with sizes asserted at
//!   compile time, and contain only integers: never pointers, never `bool`
//!   (a hostile peer may write any byte pattern).
#![no_std]

pub mod boot;
pub mod elf;
pub mod hcall;
pub mod hostfs;
pub mod hostnet;
pub mod hostq;
pub mod layout;
pub mod linux;
pub mod numfmt;
pub mod stats;
