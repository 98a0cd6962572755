//! Clocks, sleeps, interval timers and POSIX timers.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{read_user, write_user};
use crate::task::signal::PosixTimer;
use crate::task::timer::{self, Action};
use crate::task::wait::{sleep_until, WaitResult};
use crate::task::{self, pid};
use crate::time;
use alloc::sync::Arc;
use qlib::linux::consts::clock::*;
use qlib::linux::consts::signal::{NSIG, SIGALRM};
use qlib::linux::types::{Timespec, Timeval};
use qlib::linux::Errno;

use crate::task::timer::{process_cpu_ns, thread_cpu_ns, CpuItimer};

/// Resolution of the *_COARSE clocks: they read the time of the last 4 ms
/// tick (Linux's jiffy at HZ=250); the vDSO does the same.
pub const COARSE_NS: u64 = 4_000_000;

/// Current time of `clk` in nanoseconds.
pub fn clock_now(clk: u64) -> Result<u64, Errno> {
    let coarse = |ns: u64| ns - ns % COARSE_NS;
    Ok(match clk {
        CLOCK_REALTIME | CLOCK_REALTIME_ALARM => time::realtime_ns(),
        CLOCK_REALTIME_COARSE => coarse(time::realtime_ns()),
        CLOCK_TAI => time::realtime_ns() + 37_000_000_000,
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_BOOTTIME | CLOCK_BOOTTIME_ALARM => time::monotonic_ns(),
        CLOCK_MONOTONIC_COARSE => coarse(time::monotonic_ns()),
        CLOCK_PROCESS_CPUTIME_ID => process_cpu_ns(task::process()),
        CLOCK_THREAD_CPUTIME_ID => thread_cpu_ns(task::current()),
        _ => return Err(Errno::EINVAL),
    })
}

/// Converts an absolute time on `clk` to a monotonic deadline.
fn to_monotonic(clk: u64, abs: u64) -> Result<u64, Errno> {
    let now = clock_now(clk)?;
    Ok(time::monotonic_ns().saturating_add(abs.saturating_sub(now)))
}

pub fn clock_gettime(f: &mut TrapFrame) -> SysResult {
    let ns = clock_now(f.rdi)?;
    write_user(f.rsi, &Timespec::from_ns(ns))?;
    Ok(0)
}

pub fn clock_getres(f: &mut TrapFrame) -> SysResult {
    clock_now(f.rdi)?;
    if f.rsi != 0 {
        let res = if matches!(f.rdi, CLOCK_REALTIME_COARSE | CLOCK_MONOTONIC_COARSE) { COARSE_NS } else { 1 };
        write_user(f.rsi, &Timespec { tv_sec: 0, tv_nsec: res as i64 })?;
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

pub fn time_(f: &mut TrapFrame) -> SysResult {
    let secs = time::realtime_ns() / 1_000_000_000;
    if f.rdi != 0 {
        write_user(f.rdi, &secs)?;
    }
    Ok(secs)
}

/// Sleeps until a monotonic deadline; on a signal writes the remaining time
/// to `rem` (when given) and returns EINTR.
fn sleep(deadline: u64, rem: u64) -> SysResult {
    match sleep_until(deadline) {
        WaitResult::Interrupted => {
            if rem != 0 {
                let left = deadline.saturating_sub(time::monotonic_ns());
                write_user(rem, &Timespec::from_ns(left))?;
            }
            Err(Errno::EINTR)
        }
        _ => Ok(0),
    }
}

pub fn nanosleep(f: &mut TrapFrame) -> SysResult {
    let req: Timespec = read_user(f.rdi)?;
    let ns = req.to_ns().ok_or(Errno::EINVAL)?;
    sleep(time::monotonic_ns().saturating_add(ns), f.rsi)
}

pub fn clock_nanosleep(f: &mut TrapFrame) -> SysResult {
    let [clk, flags, req, rem, ..] = args(f);
    let t: Timespec = read_user(req)?;
    let ns = t.to_ns().ok_or(Errno::EINVAL)?;
    match clk {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME | CLOCK_TAI => {}
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::EINVAL),
    }
    if flags & TIMER_ABSTIME != 0 {
        // Absolute sleeps report no remaining time.
        sleep(to_monotonic(clk, ns)?, 0)
    } else {
        sleep(time::monotonic_ns().saturating_add(ns), rem)
    }
}

const ITIMER_REAL: u64 = 0;
const ITIMER_VIRTUAL: u64 = 1;
const ITIMER_PROF: u64 = 2;

/// Sets ITIMER_VIRTUAL or ITIMER_PROF; returns the old (value, interval).
fn set_cpu_timer(which: u64, value_ns: u64, interval_ns: u64) -> (u64, u64) {
    let p = task::process();
    let now = process_cpu_ns(p);
    let old = {
        let mut t = p.timers.lock();
        let it = if which == ITIMER_VIRTUAL { &mut t.virt } else { &mut t.prof };
        let old = (if it.deadline != 0 { it.deadline.saturating_sub(now).max(1) } else { 0 }, it.interval);
        *it = CpuItimer { deadline: if value_ns != 0 { now + value_ns } else { 0 }, interval: interval_ns };
        old
    };
    let wall = timer::cpu_timer_wall_deadline();
    if wall != 0 {
        timer::reprogram_with(wall);
    }
    old
}

fn get_cpu_timer(which: u64) -> (u64, u64) {
    let p = task::process();
    let now = process_cpu_ns(p);
    let t = p.timers.lock();
    let it = if which == ITIMER_VIRTUAL { t.virt } else { t.prof };
    (if it.deadline != 0 { it.deadline.saturating_sub(now).max(1) } else { 0 }, it.interval)
}

fn set_real_timer(p: &Arc<task::Process>, value_ns: u64, interval_ns: u64) -> (u64, u64) {
    let now = time::monotonic_ns();
    let mut t = p.timers.lock();
    let old_left = if t.real_deadline != 0 { t.real_deadline.saturating_sub(now) } else { 0 };
    let old = (old_left, t.real_interval_ns);
    if let Some(id) = t.real_armed.take() {
        timer::cancel(id);
    }
    t.real_interval_ns = interval_ns;
    if value_ns != 0 {
        t.real_deadline = now + value_ns;
        t.real_armed = Some(timer::arm(t.real_deadline, Action::RealTimer(Arc::downgrade(p))));
    } else {
        t.real_deadline = 0;
    }
    old
}

fn tv_ns(tv: &Timeval) -> Result<u64, Errno> {
    if tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1_000_000 {
        return Err(Errno::EINVAL);
    }
    Ok(tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000)
}

fn ns_tv(ns: u64) -> Timeval {
    // Round up so a running timer never reads as zero.
    let us = ns.div_ceil(1000);
    Timeval { tv_sec: (us / 1_000_000) as i64, tv_usec: (us % 1_000_000) as i64 }
}

pub fn setitimer(f: &mut TrapFrame) -> SysResult {
    let [which, new, old, ..] = args(f);
    if which > ITIMER_PROF {
        return Err(Errno::EINVAL);
    }
    let v: [Timeval; 2] = if new != 0 { read_user(new)? } else { [Timeval::default(); 2] };
    let (value, interval) = (tv_ns(&v[1])?, tv_ns(&v[0])?);
    let (left, interval) = if which == ITIMER_REAL {
        set_real_timer(task::process(), value, interval)
    } else {
        set_cpu_timer(which, value, interval)
    };
    if old != 0 {
        write_user(old, &[ns_tv(interval), ns_tv(left)])?;
    }
    Ok(0)
}

pub fn getitimer(f: &mut TrapFrame) -> SysResult {
    if f.rdi == ITIMER_VIRTUAL || f.rdi == ITIMER_PROF {
        let (left, interval) = get_cpu_timer(f.rdi);
        write_user(f.rsi, &[ns_tv(interval), ns_tv(left)])?;
        return Ok(0);
    }
    if f.rdi != ITIMER_REAL {
        return Err(Errno::EINVAL);
    }
    let p = task::process();
    let now = time::monotonic_ns();
    let t = p.timers.lock();
    let left = if t.real_deadline != 0 { t.real_deadline.saturating_sub(now) } else { 0 };
    let v = [ns_tv(t.real_interval_ns), ns_tv(left)];
    drop(t);
    write_user(f.rsi, &v)?;
    Ok(0)
}

pub fn alarm(f: &mut TrapFrame) -> SysResult {
    let (left, _) = set_real_timer(task::process(), f.rdi.min(u32::MAX as u64) * 1_000_000_000, 0);
    // Rounded to the nearest second, at least 1 when a timer was pending.
    Ok(if left == 0 { 0 } else { left.div_ceil(1_000_000_000).max(1) })
}

const SIGEV_SIGNAL: u32 = 0;
const SIGEV_NONE: u32 = 1;
const SIGEV_THREAD_ID: u32 = 4;

pub fn timer_create(f: &mut TrapFrame) -> SysResult {
    let [clk, sevp, idp, ..] = args(f);
    clock_now(clk)?;
    let (signo, value, notify, tid) = if sevp != 0 {
        // struct sigevent: sigval (8), signo (4), notify (4), tid (4), ...
        let raw: [u32; 6] = read_user(sevp)?;
        let value = raw[0] as u64 | ((raw[1] as u64) << 32);
        let (signo, notify, tid) = (raw[2], raw[3], raw[4]);
        match notify {
            SIGEV_SIGNAL | SIGEV_NONE => {}
            SIGEV_THREAD_ID => {
                let t = pid::task(tid).ok_or(Errno::EINVAL)?;
                if !Arc::ptr_eq(&t.process, task::process()) {
                    return Err(Errno::EINVAL);
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        if notify != SIGEV_NONE && (signo == 0 || signo > NSIG) {
            return Err(Errno::EINVAL);
        }
        (signo, value, notify, tid)
    } else {
        (SIGALRM, 0, SIGEV_SIGNAL, 0)
    };
    let p = task::process();
    let mut timers = p.timers.lock();
    let slot = match timers.posix.iter().position(|t| t.is_none()) {
        Some(i) => i,
        None => {
            timers.posix.push(None);
            timers.posix.len() - 1
        }
    };
    let value = if sevp == 0 { slot as u64 } else { value };
    timers.posix[slot] = Some(PosixTimer {
        clock: clk,
        signo,
        value,
        notify,
        target_tid: tid,
        deadline: 0,
        interval: 0,
        overrun: 0,
        overrun_last: 0,
        pending: false,
        generation: 0,
        armed: None,
    });
    drop(timers);
    if let Err(e) = write_user(idp, &(slot as i32)) {
        p.timers.lock().posix[slot] = None;
        return Err(e);
    }
    Ok(0)
}

fn with_timer<R>(id: u64, f: impl FnOnce(&mut PosixTimer) -> R) -> Result<R, Errno> {
    let p = task::process();
    let mut timers = p.timers.lock();
    let t = timers.posix.get_mut(id as usize).and_then(|t| t.as_mut()).ok_or(Errno::EINVAL)?;
    Ok(f(t))
}

fn remaining(t: &PosixTimer) -> [Timespec; 2] {
    let left = if t.deadline != 0 { t.deadline.saturating_sub(time::monotonic_ns()) } else { 0 };
    [Timespec::from_ns(t.interval), Timespec::from_ns(left)]
}

pub fn timer_settime(f: &mut TrapFrame) -> SysResult {
    let [id, flags, new, old, ..] = args(f);
    let v: [Timespec; 2] = read_user(new)?;
    let interval = v[0].to_ns().ok_or(Errno::EINVAL)?;
    let value = v[1].to_ns().ok_or(Errno::EINVAL)?;
    let p = task::process().clone();
    let prev = with_timer(id, |t| {
        let prev = remaining(t);
        if let Some(a) = t.armed.take() {
            timer::cancel(a);
        }
        t.generation += 1;
        t.interval = interval;
        t.overrun = 0;
        if value == 0 {
            t.deadline = 0;
            return Ok(prev);
        }
        t.deadline = if flags & TIMER_ABSTIME != 0 {
            to_monotonic(t.clock, value)?
        } else {
            time::monotonic_ns().saturating_add(value)
        };
        t.armed = Some(timer::arm(t.deadline, Action::Posix(Arc::downgrade(&p), id as usize, t.generation)));
        Ok(prev)
    })??;
    if old != 0 {
        write_user(old, &prev)?;
    }
    Ok(0)
}

pub fn timer_gettime(f: &mut TrapFrame) -> SysResult {
    let v = with_timer(f.rdi, |t| remaining(t))?;
    write_user(f.rsi, &v)?;
    Ok(0)
}

pub fn timer_getoverrun(f: &mut TrapFrame) -> SysResult {
    with_timer(f.rdi, |t| t.overrun_last as u64)
}

pub fn timer_delete(f: &mut TrapFrame) -> SysResult {
    let p = task::process();
    let mut timers = p.timers.lock();
    let slot = timers.posix.get_mut(f.rdi as usize).ok_or(Errno::EINVAL)?;
    let t = slot.take().ok_or(Errno::EINVAL)?;
    if let Some(a) = t.armed {
        timer::cancel(a);
    }
    Ok(0)
}
