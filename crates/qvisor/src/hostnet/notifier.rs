//! Readiness of host sockets for the guest: one host epoll instance serves
//! every socket of the sandbox. Sockets are registered edge-triggered
//! (`EPOLLET`) with the host handle as the epoll cookie, so the notifier
//! produces one compact [`Event`] `{handle, revents}` per readiness *change*
//! and never wakes for a condition the guest has already been told about.
//! A transport thread blocks in [`Notifier::wait`] (or polls
//! [`Notifier::fd`] together with its own wakeups), then [`Notifier::drain`]s
//! the events and posts them into the guest. The guest turns the edges back
//! into level semantics with the rule in docs/hostnet.md ("Readiness").

use super::sys as nsys;
use crate::sys::Errno;
use qlib::hostnet::Event;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

/// Events harvested per `epoll_wait`.
const BATCH: usize = 256;

/// The sandbox's host epoll instance and the events harvested from it but
/// not yet drained.
pub struct Notifier {
    epfd: nsys::Fd,
    pending: Mutex<Vec<Event>>,
}

impl Notifier {
    /// Creates the epoll instance.
    pub fn new() -> Result<Notifier, Errno> {
        Ok(Notifier { epfd: nsys::epoll_create()?, pending: Mutex::new(Vec::new()) })
    }

    /// The epoll descriptor: readable while events are ready (for a
    /// transport that waits on several sources at once).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epfd.as_fd()
    }

    /// Reports `mask` (plus EPOLLERR/EPOLLHUP) for `fd` as `handle`.
    /// `registered` says whether `fd` is in the set already. The kernel
    /// checks the socket's current state at once, so a condition that is
    /// already true is reported (once) too.
    pub(crate) fn watch(&self, fd: RawFd, handle: u64, mask: u32, registered: bool) -> Result<(), Errno> {
        let op = if registered { nsys::EPOLL_CTL_MOD } else { nsys::EPOLL_CTL_ADD };
        nsys::epoll_ctl(self.epfd.as_raw_fd(), op, fd, mask | nsys::EPOLLET, handle)
    }

    /// Stops reporting `fd`.
    pub(crate) fn unwatch(&self, fd: RawFd) -> Result<(), Errno> {
        nsys::epoll_ctl(self.epfd.as_raw_fd(), nsys::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn harvest(&self, timeout_ms: i32) -> Result<usize, Errno> {
        let mut buf = [[0u8; 12]; BATCH];
        let mut timeout = timeout_ms;
        let mut total = 0;
        loop {
            let n = match nsys::epoll_wait(self.epfd.as_raw_fd(), &mut buf, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e),
            };
            if n > 0 {
                let mut p = self.pending.lock().map_err(|_| Errno::EIO)?;
                for ev in &buf[..n] {
                    let revents = u32::from_ne_bytes([ev[0], ev[1], ev[2], ev[3]]);
                    let handle = u64::from_ne_bytes([ev[4], ev[5], ev[6], ev[7], ev[8], ev[9], ev[10], ev[11]]);
                    p.push(Event { handle, revents, _pad: 0 });
                }
            }
            total += n;
            // A full batch may have left more behind: take them without waiting.
            if n < BATCH {
                return Ok(total);
            }
            timeout = 0;
        }
    }

    /// Blocks until at least one event is pending or `timeout` passes
    /// (`None` = no timeout); a signal also ends the wait early. Returns the
    /// number of pending events. One `epoll_wait` serves all sockets; nothing
    /// spins.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<usize, Errno> {
        let pending = self.pending.lock().map_err(|_| Errno::EIO)?.len();
        if pending > 0 {
            return Ok(pending);
        }
        let ms = match timeout {
            None => -1,
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        self.harvest(ms)?;
        Ok(self.pending.lock().map_err(|_| Errno::EIO)?.len())
    }

    /// Moves every pending and ready event into `out` without blocking;
    /// returns how many were added.
    pub fn drain(&self, out: &mut Vec<Event>) -> Result<usize, Errno> {
        self.harvest(0)?;
        let mut p = self.pending.lock().map_err(|_| Errno::EIO)?;
        let n = p.len();
        out.append(&mut p);
        Ok(n)
    }
}
