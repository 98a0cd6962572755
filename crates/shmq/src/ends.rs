//! The two ends of a single-producer single-consumer ring, shared by the
//! message ring ([`crate::spsc`]) and the byte stream ([`crate::stream`]).
//!
//! Each end keeps its own index privately (it is the only writer, so it never
//! reads it back from shared memory) and a cached copy of the peer's index,
//! refreshed with an acquire load only when the cache says "full" / "empty".
//!
//! Orderings:
//! - producer: write slot bytes → `tail.store(release)`; the consumer's
//!   `tail.load(acquire)` then sees the bytes.
//! - consumer: read slot bytes → `head.store(release)`; the producer's
//!   `head.load(acquire)` then knows the reads finished before it overwrites.
//! - after each store, the waking side of [`crate::wake`] (one SeqCst fence).
//!
//! Validation: every index read from shared memory must satisfy
//! `tail - head <= capacity` (wrapping `u32` arithmetic) or the operation fails
//! with [`Error::Corrupt`]. Slot offsets are `data + (pos & mask) * stride`
//! with `mask`, `stride` and `data` private copies, so they are always in bounds.

use core::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::layout::{Control, Geometry, Kind};
use crate::raw::Region;
use crate::wake::{self, Wake};

pub(crate) struct ProducerEnd<'a> {
    pub region: &'a Region,
    pub ctl: &'a Control,
    pub geo: Geometry,
    /// Our index (authoritative; shared copy is write-only for us).
    pub tail: u32,
    /// Last consumer index seen.
    pub head: u32,
}

pub(crate) struct ConsumerEnd<'a> {
    pub region: &'a Region,
    pub ctl: &'a Control,
    pub geo: Geometry,
    pub head: u32,
    pub tail: u32,
}

fn attach(region: &Region, offset: usize, kind: Kind, slot_size: usize) -> Result<(&Control, Geometry)> {
    let ctl = region.control(offset)?;
    let geo = Geometry::read_header(ctl, offset, region.len(), kind, slot_size, 0)?;
    Ok((ctl, geo))
}

/// Writes a fresh header for an SPSC ring or stream.
pub(crate) fn init(region: &Region, offset: usize, geo: Geometry) -> Result<()> {
    let ctl = region.control(offset)?;
    let fits = matches!(offset.checked_add(geo.total_size), Some(end) if end <= region.len());
    if !fits {
        return Err(Error::OutOfBounds { offset, size: geo.total_size, region_len: region.len() });
    }
    geo.write_header(ctl);
    Ok(())
}

fn check_used(geo: &Geometry, tail: u32, head: u32, what: &'static str, value: u32) -> Result<u32> {
    let used = tail.wrapping_sub(head);
    if used > geo.capacity {
        return Err(Error::Corrupt { what, value });
    }
    Ok(used)
}

impl<'a> ProducerEnd<'a> {
    pub fn attach(region: &'a Region, offset: usize, kind: Kind, slot_size: usize) -> Result<Self> {
        let (ctl, geo) = attach(region, offset, kind, slot_size)?;
        let tail = ctl.producer.index.load(Ordering::Relaxed);
        let head = ctl.consumer.index.load(Ordering::Acquire);
        check_used(&geo, tail, head, "producer and consumer indices more than the capacity apart", tail)?;
        Ok(ProducerEnd { region, ctl, geo, tail, head })
    }

    /// Free slots according to the cache (no shared access).
    #[inline]
    pub fn cached_free(&self) -> u32 {
        self.geo.capacity - self.tail.wrapping_sub(self.head)
    }

    /// Free slots after reloading the consumer's index.
    #[inline]
    pub fn refresh(&mut self) -> Result<u32> {
        let head = self.ctl.consumer.index.load(Ordering::Acquire);
        let used = check_used(&self.geo, self.tail, head, "consumer index (head) out of range", head)?;
        self.head = head;
        Ok(self.geo.capacity - used)
    }

    /// Free slots, reloading the consumer's index only if the cache says fewer than `want`.
    #[inline]
    pub fn free(&mut self, want: u32) -> Result<u32> {
        let f = self.cached_free();
        if f >= want {
            return Ok(f);
        }
        self.refresh()
    }

    #[inline]
    pub fn consumer_closed(&self) -> bool {
        self.ctl.wait.consumer_closed.load(Ordering::Relaxed) != 0
    }

    /// Makes `n` more slots visible to the consumer and wakes it if it sleeps.
    #[inline]
    pub fn publish<W: Wake>(&mut self, n: u32, wake: &W) -> Result<()> {
        self.publish_quiet(n);
        wake::wake_if_waiting(&self.ctl.wait.consumer_waiting, wake)
    }

    /// Publishes without the wakeup check (callers must run it afterwards).
    #[inline]
    pub fn publish_quiet(&mut self, n: u32) {
        debug_assert!(n <= self.cached_free());
        self.tail = self.tail.wrapping_add(n);
        // Release: the slot contents written before are visible to a consumer
        // that loads this index with acquire.
        self.ctl.producer.index.store(self.tail, Ordering::Release);
    }

    /// Blocks until at least one slot is free. `Err(Closed)` once the consumer closed.
    pub fn wait_free<W: Wake>(&mut self, wake: &W, budget: u32) -> Result<()> {
        let ctl = self.ctl;
        wake::wait_until(&ctl.wait.producer_waiting, wake, budget, || {
            if self.consumer_closed() {
                return Err(Error::Closed);
            }
            Ok(self.refresh()? > 0)
        })
    }

    /// Event-loop form of [`ProducerEnd::wait_free`]: advertises that this
    /// side sleeps until a slot is free (see `wake::arm`). `Ok(true)`: room (or
    /// the consumer closed) already, do not sleep.
    pub fn arm_free(&mut self) -> Result<bool> {
        let ctl = self.ctl;
        wake::arm(&ctl.wait.producer_waiting, || Ok(self.consumer_closed() || self.refresh()? > 0))
    }

    /// Marks the producer end closed (end of stream) and wakes a sleeping consumer.
    pub fn close<W: Wake>(&mut self, wake: &W) -> Result<()> {
        // Release: a consumer that sees the flag (acquire) also sees every tail published before.
        self.ctl.wait.producer_closed.store(1, Ordering::Release);
        wake::wake_if_waiting(&self.ctl.wait.consumer_waiting, wake)
    }
}

impl<'a> ConsumerEnd<'a> {
    pub fn attach(region: &'a Region, offset: usize, kind: Kind, slot_size: usize) -> Result<Self> {
        let (ctl, geo) = attach(region, offset, kind, slot_size)?;
        let head = ctl.consumer.index.load(Ordering::Relaxed);
        let tail = ctl.producer.index.load(Ordering::Acquire);
        check_used(&geo, tail, head, "producer and consumer indices more than the capacity apart", tail)?;
        Ok(ConsumerEnd { region, ctl, geo, head, tail })
    }

    #[inline]
    pub fn cached_available(&self) -> u32 {
        self.tail.wrapping_sub(self.head)
    }

    /// Available slots after reloading the producer's index.
    #[inline]
    pub fn refresh(&mut self) -> Result<u32> {
        let tail = self.ctl.producer.index.load(Ordering::Acquire);
        let used = check_used(&self.geo, tail, self.head, "producer index (tail) out of range", tail)?;
        self.tail = tail;
        Ok(used)
    }

    #[inline]
    pub fn available(&mut self, want: u32) -> Result<u32> {
        let a = self.cached_available();
        if a >= want {
            return Ok(a);
        }
        self.refresh()
    }

    /// True once the producer closed and everything it published was consumed.
    pub fn at_eof(&mut self) -> Result<bool> {
        if self.ctl.wait.producer_closed.load(Ordering::Acquire) == 0 {
            return Ok(false);
        }
        // The acquire above makes the final tail visible to this reload.
        Ok(self.refresh()? == 0)
    }

    /// Releases `n` consumed slots to the producer and wakes it if it sleeps.
    #[inline]
    pub fn release<W: Wake>(&mut self, n: u32, wake: &W) -> Result<()> {
        debug_assert!(n <= self.cached_available());
        self.head = self.head.wrapping_add(n);
        // Release: our reads of the slots happen before the producer reuses them.
        self.ctl.consumer.index.store(self.head, Ordering::Release);
        wake::wake_if_waiting(&self.ctl.wait.producer_waiting, wake)
    }

    /// Blocks until at least one slot is available (`Ok(true)`) or the producer
    /// closed with nothing left (`Ok(false)`).
    pub fn wait_available<W: Wake>(&mut self, wake: &W, budget: u32) -> Result<bool> {
        let ctl = self.ctl;
        let mut eof = false;
        wake::wait_until(&ctl.wait.consumer_waiting, wake, budget, || {
            if self.refresh()? > 0 {
                return Ok(true);
            }
            eof = self.at_eof()?;
            Ok(eof)
        })?;
        Ok(!eof)
    }

    /// Event-loop form of [`ConsumerEnd::wait_available`]: advertises that
    /// this side sleeps until data arrives (see `wake::arm`). `Ok(true)`: data
    /// (or end of stream) already, do not sleep.
    pub fn arm_available(&mut self) -> Result<bool> {
        let ctl = self.ctl;
        wake::arm(&ctl.wait.consumer_waiting, || Ok(self.refresh()? > 0 || self.at_eof()?))
    }

    /// Marks the consumer end closed (the producer's writes fail) and wakes a sleeping producer.
    pub fn close<W: Wake>(&mut self, wake: &W) -> Result<()> {
        self.ctl.wait.consumer_closed.store(1, Ordering::Release);
        wake::wake_if_waiting(&self.ctl.wait.producer_waiting, wake)
    }
}
