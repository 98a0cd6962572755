//! The statistics area: counters the guest kernel keeps and the host reads
//! at any time without stopping the guest (metrics, benchmarks, hang
//! detection). The guest only ever increments; the host only reads.
//!
//! Each vCPU has its own [`VcpuStats`] block (no shared cache lines on hot
//! paths); global counters follow.

use crate::layout::{MAX_VCPUS, STATS_SIZE};

/// "QSTATS\0\0" in little-endian.
pub const STATS_MAGIC: u64 = u64::from_le_bytes(*b"QSTATS\0\0");

/// Counters of one vCPU.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuStats {
    /// System calls handled.
    pub syscalls: u64,
    /// Page faults handled (user and kernel-on-behalf-of-user).
    pub page_faults: u64,
    /// Interrupts taken.
    pub interrupts: u64,
    /// Synchronous VMM calls made.
    pub hcalls: u64,
    /// Returns to user mode. The host's hang detector treats a vCPU that sits
    /// in supervisor mode while this and `idle_entries` stay unchanged as hung.
    pub user_returns: u64,
    /// Times the vCPU went idle (HLT).
    pub idle_entries: u64,
    /// Syscalls that arrived through the compat-mode #PF redirect.
    pub syscalls_via_pf: u64,
    /// Context switches.
    pub context_switches: u64,
    /// Bytes the guest kernel copied itself to or from a system call's
    /// buffers (`copy_from_user`/`copy_to_user` and everything built on
    /// them: iobuf bounces, pipe and tmpfs data, socket and stat buffers;
    /// also copies into kernel-mode iobufs).
    /// Bytes the host moves straight into guest frames (hostfs, stdio, host
    /// sockets) are not counted.
    pub copied_bytes: u64,
}

/// Number of per-syscall counters (x86-64 numbers 0..=467).
pub const SYSCALL_COUNTERS: usize = 468;

/// The statistics area at [`crate::layout::STATS_PA`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// [`STATS_MAGIC`], written by the guest at boot.
    pub magic: u64,
    /// Bytes of user memory in use (frames mapped into user address spaces).
    pub user_bytes: u64,
    /// Bytes of free guest memory.
    pub free_bytes: u64,
    /// Copy-on-write breaks (a shared frame copied on the first write).
    pub cow_faults: u64,
    /// TLB shootdowns initiated.
    pub tlb_shootdowns: u64,
    /// IPIs sent for TLB shootdowns.
    pub tlb_ipis: u64,
    /// Pages whose mappings changed under a shootdown.
    pub tlb_pages: u64,
    /// Tasks created (fork, clone).
    pub tasks_created: u64,
    /// Per-vCPU counters.
    pub vcpu: [VcpuStats; MAX_VCPUS as usize],
    /// Calls per system call number (atomic increments by the guest).
    pub syscalls: [u64; SYSCALL_COUNTERS],
}

const _: () = assert!(core::mem::size_of::<Stats>() as u64 <= STATS_SIZE);
const _: () = assert!(core::mem::size_of::<VcpuStats>() == 128);
