//! Clocks and sleeping.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{read_user, write_user};
use crate::time;
use qlib::linux::consts::clock::*;
use qlib::linux::types::{Timespec, Timeval};
use qlib::linux::Errno;

fn clock_now(clk: u64) -> Result<u64, Errno> {
    Ok(match clk {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE | CLOCK_REALTIME_ALARM => time::realtime_ns(),
        CLOCK_TAI => time::realtime_ns() + 37_000_000_000,
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME | CLOCK_BOOTTIME_ALARM => {
            time::monotonic_ns()
        }
        // CPU-time accounting arrives with the scheduler; until then a
        // single task's CPU time is bounded by the sandbox's uptime.
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => time::uptime_ns(),
        _ => return Err(Errno::EINVAL),
    })
}

pub fn clock_gettime(f: &mut TrapFrame) -> SysResult {
    let ns = clock_now(f.rdi)?;
    write_user(f.rsi, &Timespec::from_ns(ns))?;
    Ok(0)
}

pub fn clock_getres(f: &mut TrapFrame) -> SysResult {
    clock_now(f.rdi)?;
    if f.rsi != 0 {
        write_user(f.rsi, &Timespec { tv_sec: 0, tv_nsec: 1 })?;
    }
    Ok(0)
}

pub fn gettimeofday(f: &mut TrapFrame) -> SysResult {
    let ns = time::realtime_ns();
    if f.rdi != 0 {
        write_user(
            f.rdi,
            &Timeval { tv_sec: (ns / 1_000_000_000) as i64, tv_usec: ((ns % 1_000_000_000) / 1000) as i64 },
        )?;
    }
    if f.rsi != 0 {
        // struct timezone: minutes west and DST type, both zero (UTC).
        write_user(f.rsi, &[0u32; 2])?;
    }
    Ok(0)
}

pub fn time(f: &mut TrapFrame) -> SysResult {
    let secs = time::realtime_ns() / 1_000_000_000;
    if f.rdi != 0 {
        write_user(f.rdi, &secs)?;
    }
    Ok(secs)
}

fn sleep_until(clk: u64, deadline: u64) {
    loop {
        let now = match clock_now(clk) {
            Ok(n) => n,
            Err(_) => return,
        };
        if now >= deadline {
            return;
        }
        crate::task::wait_ns(deadline - now);
    }
}

pub fn nanosleep(f: &mut TrapFrame) -> SysResult {
    let req: Timespec = read_user(f.rdi)?;
    let ns = req.to_ns().ok_or(Errno::EINVAL)?;
    let deadline = time::monotonic_ns().saturating_add(ns);
    sleep_until(CLOCK_MONOTONIC, deadline);
    Ok(0)
}

pub fn clock_nanosleep(f: &mut TrapFrame) -> SysResult {
    let [clk, flags, req, ..] = args(f);
    let t: Timespec = read_user(req)?;
    let ns = t.to_ns().ok_or(Errno::EINVAL)?;
    match clk {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME | CLOCK_TAI => {}
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::EINVAL),
    }
    let deadline = if flags & TIMER_ABSTIME != 0 { ns } else { clock_now(clk)?.saturating_add(ns) };
    sleep_until(clk, deadline);
    Ok(0)
}
