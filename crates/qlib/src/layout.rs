//! Guest physical and virtual memory layout.
//!
//! ```text
//! guest-physical (one memfd, one KVM memslot starting at 0)
//!   0x0000_0000  unused (never mapped: catches null physical addresses)
//!   0x0000_1000  BootParams (written by the host before the first instruction)
//!   0x0000_2000  GDT (shared by all vCPUs; one TSS descriptor per vCPU)
//!   0x0000_3000  IDT (256 gates, built by the host from the kernel header)
//!   0x0000_4000  statistics page(s) (guest writes, host reads; see stats.rs)
//!   0x0000_8000  init block: argv/envp/cwd of the first process (host writes)
//!   0x0020_0000  kernel image (KERNEL_PHYS_BASE), PT_LOAD segments at their
//!                physical offsets; .bss is zero because memfd pages are
//!   ...          per-vCPU areas, boot page tables (positions in BootParams)
//!   ...          free memory up to the end of guest RAM (frame allocator)
//!
//! guest-virtual
//!   0x0000_0000_0000_0000 .. USER_END      user programs (Linux layout)
//!   DIRECT_MAP_BASE + pa                    all guest RAM, RW, NX, supervisor
//!   KERNEL_VIRT_BASE + pa                   the kernel image (W^X per segment)
//! ```
//!
//! Guest-physical addresses are offsets into the sandbox's memfd. The host never
//! treats a guest-physical address as a pointer: it translates through one
//! bounds-checked accessor (`qvisor::memory::GuestMemory`).

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;
/// log2(PAGE_SIZE).
pub const PAGE_SHIFT: u32 = 12;
/// Size of a large (2 MiB) page.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// First address above the user half (Linux's TASK_SIZE on x86-64 with 4-level
/// paging, one page below the canonical hole).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Virtual base of the direct map of guest-physical memory (PML4 slot 273,
/// like Linux's `PAGE_OFFSET`).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8880_0000_0000;
/// Largest guest RAM the direct map can describe (one PML4 slot: 512 GiB).
pub const DIRECT_MAP_MAX: u64 = 512 << 30;

/// Virtual base of the kernel image region (top 2 GiB: `-C code-model=kernel`).
pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
/// Physical address the kernel image is linked to load at.
pub const KERNEL_PHYS_BASE: u64 = 0x0020_0000;
/// Largest kernel image (all PT_LOAD segments, including .bss).
pub const KERNEL_MAX_SIZE: u64 = 14 << 20;

/// Guest-physical address of [`crate::boot::BootParams`].
pub const BOOT_PARAMS_PA: u64 = 0x1000;
/// Guest-physical address of the GDT.
pub const GDT_PA: u64 = 0x2000;
/// Guest-physical address of the IDT.
pub const IDT_PA: u64 = 0x3000;
/// Guest-physical address of the statistics area (see [`crate::stats`]).
pub const STATS_PA: u64 = 0x4000;
/// Size of the statistics area.
pub const STATS_SIZE: u64 = 0x4000;
/// Guest-physical address of [`HostEvents`] (inside the statistics area's
/// last page).
pub const HOST_EVENTS_PA: u64 = STATS_PA + STATS_SIZE - PAGE_SIZE;
/// Guest-physical address of the init block (argv/envp of the first process).
pub const INIT_BLOCK_PA: u64 = 0x8000;
/// Size of the init block.
pub const INIT_BLOCK_SIZE: u64 = KERNEL_PHYS_BASE - INIT_BLOCK_PA;

/// Most vCPUs a sandbox may have.
pub const MAX_VCPUS: u32 = 64;

/// Layout of one vCPU's area (offsets from its start; the area is
/// `VCPU_AREA_SIZE` bytes, aligned to a page).
pub mod vcpu_area {
    /// VMM-call page: request and response of synchronous VMM calls.
    pub const HCALL: u64 = 0;
    /// Per-CPU data (the GS base in supervisor mode) followed by the TSS.
    pub const PERCPU: u64 = 0x1000;
    /// Offset of the TSS inside the per-CPU page.
    pub const TSS_IN_PERCPU: u64 = 0xf00;
    /// Interrupt stack for #DF/NMI/#MC (IST1), top at `IST_TOP`.
    pub const IST_BOTTOM: u64 = 0x2000;
    /// Top of the IST stack.
    pub const IST_TOP: u64 = 0x4000;
    /// Boot/idle stack, top at `BOOT_STACK_TOP`.
    pub const BOOT_STACK_BOTTOM: u64 = 0x4000;
    /// Top of the boot/idle stack.
    pub const BOOT_STACK_TOP: u64 = 0x8000;
    /// Size of one vCPU area.
    pub const SIZE: u64 = 0x8000;
}

/// Byte offsets of the per-CPU area's fixed header (GS base in supervisor
/// mode). The host fills `SELF`, `KSTACK`, `INDEX`, `HCALL`, `STATS` and `TSS`
/// before boot; the guest's entry assembly uses `USER_RSP` and `KSTACK`.
pub mod percpu {
    /// Virtual address of the per-CPU area itself.
    pub const SELF: u64 = 0;
    /// Scratch slot for the user RSP during SYSCALL entry.
    pub const USER_RSP: u64 = 8;
    /// Top of the current task's kernel stack (mirrors TSS.RSP0).
    pub const KSTACK: u64 = 16;
    /// The current task (guest-private pointer).
    pub const CURRENT: u64 = 24;
    /// vCPU index.
    pub const INDEX: u64 = 32;
    /// Virtual address of this vCPU's VMM-call page.
    pub const HCALL: u64 = 40;
    /// Virtual address of this vCPU's `stats::VcpuStats`.
    pub const STATS: u64 = 48;
    /// Virtual address of this vCPU's TSS.
    pub const TSS: u64 = 56;
    /// Bytes of the fixed header.
    pub const HEADER_SIZE: u64 = 64;
}

/// GDT selectors (the Linux layout, so STAR is Linux's value).
pub mod selector {
    /// Kernel code, 64-bit, DPL0.
    pub const KERNEL_CS: u16 = 0x10;
    /// Kernel data, DPL0.
    pub const KERNEL_DS: u16 = 0x18;
    /// 32-bit user code (present only so SYSRET's selector arithmetic works).
    pub const USER32_CS: u16 = 0x23;
    /// User data, DPL3.
    pub const USER_DS: u16 = 0x2b;
    /// User code, 64-bit, DPL3.
    pub const USER_CS: u16 = 0x33;
    /// First TSS descriptor; vCPU `i` uses `TSS_BASE + 16 * i`.
    pub const TSS_BASE: u16 = 0x40;
    /// STAR MSR value: SYSCALL loads CS=0x10/SS=0x18, SYSRET CS=0x33/SS=0x2b.
    pub const STAR: u64 = ((USER32_CS as u64) << 48) | ((KERNEL_CS as u64) << 32);
}

/// I/O ports the guest uses to call the VMM (no hypercall instruction works on
/// every host: see `docs/platform.md`).
pub mod port {
    /// `out %eax, (HCALL)`: a synchronous VMM call; EAX holds the call number,
    /// the request is in the calling vCPU's VMM-call page.
    pub const HCALL: u16 = 0x510;
    /// `out %eax, (HOSTQ_DOORBELL)`: wakes the host I/O thread of the queued
    /// host calls (see [`crate::hostq`]); EAX holds the vCPU index. Written
    /// only when the host advertised that it sleeps.
    pub const HOSTQ_DOORBELL: u16 = 0x511;
}

/// Converts a guest-physical address to its direct-map virtual address.
#[inline(always)]
pub const fn phys_to_virt(pa: u64) -> u64 {
    DIRECT_MAP_BASE + pa
}

/// Converts a direct-map virtual address back to guest-physical.
#[inline(always)]
pub const fn virt_to_phys(va: u64) -> u64 {
    va - DIRECT_MAP_BASE
}

/// Guest-physical address behind a kernel virtual address in the direct map
/// or the kernel image.
#[inline(always)]
pub const fn kernel_va_to_pa(va: u64) -> u64 {
    if va >= KERNEL_VIRT_BASE {
        va - KERNEL_VIRT_BASE
    } else {
        va - DIRECT_MAP_BASE
    }
}

/// Rounds `x` up to a multiple of the power of two `align`, or `None` on overflow.
#[inline]
pub const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Rounds `x` down to a multiple of the power of two `align`.
#[inline(always)]
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

const _: () = assert!(STATS_PA + STATS_SIZE <= INIT_BLOCK_PA);
const _: () = assert!(STATS_PA + core::mem::size_of::<crate::stats::Stats>() as u64 <= HOST_EVENTS_PA);

/// Events the host posts for the guest, followed by an interrupt
/// (KVM_SIGNAL_MSI to vCPU 0 with the wake vector). The host only sets bits;
/// the guest takes them with an atomic swap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HostEvents {
    /// Signals to deliver to the sandbox's init (bit `n - 1` for signal `n`),
    /// forwarded by `quark run` / the runtime from outside the sandbox.
    pub signals: u64,
    /// Socket readiness (docs/hostnet.md): 1 while the guest wants an
    /// interrupt for the next events the host posts into the ring at
    /// [`NET_EVENTS_OFFSET`]. The guest sets it before draining the ring; the
    /// host swaps it to 0 after posting and kicks the guest when it was 1, so
    /// there is at most one interrupt per drained batch.
    pub net_armed: u64,
}

/// Offset, in the host-events page, of the shmq SPSC ring of
/// `qlib::hostnet::Event`s (as `[u64; 2]`: handle, revents) that the VMM's
/// notifier thread produces and the guest consumes.
pub const NET_EVENTS_OFFSET: u64 = 256;
/// Capacity of that ring (a power of two). The host holds back (and
/// coalesces) what does not fit until the guest drains.
pub const NET_EVENTS_CAPACITY: u32 = 128;
/// Bytes of the ring region (shmq control block + slots).
pub const NET_EVENTS_SIZE: u64 = 256 + NET_EVENTS_CAPACITY as u64 * 16;
const _: () = assert!(NET_EVENTS_OFFSET + NET_EVENTS_SIZE <= PAGE_SIZE);
const _: () = assert!(core::mem::size_of::<HostEvents>() as u64 <= NET_EVENTS_OFFSET);
const _: () = assert!(KERNEL_VIRT_BASE + KERNEL_PHYS_BASE + KERNEL_MAX_SIZE > KERNEL_VIRT_BASE);
const _: () = assert!(vcpu_area::TSS_IN_PERCPU + 0x68 <= 0x1000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        assert_eq!(align_up(1, PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(align_up(PAGE_SIZE, PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(align_up(u64::MAX, PAGE_SIZE), None);
        assert_eq!(align_down(PAGE_SIZE + 5, PAGE_SIZE), PAGE_SIZE);
    }

    #[test]
    fn star_matches_linux() {
        assert_eq!(selector::STAR, 0x0023_0010_0000_0000);
    }

    #[test]
    fn direct_map_round_trip() {
        assert_eq!(virt_to_phys(phys_to_virt(0x1234_5000)), 0x1234_5000);
    }
}
