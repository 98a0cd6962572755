//! Wait queues: tasks sleep on a queue until a condition holds, a signal
//! arrives (interruptible waits), or a deadline passes. A queue also holds
//! persistent watchers (epoll instances) that are told of every wake-up.
//!
//! No lost wake-ups: the waiter enqueues itself and marks itself sleeping
//! before re-checking the condition; a waker changes the condition before
//! waking the queue, so either the waiter sees the change or the waker sees
//! the sleeping waiter.

use super::{current_arc, sched, timer, State, Task};
use crate::sync::SpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// The condition holds.
    Ready,
    /// A signal is pending (interruptible waits only).
    Interrupted,
    /// The deadline passed.
    TimedOut,
}

/// Something a wait queue can wake.
pub trait Waker: Send + Sync {
    /// Called (with no queue lock held) when the queue is woken.
    fn wake(&self);
}

/// A sleeping task.
pub struct TaskWaker {
    task: Arc<Task>,
    woken: AtomicBool,
}

impl TaskWaker {
    /// A waker for the current task.
    pub fn current() -> Arc<TaskWaker> {
        Arc::new(TaskWaker { task: current_arc(), woken: AtomicBool::new(false) })
    }

    /// True once woken.
    pub fn woken(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }
}

impl Waker for TaskWaker {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        sched::wake(&self.task);
    }
}

static WATCH_IDS: AtomicU64 = AtomicU64::new(1);

/// A queue of sleeping tasks and persistent watchers.
pub struct WaitQueue {
    /// One-shot waiters (removed when woken).
    waiters: SpinLock<Vec<Arc<TaskWaker>>>,
    /// Persistent watchers (epoll), until removed.
    watchers: SpinLock<Vec<(u64, Arc<dyn Waker>)>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> WaitQueue {
        WaitQueue { waiters: SpinLock::new(Vec::new()), watchers: SpinLock::new(Vec::new()) }
    }

    /// Wakes every waiter and tells every watcher.
    pub fn wake_all(&self) {
        let ws = core::mem::take(&mut *self.waiters.lock());
        for w in ws {
            w.wake();
        }
        self.notify_watchers();
    }

    /// Wakes up to `n` waiters (watchers are always told); returns how many
    /// sleeping tasks were woken.
    pub fn wake_n(&self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n {
            let Some(w) = ({
                let mut ws = self.waiters.lock();
                if ws.is_empty() {
                    None
                } else {
                    Some(ws.remove(0))
                }
            }) else {
                break;
            };
            if sched::wake(&w.task) {
                woken += 1;
            }
            w.woken.store(true, Ordering::Release);
        }
        self.notify_watchers();
        woken
    }

    fn notify_watchers(&self) {
        let watchers: Vec<Arc<dyn Waker>> = self.watchers.lock().iter().map(|(_, w)| w.clone()).collect();
        for w in watchers {
            w.wake();
        }
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.lock().is_empty()
    }

    /// Adds a one-shot waiter (poll, select: one waker on several queues).
    pub fn add(&self, w: &Arc<TaskWaker>) {
        self.waiters.lock().push(w.clone());
    }

    /// Removes a one-shot waiter.
    pub fn remove(&self, w: &Arc<TaskWaker>) {
        self.waiters.lock().retain(|x| !Arc::ptr_eq(x, w));
    }

    /// Adds a persistent watcher; returns its id for [`WaitQueue::unwatch`].
    pub fn watch(&self, w: Arc<dyn Waker>) -> u64 {
        let id = WATCH_IDS.fetch_add(1, Ordering::Relaxed);
        self.watchers.lock().push((id, w));
        id
    }

    /// Removes a persistent watcher.
    pub fn unwatch(&self, id: u64) {
        self.watchers.lock().retain(|(i, _)| *i != id);
    }

    /// Sleeps until `cond()` is true. `interruptible`: a pending signal ends
    /// the wait. `deadline`: monotonic nanoseconds (None: no limit).
    pub fn wait_until(&self, cond: impl FnMut() -> bool, interruptible: bool, deadline: Option<u64>) -> WaitResult {
        wait_on(&[self], cond, interruptible, deadline)
    }
}

/// Sleeps on several queues at once until `cond()` holds (poll, select).
pub fn wait_on(
    queues: &[&WaitQueue],
    mut cond: impl FnMut() -> bool,
    interruptible: bool,
    deadline: Option<u64>,
) -> WaitResult {
    let me = current_arc();
    loop {
        if cond() {
            return WaitResult::Ready;
        }
        if interruptible && super::signal::has_deliverable(&me) {
            return WaitResult::Interrupted;
        }
        if let Some(d) = deadline {
            if crate::time::monotonic_ns() >= d {
                return WaitResult::TimedOut;
            }
        }
        // A waker object only when there are queues to wake us (a plain
        // sleep is woken by timers, signals or `sched::wake` directly).
        let w = (!queues.is_empty()).then(|| Arc::new(TaskWaker { task: me.clone(), woken: AtomicBool::new(false) }));
        if let Some(w) = &w {
            for q in queues {
                q.add(w);
            }
        }
        // Interruptible before the re-check below: a sender sets the
        // signal's flag and then reads `interruptible` (both SeqCst, see
        // `signal::signal_wake`), so either it wakes us or we see the signal.
        super::interruptible_sleep(&me, interruptible);
        me.state.store(State::Sleeping as u8, Ordering::SeqCst);
        // Re-check after publishing the sleep (see the module docs).
        let abort = cond() || (interruptible && super::signal::has_deliverable(&me));
        if !abort && !w.as_ref().is_some_and(|w| w.woken()) {
            let t = deadline.map(|d| timer::arm(d, timer::Action::Wake(me.clone())));
            sched::schedule();
            if let Some(id) = t {
                timer::cancel(id);
            }
        } else {
            // Undo the sleep unless a waker already did (we are the running
            // task, so a wake-up never queued us).
            let _ = me.state.compare_exchange(
                State::Sleeping as u8,
                State::Runnable as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        super::interruptible_sleep(&me, false);
        if let Some(w) = &w {
            for q in queues {
                q.remove(w);
            }
        }
    }
}

/// Sleeps until the deadline (monotonic ns) or a signal. Returns
/// `Interrupted` when a signal ended it early.
pub fn sleep_until(deadline: u64) -> WaitResult {
    match wait_on(&[], || false, true, Some(deadline)) {
        WaitResult::TimedOut => WaitResult::Ready,
        other => other,
    }
}
