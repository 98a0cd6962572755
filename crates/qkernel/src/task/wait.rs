//! Wait queues: tasks sleep on a queue until a condition holds, a signal
//! arrives (interruptible waits), or a deadline passes.
//!
//! No lost wake-ups: the waiter enqueues itself and marks itself sleeping
//! before re-checking the condition; a waker changes the condition before
//! waking the queue, so either the waiter sees the change or the waker sees
//! the sleeping waiter.

use super::{current_arc, sched, timer, State, Task};
use crate::sync::SpinLock;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

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

/// A queue of sleeping tasks.
pub struct WaitQueue {
    waiters: SpinLock<VecDeque<Arc<Task>>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> WaitQueue {
        WaitQueue { waiters: SpinLock::new(VecDeque::new()) }
    }

    /// Wakes every waiter.
    pub fn wake_all(&self) {
        let ws: VecDeque<Arc<Task>> = core::mem::take(&mut *self.waiters.lock());
        for t in ws {
            sched::wake(&t);
        }
    }

    /// Wakes up to `n` waiters; returns how many were sleeping.
    pub fn wake_n(&self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n {
            let Some(t) = self.waiters.lock().pop_front() else { break };
            if sched::wake(&t) {
                woken += 1;
            }
        }
        woken
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.lock().is_empty()
    }

    fn remove(&self, t: &Arc<Task>) {
        self.waiters.lock().retain(|w| !Arc::ptr_eq(w, t));
    }

    /// Sleeps until `cond()` is true. `interruptible`: a pending signal ends
    /// the wait. `deadline`: monotonic nanoseconds (None: no limit).
    pub fn wait_until(&self, mut cond: impl FnMut() -> bool, interruptible: bool, deadline: Option<u64>) -> WaitResult {
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
            me.timed_out.store(false, Ordering::Relaxed);
            self.waiters.lock().push_back(me.clone());
            me.state.store(State::Sleeping as u8, Ordering::SeqCst);
            // Re-check after publishing the sleep (see the module docs).
            let abort = cond() || (interruptible && super::signal::has_deliverable(&me));
            if abort {
                me.state.store(State::Runnable as u8, Ordering::SeqCst);
                self.remove(&me);
                continue;
            }
            let t = deadline.map(|d| timer::arm(d, timer::Action::Wake(me.clone())));
            super::interruptible_sleep(&me, interruptible);
            sched::schedule();
            super::interruptible_sleep(&me, false);
            if let Some(id) = t {
                timer::cancel(id);
            }
            self.remove(&me);
        }
    }
}

/// Sleeps until the deadline (monotonic ns) or a signal. Returns
/// `Interrupted` when a signal ended it early.
pub fn sleep_until(deadline: u64) -> WaitResult {
    let q = WaitQueue::new();
    match q.wait_until(|| false, true, Some(deadline)) {
        WaitResult::TimedOut => WaitResult::Ready,
        other => other,
    }
}
