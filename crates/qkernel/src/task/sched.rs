//! The scheduler: one run queue per vCPU, round-robin with a 10 ms slice,
//! work stealing by idle vCPUs, and idle vCPUs halted in the host.
//!
//! The kernel is not preemptible (it runs with interrupts disabled except at
//! explicit wait points), so a switch happens only in [`schedule`]: when the
//! current task blocks, exits, yields, or is asked to reschedule on its way
//! back to user mode (slice expired, or a higher-priority wake-up).
//!
//! A run-queue lock is held across the context switch and released by the
//! task switched to ([`finish_switch`]).
//!
//! # Who runs a task, and when it may be freed
//!
//! Three fields of a [`Task`] decide it; see README.md in this directory for
//! the whole protocol and the races it closes.
//!
//! - `state` (Runnable, Sleeping, Stopped, Dead): only the task itself, while
//!   it runs, leaves Runnable; a waker moves Sleeping -> Runnable with a
//!   compare-exchange, so exactly one waker "owns" each wake-up.
//! - `on_rq`: the task is in a run queue. Queues have different locks, so it
//!   is claimed with an atomic swap before a push ([`enqueue`]): a task is
//!   in one queue at most. Queue entries may be stale (the task was queued,
//!   then ran from elsewhere and slept or died): whoever takes an entry out
//!   clears `on_rq` and *then* looks at `state` (SeqCst on both sides, as a
//!   waker sets `state` and then swaps `on_rq`), and drops non-runnable ones.
//! - `on_cpu`: the right to run the task. A vCPU claims it with a
//!   compare-exchange when it takes the task out of a queue ([`pop_next`],
//!   [`steal`]) and gives it back after the switch away from the task has
//!   saved its context ([`finish_switch`]). So no two vCPUs ever run one task
//!   (one kernel stack), even when a stale entry and a fresh one race.
//!
//! Every vCPU that runs a task holds an `Arc` of it (`RunQueue::current`,
//! then `prev` until [`finish_switch`]), as does every queue entry, so a dead
//! task's kernel stack is freed by the last `Arc`, which is never one a vCPU
//! still runs on.
//!
//! Timer interrupts: none while a vCPU runs one task alone or idles without
//! deadlines; otherwise one-shot LAPIC deadlines for the next timer or the
//! end of the slice (at most 100 per second per vCPU).

use super::{State, Task};
use crate::arch::x86_64::percpu;
use crate::arch::x86_64::{apic, cpu, switch};
use crate::mm::{tlb, Mm};
use crate::sync::SpinLock;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use qlib::layout::MAX_VCPUS;

/// Length of a time slice.
pub const SLICE_NS: u64 = 10_000_000;

struct RunQueue {
    queue: VecDeque<Arc<Task>>,
    /// The task running on this vCPU (None while idle).
    current: Option<Arc<Task>>,
    /// Saved context of the idle loop.
    idle_ctx: u64,
    /// The task we switched away from, finished by the next one.
    prev: Option<Arc<Task>>,
    /// The address space loaded in CR3.
    loaded_mm: Option<Arc<Mm>>,
    /// When the running task's slice ends (0: no slice, runs alone).
    slice_end: u64,
}

static RQ: [SpinLock<RunQueue>; MAX_VCPUS as usize] = [const {
    SpinLock::new(RunQueue {
        queue: VecDeque::new(),
        current: None,
        idle_ctx: 0,
        prev: None,
        loaded_mm: None,
        slice_end: 0,
    })
}; MAX_VCPUS as usize];
/// The address space in each vCPU's CR3 (`RunQueue::loaded_mm`, which keeps
/// it alive), for the page-fault path to reach without locks or reference
/// counting.
static LOADED_MM: [AtomicPtr<Mm>; MAX_VCPUS as usize] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_VCPUS as usize];

/// The address space loaded on this vCPU: the current task's (a task's
/// address space changes only by its own execve, which reloads it).
#[inline]
pub fn loaded_mm() -> Option<&'static Mm> {
    let p = LOADED_MM[percpu::cpu_index()].load(Ordering::Relaxed);
    // SAFETY: the pointer comes from the Arc in this vCPU's run queue
    // (`loaded_mm`), which is replaced only by this vCPU when it switches
    // address spaces; until then the Mm stays alive.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// vCPU is halted in its idle loop (a wake-up must send it an IPI).
static IDLE: [AtomicBool; MAX_VCPUS as usize] = [const { AtomicBool::new(false) }; MAX_VCPUS as usize];
/// Runnable tasks per vCPU (for placement and stealing without locks).
static LOAD: [AtomicUsize; MAX_VCPUS as usize] = [const { AtomicUsize::new(0) }; MAX_VCPUS as usize];

fn vcpus() -> usize {
    crate::boot::params().vcpu_count as usize
}

/// Chooses a vCPU for a task that becomes runnable: its previous one if
/// idle, else another idle one, else the least loaded allowed one (queued
/// tasks plus the running one), preferring the previous one on ties.
fn place(t: &Task) -> usize {
    let allowed = t.affinity.load(Ordering::Relaxed);
    let prev = t.cpu.load(Ordering::Relaxed) as usize;
    let n = vcpus();
    if prev < n && allowed & (1 << prev) != 0 && IDLE[prev].load(Ordering::Relaxed) {
        return prev;
    }
    let load = |c: usize| LOAD[c].load(Ordering::Relaxed) + !IDLE[c].load(Ordering::Relaxed) as usize;
    let mut best = if prev < n && allowed & (1 << prev) != 0 { prev } else { usize::MAX };
    for (c, idle) in IDLE.iter().enumerate().take(n) {
        if allowed & (1 << c) == 0 || c == best {
            continue;
        }
        if idle.load(Ordering::Relaxed) {
            return c;
        }
        if best == usize::MAX || load(c) < load(best) {
            best = c;
        }
    }
    if best == usize::MAX {
        percpu::cpu_index()
    } else {
        best
    }
}

/// Puts a runnable task in vCPU `c`'s queue, unless it is already queued or
/// is that vCPU's running task (which then simply keeps running): a task is
/// in at most one queue.
fn enqueue(c: usize, t: Arc<Task>) {
    {
        let mut rq = RQ[c].lock();
        // A wake-up that arrives late (the task ran on, then slept again or
        // died, before the waker got here) must not queue it: only runnable
        // tasks are queued.
        if t.state() != State::Runnable {
            return;
        }
        if rq.current.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &t)) {
            drop(rq);
            // It may be halted in place (`schedule_or_halt`) on another vCPU.
            core::sync::atomic::fence(Ordering::SeqCst);
            if c != percpu::cpu_index() && IDLE[c].load(Ordering::SeqCst) {
                apic::send_ipi(c as u32, apic::WAKE_VECTOR);
            }
            return;
        }
        // Claimed atomically (queues have different locks). SeqCst: the
        // waker set `state` before; a dequeuer clears `on_rq` before it
        // reads `state`, so either it sees Runnable or we queue the task.
        if t.on_rq.swap(true, Ordering::SeqCst) {
            return;
        }
        // `t.cpu` is left alone: it names the vCPU the task last ran on
        // (where `target` and `resched` find a running task).
        rq.queue.push_back(t);
        LOAD[c].fetch_add(1, Ordering::Relaxed);
    }
    kick(c);
}

/// Where a task that became runnable goes: the vCPU it is (still) running
/// on, or the best one for it.
fn target(t: &Task) -> usize {
    if t.on_cpu.load(Ordering::Acquire) {
        t.cpu.load(Ordering::Relaxed) as usize
    } else {
        place(t)
    }
}

/// Makes an idle or busy vCPU look at its run queue.
fn kick(c: usize) {
    core::sync::atomic::fence(Ordering::SeqCst);
    if c != percpu::cpu_index() {
        if IDLE[c].load(Ordering::SeqCst) {
            apic::send_ipi(c as u32, apic::WAKE_VECTOR);
        } else if RQ[c].lock().slice_end == 0 {
            // Busy with a task that runs alone (no slice, no timer): it
            // must learn it now has a competitor, or a task spinning in
            // user mode would keep the new one waiting forever.
            apic::send_ipi(c as u32, apic::WAKE_VECTOR);
        }
    } else if super::has_current() {
        start_slice(c);
    }
}

/// Let the running task finish its slice; with a competitor it now has one.
fn start_slice(c: usize) {
    let mut rq = RQ[c].lock();
    if rq.slice_end == 0 && !rq.queue.is_empty() {
        rq.slice_end = crate::time::monotonic_ns() + SLICE_NS;
        super::timer::reprogram_with(rq.slice_end);
    }
}

/// A wake-up IPI arrived: a task that ran alone gets a time slice if others
/// now wait in this vCPU's queue (see `kick`).
pub fn kicked() {
    if super::has_current() {
        start_slice(percpu::cpu_index());
    }
}

/// Makes `t` reschedule soon: at once when it is the current task (on its
/// way back to user mode), else by interrupting the vCPU it runs on.
pub fn resched(t: &Task) {
    t.need_resched.store(true, Ordering::SeqCst);
    if t.on_cpu.load(Ordering::Acquire) {
        let c = t.cpu.load(Ordering::Relaxed) as usize;
        if c != percpu::cpu_index() {
            apic::send_ipi(c as u32, apic::WAKE_VECTOR);
        }
    }
}

/// Starts a new runnable task.
pub fn spawn(t: Arc<Task>) {
    let c = place(&t);
    enqueue(c, t);
}

/// Wakes a sleeping task; returns false when it was not sleeping.
pub fn wake(t: &Arc<Task>) -> bool {
    if t.state
        .compare_exchange(State::Sleeping as u8, State::Runnable as u8, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    enqueue(target(t), t.clone());
    true
}

/// Resumes a stopped task (SIGCONT).
pub fn resume_stopped(t: &Arc<Task>) -> bool {
    if t.state
        .compare_exchange(State::Stopped as u8, State::Runnable as u8, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    let c = place(t);
    enqueue(c, t.clone());
    true
}

fn account(t: &Task, now: u64) {
    let start = t.run_start.load(Ordering::Relaxed);
    if start != 0 && now > start {
        t.cpu_ns.fetch_add(now - start, Ordering::Relaxed);
    }
}

/// Gives up the vCPU. The caller set the current task's state: Sleeping,
/// Stopped or Dead; or it is Runnable because a wake-up came before it slept
/// (it keeps running). Returns when the task runs again (never for Dead).
pub fn schedule() {
    reschedule(false)
}

/// [`schedule`] for a task that marked itself Sleeping, except that when no
/// other task is runnable on this vCPU it halts right here, in the task's
/// context, instead of switching to the idle loop and back: an interrupt
/// that wakes it (a completion, a signal's IPI) returns straight into the
/// task, which saves two context switches and the FPU save/restore (hundreds
/// of emulated instructions on kvm_pvm hosts). While halted the vCPU counts
/// as idle, so wakers and new work on other vCPUs send an IPI; timers, TLB
/// shootdowns and host events are handled by their interrupts as usual. (It
/// does not steal work from other vCPUs meanwhile, as the idle loop would.)
pub fn schedule_or_halt() {
    let c = percpu::cpu_index();
    let cur = super::current();
    loop {
        if cur.state() != State::Sleeping {
            return;
        }
        IDLE[c].store(true, Ordering::SeqCst);
        // After publishing IDLE (SeqCst), as in the idle loop: an enqueue
        // either sees IDLE and sends an IPI or we see its task here.
        let others = !RQ[c].lock().queue.is_empty();
        if others || cur.state() != State::Sleeping {
            IDLE[c].store(false, Ordering::SeqCst);
            break;
        }
        percpu::stats().idle_entries += 1;
        cpu::wait_for_interrupt();
        IDLE[c].store(false, Ordering::SeqCst);
    }
    schedule();
}

/// Gives the vCPU to the next runnable task, if any (the slice ended, or
/// sched_yield); the current task stays runnable.
pub fn yield_now() {
    reschedule(true)
}

/// Claims the right to run `t` (see the module docs): fails while another
/// vCPU runs it, is switching away from it, or has just claimed it.
fn claim(t: &Task) -> bool {
    t.on_cpu.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
}

/// A claimed task just taken out of a queue: clears `on_rq`, then keeps it
/// if it is runnable; a stale entry (it slept again or died since it was
/// queued) is dropped and the claim given back.
fn dequeued(t: Arc<Task>) -> Option<Arc<Task>> {
    // Clear `on_rq`, then look at the state (SeqCst: a waker makes the task
    // runnable, then swaps `on_rq`; one of us sees the other's change, so
    // the task is run here or queued again by the waker).
    t.on_rq.swap(false, Ordering::SeqCst);
    if t.state() == State::Runnable {
        Some(t)
    } else {
        t.on_cpu.store(false, Ordering::Release);
        None
    }
}

/// Takes the next task this vCPU may run out of its queue, claimed.
fn pop_next(rq: &mut RunQueue, c: usize) -> Option<Arc<Task>> {
    for _ in 0..rq.queue.len() {
        let t = rq.queue.pop_front()?;
        if !claim(&t) {
            // Still running or being switched away from on another vCPU.
            rq.queue.push_back(t);
            continue;
        }
        LOAD[c].fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = dequeued(t) {
            return Some(t);
        }
    }
    None
}

fn reschedule(yielding: bool) {
    let c = percpu::cpu_index();
    tlb::service_pending();
    // A runnable task that may no longer run here (sched_setaffinity) moves
    // to an allowed vCPU's queue first; that vCPU starts it once our switch
    // away from it completes (`on_cpu`).
    let migrating = {
        let cur = super::current();
        cur.state() == State::Runnable && cur.affinity.load(Ordering::Relaxed) & (1 << c) == 0
    };
    if migrating {
        let cur = super::current_arc();
        let to = place(&cur);
        if to != c {
            enqueue(to, cur);
        }
    }
    let mut rq = RQ[c].lock();
    let Some(cur) = rq.current.clone() else {
        panic!("schedule() without a current task");
    };
    cur.need_resched.store(false, Ordering::Relaxed);
    let runnable = cur.state() == State::Runnable && !(migrating && cur.on_rq.load(Ordering::Relaxed));
    if runnable && !yielding {
        // Woken before it got to sleep: keep running.
        return;
    }
    let next = pop_next(&mut rq, c);
    let next = match next {
        Some(n) => {
            // Back in our queue, unless it is queued already (a wake-up
            // that raced with a stale queue entry, or a migration).
            if runnable && !cur.on_rq.swap(true, Ordering::SeqCst) {
                rq.queue.push_back(cur.clone());
                LOAD[c].fetch_add(1, Ordering::Relaxed);
            }
            Some(n)
        }
        None if runnable => {
            // Runs on; alone unless the queue holds tasks it could not
            // claim yet (still being switched away from elsewhere): then a
            // new slice, so this task cannot keep them waiting for ever.
            set_slice(&mut rq);
            return;
        }
        None => None,
    };
    let now = crate::time::monotonic_ns();
    account(&cur, now);
    // Not running from here on (`timer::thread_cpu_ns` adds the current run
    // only while this is set).
    cur.run_start.store(0, Ordering::Relaxed);
    cur.fpu().save();
    let save = cur.ctx.get();
    rq.prev = Some(cur);
    match next {
        Some(n) => switch_to_task(rq, c, save, n, now),
        None => {
            rq.current = None;
            percpu::this_cpu().current = 0;
            let idle = rq.idle_ctx;
            core::mem::forget(rq);
            // SAFETY: the idle context was saved by the idle loop on this
            // vCPU's boot stack; the run-queue lock passes to it.
            unsafe { switch::switch(save, idle) };
        }
    }
    // Resumed (by finish_switch on this side).
    after_resume();
}

fn set_slice(rq: &mut RunQueue) {
    if rq.queue.is_empty() {
        rq.slice_end = 0;
    } else {
        rq.slice_end = crate::time::monotonic_ns() + SLICE_NS;
        super::timer::reprogram_with(rq.slice_end);
    }
}

/// Switches to `next` (the run-queue lock `rq` passes to it).
fn switch_to_task(mut rq: crate::sync::SpinGuard<'_, RunQueue>, c: usize, save: *mut u64, next: Arc<Task>, now: u64) {
    debug_assert!(next.on_cpu.load(Ordering::Relaxed), "switching to an unclaimed task");
    next.cpu.store(c as u32, Ordering::Relaxed);
    next.run_start.store(now, Ordering::Relaxed);
    let mm = next.process.mm.lock().clone();
    let same_mm = rq.loaded_mm.as_ref().is_some_and(|m| Arc::ptr_eq(m, &mm));
    if !same_mm {
        mm.active.fetch_or(1 << c, Ordering::SeqCst);
        // SAFETY: the address space shares the kernel's upper half.
        unsafe { cpu::write_cr3(mm.root()) };
        LOADED_MM[c].store(Arc::as_ptr(&mm) as *mut Mm, Ordering::Relaxed);
        if let Some(old) = rq.loaded_mm.replace(mm) {
            old.active.fetch_and(!(1 << c), Ordering::SeqCst);
        }
    }
    percpu::set_kernel_stack(next.kstack_top());
    cpu::set_fs_base(next.fs_base.load(Ordering::Relaxed));
    cpu::set_user_gs_base(next.gs_base.load(Ordering::Relaxed));
    percpu::this_cpu().current = Arc::as_ptr(&next) as u64;
    percpu::stats().context_switches += 1;
    // SAFETY: reading the switched-out context of `next`, which is not running.
    let load = unsafe { *next.ctx.get() };
    rq.current = Some(next);
    set_slice(&mut rq);
    // CPU-time interval timers of the process switched to.
    let cpu_timer = super::timer::cpu_timer_wall_deadline();
    if cpu_timer != 0 {
        super::timer::reprogram_with(cpu_timer);
    }
    core::mem::forget(rq);
    // SAFETY: `load` was saved by a previous switch or built by
    // initial_context; the run-queue lock passes to `next`.
    unsafe { switch::switch(save, load) };
}

/// execve: makes `mm` the current vCPU's address space.
pub fn switch_mm(mm: Arc<Mm>) {
    let c = percpu::cpu_index();
    let mut rq = RQ[c].lock();
    mm.active.fetch_or(1 << c, Ordering::SeqCst);
    // SAFETY: the address space shares the kernel's upper half.
    unsafe { cpu::write_cr3(mm.root()) };
    LOADED_MM[c].store(Arc::as_ptr(&mm) as *mut Mm, Ordering::Relaxed);
    if let Some(old) = rq.loaded_mm.replace(mm) {
        old.active.fetch_and(!(1 << c), Ordering::SeqCst);
    }
}

/// Runs on the task switched to: releases the previous task and the
/// run-queue lock.
fn finish_switch() {
    let c = percpu::cpu_index();
    // SAFETY: the switching side holds RQ[c] (its guard was forgotten) and
    // handed it to us; we are the only code touching it until we unlock.
    let prev = unsafe { (*RQ[c].data_ptr()).prev.take() };
    // SAFETY: as above: we own the lock the switching side took.
    unsafe { RQ[c].force_unlock() };
    if let Some(p) = prev {
        p.on_cpu.store(false, Ordering::Release);
        if p.state() == State::Dead {
            super::exit::release_dead(p);
        }
    }
}

fn after_resume() {
    finish_switch();
    if super::has_current() {
        super::current().fpu().restore();
    }
}

/// First code of a new task (from `qk_task_entry`), before entering user mode.
#[no_mangle]
pub extern "C" fn task_first_run() {
    after_resume();
    super::signal::exit_to_user(super::current().user_frame());
}

/// Called by the timer interrupt: ends the slice if it is over.
pub fn tick(now: u64) {
    let c = percpu::cpu_index();
    let rq = RQ[c].lock();
    if rq.slice_end != 0 && now >= rq.slice_end {
        if let Some(cur) = rq.current.as_ref() {
            cur.need_resched.store(true, Ordering::Relaxed);
        }
    }
}

/// The earliest slice deadline of this vCPU (0 when none).
pub fn slice_deadline() -> u64 {
    RQ[percpu::cpu_index()].lock().slice_end
}

/// Takes a task from the busiest other vCPU that this vCPU may run.
fn steal(c: usize) -> Option<Arc<Task>> {
    let mut busiest = None;
    let mut most = 0;
    for (o, load) in LOAD.iter().enumerate().take(vcpus()) {
        let l = load.load(Ordering::Relaxed);
        if o != c && l > most {
            most = l;
            busiest = Some(o);
        }
    }
    let o = busiest?;
    let mut rq = RQ[o].try_lock()?;
    let i = rq.queue.iter().position(|t| t.affinity.load(Ordering::Relaxed) & (1 << c) != 0 && claim(t))?;
    let t = rq.queue.remove(i)?;
    LOAD[o].fetch_sub(1, Ordering::Relaxed);
    dequeued(t)
}

/// The idle loop of vCPU `c` (on its boot stack): runs tasks, steals work,
/// and halts in the host when there is nothing to do.
pub fn idle_loop(c: usize) -> ! {
    loop {
        tlb::service_pending();
        super::timer::run_expired();
        if c == 0 {
            super::poll_host_events();
        }
        let mut rq = RQ[c].lock();
        let mut next = pop_next(&mut rq, c);
        if next.is_none() {
            drop(rq);
            next = steal(c);
            rq = RQ[c].lock();
        }
        match next {
            Some(t) => {
                let save = core::ptr::addr_of_mut!(rq.idle_ctx);
                let now = crate::time::monotonic_ns();
                switch_to_task(rq, c, save, t, now);
                // Back in the idle loop: a task switched to us.
                finish_switch();
            }
            None => {
                // No task, no slice: a deadline left from the last task's
                // slice would re-arm the timer in the past at every pass
                // (an interrupt storm on an idle vCPU).
                rq.slice_end = 0;
                IDLE[c].store(true, Ordering::SeqCst);
                if !rq.queue.is_empty() {
                    IDLE[c].store(false, Ordering::SeqCst);
                    continue;
                }
                drop(rq);
                super::timer::program_next(0);
                percpu::stats().idle_entries += 1;
                cpu::wait_for_interrupt();
                IDLE[c].store(false, Ordering::SeqCst);
            }
        }
    }
}

/// Number of runnable tasks on vCPU `c` (for /proc/loadavg).
pub fn load(c: usize) -> usize {
    LOAD[c].load(Ordering::Relaxed)
}
