//! The CPUID the guest sees. It must match what the guest kernel saves and
//! restores: on hosts that emulate supervisor code XGETBV/XSAVE cannot run in
//! the guest kernel, so XSAVE and everything that needs it (AVX, AVX-512,
//! AMX) is hidden and user FPU state is saved with FXSAVE; on VMX/SVM hosts
//! the guest uses XSAVE with the features KVM offers.

use crate::kvm::ioctl::CpuidEntry;
use qlib::boot::Flavour;

/// The outcome of filtering: entries for KVM_SET_CPUID2 plus what the guest
/// kernel must know.
pub struct GuestCpuid {
    pub entries: Vec<CpuidEntry>,
    /// Use XSAVE (with `xcr0`) for user FPU state.
    pub use_xsave: bool,
    pub xcr0: u64,
    /// Bytes of user FPU state.
    pub fpu_state_size: u64,
}

const LEAF1_ECX_XSAVE: u32 = 1 << 26;
const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
const LEAF1_ECX_AVX: u32 = 1 << 28;
const LEAF1_ECX_F16C: u32 = 1 << 29;
const LEAF1_ECX_FMA: u32 = 1 << 12;
const LEAF1_ECX_X2APIC: u32 = 1 << 21;
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 7 EBX bits that need XSAVE-managed state: AVX2, AVX-512 family.
const LEAF7_EBX_XSAVE_DEPENDENT: u32 =
    (1 << 5) | (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
/// Leaf 7 ECX bits that need XSAVE-managed state: AVX-512 VBMI etc., VAES, VPCLMULQDQ, PKU/OSPKE.
const LEAF7_ECX_XSAVE_DEPENDENT: u32 =
    (1 << 1) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 14);
/// Leaf 7 EDX bits: AVX-512 4VNNIW/4FMAPS, AMX.
const LEAF7_EDX_XSAVE_DEPENDENT: u32 = (1 << 2) | (1 << 3) | (1 << 8) | (1 << 22) | (1 << 24) | (1 << 25);

/// Filters KVM's supported CPUID for vCPU `id` on a host of `flavour`.
pub fn guest_cpuid(supported: &[CpuidEntry], id: u32, flavour: Flavour) -> GuestCpuid {
    let hide_xsave = !matches!(flavour, Flavour::Vmx | Flavour::Svm);
    let mut entries = Vec::with_capacity(supported.len());
    let mut xcr0 = 0u64;
    let mut xsave_size = 512u64;
    for e in supported {
        let mut e = *e;
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x00ff_ffff) | (id << 24);
                e.ecx |= LEAF1_ECX_X2APIC;
                // The guest programs the LAPIC timer in one-shot mode.
                e.ecx &= !LEAF1_ECX_TSC_DEADLINE;
                if hide_xsave {
                    e.ecx &= !(LEAF1_ECX_XSAVE | LEAF1_ECX_OSXSAVE | LEAF1_ECX_AVX | LEAF1_ECX_F16C | LEAF1_ECX_FMA);
                }
            }
            7 if e.index == 0 && hide_xsave => {
                e.ebx &= !LEAF7_EBX_XSAVE_DEPENDENT;
                e.ecx &= !LEAF7_ECX_XSAVE_DEPENDENT;
                e.edx &= !LEAF7_EDX_XSAVE_DEPENDENT;
            }
            0xb | 0x1f => e.edx = id,
            0xd => {
                if hide_xsave {
                    continue;
                }
                if e.index == 0 {
                    xcr0 = (e.eax as u64) | ((e.edx as u64) << 32);
                    // Only x87, SSE, AVX: larger components (AVX-512, AMX)
                    // would need larger per-task buffers; enable when used.
                    xcr0 &= 0b111;
                    xsave_size = e.ebx.max(576) as u64;
                }
            }
            _ => {}
        }
        entries.push(e);
    }
    GuestCpuid {
        entries,
        use_xsave: !hide_xsave && xcr0 & 0b11 == 0b11,
        xcr0,
        fpu_state_size: if hide_xsave { 512 } else { xsave_size },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidEntry {
        CpuidEntry { function, index, flags: 0, eax, ebx, ecx, edx, padding: [0; 3] }
    }

    #[test]
    fn pvm_hides_xsave_and_avx() {
        let sup = [
            leaf(1, 0, 0, 0x0100_0800, LEAF1_ECX_XSAVE | LEAF1_ECX_AVX | 1, 0),
            leaf(7, 0, 0, 1 << 5, 0, 0),
            leaf(0xd, 0, 7, 832, 0, 0),
        ];
        let g = guest_cpuid(&sup, 3, Flavour::Pvm);
        assert!(!g.use_xsave);
        assert_eq!(g.fpu_state_size, 512);
        let l1 = g.entries.iter().find(|e| e.function == 1).unwrap();
        assert_eq!(l1.ecx & (LEAF1_ECX_XSAVE | LEAF1_ECX_AVX), 0);
        assert_eq!(l1.ecx & 1, 1, "unrelated bits survive");
        assert_eq!(l1.ebx >> 24, 3, "APIC id is the vCPU index");
        assert_eq!(g.entries.iter().find(|e| e.function == 7).unwrap().ebx & (1 << 5), 0);
        assert!(g.entries.iter().all(|e| e.function != 0xd));
    }

    #[test]
    fn vmx_keeps_xsave() {
        let sup = [leaf(1, 0, 0, 0, LEAF1_ECX_XSAVE | LEAF1_ECX_AVX, 0), leaf(0xd, 0, 0x2e7, 2696, 0, 0)];
        let g = guest_cpuid(&sup, 0, Flavour::Vmx);
        assert!(g.use_xsave);
        assert_eq!(g.xcr0, 0b111);
        assert_eq!(g.fpu_state_size, 2696);
    }
}
