//! Host extras (feature `std`): memfd-backed shared memory, eventfd wakeups,
//! peer-death detection, fd handover over a unix socket, and `readv`/`writev`
//! straight into byte-stream windows.
//!
//! A typical host ↔ host set-up:
//!
//! 1. the creator makes a [`SharedMemory`] (sealed memfd), `init`s its rings
//!    and two [`EventFd`]s per SPSC ring ("to consumer", "to producer");
//! 2. it sends them over a connected `UnixStream` with [`handover::send`];
//! 3. the peer receives them with [`handover::recv`] and attaches;
//! 4. both keep the socket open: it hangs up when the other process dies, and
//!    [`PeerWatch::socket`] turns that into [`Error::PeerGone`] in any blocked
//!    call (or use [`PeerWatch::pid`], a pidfd, when the peer is a child).

mod sys;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::raw::Region;
use crate::stream::{Reader, Writer};
use crate::wake::Wake;

pub use sys::{monotonic_ns, pin_to_cpu, pipe};

const PAGE: usize = 4096;

/// A memfd mapped shared, sealed against shrinking and growing so that a peer
/// cannot truncate it under us (which would turn our accesses into SIGBUS).
pub struct SharedMemory {
    fd: OwnedFd,
    map: sys::Mapping,
}

impl SharedMemory {
    /// Creates a zero-filled memfd of `len` bytes (rounded up to a page) and maps it.
    pub fn create(name: &str, len: usize) -> Result<SharedMemory> {
        let name = CString::new(name).map_err(|_| Error::InvalidArgument("memfd name contains a NUL byte"))?;
        let len = len.checked_next_multiple_of(PAGE).ok_or(Error::InvalidArgument("shared region too large"))?;
        let fd = sys::memfd(&name)?;
        sys::truncate(fd.as_fd(), len as u64)?;
        sys::add_seals(fd.as_fd(), sys::F_SEAL_SHRINK | sys::F_SEAL_GROW | sys::F_SEAL_SEAL)?;
        let map = sys::Mapping::new(fd.as_fd(), len)?;
        Ok(SharedMemory { fd, map })
    }

    /// Maps a memfd received from a peer, after checking it cannot shrink.
    pub fn from_fd(fd: OwnedFd) -> Result<SharedMemory> {
        let seals = sys::seals(fd.as_fd())?;
        if seals & sys::F_SEAL_SHRINK == 0 {
            return Err(Error::Protocol(
                "the memfd is not sealed against shrinking: the peer could truncate it and crash this process \
                 with SIGBUS; create it with SharedMemory::create",
            ));
        }
        let file = std::fs::File::from(fd);
        let len = file.metadata().map_err(|e| Error::Os { op: "fstat", errno: e.raw_os_error().unwrap_or(0) })?.len();
        let len = usize::try_from(len).map_err(|_| Error::InvalidArgument("memfd too large"))?;
        let fd = OwnedFd::from(file);
        let map = sys::Mapping::new(fd.as_fd(), len)?;
        Ok(SharedMemory { fd, map })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn region(&self) -> &Region {
        self.map.region()
    }
}

impl core::ops::Deref for SharedMemory {
    type Target = Region;
    fn deref(&self) -> &Region {
        self.map.region()
    }
}

/// A non-blocking eventfd used as a counting signal between host processes.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> Result<EventFd> {
        Ok(EventFd { fd: sys::new_eventfd()? })
    }

    /// Wraps an eventfd received from a peer, after checking (in
    /// `/proc/self/fdinfo`) that it is an eventfd and non-blocking: reads
    /// happen only after `poll` says readable, but a peer could drain the
    /// counter in between, and a blocking read would then hang.
    pub fn from_fd(fd: OwnedFd) -> Result<EventFd> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
            .map_err(|e| Error::Os { op: "read /proc/self/fdinfo", errno: e.raw_os_error().unwrap_or(0) })?;
        if !info.lines().any(|l| l.starts_with("eventfd-count:")) {
            return Err(Error::Protocol("a descriptor announced as an eventfd is not an eventfd"));
        }
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .unwrap_or(0);
        if flags & 0o4000 == 0 {
            return Err(Error::Protocol(
                "the eventfd is blocking; create it with EventFd::new (O_NONBLOCK) so a drained counter cannot hang a read",
            ));
        }
        Ok(EventFd { fd })
    }

    pub fn try_clone(&self) -> Result<EventFd> {
        let fd = self.fd.try_clone().map_err(|e| Error::Os { op: "dup", errno: e.raw_os_error().unwrap_or(0) })?;
        Ok(EventFd { fd })
    }

    /// Adds one to the counter (wakes a poller).
    pub fn notify(&self) -> Result<()> {
        sys::eventfd_add(self.fd.as_fd(), 1)
    }

    /// Takes the counter without blocking: `Ok(0)` if nothing was signalled.
    pub fn take(&self) -> Result<u64> {
        sys::eventfd_take(self.fd.as_fd())
    }

    /// Waits until signalled (`Ok(true)`, counter taken), the timeout passes
    /// (`Ok(false)`), or the watched peer is gone (`Err(PeerGone)`).
    pub fn wait(&self, watch: Option<&PeerWatch>, timeout: Option<Duration>) -> Result<bool> {
        let ms = match timeout {
            None => -1,
            Some(t) => i32::try_from(t.as_millis().max(if t.is_zero() { 0 } else { 1 })).unwrap_or(i32::MAX),
        };
        let mut fds = [
            sys::PollFd { fd: self.fd.as_raw_fd(), events: sys::POLLIN, revents: 0 },
            sys::PollFd { fd: -1, events: sys::POLLIN | sys::POLLRDHUP, revents: 0 },
        ];
        if let Some(w) = watch {
            fds[1].fd = w.fd.as_raw_fd();
        }
        if sys::poll_fds(&mut fds, ms)? == 0 {
            return Ok(false);
        }
        if fds[0].revents & (sys::POLLERR | sys::POLLNVAL) != 0 {
            return Err(Error::Os { op: "poll(eventfd)", errno: 9 });
        }
        // A signal wins over a hang-up: a peer that published, signalled and
        // exited left work to do first.
        if fds[0].revents != 0 {
            // Readable, or another waiter drained it first (a spurious wakeup).
            self.take()?;
            return Ok(true);
        }
        match watch {
            Some(w) if fds[1].revents != 0 && w.gone_on(fds[1].revents)? => Err(Error::PeerGone),
            _ => Ok(true),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Detects the death of the peer process.
#[derive(Debug)]
pub struct PeerWatch {
    fd: OwnedFd,
    kind: WatchKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchKind {
    Pidfd,
    Socket,
}

impl PeerWatch {
    /// Watches a process by pidfd (readable once it exits). Race-free for our own children.
    pub fn pid(pid: u32) -> Result<PeerWatch> {
        Ok(PeerWatch { fd: sys::pidfd_open(pid)?, kind: WatchKind::Pidfd })
    }

    /// Watches the socket the ring was handed over on: it hangs up when the
    /// peer process dies (the kernel closes its descriptors, SIGKILL
    /// included). No data may be sent on it after the handover. The peer must
    /// not leak the socket into other processes (std opens it close-on-exec).
    pub fn socket(sock: &UnixStream) -> Result<PeerWatch> {
        let fd = sock
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::Os { op: "dup", errno: e.raw_os_error().unwrap_or(0) })?;
        Ok(PeerWatch { fd, kind: WatchKind::Socket })
    }

    pub fn try_clone(&self) -> Result<PeerWatch> {
        let fd = self.fd.try_clone().map_err(|e| Error::Os { op: "dup", errno: e.raw_os_error().unwrap_or(0) })?;
        Ok(PeerWatch { fd, kind: self.kind })
    }

    fn gone_on(&self, revents: i16) -> Result<bool> {
        match self.kind {
            WatchKind::Pidfd => Ok(revents != 0),
            WatchKind::Socket => {
                if revents & (sys::POLLHUP | sys::POLLRDHUP | sys::POLLERR | sys::POLLNVAL) != 0 {
                    return Ok(true);
                }
                match sys::peek(self.fd.as_fd())? {
                    Some(0) => Ok(true),
                    None => Ok(false),
                    Some(_) => Err(Error::Protocol("unexpected data on the handover socket after the handover")),
                }
            }
        }
    }

    /// Whether the peer is already gone (non-blocking).
    pub fn is_gone(&self) -> Result<bool> {
        let mut fds = [sys::PollFd { fd: self.fd.as_raw_fd(), events: sys::POLLIN | sys::POLLRDHUP, revents: 0 }];
        if sys::poll_fds(&mut fds, 0)? == 0 {
            return Ok(false);
        }
        self.gone_on(fds[0].revents)
    }
}

/// [`Wake`] for host ↔ host rings: sleep on one eventfd (with an optional
/// [`PeerWatch`]), wake the peer through another.
#[derive(Debug)]
pub struct EventWake {
    sleep_on: EventFd,
    wake: EventFd,
    watch: Option<PeerWatch>,
}

impl EventWake {
    /// `sleep_on`: the eventfd the peer signals us on; `wake`: the one we signal it on.
    pub fn new(sleep_on: EventFd, wake: EventFd, watch: Option<PeerWatch>) -> EventWake {
        EventWake { sleep_on, wake, watch }
    }

    /// The same signals and watch, with duplicated descriptors (one per thread's handle).
    pub fn try_clone(&self) -> Result<EventWake> {
        Ok(EventWake {
            sleep_on: self.sleep_on.try_clone()?,
            wake: self.wake.try_clone()?,
            watch: self.watch.as_ref().map(PeerWatch::try_clone).transpose()?,
        })
    }

    pub fn watch(&self) -> Option<&PeerWatch> {
        self.watch.as_ref()
    }
}

impl Wake for EventWake {
    fn wake_peer(&self) -> Result<()> {
        self.wake.notify()
    }
    fn sleep(&self) -> Result<()> {
        self.sleep_on.wait(self.watch.as_ref(), None).map(|_| ())
    }
    fn wake_sibling(&self) -> Result<()> {
        self.sleep_on.notify()
    }
}

/// Handing a shared region and its eventfds to another process.
pub mod handover {
    use super::*;

    const TAG: &[u8; 8] = b"SHMQFDS1";
    const MAX_EVENTFDS: usize = 16;

    /// Sends `memory` and `eventfds` (in order) over a connected unix socket.
    pub fn send(sock: &UnixStream, memory: &SharedMemory, eventfds: &[&EventFd]) -> Result<()> {
        if eventfds.len() > MAX_EVENTFDS {
            return Err(Error::InvalidArgument("too many eventfds for one handover"));
        }
        let mut msg = [0u8; 24];
        msg[..8].copy_from_slice(TAG);
        msg[8..12].copy_from_slice(&(eventfds.len() as u32).to_le_bytes());
        msg[16..24].copy_from_slice(&(memory.len() as u64).to_le_bytes());
        let mut fds = vec![memory.fd().as_raw_fd()];
        fds.extend(eventfds.iter().map(|e| e.as_fd().as_raw_fd()));
        sys::send_with_fds(sock.as_fd(), &msg, &fds)
    }

    /// Sends a small message with descriptors attached (SCM_RIGHTS), e.g. the
    /// fds of benchmark baselines. `data` must not be empty.
    pub fn send_fds(sock: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
        sys::send_with_fds(sock.as_fd(), data, &raw)
    }

    /// Receives what [`send_fds`] sent: (data, descriptors). `Err(PeerGone)` on hang-up.
    pub fn recv_fds(sock: &UnixStream, max_data: usize, max_fds: usize) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; max_data.max(1)];
        let (n, fds) = sys::recv_with_fds(sock.as_fd(), &mut buf, max_fds)?;
        if n == 0 {
            return Err(Error::PeerGone);
        }
        buf.truncate(n);
        Ok((buf, fds))
    }

    /// Receives what [`send`] sent: the mapped memory and the eventfds.
    /// `Err(PeerGone)` if the peer hung up first.
    pub fn recv(sock: &UnixStream) -> Result<(SharedMemory, Vec<EventFd>)> {
        let mut msg = [0u8; 24];
        let (n, mut fds) = sys::recv_with_fds(sock.as_fd(), &mut msg, 1 + MAX_EVENTFDS)?;
        if n == 0 {
            return Err(Error::PeerGone);
        }
        if n != msg.len() || &msg[..8] != TAG {
            return Err(Error::Protocol("not a shmq handover message (wrong tag or length)"));
        }
        let count = u32::from_le_bytes(msg[8..12].try_into().unwrap_or_default()) as usize;
        let len = u64::from_le_bytes(msg[16..24].try_into().unwrap_or_default());
        if fds.len() != 1 + count {
            return Err(Error::Protocol("descriptor count does not match the handover message"));
        }
        let events = fds.split_off(1).into_iter().map(EventFd::from_fd).collect::<Result<_>>()?;
        let memory = SharedMemory::from_fd(fds.remove(0))?;
        if memory.len() as u64 != len {
            return Err(Error::Protocol("memfd size differs from the size announced in the handover message"));
        }
        Ok((memory, events))
    }
}

impl<W: Wake> Writer<'_, W> {
    /// Moves bytes from `fd` straight into the free space with one `readv`
    /// (no intermediate buffer). `Ok(None)`: the stream is full; `Ok(Some(0))`:
    /// `fd` is at end of file; an `EAGAIN` from a non-blocking `fd` is an
    /// [`Error::Os`] with `errno` 11.
    pub fn fill_from_fd(&mut self, fd: BorrowedFd<'_>) -> Result<Option<usize>> {
        let windows = self.writable()?;
        if windows[0].is_empty() {
            return Ok(None);
        }
        let n = sys::readv_into(fd, &windows)?;
        self.commit(n)?;
        Ok(Some(n))
    }
}

impl<W: Wake> Reader<'_, W> {
    /// Moves buffered bytes straight to `fd` with one `writev`. `Ok(None)`: nothing buffered.
    pub fn drain_to_fd(&mut self, fd: BorrowedFd<'_>) -> Result<Option<usize>> {
        let windows = self.readable()?;
        if windows[0].is_empty() {
            return Ok(None);
        }
        let n = sys::writev_from(fd, &windows)?;
        self.consume(n)?;
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Instant;

    use super::*;
    use crate::{spsc, stream, Poll};

    #[test]
    fn memfd_is_sealed_and_maps_at_another_address_with_the_same_bytes() {
        let a = SharedMemory::create("shmq-test", 10_000).unwrap();
        assert_eq!(a.len(), 12_288);
        assert!(sys::truncate(a.fd(), 4096).is_err(), "shrinking is sealed");
        a.write_bytes(5000, b"hello").unwrap();
        let b = SharedMemory::from_fd(a.fd().try_clone_to_owned().unwrap()).unwrap();
        assert_ne!(a.base(), b.base());
        let mut buf = [0u8; 5];
        b.read_bytes(5000, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // An unsealed memfd is refused.
        let raw = sys::memfd(c"plain").unwrap();
        sys::truncate(raw.as_fd(), 4096).unwrap();
        let e = SharedMemory::from_fd(raw).err().unwrap();
        assert!(e.to_string().contains("SIGBUS"), "{e}");
    }

    #[test]
    fn eventfd_wait_times_out_signals_and_sees_peer_hangup() {
        let e = EventFd::new().unwrap();
        assert!(!e.wait(None, Some(Duration::from_millis(10))).unwrap());
        e.notify().unwrap();
        e.notify().unwrap();
        assert!(e.wait(None, Some(Duration::from_millis(10))).unwrap());
        assert_eq!(e.take().unwrap(), 0, "the wait took the whole counter");
        let (a, b) = UnixStream::pair().unwrap();
        let watch = PeerWatch::socket(&a).unwrap();
        assert!(!watch.is_gone().unwrap());
        drop(b);
        assert!(watch.is_gone().unwrap());
        let t = Instant::now();
        assert_eq!(e.wait(Some(&watch), None), Err(Error::PeerGone));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn handover_passes_memory_and_eventfds_and_rejects_garbage() {
        let (a, b) = UnixStream::pair().unwrap();
        let mem = SharedMemory::create("shmq-handover", 8192).unwrap();
        let (e1, e2) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        mem.write_bytes(100, b"xyz").unwrap();
        handover::send(&a, &mem, &[&e1, &e2]).unwrap();
        let (got, events) = handover::recv(&b).unwrap();
        assert_eq!((got.len(), events.len()), (8192, 2));
        let mut buf = [0u8; 3];
        got.read_bytes(100, &mut buf).unwrap();
        assert_eq!(&buf, b"xyz");
        events[1].notify().unwrap();
        assert_eq!(e2.take().unwrap(), 1, "the received eventfd is the same object");
        (&a).write_all(&[0u8; 24]).unwrap();
        assert!(matches!(handover::recv(&b), Err(Error::Protocol(_))));
        // A pipe announced as an eventfd is refused.
        let (pr, _pw) = pipe(true).unwrap();
        let raw: Vec<_> = [mem.fd().as_raw_fd(), pr.as_raw_fd()].into();
        let mut msg = [0u8; 24];
        msg[..8].copy_from_slice(b"SHMQFDS1");
        msg[8..12].copy_from_slice(&1u32.to_le_bytes());
        msg[16..24].copy_from_slice(&8192u64.to_le_bytes());
        sys::send_with_fds(a.as_fd(), &msg, &raw).unwrap();
        let e = handover::recv(&b).err().unwrap();
        assert!(e.to_string().contains("not an eventfd"), "{e}");
        drop(a);
        assert_eq!(handover::recv(&b).err(), Some(Error::PeerGone));
    }

    #[test]
    fn stream_moves_bytes_between_fds_and_windows_without_copies() {
        let mem = SharedMemory::create("shmq-fdio", stream::ring_size(4096).unwrap()).unwrap();
        stream::init(&mem, 0, 4096).unwrap();
        let mut w = stream::Writer::attach(&mem, 0, Poll).unwrap();
        let mut r = stream::Reader::attach(&mem, 0, Poll).unwrap();
        let (mut src_w, src_r) = UnixStream::pair().unwrap();
        let (dst_w, mut dst_r) = UnixStream::pair().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let writer = std::thread::spawn(move || {
            src_w.write_all(&data).unwrap();
            data
        });
        let mut moved = 0;
        let mut out = Vec::new();
        while moved < 10_000 {
            if let Some(n) = w.fill_from_fd(src_r.as_fd()).unwrap() {
                moved += n;
            }
            r.drain_to_fd(dst_w.as_fd()).unwrap();
            let mut buf = [0u8; 8192];
            dst_w.set_nonblocking(true).unwrap();
            dst_r.set_nonblocking(true).unwrap();
            if let Ok(n) = dst_r.read(&mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
        }
        while r.drain_to_fd(dst_w.as_fd()).unwrap().is_some() {}
        dst_r.set_nonblocking(false).unwrap();
        while out.len() < 10_000 {
            let mut buf = [0u8; 8192];
            let n = dst_r.read(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, writer.join().unwrap());
        // A message ring works over the same kind of mapping.
        let mem = SharedMemory::create("shmq-spsc", spsc::ring_size::<u64>(8).unwrap()).unwrap();
        spsc::init::<u64>(&mem, 0, 8).unwrap();
        assert!(spsc::Producer::<u64, _>::attach(&mem, 0, Poll).unwrap().try_push(3).unwrap());
    }
}
