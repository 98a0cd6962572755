//! Memory management: physical frames, the kernel heap, page tables and user
//! address spaces. See README.md in this directory for the design.
pub mod addrspace;
pub mod frame;
pub mod heap;
pub mod pagetable;

pub use frame::{alloc_frame, free_frame, Zero};
