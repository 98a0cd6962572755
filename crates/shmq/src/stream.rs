//! Single-producer single-consumer byte stream (socket data).
//!
//! Layout: the common control block ([`crate::layout`]) followed by
//! `capacity` data bytes (a power of two). Positions are free-running `u32`
//! byte counters; byte `p` lives at `data + (p & (capacity - 1))`.
//!
//! Zero-copy: [`Writer::writable`] returns the free space as (at most) two
//! contiguous [`Window`]s (before and after the wrap point) that a host
//! `readv`/`recvmsg` can fill directly, followed by [`Writer::commit`];
//! [`Reader::readable`] and [`Reader::consume`] are the mirror image for
//! `writev`/`sendmsg`. [`Writer::try_write`]/[`Reader::try_read`] copy.
//!
//! ```
//! use shmq::{stream, Poll, heap::HeapRegion};
//! let region = HeapRegion::new(stream::ring_size(16).unwrap());
//! stream::init(&region, 0, 16).unwrap();
//! let mut w = stream::Writer::attach(&region, 0, Poll).unwrap();
//! let mut r = stream::Reader::attach(&region, 0, Poll).unwrap();
//! assert_eq!(w.try_write(b"hello").unwrap(), 5);
//! let mut buf = [0u8; 8];
//! assert_eq!(r.try_read(&mut buf).unwrap(), Some(5));
//! w.close().unwrap();
//! assert_eq!(r.try_read(&mut buf).unwrap(), Some(0)); // end of stream
//! ```

use crate::ends::{self, ConsumerEnd, ProducerEnd};
use crate::error::{Error, Result};
use crate::layout::{Geometry, Kind};
use crate::raw::{Region, Window};
use crate::wake::{Wake, DEFAULT_POLL_BUDGET};

fn geometry(capacity: u32, offset: usize) -> Result<Geometry> {
    Geometry::new(Kind::Stream, capacity, 1, 0, offset)
}

/// Bytes a stream of `capacity` data bytes occupies (control block included).
pub fn ring_size(capacity: u32) -> Result<usize> {
    Ok(geometry(capacity, 0)?.total_size)
}

/// Creates an empty stream at `offset` (64-byte aligned).
pub fn init(region: &Region, offset: usize, capacity: u32) -> Result<()> {
    init_at(region, offset, capacity, 0)
}

/// Like [`init`] with the first byte position at `first_index` (wraparound tests).
pub fn init_at(region: &Region, offset: usize, capacity: u32, first_index: u32) -> Result<()> {
    let mut g = geometry(capacity, offset)?;
    g.first_index = first_index;
    ends::init(region, offset, g)
}

/// The (up to) two contiguous windows covering `len` bytes from position `pos`.
fn windows<'a>(region: &'a Region, geo: &Geometry, pos: u32, len: u32) -> Result<[Window<'a>; 2]> {
    let start = (pos & geo.mask()) as usize;
    let first = (len as usize).min(geo.capacity as usize - start);
    Ok([region.window(geo.data + start, first)?, region.window(geo.data, len as usize - first)?])
}

/// The writing end. Exactly one per stream.
pub struct Writer<'a, W: Wake> {
    end: ProducerEnd<'a>,
    wake: W,
    budget: u32,
}

impl<'a, W: Wake> Writer<'a, W> {
    pub fn attach(region: &'a Region, offset: usize, wake: W) -> Result<Self> {
        Ok(Writer { end: ProducerEnd::attach(region, offset, Kind::Stream, 1)?, wake, budget: DEFAULT_POLL_BUDGET })
    }

    pub fn set_poll_budget(&mut self, polls: u32) {
        self.budget = polls;
    }

    pub fn capacity(&self) -> u32 {
        self.end.geo.capacity
    }

    pub fn wake(&self) -> &W {
        &self.wake
    }

    /// Free space as two windows (the second is empty unless the space wraps).
    /// Fill a prefix of them, then [`Writer::commit`] the byte count.
    /// `Err(Closed)` once the reader closed.
    pub fn writable(&mut self) -> Result<[Window<'a>; 2]> {
        if self.end.consumer_closed() {
            return Err(Error::Closed);
        }
        let free = self.end.refresh()?;
        windows(self.end.region, &self.end.geo, self.end.tail, free)
    }

    /// Publishes `n` bytes written into the windows from [`Writer::writable`]
    /// and wakes the reader if it sleeps.
    pub fn commit(&mut self, n: usize) -> Result<()> {
        if n > self.end.cached_free() as usize {
            return Err(Error::InvalidArgument("commit of more bytes than the writable windows hold"));
        }
        if n == 0 {
            return Ok(());
        }
        self.end.publish(n as u32, &self.wake)
    }

    /// Copies as much of `buf` as fits; `Ok(0)` when full (or `buf` is empty).
    pub fn try_write(&mut self, buf: &[u8]) -> Result<usize> {
        if self.end.consumer_closed() {
            return Err(Error::Closed);
        }
        let want = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let n = self.end.free(want)?.min(want);
        if n == 0 {
            return Ok(0);
        }
        let [a, b] = windows(self.end.region, &self.end.geo, self.end.tail, n)?;
        a.write_at(0, &buf[..a.len()])?;
        b.write_at(0, &buf[a.len()..n as usize])?;
        self.end.publish(n, &self.wake)?;
        Ok(n as usize)
    }

    /// Copies all of `buf`, sleeping while the stream is full.
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            let n = self.try_write(buf)?;
            buf = &buf[n..];
            if n == 0 {
                self.end.wait_free(&self.wake, self.budget)?;
            }
        }
        Ok(())
    }

    /// Blocks until there is free space (`Err(Closed)` if the reader closed).
    pub fn wait_writable(&mut self) -> Result<()> {
        self.end.wait_free(&self.wake, self.budget)
    }

    /// Event-loop sleep on a full stream (see [`crate::spsc::Producer::arm`]):
    /// `Ok(true)` = space (or the reader closed) already, do not sleep.
    pub fn arm(&mut self) -> Result<bool> {
        self.end.arm_free()
    }

    /// Clears this side's waiting flag.
    pub fn disarm(&self) {
        crate::wake::disarm(&self.end.ctl.wait.producer_waiting);
    }

    /// End of stream: the reader gets 0 once it drained the data.
    pub fn close(&mut self) -> Result<()> {
        self.end.close(&self.wake)
    }
}

/// The reading end. Exactly one per stream.
pub struct Reader<'a, W: Wake> {
    end: ConsumerEnd<'a>,
    wake: W,
    budget: u32,
}

impl<'a, W: Wake> Reader<'a, W> {
    pub fn attach(region: &'a Region, offset: usize, wake: W) -> Result<Self> {
        Ok(Reader { end: ConsumerEnd::attach(region, offset, Kind::Stream, 1)?, wake, budget: DEFAULT_POLL_BUDGET })
    }

    pub fn set_poll_budget(&mut self, polls: u32) {
        self.budget = polls;
    }

    pub fn capacity(&self) -> u32 {
        self.end.geo.capacity
    }

    pub fn wake(&self) -> &W {
        &self.wake
    }

    /// Buffered data as two windows (the second is empty unless the data
    /// wraps). Read a prefix of them, then [`Reader::consume`] the byte count.
    pub fn readable(&mut self) -> Result<[Window<'a>; 2]> {
        let avail = self.end.refresh()?;
        windows(self.end.region, &self.end.geo, self.end.head, avail)
    }

    /// Frees `n` bytes read from the windows of [`Reader::readable`] and wakes the writer if it sleeps.
    pub fn consume(&mut self, n: usize) -> Result<()> {
        if n > self.end.cached_available() as usize {
            return Err(Error::InvalidArgument("consume of more bytes than the readable windows hold"));
        }
        if n == 0 {
            return Ok(());
        }
        self.end.release(n as u32, &self.wake)
    }

    /// Copies up to `buf.len()` bytes: `Some(n > 0)` data, `Some(0)` end of
    /// stream, `None` nothing buffered yet (or `buf` is empty).
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        let want = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        if want == 0 {
            return Ok(None);
        }
        let n = self.end.available(want)?.min(want);
        if n == 0 {
            return Ok(if self.end.at_eof()? { Some(0) } else { None });
        }
        let [a, b] = windows(self.end.region, &self.end.geo, self.end.head, n)?;
        let (first, rest) = buf[..n as usize].split_at_mut(a.len());
        a.read_at(0, first)?;
        b.read_at(0, rest)?;
        self.end.release(n, &self.wake)?;
        Ok(Some(n as usize))
    }

    /// Copies at least one byte, sleeping while the stream is empty; `Ok(0)` at end of stream.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(n) = self.try_read(buf)? {
                return Ok(n);
            }
            if !self.end.wait_available(&self.wake, self.budget)? {
                return Ok(0);
            }
        }
    }

    /// Fills `buf` completely; `Err(Closed)` if the stream ends first.
    pub fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            let n = self.read(buf)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// True once the writer closed and every byte was read.
    pub fn at_eof(&mut self) -> Result<bool> {
        self.end.at_eof()
    }

    /// Blocks until data is buffered (`Ok(true)`) or the stream ended (`Ok(false)`).
    pub fn wait_readable(&mut self) -> Result<bool> {
        self.end.wait_available(&self.wake, self.budget)
    }

    /// Event-loop sleep on an empty stream (see [`crate::spsc::Consumer::arm`]):
    /// `Ok(true)` = data (or end of stream) already, do not sleep.
    pub fn arm(&mut self) -> Result<bool> {
        self.end.arm_available()
    }

    /// Clears this side's waiting flag.
    pub fn disarm(&self) {
        crate::wake::disarm(&self.end.ctl.wait.consumer_waiting);
    }

    /// Stops reading: the writer's writes fail with `Closed`.
    pub fn close(&mut self) -> Result<()> {
        self.end.close(&self.wake)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use core::sync::atomic::Ordering;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::layout::offsets;
    use crate::raw::heap::HeapRegion;
    use crate::testkit::SplitMix64;
    use crate::wake::Poll;

    fn stream(cap: u32, first: u32) -> HeapRegion {
        let r = HeapRegion::new(ring_size(cap).unwrap());
        init_at(&r, 0, cap, first).unwrap();
        r
    }

    #[test]
    fn random_chunks_through_copies_and_windows_keep_every_byte_in_order() {
        for first in [0, u32::MAX - 7, 12345] {
            let r = stream(64, first);
            let mut w = Writer::attach(&r, 0, Poll).unwrap();
            let mut rd = Reader::attach(&r, 0, Poll).unwrap();
            let mut rng = SplitMix64::new(first as u64);
            let (mut written, mut read) = (0u64, 0u64);
            while read < 100_000 {
                // Writer: alternate between the copy helper and the windows.
                if rng.below(2) == 0 {
                    let chunk: Vec<u8> = (0..rng.below(100)).map(|i| SplitMix64::byte_at(99, written + i)).collect();
                    written += w.try_write(&chunk).unwrap() as u64;
                } else {
                    let wins = w.writable().unwrap();
                    let total = wins[0].len() + wins[1].len();
                    assert!(total <= 64);
                    let n = rng.below(total as u64 + 1) as usize;
                    let mut k = 0;
                    for win in &wins {
                        let take = (n - k).min(win.len());
                        let bytes: Vec<u8> =
                            (0..take).map(|i| SplitMix64::byte_at(99, written + (k + i) as u64)).collect();
                        win.write_at(0, &bytes).unwrap();
                        k += take;
                    }
                    w.commit(n).unwrap();
                    written += n as u64;
                }
                // Reader: likewise.
                if rng.below(2) == 0 {
                    let mut buf = vec![0u8; rng.below(100) as usize];
                    if let Some(n) = rd.try_read(&mut buf).unwrap() {
                        assert!(n > 0, "no EOF before close");
                        for b in &buf[..n] {
                            assert_eq!(*b, SplitMix64::byte_at(99, read), "byte {read}");
                            read += 1;
                        }
                    }
                } else {
                    let wins = rd.readable().unwrap();
                    let total = wins[0].len() + wins[1].len();
                    let n = rng.below(total as u64 + 1) as usize;
                    let mut k = 0;
                    for win in &wins {
                        let take = (n - k).min(win.len());
                        let mut bytes = vec![0u8; take];
                        win.read_at(0, &mut bytes).unwrap();
                        for b in bytes {
                            assert_eq!(b, SplitMix64::byte_at(99, read), "byte {read}");
                            read += 1;
                        }
                        k += take;
                    }
                    rd.consume(n).unwrap();
                }
            }
            assert!(written >= read);
        }
    }

    #[test]
    fn windows_split_at_the_wrap_point_and_commit_is_checked() {
        let r = stream(16, 0);
        let mut w = Writer::attach(&r, 0, Poll).unwrap();
        let mut rd = Reader::attach(&r, 0, Poll).unwrap();
        assert_eq!(w.try_write(&[1; 12]).unwrap(), 12);
        let mut buf = [0u8; 10];
        assert_eq!(rd.try_read(&mut buf).unwrap(), Some(10));
        let [a, b] = w.writable().unwrap();
        assert_eq!((a.offset(), a.len(), b.offset(), b.len()), (256 + 12, 4, 256, 10));
        assert!(w.commit(15).is_err());
        w.commit(14).unwrap();
        assert_eq!(w.try_write(&[9]).unwrap(), 0, "full");
        let [a, b] = rd.readable().unwrap();
        assert_eq!((a.len(), b.len()), (6, 10));
        assert!(rd.consume(17).is_err());
        rd.consume(16).unwrap();
        assert_eq!(rd.try_read(&mut buf).unwrap(), None);
    }

    #[test]
    fn close_gives_eof_after_the_data_and_closed_to_the_writer() {
        let r = stream(16, 0);
        let mut w = Writer::attach(&r, 0, Poll).unwrap();
        let mut rd = Reader::attach(&r, 0, Poll).unwrap();
        w.write_all(b"abc").unwrap();
        w.close().unwrap();
        let mut buf = [0u8; 2];
        rd.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ab");
        assert_eq!(rd.read(&mut buf).unwrap(), 1);
        assert_eq!(rd.read(&mut buf).unwrap(), 0);
        assert_eq!(rd.read_exact(&mut buf), Err(Error::Closed));
        rd.close().unwrap();
        assert_eq!(w.try_write(b"x"), Err(Error::Closed));
        assert!(matches!(w.writable(), Err(Error::Closed)));
    }

    #[test]
    fn hostile_tail_is_rejected() {
        let r = stream(16, 0);
        let mut rd = Reader::attach(&r, 0, Poll).unwrap();
        r.atomic_u32(offsets::PRODUCER_INDEX).unwrap().store(17, Ordering::Relaxed);
        assert!(matches!(rd.readable(), Err(Error::Corrupt { value: 17, .. })));
        let mut buf = [0u8; 4];
        assert!(matches!(rd.read(&mut buf), Err(Error::Corrupt { .. })));
        r.atomic_u32(offsets::PRODUCER_INDEX).unwrap().store(u32::MAX, Ordering::Relaxed);
        assert!(matches!(rd.try_read(&mut buf), Err(Error::Corrupt { .. })));
    }
}
