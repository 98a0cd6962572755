//! Privileged and special CPU instructions. The only module (with `entry.rs`,
//! `usercopy.rs` and `apic.rs`) that contains inline assembly.
//!
//! Every instruction here is allowed in supervisor mode on all supported
//! hosts; on compat-mode PVM hosts each is emulated (docs/platform.md).
//! Never add SSE/x87, POPCNT, CRC32, XGETBV, INT n or INT3.

use core::arch::asm;

/// IA32_FS_BASE.
pub const MSR_FS_BASE: u32 = 0xc000_0100;
/// IA32_GS_BASE.
pub const MSR_GS_BASE: u32 = 0xc000_0101;
/// IA32_KERNEL_GS_BASE (the user GS base while in the kernel).
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this vCPU (the host programs the ones we use).
#[inline(always)]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists; RDMSR has no memory effects.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it; the caller owns the
/// consequences (e.g. FS base of the current task).
#[inline(always)]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// Sets the user FS base (the TLS pointer) of this vCPU.
#[inline(always)]
pub fn set_fs_base(v: u64) {
    // SAFETY: FS_BASE exists on every x86-64 CPU; a non-canonical value would
    // #GP, so callers pass values checked to be canonical user addresses.
    unsafe { wrmsr(MSR_FS_BASE, v) }
}

/// Sets the user GS base (held in KERNEL_GS_BASE while in the kernel).
#[inline(always)]
pub fn set_user_gs_base(v: u64) {
    // SAFETY: as for set_fs_base; SWAPGS on return to user makes it current.
    unsafe { wrmsr(MSR_KERNEL_GS_BASE, v) }
}

/// The faulting address of the last #PF.
#[inline(always)]
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The current page-table root.
#[inline(always)]
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Switches to another page-table root.
///
/// # Safety
/// `pml4_pa` must be a valid PML4 whose upper half maps the kernel exactly as
/// the current one does.
#[inline(always)]
pub unsafe fn write_cr3(pml4_pa: u64) {
    // SAFETY: upheld by the caller.
    unsafe { asm!("mov cr3, {}", in(reg) pml4_pa, options(nostack, preserves_flags)) };
}

/// Invalidates the TLB entry of one page on this vCPU.
#[inline(always)]
pub fn invlpg(va: u64) {
    // SAFETY: INVLPG only drops a cached translation.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

// The one place the kernel halts. `qk_idle_hlt` labels the HLT so the
// interrupt entry can recognise a frame that stopped right before it.
core::arch::global_asm!(
    r#"
    .text
    .balign 16
    .globl qk_wait_for_interrupt
    .globl qk_idle_hlt
qk_wait_for_interrupt:
    sti
qk_idle_hlt:
    hlt
    cli
    ret
"#,
    options(att_syntax)
);

extern "C" {
    fn qk_wait_for_interrupt();
    static qk_idle_hlt: u8;
}

/// Enables interrupts and halts until one arrives; returns with interrupts
/// disabled.
///
/// `sti; hlt` is atomic on hardware: STI's one-instruction interrupt shadow
/// makes an interrupt pending at STI end the HLT instead of arriving before
/// it. An emulator need not honour the shadow (supervisor code is emulated on
/// kvm_pvm hosts), and an interrupt taken between the two would leave the HLT
/// to sleep through the wake-up it carried: with no tick while idle, for
/// ever. [`skip_halt`] closes that window whichever way the host behaves.
pub fn wait_for_interrupt() {
    // SAFETY: the routine only toggles IF around HLT; the handlers that may
    // run are ours and preserve all state.
    unsafe { qk_wait_for_interrupt() };
}

/// Called by the interrupt entry with the interrupted RIP (supervisor mode):
/// if it is the idle HLT, an interrupt arrived between STI and HLT, and the
/// HLT must not run. Returns the RIP to resume at (past the one-byte HLT).
#[inline(always)]
pub fn skip_halt(rip: u64) -> u64 {
    // Only the label's address is taken (no read of the extern static).
    let hlt = core::ptr::addr_of!(qk_idle_hlt) as u64;
    if rip == hlt {
        rip + 1
    } else {
        rip
    }
}

/// Disables interrupts.
#[inline(always)]
pub fn cli() {
    // SAFETY: only affects interrupt delivery.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// Spin-wait hint.
#[inline(always)]
pub fn pause() {
    // SAFETY: PAUSE is a hint with no architectural effect.
    unsafe { asm!("pause", options(nomem, nostack, preserves_flags)) };
}

/// Calls the VMM: `out %eax, $port`. The request is in this vCPU's VMM-call
/// page; the compiler must not cache memory across the call.
#[inline(always)]
pub fn vmm_call(port: u16, call: u32) {
    // SAFETY: the host handles the exit and only writes this vCPU's VMM-call
    // page (declared by not using `nomem`).
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") call, options(nostack, preserves_flags)) };
}

/// Saves the user FPU/SSE state (FXSAVE64) into a 16-byte aligned 512-byte area.
///
/// # Safety
/// `area` must be valid for 512 bytes of writes and 16-byte aligned.
#[inline(always)]
pub unsafe fn fxsave(area: *mut u8) {
    // SAFETY: upheld by the caller. FXSAVE is emulated correctly on all hosts.
    unsafe { asm!("fxsave64 [{}]", in(reg) area, options(nostack, preserves_flags)) };
}

/// Restores user FPU/SSE state saved by [`fxsave`].
///
/// # Safety
/// `area` must hold a valid FXSAVE image, 16-byte aligned.
#[inline(always)]
pub unsafe fn fxrstor(area: *const u8) {
    // SAFETY: upheld by the caller.
    unsafe { asm!("fxrstor64 [{}]", in(reg) area, options(nostack, preserves_flags)) };
}

/// Stops this vCPU forever (interrupts off). Used after fatal errors once the
/// host has been told.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI;HLT parks the vCPU; nothing else is affected.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// The current instruction pointer (for panic reports).
#[inline(always)]
pub fn instruction_pointer() -> u64 {
    let v: u64;
    // SAFETY: reads RIP only.
    unsafe { asm!("lea {}, [rip]", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The current stack pointer. The kernel keeps no frame pointers; the host
/// scans the stack from here for return addresses in panic reports.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let v: u64;
    // SAFETY: reads RSP only.
    unsafe { asm!("mov {}, rsp", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads the x2APIC/other MSR used by the VMX path; kept here so every MSR
/// access is in this module.
///
/// # Safety
/// See [`wrmsr`].
#[inline(always)]
pub unsafe fn xsetbv(xcr0: u64) {
    // SAFETY: only executed when the host set flags::USE_XSAVE (VMX/SVM hosts,
    // where XSETBV is native), with the XCR0 the host computed.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Saves user extended state with XSAVE64 (VMX/SVM hosts only).
///
/// # Safety
/// `area` must be 64-byte aligned, large enough for XCR0's components, and
/// the host must have set `flags::USE_XSAVE`.
#[inline(always)]
pub unsafe fn xsave(area: *mut u8, mask: u64) {
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("xsave64 [{}]", in(reg) area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Restores user extended state saved by [`xsave`].
///
/// # Safety
/// As for [`xsave`], and `area` must hold a valid XSAVE image.
#[inline(always)]
pub unsafe fn xrstor(area: *const u8, mask: u64) {
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("xrstor64 [{}]", in(reg) area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack, preserves_flags))
    };
}
