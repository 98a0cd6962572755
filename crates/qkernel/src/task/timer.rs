//! Kernel timers: per-vCPU sorted deadlines driving one-shot LAPIC
//! interrupts. Used for timed sleeps, ITIMER_REAL/alarm, and POSIX timers.
//! No periodic tick: the LAPIC is armed for the nearest of the next timer
//! and the end of the running task's slice, or not at all.

use super::{sched, Process, Task};
use crate::arch::x86_64::{apic, percpu};
use crate::sync::SpinLock;
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::layout::MAX_VCPUS;
use qlib::linux::consts::signal::SIGALRM;

/// What happens when a timer expires.
pub enum Action {
    /// Wake a sleeping task (a timed wait ran out).
    Wake(Arc<Task>),
    /// ITIMER_REAL of a process: SIGALRM, re-armed when periodic.
    RealTimer(Weak<Process>),
    /// A POSIX timer of a process (index into its table, generation).
    Posix(Weak<Process>, usize, u64),
    /// Tell a waker (timerfd).
    Notify(Arc<dyn super::wait::Waker>),
}

/// Identifies an armed timer (for cancelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId {
    cpu: usize,
    key: (u64, u64),
}

struct CpuTimers {
    list: BTreeMap<(u64, u64), Action>,
    /// Deadline the LAPIC is armed for (0: not armed).
    armed: u64,
}

static TIMERS: [SpinLock<CpuTimers>; MAX_VCPUS as usize] =
    [const { SpinLock::new(CpuTimers { list: BTreeMap::new(), armed: 0 }) }; MAX_VCPUS as usize];
static SEQ: AtomicU64 = AtomicU64::new(1);

/// Arms a timer on this vCPU for monotonic time `deadline`.
pub fn arm(deadline: u64, action: Action) -> TimerId {
    let cpu = percpu::cpu_index();
    let key = (deadline, SEQ.fetch_add(1, Ordering::Relaxed));
    TIMERS[cpu].lock().list.insert(key, action);
    reprogram_with(deadline);
    TimerId { cpu, key }
}

/// Cancels a timer; returns whether it had not fired yet.
pub fn cancel(id: TimerId) -> bool {
    TIMERS[id.cpu].lock().list.remove(&id.key).is_some()
}

/// Arms the LAPIC earlier if `deadline` comes before what it is armed for.
pub fn reprogram_with(deadline: u64) {
    let cpu = percpu::cpu_index();
    let mut t = TIMERS[cpu].lock();
    if t.armed == 0 || deadline < t.armed {
        t.armed = deadline;
        let now = crate::time::monotonic_ns();
        apic::arm_timer_ns(deadline.saturating_sub(now).max(1));
    }
}

/// Arms the LAPIC for the nearest deadline (timers, the slice, `extra`).
pub fn program_next(extra: u64) {
    let cpu = percpu::cpu_index();
    let slice = sched::slice_deadline();
    let cpu_timer = cpu_timer_wall_deadline();
    let mut t = TIMERS[cpu].lock();
    let mut next = t.list.keys().next().map(|k| k.0).unwrap_or(0);
    for d in [slice, extra, cpu_timer] {
        if d != 0 && (next == 0 || d < next) {
            next = d;
        }
    }
    t.armed = next;
    if next == 0 {
        apic::arm_timer_ns(0);
    } else {
        let now = crate::time::monotonic_ns();
        apic::arm_timer_ns(next.saturating_sub(now).max(1));
    }
}

/// Runs the expired timers of this vCPU.
pub fn run_expired() {
    let cpu = percpu::cpu_index();
    let now = crate::time::monotonic_ns();
    let mut due: Vec<Action> = Vec::new();
    {
        let mut t = TIMERS[cpu].lock();
        while let Some((&k, _)) = t.list.iter().next() {
            if k.0 > now {
                break;
            }
            if let Some(a) = t.list.remove(&k) {
                due.push(a);
            }
        }
        t.armed = 0;
    }
    for a in due {
        match a {
            Action::Wake(task) => {
                task.timed_out.store(true, Ordering::Release);
                sched::wake(&task);
            }
            Action::RealTimer(p) => {
                if let Some(p) = p.upgrade() {
                    let rearm = {
                        let mut timers = p.timers.lock();
                        timers.real_armed = None;
                        if timers.real_interval_ns != 0 {
                            timers.real_deadline = now + timers.real_interval_ns;
                            Some(timers.real_deadline)
                        } else {
                            timers.real_deadline = 0;
                            None
                        }
                    };
                    super::signal::send_to_process(&p, SIGALRM, super::signal::SigInfo::kernel(SIGALRM));
                    if let Some(d) = rearm {
                        let id = arm(d, Action::RealTimer(Arc::downgrade(&p)));
                        p.timers.lock().real_armed = Some(id);
                    }
                }
            }
            Action::Posix(p, index, generation) => {
                if let Some(p) = p.upgrade() {
                    super::signal::posix_timer_fired(&p, index, generation, now);
                }
            }
            Action::Notify(w) => w.wake(),
        }
    }
}

/// The timer interrupt.
pub fn interrupt() {
    run_expired();
    check_cpu_timers();
    let now = crate::time::monotonic_ns();
    sched::tick(now);
    program_next(0);
}

/// CPU time a thread has used, including its current run.
pub fn thread_cpu_ns(t: &Task) -> u64 {
    let base = t.cpu_ns.load(Ordering::Relaxed);
    // `on_cpu` is also set while a vCPU claims the task to run it; the run
    // counts once it started (`run_start`, 0 while switched out).
    let start = t.run_start.load(Ordering::Relaxed);
    if t.on_cpu.load(Ordering::Acquire) && start != 0 {
        base + crate::time::monotonic_ns().saturating_sub(start)
    } else {
        base
    }
}

/// CPU time a process has used (its live and exited threads).
pub fn process_cpu_ns(p: &Process) -> u64 {
    p.threads.lock().iter().map(|t| thread_cpu_ns(t)).sum::<u64>() + p.dead_threads_cpu_ns.load(Ordering::Relaxed)
}

/// ITIMER_VIRTUAL / ITIMER_PROF: a deadline in process CPU time (0: off)
/// and the interval to re-arm with. All CPU time counts as user time here,
/// so both count the same time.
#[derive(Clone, Copy, Default, Debug)]
pub struct CpuItimer {
    pub deadline: u64,
    pub interval: u64,
}

/// Sends SIGVTALRM/SIGPROF for the current process's CPU-time interval
/// timers that ran out (timer interrupt).
pub fn check_cpu_timers() {
    if !super::has_current() {
        return;
    }
    let p = &super::current().process;
    let mut fired = [false; 2];
    {
        let mut guard = p.timers.lock();
        let t = &mut *guard;
        if t.virt.deadline == 0 && t.prof.deadline == 0 {
            return;
        }
        let now = process_cpu_ns(p);
        for (i, it) in [&mut t.virt, &mut t.prof].into_iter().enumerate() {
            if it.deadline != 0 && now >= it.deadline {
                fired[i] = true;
                it.deadline = if it.interval == 0 {
                    0
                } else {
                    let mut d = it.deadline + it.interval;
                    while d <= now {
                        d += it.interval;
                    }
                    d
                };
            }
        }
    }
    use qlib::linux::consts::signal::{SIGPROF, SIGVTALRM};
    for (sig, f) in [(SIGVTALRM, fired[0]), (SIGPROF, fired[1])] {
        if f {
            super::signal::send_to_process(p, sig, super::signal::SigInfo::kernel(sig));
        }
    }
}

/// When (monotonic) the current process's nearest CPU-time timer can run
/// out at the earliest (0: none): its remaining CPU time from now.
pub fn cpu_timer_wall_deadline() -> u64 {
    if !super::has_current() {
        return 0;
    }
    let p = &super::current().process;
    let t = p.timers.lock();
    let next = [t.virt.deadline, t.prof.deadline].into_iter().filter(|&d| d != 0).min();
    drop(t);
    match next {
        Some(d) => crate::time::monotonic_ns() + d.saturating_sub(process_cpu_ns(p)).max(1),
        None => 0,
    }
}

/// A process's interval timers.
#[derive(Default)]
pub struct ProcessTimers {
    /// ITIMER_REAL: absolute deadline (0: disarmed) and interval.
    pub real_deadline: u64,
    pub real_interval_ns: u64,
    pub real_armed: Option<TimerId>,
    /// ITIMER_VIRTUAL and ITIMER_PROF.
    pub virt: CpuItimer,
    pub prof: CpuItimer,
    /// POSIX timers (timer_create); index = timer id.
    pub posix: Vec<Option<super::signal::PosixTimer>>,
}

/// Disarms every timer of an exiting process.
pub fn cancel_process_timers(p: &Process) {
    let mut t = p.timers.lock();
    if let Some(id) = t.real_armed.take() {
        cancel(id);
    }
    for pt in t.posix.iter_mut().flatten() {
        if let Some(id) = pt.armed.take() {
            cancel(id);
        }
    }
}
