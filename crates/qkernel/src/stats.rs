//! The sandbox-wide counters of the statistics area (`qlib::stats`), which
//! the host reads at any time. Per-vCPU counters live in `percpu::stats()`;
//! these are shared and updated atomically.

use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::layout::{phys_to_virt, STATS_PA};
use qlib::stats::{Stats, SYSCALL_COUNTERS};

#[inline(always)]
fn counter(offset: usize) -> &'static AtomicU64 {
    // SAFETY: the statistics area is guest RAM mapped by the direct map;
    // every field is an aligned u64 the host only reads.
    unsafe { &*((phys_to_virt(STATS_PA) + offset as u64) as *const AtomicU64) }
}

/// Counters that can be bumped.
#[derive(Clone, Copy)]
pub enum Counter {
    CowFaults,
    TlbShootdowns,
    TlbIpis,
    TlbPages,
    TasksCreated,
}

/// Adds `n` to a counter.
#[inline]
pub fn add(c: Counter, n: u64) {
    let off = match c {
        Counter::CowFaults => offset_of!(Stats, cow_faults),
        Counter::TlbShootdowns => offset_of!(Stats, tlb_shootdowns),
        Counter::TlbIpis => offset_of!(Stats, tlb_ipis),
        Counter::TlbPages => offset_of!(Stats, tlb_pages),
        Counter::TasksCreated => offset_of!(Stats, tasks_created),
    };
    counter(off).fetch_add(n, Ordering::Relaxed);
}

/// Counts one call of system call `nr`.
#[inline]
pub fn syscall(nr: u64) {
    if (nr as usize) < SYSCALL_COUNTERS {
        counter(offset_of!(Stats, syscalls) + 8 * nr as usize).fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes memory usage (bytes in user mappings, free bytes).
pub fn set_memory(user_bytes: u64, free_bytes: u64) {
    counter(offset_of!(Stats, user_bytes)).store(user_bytes, Ordering::Relaxed);
    counter(offset_of!(Stats, free_bytes)).store(free_bytes, Ordering::Relaxed);
}
