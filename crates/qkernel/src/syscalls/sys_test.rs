//! `quark_test`: a system call that exists only when the sandbox runs with
//! test hooks enabled (`quark-sandbox --test-hooks`, used by the test suite).
//! Otherwise it returns ENOSYS like any unknown number. It lets tests plant
//! failures that no correct program can cause: a guest kernel panic, a
//! supervisor-mode hang, and a VMM call naming memory outside guest RAM.

use super::SysResult;
use crate::arch::x86_64::frame::TrapFrame;
use qlib::hcall::{Call, GuestIovec};
use qlib::linux::Errno;

/// The number, far above every Linux system call.
pub const NR_QUARK_TEST: u64 = 0x5154_0000;

/// Operations (first argument).
pub mod op {
    /// Panic in the guest kernel.
    pub const PANIC: u64 = 1;
    /// Spin forever in supervisor mode with interrupts off.
    pub const HANG: u64 = 2;
    /// Ask the host to write from a guest-physical range beyond guest RAM;
    /// returns the host's answer (EFAULT expected).
    pub const BAD_HCALL: u64 = 3;
    /// Make a NOP VMM call (measures the round trip).
    pub const NOP_HCALL: u64 = 4;
    /// Ask the VMM to make a host system call its seccomp filter forbids.
    pub const FORBIDDEN_HOST_SYSCALL: u64 = 5;
    /// Make a no-op host call through the queue (measures the round trip;
    /// compare NOP_HCALL).
    pub const NOP_HOSTQ: u64 = 6;
    /// When (CLOCK_MONOTONIC ns) a task parked in a queued host call last
    /// resumed with its completion (the wake-latency test).
    pub const LAST_HOSTQ_WAKE: u64 = 7;
    /// Checks the kernel's lock primitives on a private lock (returns 0, or
    /// the number of the first check that failed).
    pub const LOCK_SELFTEST: u64 = 8;
}

/// The lock checks behind [`op::LOCK_SELFTEST`]: a failed `try_lock` must
/// leave a held lock held (it once built and dropped a guard, releasing the
/// lock of another vCPU: run-queue corruption and lost wake-ups), and the
/// guards must release what they took.
fn lock_selftest() -> u64 {
    use crate::sync::SpinLock;
    let l = SpinLock::new(0u32);
    let held = l.lock();
    if l.try_lock().is_some() {
        return 1; // a held lock was taken again
    }
    if l.try_lock().is_some() {
        return 2; // the failed try_lock above released the lock
    }
    drop(held);
    let Some(mut g) = l.try_lock() else {
        return 3; // a free lock could not be taken
    };
    *g += 1;
    if l.try_lock().is_some() {
        return 4; // a lock held through try_lock was taken again
    }
    drop(g);
    if *l.lock() != 1 {
        return 5; // the guard did not reach the data
    }
    0
}

pub fn quark_test(f: &mut TrapFrame) -> SysResult {
    if crate::boot::params().flags & qlib::boot::flags::TEST_HOOKS == 0 {
        return Err(Errno::ENOSYS);
    }
    match f.rdi {
        op::PANIC => panic!("planted test panic (quark_test PANIC)"),
        op::HANG => loop {
            core::hint::spin_loop();
        },
        op::BAD_HCALL => {
            let bogus = GuestIovec { gpa: crate::boot::params().mem_size + 0x1000, len: 16 };
            crate::hcall::write_stdio(1, core::slice::from_ref(&bogus))
        }
        op::NOP_HCALL => Ok(crate::hcall::call(Call::Nop) as u64),
        op::NOP_HOSTQ => match crate::hostq::call(qlib::hostq::op::NOP, &[0; 8], false, crate::hostq::Expect::Soon) {
            Some(c) => Ok(c.resp[0]),
            None => Err(Errno::ENOSYS),
        },
        op::LAST_HOSTQ_WAKE => Ok(crate::hostq::last_wake_ns()),
        op::LOCK_SELFTEST => Ok(lock_selftest()),
        op::FORBIDDEN_HOST_SYSCALL => {
            crate::hcall::page().args[0] = qlib::hcall::test_op::FORBIDDEN_SYSCALL;
            crate::hcall::call_result(Call::Test)
        }
        _ => Err(Errno::EINVAL),
    }
}
