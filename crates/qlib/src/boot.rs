//! Boot protocol: what the host prepares before the first guest instruction.
//!
//! The host (qvisor) builds everything trusted and fixed before the guest
//! starts — page tables, GDT, IDT, TSS, MSRs, the kernel image in memory — so
//! the guest executes as few supervisor instructions as possible at boot
//! (each one is emulated on hosts without VMX/SVM). It then writes
//! [`BootParams`] at [`crate::layout::BOOT_PARAMS_PA`] and the first process's
//! argv/envp in the [`InitBlock`].
//!
//! Every vCPU starts at [`KernelHeader::entry`] in 64-bit supervisor mode with
//! `RDI` = vCPU index, `RSI` = direct-map address of `BootParams`, `RSP` = top of
//! that vCPU's boot stack, and GS base = its per-CPU area.

/// "QKERNEL\0" in little-endian.
pub const KERNEL_MAGIC: u64 = u64::from_le_bytes(*b"QKERNEL\0");
/// "QBOOTPRM" in little-endian.
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"QBOOTPRM");
/// Version of the host/guest boot ABI. Bump on any incompatible change to
/// this module, `hcall`, `stats` or `layout`.
pub const ABI_VERSION: u32 = 2;
/// Name of the ELF section that holds the [`KernelHeader`].
pub const KERNEL_HEADER_SECTION: &str = ".qk_header";

/// Header the guest kernel image carries in its `.qk_header` section; the host
/// reads it to learn the entry points it must program into the vCPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelHeader {
    /// [`KERNEL_MAGIC`].
    pub magic: u64,
    /// [`ABI_VERSION`] the kernel was built with.
    pub abi_version: u32,
    /// Bit mask of exception vectors 0..31 that run on IST1 (NMI, #DF, #MC).
    pub ist1_vectors: u32,
    /// Virtual address every vCPU starts at.
    pub entry: u64,
    /// Virtual address of the SYSCALL entry (the LSTAR MSR).
    pub syscall_entry: u64,
    /// Virtual address of 256 little-endian u64 handler addresses, one per IDT vector.
    pub vector_table: u64,
}

const _: () = assert!(core::mem::size_of::<KernelHeader>() == 40);

/// How the host's KVM runs the guest. Decides how the guest saves user FPU
/// state and whether the SYSCALL-quirk redirect can fire.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Not determined.
    Unknown = 0,
    /// Intel VMX: supervisor code runs natively.
    Vmx = 1,
    /// AMD SVM: supervisor code runs natively.
    Svm = 2,
    /// `kvm_pvm` in compat mode: every supervisor instruction is emulated,
    /// user SYSCALL arrives as a #PF at LSTAR (see docs/platform.md).
    Pvm = 3,
}

impl Flavour {
    /// Decodes a raw value written by the host.
    pub const fn from_raw(v: u32) -> Flavour {
        match v {
            1 => Flavour::Vmx,
            2 => Flavour::Svm,
            3 => Flavour::Pvm,
            _ => Flavour::Unknown,
        }
    }

    /// Lower-case name, as printed by `quark check`.
    pub const fn name(self) -> &'static str {
        match self {
            Flavour::Unknown => "unknown",
            Flavour::Vmx => "vmx",
            Flavour::Svm => "svm",
            Flavour::Pvm => "pvm",
        }
    }
}

/// Boot-time flags in [`BootParams::flags`].
pub mod flags {
    /// Verbose kernel logging (`quark run --debug`).
    pub const DEBUG: u64 = 1 << 0;
    /// Boot, report platform facts through the log, and power off without
    /// starting a program (`quark check`).
    pub const CHECK_ONLY: u64 = 1 << 1;
    /// Use XSAVE/XRSTOR with `xcr0` for user FPU state (VMX/SVM hosts);
    /// otherwise FXSAVE/FXRSTOR.
    pub const USE_XSAVE: u64 = 1 << 2;
    /// Enable the test-only `quark_test` syscall (planted panic, etc.).
    pub const TEST_HOOKS: u64 = 1 << 3;
    /// The container root is served read-only (`--read-only`).
    pub const READ_ONLY_ROOT: u64 = 1 << 4;
    /// Log every system call (`quark-sandbox --strace`).
    pub const STRACE: u64 = 1 << 5;
}

/// Parameters the host writes at [`crate::layout::BOOT_PARAMS_PA`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BootParams {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// Number of vCPUs.
    pub vcpu_count: u32,
    /// Bytes of guest RAM (the memfd size).
    pub mem_size: u64,
    /// Guest-physical address of vCPU 0's area; vCPU `i` is at
    /// `vcpu_area_pa + i * layout::vcpu_area::SIZE`.
    pub vcpu_area_pa: u64,
    /// Guest-physical address of the kernel's template PML4 (upper half only).
    pub kernel_pml4_pa: u64,
    /// First free guest-physical byte (page aligned). Memory from here to
    /// `free_end` is unused and reads as zero.
    pub free_start: u64,
    /// End of free memory (page aligned).
    pub free_end: u64,
    /// [`flags`] bits.
    pub flags: u64,
    /// [`Flavour`] as u32.
    pub flavour: u32,
    /// Most tasks (threads and processes) the sandbox may hold.
    pub pids_limit: u32,
    /// XCR0 to load when `flags::USE_XSAVE` is set.
    pub xcr0: u64,
    /// Bytes needed to save user FPU state (512 for FXSAVE, CPUID.0xD for XSAVE).
    pub fpu_state_size: u64,
    /// Guest TSC frequency in kHz.
    pub tsc_khz: u64,
    /// Nanoseconds = ((tsc - tsc_base) * tsc_mult) >> tsc_shift.
    pub tsc_mult: u64,
    /// See `tsc_mult`.
    pub tsc_shift: u32,
    /// Padding.
    pub _pad0: u32,
    /// Guest TSC value at `monotonic_base_ns` / `realtime_base_ns`.
    pub tsc_base: u64,
    /// Host CLOCK_MONOTONIC at `tsc_base`.
    pub monotonic_base_ns: u64,
    /// Host CLOCK_REALTIME at `tsc_base`.
    pub realtime_base_ns: u64,
    /// Host entropy for the guest's random number generator.
    pub seed: [u8; 32],
    /// Bytes of memory user programs may use (the sandbox memory limit).
    pub user_mem_limit: u64,
    /// Guest-physical address of the queued-host-call rings (page aligned;
    /// layout in [`crate::hostq`]), created by the host before boot.
    pub hostq_pa: u64,
    /// Bytes of the hostq area (`hostq::area_size(vcpu_count)`).
    pub hostq_size: u64,
}

const _: () = assert!(core::mem::size_of::<BootParams>() == 192);

/// Header of the init block at [`crate::layout::INIT_BLOCK_PA`]: NUL-terminated
/// strings follow it, in order argv[0..argc], envp[0..envc], cwd, hostname.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InitBlock {
    /// Number of argv strings.
    pub argc: u32,
    /// Number of environment strings.
    pub envc: u32,
    /// Bytes of string data following this header.
    pub strings_len: u32,
    /// Initial uid of the first process.
    pub uid: u32,
    /// Initial gid of the first process.
    pub gid: u32,
    /// Padding.
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<InitBlock>() == 24);

/// Computes `(mult, shift)` so that `ns = (ticks * mult) >> shift` for a
/// clock of `khz` kHz, without floating point. `mult` stays below 2^63 so the
/// 128-bit product never overflows for 2^64 ticks.
pub const fn clock_mult_shift(khz: u64) -> (u64, u32) {
    // ns per tick = 1e6 / khz. Choose the largest shift that keeps mult < 2^32,
    // leaving ample headroom in a u128 product.
    let mut shift = 32u32;
    loop {
        let mult = ((1_000_000u128 << shift) / khz as u128) as u64;
        if mult < (1u64 << 32) || shift == 0 {
            return (mult, shift);
        }
        shift -= 1;
    }
}

/// Converts TSC ticks to nanoseconds with a `(mult, shift)` pair.
#[inline(always)]
pub const fn ticks_to_ns(ticks: u64, mult: u64, shift: u32) -> u64 {
    ((ticks as u128 * mult as u128) >> shift) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mult_shift_is_accurate() {
        for khz in [1_000u64, 2_100_000, 2_994_372, 3_700_000, 100_000] {
            let (mult, shift) = clock_mult_shift(khz);
            let one_second_ticks = khz * 1000;
            let ns = ticks_to_ns(one_second_ticks, mult, shift);
            assert!((ns as i64 - 1_000_000_000).abs() < 1_000, "{khz} kHz: {ns}");
            // A day of ticks stays accurate to a millisecond.
            let day = ticks_to_ns(one_second_ticks * 86_400, mult, shift);
            assert!((day as i64 - 86_400_000_000_000).abs() < 1_000_000, "{khz}: {day}");
        }
    }

    #[test]
    fn flavour_round_trip() {
        for f in [Flavour::Unknown, Flavour::Vmx, Flavour::Svm, Flavour::Pvm] {
            assert_eq!(Flavour::from_raw(f as u32), f);
        }
        assert_eq!(Flavour::from_raw(99), Flavour::Unknown);
    }
}
