//! Signals. Until handlers exist, a fault signal terminates the process with
//! the signal as its status, after a log line naming the fault.

use super::ExitStatus;
use crate::arch::x86_64::frame::TrapFrame;
use crate::log::Hex;

/// Delivers a synchronous fault signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
/// SIGTRAP) raised by the instruction at `f.rip`; `addr` is the faulting
/// address where it applies.
pub fn force_fault(f: &TrapFrame, sig: u32, addr: u64) -> ! {
    crate::klog!(
        crate::log::level::WARN,
        "pid ",
        super::current().process.pid,
        ": fatal signal ",
        sig,
        " at rip ",
        Hex(f.rip),
        " addr ",
        Hex(addr),
        " (vector ",
        f.vector,
        ", error ",
        Hex(f.error),
        ")"
    );
    super::exit_process(ExitStatus::Signaled(sig))
}
