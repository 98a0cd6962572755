//! Signal system calls.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{read_user, write_user};
use crate::task::signal::{self, bit, code, SigAction, SigInfo, SigSet, SIG_DFL, SIG_IGN, UNBLOCKABLE};
use crate::task::wait::{WaitQueue, WaitResult};
use crate::task::{self, pid, Process};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use qlib::linux::consts::signal::*;
use qlib::linux::types::Timespec;
use qlib::linux::Errno;

const SIG_BLOCK: u64 = 0;
const SIG_UNBLOCK: u64 = 1;
const SIG_SETMASK: u64 = 2;

fn valid(sig: u64) -> Result<u32, Errno> {
    if sig == 0 || sig > NSIG as u64 {
        return Err(Errno::EINVAL);
    }
    Ok(sig as u32)
}

pub fn rt_sigaction(f: &mut TrapFrame) -> SysResult {
    let [sig, act, oact, size, ..] = args(f);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let sig = valid(sig)?;
    let new: Option<SigAction> = if act != 0 { Some(read_user(act)?) } else { None };
    if new.is_some() && (sig == SIGKILL || sig == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let p = task::process();
    let h = p.sighand.lock().clone();
    let old = {
        let mut h = h.lock();
        let old = h.get(sig);
        if let Some(mut a) = new {
            a.mask &= !UNBLOCKABLE;
            h.actions[(sig - 1) as usize] = a;
        }
        old
    };
    if let Some(a) = new {
        // Setting SIG_IGN (or SIG_DFL for a default-ignored signal) discards
        // pending instances.
        if a.handler == SIG_IGN || (a.handler == SIG_DFL && signal::default_action(sig) == signal::Default_::Ignore) {
            p.shared_pending.lock().discard(bit(sig));
            for t in p.threads.lock().iter() {
                t.sig.lock().pending.discard(bit(sig));
            }
        }
    }
    if oact != 0 {
        write_user(oact, &old)?;
    }
    Ok(0)
}

pub fn rt_sigprocmask(f: &mut TrapFrame) -> SysResult {
    let [how, set, oset, size, ..] = args(f);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new: Option<SigSet> = if set != 0 { Some(read_user(set)?) } else { None };
    let t = task::current();
    let old = {
        let mut s = t.sig.lock();
        let old = s.blocked;
        if let Some(n) = new {
            s.blocked = match how {
                SIG_BLOCK => old | n,
                SIG_UNBLOCK => old & !n,
                SIG_SETMASK => n,
                _ => return Err(Errno::EINVAL),
            } & !UNBLOCKABLE;
        }
        old
    };
    // Unblocking may make a pending signal deliverable.
    t.sig_flag.store(true, Ordering::Release);
    if oset != 0 {
        write_user(oset, &old)?;
    }
    Ok(0)
}

pub fn rt_sigreturn(f: &mut TrapFrame) -> SysResult {
    signal::sigreturn(f)
}

pub fn rt_sigpending(f: &mut TrapFrame) -> SysResult {
    if f.rsi != 8 {
        return Err(Errno::EINVAL);
    }
    let t = task::current();
    let set = {
        let s = t.sig.lock();
        (s.pending.set | t.process.shared_pending.lock().set) & s.blocked
    };
    write_user(f.rdi, &set)?;
    Ok(0)
}

pub fn sigaltstack(f: &mut TrapFrame) -> SysResult {
    let [ss, oss, ..] = args(f);
    let t = task::current();
    let (sp, size, flags) = t.sig.lock().altstack;
    let on = flags & signal::SS_DISABLE == 0 && size != 0 && f.rsp > sp && f.rsp <= sp + size;
    if ss != 0 {
        if on {
            return Err(Errno::EPERM);
        }
        let new: [u64; 3] = read_user(ss)?;
        let nflags = new[1] as u32;
        const SS_AUTODISARM: u32 = 1 << 31;
        if nflags & !(signal::SS_DISABLE | SS_AUTODISARM) != 0 {
            return Err(Errno::EINVAL);
        }
        if nflags & signal::SS_DISABLE != 0 {
            t.sig.lock().altstack = (0, 0, signal::SS_DISABLE);
        } else {
            if new[2] < 2048 {
                return Err(Errno::ENOMEM);
            }
            t.sig.lock().altstack = (new[0], new[2], 0);
        }
    }
    if oss != 0 {
        let oflags = if size == 0 || flags & signal::SS_DISABLE != 0 {
            signal::SS_DISABLE
        } else if on {
            signal::SS_ONSTACK
        } else {
            0
        };
        write_user(oss, &[sp, oflags as u64, size])?;
    }
    Ok(0)
}

fn sender_info(sig: u32, code: i32) -> SigInfo {
    let p = task::process();
    SigInfo::user(sig, code, p.pid, p.creds.lock().uid)
}

/// Whether the caller may signal `target` (same real/effective uid, or CAP_KILL).
fn may_signal(target: &Process) -> bool {
    let me = task::process().creds.lock().clone();
    if me.has(task::cap::KILL) {
        return true;
    }
    let t = target.creds.lock();
    me.euid == t.uid || me.euid == t.suid || me.uid == t.uid || me.uid == t.suid
}

fn kill_process(p: &Arc<Process>, sig: u32) -> Result<(), Errno> {
    if !may_signal(p) {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        signal::send_to_process(p, sig, sender_info(sig, code::SI_USER));
    }
    Ok(())
}

pub fn kill(f: &mut TrapFrame) -> SysResult {
    let pid = f.rdi as i32;
    let sig = f.rsi;
    if sig > NSIG as u64 {
        return Err(Errno::EINVAL);
    }
    let sig = sig as u32;
    if pid > 0 {
        let p = pid::process(pid as u32).ok_or(Errno::ESRCH)?;
        if p.exit.lock().reaped {
            return Err(Errno::ESRCH);
        }
        kill_process(&p, sig)?;
        return Ok(0);
    }
    let me = task::process().clone();
    let targets: alloc::vec::Vec<Arc<Process>> = match pid {
        0 => {
            let g = me.pgid.load(Ordering::Relaxed);
            pid::processes().into_iter().filter(|p| p.pgid.load(Ordering::Relaxed) == g).collect()
        }
        -1 => pid::processes().into_iter().filter(|p| p.pid != 1 && p.pid != me.pid).collect(),
        _ => {
            let g = (-(pid as i64)) as u32;
            pid::processes().into_iter().filter(|p| p.pgid.load(Ordering::Relaxed) == g).collect()
        }
    };
    let mut sent = false;
    let mut denied = false;
    for p in targets {
        if p.exit.lock().zombie {
            continue;
        }
        match kill_process(&p, sig) {
            Ok(()) => sent = true,
            Err(_) => denied = true,
        }
    }
    if sent {
        Ok(0)
    } else if denied {
        Err(Errno::EPERM)
    } else {
        Err(Errno::ESRCH)
    }
}

fn thread_kill(tgid: Option<u32>, tid: u64, sig: u64) -> SysResult {
    if tid as i32 <= 0 || sig > NSIG as u64 {
        return Err(Errno::EINVAL);
    }
    let t = pid::task(tid as u32).ok_or(Errno::ESRCH)?;
    if tgid.is_some_and(|g| t.process.pid != g) {
        return Err(Errno::ESRCH);
    }
    if !may_signal(&t.process) {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        signal::send_to_task(&t, sig as u32, sender_info(sig as u32, code::SI_TKILL));
    }
    Ok(0)
}

pub fn tkill(f: &mut TrapFrame) -> SysResult {
    thread_kill(None, f.rdi, f.rsi)
}

pub fn tgkill(f: &mut TrapFrame) -> SysResult {
    if f.rdi as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    thread_kill(Some(f.rdi as u32), f.rsi, f.rdx)
}

fn queued_info(sig: u32, uinfo: u64) -> Result<SigInfo, Errno> {
    let mut info: SigInfo = read_user(uinfo)?;
    // Only negative codes (SI_QUEUE...) may be forged by user space, except
    // for signals to oneself.
    if info.code >= 0 || info.code == code::SI_TKILL {
        return Err(Errno::EPERM);
    }
    info.signo = sig as i32;
    Ok(info)
}

pub fn rt_sigqueueinfo(f: &mut TrapFrame) -> SysResult {
    let [pid, sig, uinfo, ..] = args(f);
    let sig = valid(sig)?;
    let info = queued_info(sig, uinfo)?;
    let p = pid::process(pid as u32).ok_or(Errno::ESRCH)?;
    if !may_signal(&p) {
        return Err(Errno::EPERM);
    }
    signal::send_to_process(&p, sig, info);
    Ok(0)
}

pub fn rt_tgsigqueueinfo(f: &mut TrapFrame) -> SysResult {
    let [tgid, tid, sig, uinfo, ..] = args(f);
    let sig = valid(sig)?;
    let info = queued_info(sig, uinfo)?;
    let t = pid::task(tid as u32).ok_or(Errno::ESRCH)?;
    if t.process.pid != tgid as u32 {
        return Err(Errno::ESRCH);
    }
    signal::send_to_task(&t, sig, info);
    Ok(0)
}

/// Sleeps until a signal is delivered; the caller's mask is `mask` meanwhile.
fn suspend_with(mask: SigSet) -> SysResult {
    let t = task::current();
    {
        let mut s = t.sig.lock();
        s.saved_mask = Some(s.blocked);
        s.blocked = mask & !UNBLOCKABLE;
    }
    t.sig_flag.store(true, Ordering::Release);
    let q = WaitQueue::new();
    q.wait_until(|| false, true, None);
    Err(Errno::ERESTARTNOHAND)
}

pub fn rt_sigsuspend(f: &mut TrapFrame) -> SysResult {
    if f.rsi != 8 {
        return Err(Errno::EINVAL);
    }
    let mask: SigSet = read_user(f.rdi)?;
    suspend_with(mask)
}

pub fn pause(_: &mut TrapFrame) -> SysResult {
    let q = WaitQueue::new();
    q.wait_until(|| false, true, None);
    Err(Errno::ERESTARTNOHAND)
}

pub fn rt_sigtimedwait(f: &mut TrapFrame) -> SysResult {
    let [set, info, timeout, size, ..] = args(f);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let wanted: SigSet = read_user::<SigSet>(set)? & !UNBLOCKABLE;
    let deadline = if timeout != 0 {
        let ts: Timespec = read_user(timeout)?;
        Some(crate::time::monotonic_ns().saturating_add(ts.to_ns().ok_or(Errno::EINVAL)?))
    } else {
        None
    };
    let t = task::current_arc();
    // The awaited signals are taken from the queues even while blocked.
    let take = || -> Option<SigInfo> {
        let mut s = t.sig.lock();
        let mine = s.pending.set & wanted;
        if mine != 0 {
            return s.pending.take(mine.trailing_zeros() + 1);
        }
        drop(s);
        let mut shared = t.process.shared_pending.lock();
        let theirs = shared.set & wanted;
        if theirs != 0 {
            return shared.take(theirs.trailing_zeros() + 1);
        }
        None
    };
    let mut got = take();
    if got.is_none() {
        // Let the awaited signals wake us without being delivered: they
        // look unblocked to senders, while `real_blocked` keeps them from
        // being ignored (Linux's real_blocked).
        {
            let mut s = t.sig.lock();
            s.real_blocked = s.blocked;
            s.blocked &= !wanted;
        }
        let q = WaitQueue::new();
        let r = q.wait_until(
            || {
                let s = t.sig.lock();
                (s.pending.set | t.process.shared_pending.lock().set) & wanted != 0
            },
            true,
            deadline,
        );
        {
            let mut s = t.sig.lock();
            s.blocked = core::mem::take(&mut s.real_blocked);
        }
        got = take();
        if got.is_none() {
            return Err(match r {
                WaitResult::TimedOut => Errno::EAGAIN,
                _ => Errno::EINTR,
            });
        }
    }
    let got = signal::taken(&t.process, got.ok_or(Errno::EINTR)?);
    if info != 0 {
        write_user(info, &got)?;
    }
    t.sig_flag.store(true, Ordering::Release);
    Ok(got.signo as u64)
}
