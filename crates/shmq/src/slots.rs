//! The SPSC message ring of [`crate::spsc`] with a slot size chosen at run
//! time instead of a Rust type (for callers such as the Node-API addon,
//! whose message size comes from TypeScript). Same layout, kind, orderings
//! and wakeup protocol; a slot is `slot_size` raw bytes and framing (a length
//! prefix, say) is the caller's business.
//!
//! ```
//! use shmq::{slots, Poll, heap::HeapRegion};
//! let region = HeapRegion::new(slots::ring_size(8, 12).unwrap());
//! slots::init(&region, 0, 8, 12).unwrap();
//! let mut tx = slots::Producer::attach(&region, 0, Some(12), Poll).unwrap();
//! let mut rx = slots::Consumer::attach(&region, 0, None, Poll).unwrap(); // slot size from the header
//! assert!(tx.try_push(b"hello").unwrap());
//! let mut slot = [0u8; 12];
//! assert!(rx.try_pop_into(&mut slot).unwrap());
//! assert_eq!(&slot[..5], b"hello");
//! ```

use crate::ends::{self, ConsumerEnd, ProducerEnd};
use crate::error::{Error, Result};
use crate::layout::{offsets, Geometry, Kind};
use crate::raw::Region;
use crate::wake::{Wake, DEFAULT_POLL_BUDGET};

fn geometry(capacity: u32, slot_size: usize, offset: usize) -> Result<Geometry> {
    Geometry::new(Kind::Spsc, capacity, slot_size, 0, offset)
}

/// Bytes a ring of `capacity` slots of `slot_size` bytes occupies (control block included).
pub fn ring_size(capacity: u32, slot_size: usize) -> Result<usize> {
    Ok(geometry(capacity, slot_size, 0)?.total_size)
}

/// Creates an empty ring at `offset` (64-byte aligned).
pub fn init(region: &Region, offset: usize, capacity: u32, slot_size: usize) -> Result<()> {
    ends::init(region, offset, geometry(capacity, slot_size, offset)?)
}

/// The slot size the header at `offset` announces (`None`: take it from the
/// header; attach validates everything else).
fn slot_size_of(region: &Region, offset: usize, expected: Option<usize>) -> Result<usize> {
    match expected {
        Some(s) => Ok(s),
        None => {
            let raw = region.atomic_u32(offset + offsets::SLOT_SIZE)?.load(core::sync::atomic::Ordering::Relaxed);
            Ok(raw as usize)
        }
    }
}

/// The producing end. Exactly one per ring.
pub struct Producer<'a, W: Wake> {
    end: ProducerEnd<'a>,
    wake: W,
    budget: u32,
}

impl<'a, W: Wake> Producer<'a, W> {
    /// Attaches to the ring at `offset`; `slot_size` None takes it from the header.
    pub fn attach(region: &'a Region, offset: usize, slot_size: Option<usize>, wake: W) -> Result<Self> {
        let size = slot_size_of(region, offset, slot_size)?;
        Ok(Producer { end: ProducerEnd::attach(region, offset, Kind::Spsc, size)?, wake, budget: DEFAULT_POLL_BUDGET })
    }

    pub fn slot_size(&self) -> usize {
        self.end.geo.slot_size as usize
    }

    pub fn capacity(&self) -> u32 {
        self.end.geo.capacity
    }

    pub fn set_poll_budget(&mut self, polls: u32) {
        self.budget = polls;
    }

    /// Copies `msg` (at most `slot_size` bytes) into the next slot if there is
    /// room: `Ok(false)` when full, `Err(Closed)` once the consumer closed.
    pub fn try_push(&mut self, msg: &[u8]) -> Result<bool> {
        if msg.len() > self.slot_size() {
            return Err(Error::InvalidArgument("message larger than the ring's slot size"));
        }
        if self.end.consumer_closed() {
            return Err(Error::Closed);
        }
        if self.end.free(1)? == 0 {
            return Ok(false);
        }
        let off = self.end.geo.slot_offset(self.end.tail);
        self.end.region.write_bytes(off, msg)?;
        self.end.publish(1, &self.wake)?;
        Ok(true)
    }

    /// Blocks until a slot is free (`Err(Closed)` once the consumer closed).
    pub fn wait_free(&mut self) -> Result<()> {
        self.end.wait_free(&self.wake, self.budget)
    }

    /// See [`crate::spsc::Producer::arm`].
    pub fn arm(&mut self) -> Result<bool> {
        self.end.arm_free()
    }

    /// Clears this side's waiting flag.
    pub fn disarm(&self) {
        crate::wake::disarm(&self.end.ctl.wait.producer_waiting);
    }

    /// Ends the stream of messages (the consumer's `at_eof` once drained).
    pub fn close(&mut self) -> Result<()> {
        self.end.close(&self.wake)
    }
}

/// The consuming end. Exactly one per ring.
pub struct Consumer<'a, W: Wake> {
    end: ConsumerEnd<'a>,
    wake: W,
    budget: u32,
}

impl<'a, W: Wake> Consumer<'a, W> {
    /// Attaches to the ring at `offset`; `slot_size` None takes it from the header.
    pub fn attach(region: &'a Region, offset: usize, slot_size: Option<usize>, wake: W) -> Result<Self> {
        let size = slot_size_of(region, offset, slot_size)?;
        Ok(Consumer { end: ConsumerEnd::attach(region, offset, Kind::Spsc, size)?, wake, budget: DEFAULT_POLL_BUDGET })
    }

    pub fn slot_size(&self) -> usize {
        self.end.geo.slot_size as usize
    }

    pub fn capacity(&self) -> u32 {
        self.end.geo.capacity
    }

    pub fn set_poll_budget(&mut self, polls: u32) {
        self.budget = polls;
    }

    /// Copies the oldest slot (`slot_size` bytes) into `out[..slot_size]` and
    /// frees it: `Ok(false)` when empty.
    pub fn try_pop_into(&mut self, out: &mut [u8]) -> Result<bool> {
        let size = self.slot_size();
        if out.len() < size {
            return Err(Error::InvalidArgument("buffer smaller than the ring's slot size"));
        }
        if self.end.available(1)? == 0 {
            return Ok(false);
        }
        let off = self.end.geo.slot_offset(self.end.head);
        self.end.region.read_bytes(off, &mut out[..size])?;
        self.end.release(1, &self.wake)?;
        Ok(true)
    }

    /// True once the producer closed and every message was popped.
    pub fn at_eof(&mut self) -> Result<bool> {
        self.end.at_eof()
    }

    /// Blocks until a message is ready (`Ok(true)`) or the producer closed with nothing left (`Ok(false)`).
    pub fn wait_available(&mut self) -> Result<bool> {
        self.end.wait_available(&self.wake, self.budget)
    }

    /// See [`crate::spsc::Consumer::arm`].
    pub fn arm(&mut self) -> Result<bool> {
        self.end.arm_available()
    }

    /// Clears this side's waiting flag.
    pub fn disarm(&self) {
        crate::wake::disarm(&self.end.ctl.wait.consumer_waiting);
    }

    /// Stops consuming: the producer's pushes fail with `Closed`.
    pub fn close(&mut self) -> Result<()> {
        self.end.close(&self.wake)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::raw::heap::HeapRegion;
    use crate::wake::Poll;

    #[test]
    fn fifo_wraparound_sizes_and_close() {
        let r = HeapRegion::new(ring_size(4, 10).unwrap());
        init(&r, 0, 4, 10).unwrap();
        let mut tx = Producer::attach(&r, 0, None, Poll).unwrap();
        let mut rx = Consumer::attach(&r, 0, Some(10), Poll).unwrap();
        assert_eq!((tx.slot_size(), rx.capacity()), (10, 4));
        let mut slot = [0u8; 10];
        for round in 0..20u8 {
            for i in 0..4u8 {
                assert!(tx.try_push(&[round, i, 0xee]).unwrap());
            }
            assert!(!tx.try_push(b"x").unwrap(), "full");
            for i in 0..4u8 {
                assert!(rx.try_pop_into(&mut slot).unwrap());
                assert_eq!(&slot[..3], &[round, i, 0xee]);
            }
            assert!(!rx.try_pop_into(&mut slot).unwrap(), "empty");
        }
        assert_eq!(tx.try_push(&[0; 11]), Err(Error::InvalidArgument("message larger than the ring's slot size")));
        assert!(rx.try_pop_into(&mut [0u8; 9]).is_err());
        assert!(Consumer::attach(&r, 0, Some(12), Poll).is_err(), "a wrong slot size is refused");
        assert!(tx.try_push(b"last").unwrap());
        tx.close().unwrap();
        assert!(!rx.at_eof().unwrap());
        assert!(rx.try_pop_into(&mut slot).unwrap());
        assert!(rx.at_eof().unwrap());
        rx.close().unwrap();
        assert_eq!(tx.try_push(b"x"), Err(Error::Closed));
    }
}
