//! eventfd: a 64-bit counter with a wait queue.

use super::file::File;
use super::iobuf::IoBuf;
use super::poll::{POLLERR, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::FileOps;
use crate::sync::SpinLock;
use crate::task::wait::{WaitQueue, WaitResult};
use qlib::linux::Errno;

/// EFD_SEMAPHORE.
pub const EFD_SEMAPHORE: u64 = 1;

/// An eventfd counter.
pub struct EventFd {
    count: SpinLock<u64>,
    semaphore: bool,
    queue: WaitQueue,
}

impl EventFd {
    /// A counter starting at `init`.
    pub fn new(init: u64, semaphore: bool) -> EventFd {
        EventFd { count: SpinLock::new(init), semaphore, queue: WaitQueue::new() }
    }
}

impl FileOps for EventFd {
    fn anon_name(&self) -> &'static str {
        "anon_inode:[eventfd]"
    }

    fn read(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut got = 0u64;
        let take = || {
            let mut c = self.count.lock();
            if *c == 0 {
                return None;
            }
            let v = if self.semaphore { 1 } else { *c };
            *c -= v;
            Some(v)
        };
        if let Some(v) = take() {
            got = v;
        } else {
            if f.nonblocking() {
                return Err(Errno::EAGAIN);
            }
            let r = self.queue.wait_until(
                || match take() {
                    Some(v) => {
                        got = v;
                        true
                    }
                    None => false,
                },
                true,
                None,
            );
            if r == WaitResult::Interrupted && got == 0 {
                return Err(Errno::ERESTARTSYS);
            }
        }
        self.queue.wake_all();
        buf.write_from(&got.to_ne_bytes())
    }

    fn write(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 8];
        if buf.read_into(&mut b)? != 8 {
            return Err(Errno::EFAULT);
        }
        let v = u64::from_ne_bytes(b);
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let add = || {
            let mut c = self.count.lock();
            if u64::MAX - 1 - *c >= v {
                *c += v;
                true
            } else {
                false
            }
        };
        if !add() {
            if f.nonblocking() {
                return Err(Errno::EAGAIN);
            }
            if self.queue.wait_until(add, true, None) == WaitResult::Interrupted {
                return Err(Errno::ERESTARTSYS);
            }
        }
        self.queue.wake_all();
        Ok(8)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _f: &File) -> u32 {
        let c = *self.count.lock();
        let mut r = 0;
        if c > 0 {
            r |= POLLIN | POLLRDNORM;
        }
        if c < u64::MAX - 1 {
            r |= POLLOUT | POLLWRNORM;
        }
        if c == u64::MAX {
            r |= POLLERR;
        }
        r
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
    }
}
