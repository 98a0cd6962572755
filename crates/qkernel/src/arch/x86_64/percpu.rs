//! Per-vCPU data, reached through the GS base in supervisor mode.
//!
//! The fixed header (offsets in `qlib::layout::percpu`) is written by the
//! host before boot; the rest of [`PerCpu`] belongs to the guest.

use core::arch::asm;
use qlib::layout::percpu as off;

pub use off::{KSTACK as PCPU_KSTACK, STATS as PCPU_STATS, USER_RSP as PCPU_USER_RSP};

/// Offsets inside `qlib::stats::VcpuStats` used by the entry assembly.
pub const STAT_SYSCALLS: usize = 0;
/// See [`STAT_SYSCALLS`].
pub const STAT_USER_RETURNS: usize = 32;
/// See [`STAT_SYSCALLS`].
pub const STAT_SYSCALLS_VIA_PF: usize = 48;

/// The 64-bit TSS.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Default)]
pub struct Tss {
    pub _reserved0: u32,
    pub rsp0: u64,
    pub rsp1: u64,
    pub rsp2: u64,
    pub _reserved1: u64,
    pub ist: [u64; 7],
    pub _reserved2: u64,
    pub _reserved3: u16,
    pub iomap_base: u16,
}

/// Per-vCPU data.
#[repr(C)]
pub struct PerCpu {
    pub self_ptr: u64,
    pub user_rsp: u64,
    pub kstack_top: u64,
    pub current: u64,
    pub index: u64,
    pub hcall: u64,
    pub stats: u64,
    pub tss: u64,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(PerCpu, self_ptr) as u64 == off::SELF);
    assert!(offset_of!(PerCpu, user_rsp) as u64 == off::USER_RSP);
    assert!(offset_of!(PerCpu, kstack_top) as u64 == off::KSTACK);
    assert!(offset_of!(PerCpu, current) as u64 == off::CURRENT);
    assert!(offset_of!(PerCpu, index) as u64 == off::INDEX);
    assert!(offset_of!(PerCpu, hcall) as u64 == off::HCALL);
    assert!(offset_of!(PerCpu, stats) as u64 == off::STATS);
    assert!(offset_of!(PerCpu, tss) as u64 == off::TSS);
    assert!(core::mem::size_of::<PerCpu>() as u64 <= qlib::layout::vcpu_area::TSS_IN_PERCPU);
    assert!(core::mem::size_of::<Tss>() == 104);
};

/// This vCPU's per-CPU data.
#[inline(always)]
pub fn this_cpu() -> &'static mut PerCpu {
    let p: u64;
    // SAFETY: GS base points at this vCPU's per-CPU area (set by the host,
    // swapped on every user entry/exit); offset 0 holds its own address.
    unsafe {
        asm!("mov {}, gs:[0]", out(reg) p, options(nostack, preserves_flags, readonly));
        &mut *(p as *mut PerCpu)
    }
}

/// Index of the current vCPU.
#[inline(always)]
pub fn cpu_index() -> usize {
    this_cpu().index as usize
}

/// This vCPU's statistics block.
#[inline(always)]
pub fn stats() -> &'static mut qlib::stats::VcpuStats {
    // SAFETY: the host set `stats` to this vCPU's VcpuStats in the statistics
    // area (direct map); only this vCPU writes it.
    unsafe { &mut *(this_cpu().stats as *mut qlib::stats::VcpuStats) }
}

/// Installs the kernel stack used on the next entry from user mode (TSS.RSP0
/// for exceptions and interrupts, the per-CPU slot for SYSCALL).
#[inline(always)]
pub fn set_kernel_stack(top: u64) {
    let pc = this_cpu();
    pc.kstack_top = top;
    // SAFETY: `tss` is this vCPU's TSS (host-initialised); writing RSP0 is how
    // the CPU learns the stack for the next user→kernel transition.
    unsafe { core::ptr::addr_of_mut!((*(pc.tss as *mut Tss)).rsp0).write_unaligned(top) };
}
