//! Thread and process exit, zombies, reaping (wait4/waitid), re-parenting
//! to the sandbox's init, and job-control stops.

use super::signal::{self, code, SigInfo};
use super::{current_arc, pid, sched, ExitStatus, Process, State, Task};
use crate::mm::Mm;
use crate::sync::Once;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use qlib::linux::consts::signal::*;
use qlib::linux::Errno;

static EMPTY_MM: Once<Arc<Mm>> = Once::new();

/// An empty address space that exited processes point at.
pub fn empty_mm() -> Arc<Mm> {
    EMPTY_MM.get().clone()
}

/// Creates the empty address space (boot, once).
pub fn init() {
    let mm = Mm::new(0).expect("memory for the empty address space");
    // SAFETY: boot vCPU, before any process exists.
    unsafe { EMPTY_MM.init(mm) };
}

/// exit_group (or a fatal signal): every thread of the process exits.
pub fn exit_group(status: ExitStatus) -> ! {
    let t = current_arc();
    let p = t.process.clone();
    {
        let mut e = p.exit.lock();
        if !e.exiting {
            e.exiting = true;
            e.status = Some(status);
        }
    }
    for other in p.threads.lock().iter() {
        if !Arc::ptr_eq(other, &t) {
            other.sig_flag.store(true, Ordering::Release);
            sched::wake(other);
            sched::resume_stopped(other);
        }
    }
    exit_current_thread(status)
}

/// A thread noticed its process is exiting.
pub fn exit_thread_in_group() -> ! {
    let status = current_arc().process.exit.lock().status.unwrap_or(ExitStatus::Exited(0));
    exit_current_thread(status)
}

/// exit(2): the calling thread ends; the process ends with the last thread.
pub fn exit_thread(code: u8) -> ! {
    exit_current_thread(ExitStatus::Exited(code))
}

fn exit_current_thread(status: ExitStatus) -> ! {
    let t = current_arc();
    let p = t.process.clone();
    super::futex::exit_robust_list(&t);
    let ctid = t.clear_child_tid.swap(0, Ordering::AcqRel);
    if ctid != 0 {
        // CLONE_CHILD_CLEARTID: zero the tid and wake a joiner.
        if crate::arch::x86_64::usercopy::write_user(ctid, &0u32).is_ok() {
            super::futex::wake_address(&p, ctid, 1);
        }
    }
    complete_vfork(&t);
    p.dead_threads_cpu_ns.fetch_add(t.cpu_ns.load(Ordering::Relaxed), Ordering::Relaxed);
    let last = {
        let mut th = p.threads.lock();
        th.retain(|x| !Arc::ptr_eq(x, &t));
        th.is_empty()
    };
    if last {
        let status = p.exit.lock().status.unwrap_or(status);
        process_exit(&p, status);
    }
    pid::release_task(t.tid);
    t.state.store(State::Dead as u8, Ordering::SeqCst);
    if p.exit.lock().dethread_by.is_some() {
        p.child_wait.wake_all();
    }
    drop(p);
    drop(t);
    sched::schedule();
    unreachable!("a dead task was scheduled again");
}

/// Wakes a vfork parent waiting for this child to exec or exit.
pub fn complete_vfork(t: &Task) {
    if let Some(q) = t.vfork_done.lock().take() {
        q.wake_all();
    }
}

/// Called by the scheduler after switching away from a dead task.
pub fn release_dead(t: Arc<Task>) {
    drop(t);
}

fn process_exit(p: &Arc<Process>, status: ExitStatus) {
    {
        let mut e = p.exit.lock();
        e.status = Some(status);
        e.exiting = true;
    }
    // Release what the process holds: descriptors, memory, timers.
    let files =
        core::mem::replace(&mut *p.files.lock(), Arc::new(crate::sync::SpinLock::new(super::fd::FdTable::empty())));
    drop(files);
    let old_mm = core::mem::replace(&mut *p.mm.lock(), empty_mm());
    drop(old_mm);
    super::timer::cancel_process_timers(p);

    if p.pid == 1 {
        // The container's init ended: the sandbox is over.
        signal::kill_all_but(1);
        let (kind, code) = match status {
            ExitStatus::Exited(c) => (qlib::hcall::ExitKind::Exited, c as u64),
            ExitStatus::Signaled(s, _) => (qlib::hcall::ExitKind::Signaled, s as u64),
        };
        if crate::boot::params().flags & qlib::boot::flags::CHECK_ONLY != 0 {
            crate::selftest::report();
            crate::hcall::exit(qlib::hcall::ExitKind::CheckDone, 0);
        }
        crate::hcall::exit(kind, code);
    }

    // Orphans go to init, which reaps them.
    let init = pid::process(1);
    let children: Vec<Arc<Process>> = core::mem::take(&mut *p.children.lock());
    for c in children {
        let sig = c.threads.lock().first().map(|t| t.pdeath_signal.load(Ordering::Relaxed)).unwrap_or(0);
        if let Some(init) = init.as_ref() {
            *c.parent.lock() = Arc::downgrade(init);
            let zombie = c.exit.lock().zombie;
            init.children.lock().push(c.clone());
            if zombie {
                init.child_wait.wake_all();
                signal::send_to_process(init, SIGCHLD, SigInfo::kernel(SIGCHLD));
            }
        }
        if sig != 0 {
            signal::send_to_process(&c, sig, SigInfo::kernel(sig));
        }
    }

    let parent = p.parent.lock().upgrade();
    let Some(parent) = parent else {
        p.exit.lock().zombie = true;
        return;
    };
    // A parent that ignores SIGCHLD (or asked SA_NOCLDWAIT) leaves no zombie;
    // with SA_NOCLDWAIT and a handler, the handler still runs.
    let (auto_reap, ignoring) = {
        let h = parent.sighand.lock().clone();
        let a = h.lock().get(SIGCHLD);
        (a.handler == signal::SIG_IGN || a.flags & signal::sa::NOCLDWAIT != 0, a.handler == signal::SIG_IGN)
    };
    p.exit.lock().zombie = true;
    let exit_signal = p.exit_signal.load(Ordering::Relaxed);
    if exit_signal != 0 && !(ignoring && exit_signal == SIGCHLD) {
        let (code, st) = match status {
            ExitStatus::Exited(c) => (code::CLD_EXITED, c as i32),
            ExitStatus::Signaled(s, core) => (if core { code::CLD_DUMPED } else { code::CLD_KILLED }, s as i32),
        };
        let uid = p.creds.lock().uid;
        signal::send_to_process(&parent, exit_signal, SigInfo::child(code, p.pid, uid, st));
    }
    if auto_reap {
        reap(&parent, p);
    }
    parent.child_wait.wake_all();
}

fn reap(parent: &Process, child: &Arc<Process>) {
    parent.children.lock().retain(|c| !Arc::ptr_eq(c, child));
    parent.children_cpu_ns.fetch_add(
        child.dead_threads_cpu_ns.load(Ordering::Relaxed) + child.children_cpu_ns.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    child.exit.lock().reaped = true;
    pid::release_process(child.pid);
}

/// Stops the whole process for a stop signal and tells the parent.
pub fn group_stop(t: &Arc<Task>, sig: u32) {
    let p = t.process.clone();
    if p.pid == 1 {
        return;
    }
    p.exit.lock().stop_report = Some(sig);
    notify_parent_stop(&p, code::CLD_STOPPED, sig);
    for other in p.threads.lock().iter() {
        if !Arc::ptr_eq(other, t) {
            other.sig_flag.store(true, Ordering::Release);
        }
    }
    signal::stop_current();
}

/// Tells the parent a child stopped or continued (SIGCHLD unless
/// SA_NOCLDSTOP; waiters are woken either way).
pub fn notify_parent_stop(p: &Arc<Process>, code: i32, sig: u32) {
    let Some(parent) = p.parent.lock().upgrade() else { return };
    let nocldstop = {
        let h = parent.sighand.lock().clone();
        let a = h.lock().get(SIGCHLD);
        a.flags & signal::sa::NOCLDSTOP != 0
    };
    if !nocldstop {
        let uid = p.creds.lock().uid;
        signal::send_to_process(&parent, SIGCHLD, SigInfo::child(code, p.pid, uid, sig as i32));
    }
    parent.child_wait.wake_all();
}

/// wait options.
pub mod opt {
    pub const WNOHANG: u64 = 1;
    pub const WUNTRACED: u64 = 2;
    pub const WSTOPPED: u64 = 2;
    pub const WEXITED: u64 = 4;
    pub const WCONTINUED: u64 = 8;
    pub const WNOWAIT: u64 = 0x0100_0000;
    pub const WNOTHREAD: u64 = 0x2000_0000;
    pub const WALL: u64 = 0x4000_0000;
    pub const WCLONE: u64 = 0x8000_0000;
}

/// Which children a wait selects.
#[derive(Clone, Copy, Debug)]
pub enum Which {
    Any,
    Pid(u32),
    Pgid(u32),
}

/// What a wait found.
pub struct WaitEvent {
    pub pid: u32,
    pub uid: u32,
    /// The wait status word (wait4) and the siginfo code/status (waitid).
    pub status: i32,
    pub code: i32,
    pub si_status: i32,
}

/// Waits for a child event (the common part of wait4 and waitid).
pub fn wait_child(which: Which, options: u64) -> Result<Option<WaitEvent>, Errno> {
    let me = current_arc().process.clone();
    let mut found: Option<WaitEvent> = None;
    let mut any = false;
    let r = me.child_wait.wait_until(
        || {
            let children = me.children.lock().clone();
            any = false;
            for c in children {
                let matches = match which {
                    Which::Any => true,
                    Which::Pid(p) => c.pid == p,
                    Which::Pgid(g) => c.pgid.load(Ordering::Relaxed) == g,
                };
                // A "clone" child (exit signal other than SIGCHLD) is waited
                // for only with __WCLONE, the others only without; __WALL
                // takes both.
                let clone_child = c.exit_signal.load(Ordering::Relaxed) != SIGCHLD;
                if !matches || (options & opt::WALL == 0 && clone_child != (options & opt::WCLONE != 0)) {
                    continue;
                }
                any = true;
                let uid = c.creds.lock().uid;
                let mut e = c.exit.lock();
                if e.zombie && options & opt::WEXITED != 0 {
                    let status = e.status.unwrap_or(ExitStatus::Exited(0));
                    let (code, si_status) = match status {
                        ExitStatus::Exited(x) => (code::CLD_EXITED, x as i32),
                        ExitStatus::Signaled(s, core) => {
                            (if core { code::CLD_DUMPED } else { code::CLD_KILLED }, s as i32)
                        }
                    };
                    drop(e);
                    if options & opt::WNOWAIT == 0 {
                        reap(&me, &c);
                    }
                    found = Some(WaitEvent { pid: c.pid, uid, status: status.wait_status(), code, si_status });
                    return true;
                }
                if options & opt::WSTOPPED != 0 {
                    if let Some(sig) = e.stop_report {
                        if options & opt::WNOWAIT == 0 {
                            e.stop_report = None;
                        }
                        found = Some(WaitEvent {
                            pid: c.pid,
                            uid,
                            status: ((sig as i32) << 8) | 0x7f,
                            code: code::CLD_STOPPED,
                            si_status: sig as i32,
                        });
                        return true;
                    }
                }
                if options & opt::WCONTINUED != 0 && e.continue_report {
                    if options & opt::WNOWAIT == 0 {
                        e.continue_report = false;
                    }
                    found = Some(WaitEvent {
                        pid: c.pid,
                        uid,
                        status: 0xffff,
                        code: code::CLD_CONTINUED,
                        si_status: SIGCONT as i32,
                    });
                    return true;
                }
            }
            // Nothing to wait for, or WNOHANG: stop waiting.
            !any || options & opt::WNOHANG != 0
        },
        true,
        None,
    );
    match r {
        super::wait::WaitResult::Interrupted => Err(Errno::ERESTARTSYS),
        _ if found.is_some() => Ok(found),
        _ if !any => Err(Errno::ECHILD),
        _ => Ok(None),
    }
}
