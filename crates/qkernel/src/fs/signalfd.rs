//! signalfd: pending signals of the reading task, as
//! `struct signalfd_siginfo` records. Any signal sent anywhere wakes the
//! waiters (one global queue: cheap, and spurious wakeups re-check).

use super::file::File;
use super::iobuf::IoBuf;
use super::poll::{POLLIN, POLLRDNORM};
use super::FileOps;
use crate::sync::SpinLock;
use crate::task::signal::{SigInfo, SigSet, UNBLOCKABLE};
use crate::task::wait::{WaitQueue, WaitResult};
use crate::task::{self};
use qlib::linux::Errno;

static SIGNALS: WaitQueue = WaitQueue::new();

/// A signal was queued somewhere.
pub fn notify() {
    SIGNALS.wake_all();
}

/// A signalfd's mask (changed by signalfd4 on an existing descriptor).
pub struct SignalFd {
    pub mask: SpinLock<SigSet>,
}

impl SignalFd {
    /// Watches the signals in `mask` (SIGKILL and SIGSTOP never).
    pub fn new(mask: SigSet) -> SignalFd {
        SignalFd { mask: SpinLock::new(mask & !UNBLOCKABLE) }
    }
}

/// Takes one pending signal in `mask` from the current task or its process.
fn take(mask: SigSet) -> Option<SigInfo> {
    let t = task::current();
    let mut s = t.sig.lock();
    let mine = s.pending.set & mask;
    if mine != 0 {
        return s.pending.take(mine.trailing_zeros() + 1);
    }
    drop(s);
    let mut shared = t.process.shared_pending.lock();
    let theirs = shared.set & mask;
    if theirs != 0 {
        return shared.take(theirs.trailing_zeros() + 1);
    }
    None
}

fn pending(mask: SigSet) -> bool {
    let t = task::current();
    (t.sig.lock().pending.set | t.process.shared_pending.lock().set) & mask != 0
}

/// `struct signalfd_siginfo` (128 bytes).
fn record(i: &SigInfo) -> [u8; 128] {
    let mut b = [0u8; 128];
    let w32 = |b: &mut [u8; 128], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    w32(&mut b, 0, i.signo as u32);
    w32(&mut b, 4, i.errno as u32);
    w32(&mut b, 8, i.code as u32);
    // si_pid and si_uid are the first union fields; si_status follows.
    w32(&mut b, 12, i.fields[0] as u32);
    w32(&mut b, 16, (i.fields[0] >> 32) as u32);
    w32(&mut b, 40, i.fields[1] as u32);
    b
}

impl FileOps for SignalFd {
    fn anon_name(&self) -> &'static str {
        "anon_inode:[signalfd]"
    }

    fn read(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if buf.len() < 128 {
            return Err(Errno::EINVAL);
        }
        let mask = *self.mask.lock();
        let mut first = take(mask);
        if first.is_none() {
            if f.nonblocking() {
                return Err(Errno::EAGAIN);
            }
            let r = SIGNALS.wait_until(
                || {
                    first = take(mask);
                    first.is_some()
                },
                true,
                None,
            );
            if r == WaitResult::Interrupted && first.is_none() {
                return Err(Errno::ERESTARTSYS);
            }
        }
        let mut done = 0;
        let mut next = first;
        while let Some(i) = next {
            done += buf.write_from(&record(&i))?;
            if buf.remaining() < 128 {
                break;
            }
            next = take(mask);
        }
        Ok(done)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _f: &File) -> u32 {
        if pending(*self.mask.lock()) {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&SIGNALS)
    }

    fn signalfd(&self) -> Option<&SignalFd> {
        Some(self)
    }
}
