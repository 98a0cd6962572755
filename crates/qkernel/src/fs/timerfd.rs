//! timerfd: expirations of a CLOCK_MONOTONIC/REALTIME/BOOTTIME timer
//! counted lazily from the deadline and interval; a kernel timer wakes the
//! file's queue at each expiry so poll and epoll see it.

use super::file::File;
use super::iobuf::IoBuf;
use super::poll::{POLLIN, POLLRDNORM};
use super::FileOps;
use crate::sync::SpinLock;
use crate::task::timer::{self, Action, TimerId};
use crate::task::wait::{WaitQueue, WaitResult, Waker};
use alloc::sync::{Arc, Weak};
use qlib::linux::Errno;

struct State {
    /// Monotonic deadline of the next expiry (0: disarmed).
    next: u64,
    interval: u64,
    /// Expirations counted but not read yet.
    pending: u64,
    armed: Option<TimerId>,
}

/// A timerfd.
pub struct TimerFd {
    state: SpinLock<State>,
    queue: WaitQueue,
    me: SpinLock<Weak<TimerFd>>,
    /// CLOCK_REALTIME: absolute times are converted with the offset at set.
    pub realtime: bool,
}

struct Ring(Weak<TimerFd>);

impl Waker for Ring {
    fn wake(&self) {
        if let Some(t) = self.0.upgrade() {
            t.expired();
        }
    }
}

impl TimerFd {
    /// A disarmed timer.
    pub fn new(realtime: bool) -> Arc<TimerFd> {
        let t = Arc::new(TimerFd {
            state: SpinLock::new(State { next: 0, interval: 0, pending: 0, armed: None }),
            queue: WaitQueue::new(),
            me: SpinLock::new(Weak::new()),
            realtime,
        });
        *t.me.lock() = Arc::downgrade(&t);
        t
    }

    /// Counts expirations up to now; re-arms the kernel timer.
    fn update(&self, s: &mut State) {
        let now = crate::time::monotonic_ns();
        if s.next == 0 || now < s.next {
            return;
        }
        match (now - s.next).checked_div(s.interval) {
            None => {
                s.pending += 1;
                s.next = 0;
            }
            Some(k) => {
                s.pending += k + 1;
                s.next += (k + 1) * s.interval;
            }
        }
    }

    fn arm_kernel_timer(&self, s: &mut State) {
        if let Some(id) = s.armed.take() {
            timer::cancel(id);
        }
        if s.next != 0 {
            let w: Arc<dyn Waker> = Arc::new(Ring(self.me.lock().clone()));
            s.armed = Some(timer::arm(s.next, Action::Notify(w)));
        }
    }

    fn expired(&self) {
        {
            let mut s = self.state.lock();
            s.armed = None;
            self.update(&mut s);
            self.arm_kernel_timer(&mut s);
        }
        self.queue.wake_all();
    }

    /// timerfd_settime with a monotonic deadline (0 disarms); returns the
    /// old (remaining, interval).
    pub fn set(&self, deadline: u64, interval: u64) -> (u64, u64) {
        let mut s = self.state.lock();
        let old = self.get_locked(&mut s);
        s.next = deadline;
        s.interval = interval;
        s.pending = 0;
        self.arm_kernel_timer(&mut s);
        drop(s);
        self.queue.wake_all();
        old
    }

    fn get_locked(&self, s: &mut State) -> (u64, u64) {
        self.update(s);
        let rem = if s.next == 0 { 0 } else { s.next.saturating_sub(crate::time::monotonic_ns()).max(1) };
        (rem, s.interval)
    }

    /// timerfd_gettime: (remaining, interval).
    pub fn get(&self) -> (u64, u64) {
        self.get_locked(&mut self.state.lock())
    }
}

impl Drop for TimerFd {
    fn drop(&mut self) {
        if let Some(id) = self.state.lock().armed.take() {
            timer::cancel(id);
        }
    }
}

/// The descriptor's operations (the Arc keeps `me` valid).
pub struct TimerFdFile(pub Arc<TimerFd>);

impl FileOps for TimerFdFile {
    fn anon_name(&self) -> &'static str {
        "anon_inode:[timerfd]"
    }

    fn read(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let t = &self.0;
        let mut got = 0u64;
        let mut take = || {
            let mut s = t.state.lock();
            t.update(&mut s);
            got = core::mem::take(&mut s.pending);
            got > 0
        };
        if !take() {
            if f.nonblocking() {
                return Err(Errno::EAGAIN);
            }
            if t.queue.wait_until(take, true, None) == WaitResult::Interrupted && got == 0 {
                return Err(Errno::ERESTARTSYS);
            }
        }
        buf.write_from(&got.to_ne_bytes())
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _f: &File) -> u32 {
        let mut s = self.0.state.lock();
        self.0.update(&mut s);
        if s.pending > 0 {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.0.queue)
    }

    fn timerfd(&self) -> Option<&Arc<TimerFd>> {
        Some(&self.0)
    }
}

/// The timer behind a descriptor's operations, if it is a timerfd.
pub fn lookup(ops: &Arc<dyn FileOps>) -> Option<Arc<TimerFd>> {
    ops.timerfd().cloned()
}
