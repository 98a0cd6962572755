//! Pipes and FIFOs: a ring buffer in guest memory with reader and writer
//! wait queues. Writes of at most PIPE_BUF bytes are atomic; a write with no
//! reader left raises SIGPIPE and fails with EPIPE; reads return 0 once no
//! writer is left and the buffer is empty.

use super::file::File;
use super::iobuf::IoBuf;
use super::poll::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::FileOps;
use crate::sync::SpinLock;
use crate::task::wait::{WaitQueue, WaitResult};
use crate::task::{self, signal};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use qlib::linux::Errno;

/// Atomic write size.
pub const PIPE_BUF: usize = 4096;
/// Default capacity (Linux's 16 pages).
pub const DEFAULT_CAPACITY: usize = 65536;
/// Largest capacity F_SETPIPE_SZ accepts (Linux's pipe-max-size default).
pub const MAX_CAPACITY: usize = 1 << 20;

struct Ring {
    buf: Vec<u8>,
    head: usize,
    len: usize,
    capacity: usize,
    readers: usize,
    writers: usize,
    /// A writer has ever opened it (FIFO readers do not see EOF before).
    had_writer: bool,
}

/// A pipe (both ends share it).
pub struct Pipe {
    ring: SpinLock<Ring>,
    /// Woken when data arrives or the last writer leaves.
    readable: WaitQueue,
    /// Woken when space frees up or the last reader leaves.
    writable: WaitQueue,
}

impl Pipe {
    /// A new pipe with no ends open.
    pub fn new() -> Arc<Pipe> {
        Arc::new(Pipe {
            ring: SpinLock::new(Ring {
                buf: Vec::new(),
                head: 0,
                len: 0,
                capacity: DEFAULT_CAPACITY,
                readers: 0,
                writers: 0,
                had_writer: false,
            }),
            readable: WaitQueue::new(),
            writable: WaitQueue::new(),
        })
    }

    /// Opens one end.
    pub fn open_end(self: &Arc<Self>, writer: bool) -> Arc<PipeEnd> {
        let mut r = self.ring.lock();
        if writer {
            r.writers += 1;
            r.had_writer = true;
        } else {
            r.readers += 1;
        }
        drop(r);
        self.readable.wake_all();
        self.writable.wake_all();
        Arc::new(PipeEnd { pipe: self.clone(), writer })
    }

    /// Current capacity.
    pub fn capacity(&self) -> usize {
        self.ring.lock().capacity
    }

    /// F_SETPIPE_SZ: resizes (not below the current contents).
    pub fn set_capacity(&self, want: usize) -> Result<usize, Errno> {
        let size = want.max(4096).next_power_of_two();
        if size > MAX_CAPACITY {
            return Err(Errno::EPERM);
        }
        let mut r = self.ring.lock();
        if size < r.len {
            return Err(Errno::EBUSY);
        }
        let mut nb = vec![0u8; if r.buf.is_empty() { 0 } else { size }];
        if !r.buf.is_empty() {
            for (i, slot) in nb.iter_mut().enumerate().take(r.len) {
                *slot = r.buf[(r.head + i) % r.buf.len()];
            }
        }
        r.buf = nb;
        r.head = 0;
        r.capacity = size;
        Ok(size)
    }

    /// Bytes buffered (FIONREAD).
    pub fn available(&self) -> usize {
        self.ring.lock().len
    }
}

/// One end of a pipe.
pub struct PipeEnd {
    pub pipe: Arc<Pipe>,
    pub writer: bool,
}

impl FileOps for PipeEnd {
    fn stat(&self, f: &File) -> Result<qlib::linux::types::Stat, Errno> {
        let c = crate::task::process().creds.lock().clone();
        Ok(qlib::linux::types::Stat {
            st_dev: 0xd,
            st_ino: super::anon_ino(f),
            st_nlink: 1,
            st_mode: qlib::linux::consts::mode::S_IFIFO | 0o600,
            st_uid: c.euid,
            st_gid: c.egid,
            st_blksize: 4096,
            ..Default::default()
        })
    }

    fn anon_name(&self) -> &'static str {
        "pipe"
    }

    fn read(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if self.writer {
            return Err(Errno::EBADF);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let p = &self.pipe;
        loop {
            {
                let mut r = p.ring.lock();
                if r.len > 0 {
                    let mut copied = 0usize;
                    while r.len > 0 && buf.remaining() > 0 {
                        let cap = r.buf.len();
                        let contiguous = (cap - r.head).min(r.len);
                        let head = r.head;
                        let n = match buf.write_from(&r.buf[head..head + contiguous]) {
                            Ok(n) => n,
                            Err(e) if copied == 0 => return Err(e),
                            Err(_) => break,
                        };
                        r.head = (r.head + n) % cap;
                        r.len -= n;
                        copied += n;
                        if n < contiguous {
                            break;
                        }
                    }
                    drop(r);
                    p.writable.wake_all();
                    return Ok(copied);
                }
                if r.writers == 0 && r.had_writer {
                    return Ok(0);
                }
            }
            if f.nonblocking() {
                return Err(Errno::EAGAIN);
            }
            let ready = || {
                let r = p.ring.lock();
                r.len > 0 || (r.writers == 0 && r.had_writer)
            };
            if p.readable.wait_until(ready, true, None) == WaitResult::Interrupted {
                return Err(Errno::ERESTARTSYS);
            }
        }
    }

    fn write(&self, f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if !self.writer {
            return Err(Errno::EBADF);
        }
        let p = &self.pipe;
        let total = buf.remaining() as usize;
        let atomic = total <= PIPE_BUF;
        let mut written = 0usize;
        loop {
            {
                let mut r = p.ring.lock();
                if r.readers == 0 {
                    drop(r);
                    let t = task::current_arc();
                    let sig = qlib::linux::consts::signal::SIGPIPE;
                    signal::send_to_task(&t, sig, signal::SigInfo::kernel(sig));
                    return if written == 0 { Err(Errno::EPIPE) } else { Ok(written) };
                }
                if r.buf.is_empty() {
                    let cap = r.capacity;
                    r.buf = vec![0u8; cap];
                }
                let space = r.buf.len() - r.len;
                if space > 0 && (!atomic || space >= total - written) {
                    while r.len < r.buf.len() && buf.remaining() > 0 {
                        let cap = r.buf.len();
                        let tail = (r.head + r.len) % cap;
                        let contiguous = if tail >= r.head { cap - tail } else { r.head - tail };
                        let n = match buf.read_into(&mut r.buf[tail..tail + contiguous]) {
                            Ok(n) => n,
                            Err(e) if written == 0 => return Err(e),
                            Err(_) => return Ok(written),
                        };
                        r.len += n;
                        written += n;
                        if n < contiguous {
                            break;
                        }
                    }
                    drop(r);
                    p.readable.wake_all();
                    if buf.remaining() == 0 {
                        return Ok(written);
                    }
                    continue;
                }
            }
            if f.nonblocking() {
                return if written == 0 { Err(Errno::EAGAIN) } else { Ok(written) };
            }
            let need = if atomic { total - written } else { 1 };
            let ready = || {
                let r = p.ring.lock();
                r.readers == 0 || r.capacity - r.len >= need
            };
            if p.writable.wait_until(ready, true, None) == WaitResult::Interrupted {
                return if written == 0 { Err(Errno::ERESTARTSYS) } else { Ok(written) };
            }
        }
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _f: &File) -> u32 {
        let r = self.pipe.ring.lock();
        let mut ev = 0;
        if self.writer {
            if r.readers == 0 {
                ev |= POLLERR;
            } else if r.capacity - r.len >= PIPE_BUF.min(r.capacity) {
                ev |= POLLOUT | POLLWRNORM;
            }
        } else {
            if r.len > 0 {
                ev |= POLLIN | POLLRDNORM;
            }
            if r.writers == 0 && r.had_writer {
                ev |= POLLHUP;
            }
        }
        ev
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(if self.writer { &self.pipe.writable } else { &self.pipe.readable })
    }

    fn ioctl(&self, _f: &File, req: u64, arg: u64) -> Result<u64, Errno> {
        if req == qlib::linux::consts::ioctl::FIONREAD {
            crate::arch::x86_64::usercopy::write_user(arg, &(self.pipe.available() as i32))?;
            return Ok(0);
        }
        Err(Errno::ENOTTY)
    }

    fn release(&self, _f: &File) {
        let mut r = self.pipe.ring.lock();
        if self.writer {
            r.writers -= 1;
        } else {
            r.readers -= 1;
        }
        drop(r);
        self.pipe.readable.wake_all();
        self.pipe.writable.wake_all();
    }
}
