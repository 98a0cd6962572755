//! Clocks, computed from the TSC with the host's calibration (no VM exit).

use crate::arch::x86_64::cpu;
use crate::boot::params;
use qlib::boot::ticks_to_ns;

/// Nanoseconds since the host's CLOCK_MONOTONIC epoch.
#[inline]
pub fn monotonic_ns() -> u64 {
    let p = params();
    let delta = cpu::rdtsc().wrapping_sub(p.tsc_base);
    p.monotonic_base_ns + ticks_to_ns(delta, p.tsc_mult, p.tsc_shift)
}

/// Nanoseconds since the Unix epoch.
#[inline]
pub fn realtime_ns() -> u64 {
    let p = params();
    let delta = cpu::rdtsc().wrapping_sub(p.tsc_base);
    p.realtime_base_ns + ticks_to_ns(delta, p.tsc_mult, p.tsc_shift)
}

/// Nanoseconds since this sandbox booted.
#[inline]
pub fn uptime_ns() -> u64 {
    monotonic_ns() - params().monotonic_base_ns
}
