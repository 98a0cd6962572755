//! futex(2).

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::read_user;
use crate::task::futex::{self, op};
use qlib::linux::types::Timespec;
use qlib::linux::Errno;

pub fn futex(f: &mut TrapFrame) -> SysResult {
    let [uaddr, fop, val, utime, uaddr2, val3] = args(f);
    let private = fop & op::PRIVATE != 0;
    let cmd = fop & op::CMD_MASK;
    let realtime = fop & op::CLOCK_REALTIME != 0;
    let val = val as u32;
    // FUTEX_CLOCK_REALTIME is accepted only by the ops that take an absolute
    // deadline (Linux returns ENOSYS for the others).
    if realtime && !matches!(cmd, op::WAIT_BITSET | op::WAIT_REQUEUE_PI | op::LOCK_PI2) {
        return Err(Errno::ENOSYS);
    }
    match cmd {
        op::WAIT | op::WAIT_BITSET => {
            let bitset = if cmd == op::WAIT { op::BITSET_MATCH_ANY } else { val3 as u32 };
            let deadline = if utime != 0 {
                let ts: Timespec = read_user(utime)?;
                let ns = ts.to_ns().ok_or(Errno::EINVAL)?;
                Some(if cmd == op::WAIT {
                    // Relative timeout on the monotonic clock.
                    crate::time::monotonic_ns().saturating_add(ns)
                } else if realtime {
                    // Absolute realtime deadline, converted to monotonic.
                    let now_rt = crate::time::realtime_ns();
                    crate::time::monotonic_ns().saturating_add(ns.saturating_sub(now_rt))
                } else {
                    ns
                })
            } else {
                None
            };
            futex::wait(uaddr, val, private, bitset, deadline)
        }
        op::WAKE => futex::wake(uaddr, val, private, op::BITSET_MATCH_ANY),
        op::WAKE_BITSET => futex::wake(uaddr, val, private, val3 as u32),
        op::REQUEUE => futex::requeue(uaddr, uaddr2, val, utime as u32, None, private),
        op::CMP_REQUEUE => futex::requeue(uaddr, uaddr2, val, utime as u32, Some(val3 as u32), private),
        op::WAKE_OP => futex::wake_op(uaddr, val, uaddr2, utime as u32, val3 as u32, private),
        // Priority inheritance is not offered; glibc falls back.
        op::LOCK_PI | op::UNLOCK_PI | op::TRYLOCK_PI | op::WAIT_REQUEUE_PI | op::CMP_REQUEUE_PI | op::LOCK_PI2 => {
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::ENOSYS),
    }
}
