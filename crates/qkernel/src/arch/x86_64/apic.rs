//! The local APIC in x2APIC mode (MSR access). The host enables x2APIC and
//! programs SVR, the timer LVT (one-shot, [`TIMER_VECTOR`]) and the divide
//! register (÷1) before boot, so the guest only arms the timer and signals EOI.
//! KVM's APIC timer counts at 1 GHz by default (1 ns per count at ÷1).

use super::cpu::wrmsr;

/// Vector of the LAPIC timer interrupt.
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector of the reschedule/wake-up IPI (and host kicks).
pub const WAKE_VECTOR: u8 = 0x21;
/// Spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const MSR_X2APIC_EOI: u32 = 0x80b;
const MSR_X2APIC_ICR: u32 = 0x830;
const MSR_X2APIC_TMICT: u32 = 0x838;

/// Longest single timer period (the count register is 32 bits).
pub const MAX_ONESHOT_NS: u64 = u32::MAX as u64;

/// Arms the one-shot timer to fire after `ns` nanoseconds (clamped to
/// [1, MAX_ONESHOT_NS]); 0 disarms it.
pub fn arm_timer_ns(ns: u64) {
    let count = ns.min(MAX_ONESHOT_NS);
    // SAFETY: TMICT exists in x2APIC mode, which the host enabled.
    unsafe { wrmsr(MSR_X2APIC_TMICT, count) }
}

/// Signals end of interrupt.
pub fn eoi() {
    // SAFETY: EOI exists in x2APIC mode; writing 0 acknowledges the interrupt.
    unsafe { wrmsr(MSR_X2APIC_EOI, 0) }
}

/// Sends a fixed-mode IPI with `vector` to vCPU `cpu` (APIC id == vCPU index).
pub fn send_ipi(cpu: u32, vector: u8) {
    // SAFETY: ICR exists in x2APIC mode; fixed delivery, physical destination.
    unsafe { wrmsr(MSR_X2APIC_ICR, ((cpu as u64) << 32) | vector as u64) }
}
