//! Readiness: poll/ppoll, select/pselect6, and epoll (level- and
//! edge-triggered, EPOLLONESHOT). Files report readiness with
//! `FileOps::poll` and wake their wait queue when it may have changed; an
//! epoll instance watches those queues persistently and keeps a ready list,
//! so `epoll_wait` looks only at files that changed.

use super::file::File;
use super::iobuf::IoBuf;
use super::FileOps;
use crate::sync::SpinLock;
use crate::task::wait::{self, WaitQueue, WaitResult, Waker};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use qlib::linux::Errno;

pub const POLLIN: u32 = 0x1;
pub const POLLPRI: u32 = 0x2;
pub const POLLOUT: u32 = 0x4;
pub const POLLERR: u32 = 0x8;
pub const POLLHUP: u32 = 0x10;
pub const POLLNVAL: u32 = 0x20;
pub const POLLRDNORM: u32 = 0x40;
pub const POLLRDBAND: u32 = 0x80;
pub const POLLWRNORM: u32 = 0x100;
pub const POLLWRBAND: u32 = 0x200;
pub const POLLRDHUP: u32 = 0x2000;
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
pub const EPOLLWAKEUP: u32 = 1 << 29;
pub const EPOLLONESHOT: u32 = 1 << 30;
pub const EPOLLET: u32 = 1 << 31;

/// Readiness of a file for the requested events (errors and hang-ups are
/// always reported).
pub fn revents(f: &File, events: u32) -> u32 {
    f.ops.poll(f) & (events | POLLERR | POLLHUP | POLLNVAL)
}

/// Waits until `check()` reports readiness (returns true), the deadline
/// passes or a signal arrives, sleeping on the files' wait queues.
pub fn wait_ready(files: &[Arc<File>], mut check: impl FnMut() -> bool, deadline: Option<u64>) -> WaitResult {
    let queues: Vec<&WaitQueue> = files.iter().filter_map(|f| f.ops.wait_queue()).collect();
    wait::wait_on(&queues, &mut check, true, deadline)
}

/// epoll control operations.
pub const EPOLL_CTL_ADD: u64 = 1;
/// See [`EPOLL_CTL_ADD`].
pub const EPOLL_CTL_DEL: u64 = 2;
/// See [`EPOLL_CTL_ADD`].
pub const EPOLL_CTL_MOD: u64 = 3;

type Key = (u64, usize);

struct Item {
    file: Weak<File>,
    events: u32,
    data: u64,
    /// The file's queue watch, removed with the item.
    watch: Option<u64>,
    /// EPOLLONESHOT fired: no reports until EPOLL_CTL_MOD.
    disabled: bool,
}

/// An epoll instance.
pub struct Epoll {
    items: SpinLock<BTreeMap<Key, Item>>,
    /// Items that may be ready (re-checked by epoll_wait).
    ready: SpinLock<VecDeque<Key>>,
    queued: SpinLock<BTreeMap<Key, ()>>,
    /// Woken when the ready list grows (epoll_wait sleeps here; an epoll
    /// file polled by another epoll/poll reports through it too).
    waiters: WaitQueue,
    me: SpinLock<Weak<Epoll>>,
}

/// Tells an epoll that one of its files may have become ready.
struct Watcher {
    epoll: Weak<Epoll>,
    key: Key,
    armed: AtomicBool,
}

impl Waker for Watcher {
    fn wake(&self) {
        if !self.armed.load(Ordering::Acquire) {
            return;
        }
        if let Some(ep) = self.epoll.upgrade() {
            ep.mark_ready(self.key);
        }
    }
}

fn key(fd: u64, f: &Arc<File>) -> Key {
    (fd, Arc::as_ptr(f) as usize)
}

impl Epoll {
    /// A new instance.
    pub fn new() -> Arc<Epoll> {
        let e = Arc::new(Epoll {
            items: SpinLock::new(BTreeMap::new()),
            ready: SpinLock::new(VecDeque::new()),
            queued: SpinLock::new(BTreeMap::new()),
            waiters: WaitQueue::new(),
            me: SpinLock::new(Weak::new()),
        });
        *e.me.lock() = Arc::downgrade(&e);
        e
    }

    fn mark_ready(&self, k: Key) {
        if self.queued.lock().insert(k, ()).is_none() {
            self.ready.lock().push_back(k);
        }
        self.waiters.wake_all();
    }

    /// epoll_ctl.
    pub fn ctl(&self, op: u64, fd: u64, file: &Arc<File>, events: u32, data: u64) -> Result<(), Errno> {
        if let Some(target) = file.ops_as_epoll() {
            if core::ptr::eq(target, self) {
                return Err(Errno::EINVAL);
            }
        }
        let k = key(fd, file);
        let mut items = self.items.lock();
        match op {
            EPOLL_CTL_ADD => {
                if items.contains_key(&k) {
                    return Err(Errno::EEXIST);
                }
                let watch = file.ops.wait_queue().map(|q| {
                    q.watch(Arc::new(Watcher { epoll: self.me.lock().clone(), key: k, armed: AtomicBool::new(true) }))
                });
                items.insert(k, Item { file: Arc::downgrade(file), events, data, watch, disabled: false });
            }
            EPOLL_CTL_MOD => {
                let it = items.get_mut(&k).ok_or(Errno::ENOENT)?;
                if it.events & EPOLLEXCLUSIVE != 0 {
                    return Err(Errno::EINVAL);
                }
                it.events = events;
                it.data = data;
                it.disabled = false;
            }
            EPOLL_CTL_DEL => {
                let it = items.remove(&k).ok_or(Errno::ENOENT)?;
                if let (Some(id), Some(f)) = (it.watch, it.file.upgrade()) {
                    if let Some(q) = f.ops.wait_queue() {
                        q.unwatch(id);
                    }
                }
                return Ok(());
            }
            _ => return Err(Errno::EINVAL),
        }
        drop(items);
        // Evaluate it at the next wait.
        self.mark_ready(k);
        Ok(())
    }

    /// Collects up to `max` ready events; empty when none. One pass over
    /// the ready list (O(ready), not O(ready²)): each candidate is taken off
    /// the list before its file is checked, so a wake-up that races with the
    /// check queues it again; level-triggered items that are still ready go
    /// back at the tail.
    fn collect(&self, max: usize) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut keep: Vec<Key> = Vec::new();
        let n = self.ready.lock().len();
        for _ in 0..n {
            if out.len() >= max {
                break;
            }
            let Some(k) = self.ready.lock().pop_front() else { break };
            self.queued.lock().remove(&k);
            let mut items = self.items.lock();
            let Some(it) = items.get_mut(&k) else { continue };
            let Some(file) = it.file.upgrade() else {
                items.remove(&k);
                continue;
            };
            if it.disabled {
                continue;
            }
            let ev = revents(&file, it.events & !(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP));
            if ev == 0 {
                continue;
            }
            out.push((ev, it.data));
            if it.events & EPOLLONESHOT != 0 {
                it.disabled = true;
            }
            // Level-triggered items stay queued (reported again while
            // ready); edge-triggered ones wait for the next change.
            let edge = it.events & (EPOLLET | EPOLLONESHOT) != 0
                || file.ops.wait_queue().is_none() && it.events & EPOLLET != 0;
            if !edge {
                keep.push(k);
            }
        }
        if !keep.is_empty() {
            let mut queued = self.queued.lock();
            let mut ready = self.ready.lock();
            for k in keep {
                if queued.insert(k, ()).is_none() {
                    ready.push_back(k);
                }
            }
        }
        out
    }

    /// Whether some item is ready, without consuming anything (an epoll
    /// file polled by poll or another epoll).
    fn any_ready(&self) -> bool {
        let candidates: Vec<Key> = self.ready.lock().iter().copied().collect();
        let items = self.items.lock();
        candidates.iter().any(|k| {
            items.get(k).is_some_and(|it| {
                !it.disabled
                    && it.file.upgrade().is_some_and(|f| {
                        revents(&f, it.events & !(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP)) != 0
                    })
            })
        })
    }

    /// epoll_wait: returns (events, data) pairs.
    pub fn wait(&self, max: usize, deadline: Option<u64>) -> Result<Vec<(u32, u64)>, Errno> {
        let mut got = self.collect(max);
        if !got.is_empty() || deadline.is_some_and(|d| d <= crate::time::monotonic_ns()) {
            return Ok(got);
        }
        let r = self.waiters.wait_until(
            || {
                got = self.collect(max);
                !got.is_empty()
            },
            true,
            deadline,
        );
        match r {
            WaitResult::Interrupted if got.is_empty() => Err(Errno::EINTR),
            _ => Ok(got),
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        for (_, it) in core::mem::take(&mut *self.items.lock()) {
            if let (Some(id), Some(f)) = (it.watch, it.file.upgrade()) {
                if let Some(q) = f.ops.wait_queue() {
                    q.unwatch(id);
                }
            }
        }
    }
}

/// An epoll instance as an open file.
pub struct EpollFile(pub Arc<Epoll>);

impl FileOps for EpollFile {
    fn anon_name(&self) -> &'static str {
        "anon_inode:[eventpoll]"
    }

    fn read(&self, _f: &File, _b: &mut IoBuf, _o: u64) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _f: &File) -> u32 {
        if !self.0.any_ready() {
            0
        } else {
            POLLIN | POLLRDNORM
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.0.waiters)
    }

    fn as_epoll(&self) -> Option<&Epoll> {
        Some(&self.0)
    }
}

impl File {
    /// The epoll instance behind this file, if it is one.
    pub fn ops_as_epoll(&self) -> Option<&Epoll> {
        self.ops.as_epoll()
    }
}
