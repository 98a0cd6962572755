//! TLB shootdown across vCPUs.
//!
//! When a page-table change removes or narrows a mapping (munmap, mprotect to
//! fewer rights, a copy-on-write break), every other vCPU that runs the same
//! address space must drop its cached translations before the system call
//! returns, and the frames involved may be reused only afterwards.
//!
//! Protocol: each address space keeps a mask of the vCPUs that have it loaded
//! (set before loading CR3, cleared after switching away). The initiator
//! changes the entries, then, for every other vCPU in the mask, raises that
//! vCPU's `pending` flag and sends it an IPI, and waits until all flags are
//! clear. A target clears its flag after reloading CR3: in the IPI handler
//! (user mode or idle), in the scheduler, or while spinning on a lock (so a
//! target spinning on a lock the initiator holds cannot deadlock it).
//! Initiators also serve their own flag while waiting. Frames are freed only
//! after the wait. IPIs cost ~25 µs each on kvm_pvm hosts: only vCPUs in the
//! mask are interrupted, and one shootdown covers a whole batch of changes.

use crate::arch::x86_64::{apic, cpu, percpu};
use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use qlib::layout::MAX_VCPUS;

/// Vector of the TLB-shootdown IPI.
pub const TLB_VECTOR: u8 = 0x22;

static PENDING: [AtomicBool; MAX_VCPUS as usize] = [const { AtomicBool::new(false) }; MAX_VCPUS as usize];

/// Shootdowns initiated and IPIs sent (counters for statistics).
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
/// See [`SHOOTDOWNS`].
pub static IPIS: AtomicU64 = AtomicU64::new(0);

/// Flushes this vCPU's non-global translations.
#[inline]
pub fn flush_local() {
    // SAFETY: reloading the current CR3 only drops cached translations.
    unsafe { cpu::write_cr3(cpu::cr3()) };
}

/// Serves a pending shootdown request for this vCPU, if any.
#[inline]
pub fn service_pending() {
    let Some(flag) = PENDING.get(percpu::cpu_index()) else { return };
    if flag.load(Ordering::Acquire) {
        flush_local();
        flag.store(false, Ordering::Release);
    }
}

/// Makes every vCPU in `mask` other than this one drop translations of the
/// address space the caller just changed, and waits until they have.
/// Returns whether any other vCPU had to be interrupted.
pub fn shootdown(mask: &AtomicU64) -> bool {
    // The page-table writes must be visible before we read who runs the
    // address space (a vCPU loading it later sees the new entries).
    fence(Ordering::SeqCst);
    let me = percpu::cpu_index();
    let targets = mask.load(Ordering::SeqCst) & !(1u64 << me);
    if targets == 0 {
        return false;
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    crate::stats::add(crate::stats::Counter::TlbShootdowns, 1);
    crate::stats::add(crate::stats::Counter::TlbIpis, targets.count_ones() as u64);
    for (t, flag) in PENDING.iter().enumerate() {
        if targets & (1 << t) != 0 {
            flag.store(true, Ordering::Release);
            apic::send_ipi(t as u32, TLB_VECTOR);
            IPIS.fetch_add(1, Ordering::Relaxed);
        }
    }
    for (t, flag) in PENDING.iter().enumerate() {
        if targets & (1 << t) != 0 {
            while flag.load(Ordering::Acquire) {
                cpu::pause();
                service_pending();
            }
        }
    }
    true
}

/// Makes every other vCPU drop its translations (of any address space) and
/// waits until they have: for frames that must be freed at once.
pub fn shootdown_all() {
    let n = crate::boot::params().vcpu_count;
    let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    shootdown(&AtomicU64::new(all));
}
