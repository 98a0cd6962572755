//! Bounded multi-producer multi-consumer ring (Vyukov's algorithm with a
//! sequence number per slot), usable by threads of several processes at once.
//!
//! Layout: the common control block ([`crate::layout`]; the producer line
//! holds the enqueue position, the consumer line the dequeue position, the
//! wait line the number of sleeping consumers/producers), then `capacity`
//! slots of `8 + size_of::<T>()` bytes rounded up to 8:
//!
//! ```text
//! slot+0  seq   u32   position this slot is ready for (see below)
//! slot+4  —     u32   reserved (zero)
//! slot+8  payload     size_of::<T>() bytes
//! ```
//!
//! Slot `i` starts with `seq = first_index + i`. A producer may fill the slot
//! for position `p` when `seq == p`: it claims `p` by CAS on the enqueue
//! position, writes the payload, then `seq.store(p + 1, release)`. A consumer
//! may take position `p` when `seq == p + 1` (acquire): it claims `p` by CAS on
//! the dequeue position, reads the payload, then `seq.store(p + capacity,
//! release)`, which hands the slot to the producer of the next lap.
//!
//! Hostile peers: every slot offset comes from `pos & mask` with a private
//! mask; a sequence number "ahead" of a position that does not move, or
//! "behind" by more than a lap, is reported as [`Error::Corrupt`] instead of
//! spinning forever. A peer that dies between claiming a position and
//! publishing its sequence number blocks that slot for good (inherent to the
//! algorithm): detect the death ([`crate::host::PeerWatch`]) and tear down.

use core::marker::PhantomData;
use core::mem::size_of;
use core::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::layout::{Control, Geometry, Kind};
use crate::raw::{Pod, Region};
use crate::wake::{self, Wake, DEFAULT_POLL_BUDGET};

/// Bytes before the payload in each slot (the sequence number, padded).
const SEQ_BYTES: usize = 8;

fn geometry<T: Pod>(capacity: u32, offset: usize) -> Result<Geometry> {
    Geometry::new(Kind::Mpmc, capacity, size_of::<T>(), SEQ_BYTES, offset)
}

/// Bytes a ring of `capacity` messages of type `T` occupies.
pub fn ring_size<T: Pod>(capacity: u32) -> Result<usize> {
    Ok(geometry::<T>(capacity, 0)?.total_size)
}

/// Creates an empty ring at `offset` (64-byte aligned).
pub fn init<T: Pod>(region: &Region, offset: usize, capacity: u32) -> Result<()> {
    init_at::<T>(region, offset, capacity, 0)
}

/// Like [`init`] with the first position at `first_index` (wraparound tests).
pub fn init_at<T: Pod>(region: &Region, offset: usize, capacity: u32, first_index: u32) -> Result<()> {
    let mut g = geometry::<T>(capacity, offset)?;
    g.first_index = first_index;
    let ctl = region.control(offset)?;
    let fits = matches!(offset.checked_add(g.total_size), Some(end) if end <= region.len());
    if !fits {
        return Err(Error::OutOfBounds { offset, size: g.total_size, region_len: region.len() });
    }
    for i in 0..g.capacity {
        let pos = first_index.wrapping_add(i);
        let slot = g.slot_offset(pos);
        region.zero(slot, g.stride as usize)?;
        region.atomic_u32(slot)?.store(pos, Ordering::Relaxed);
    }
    // The header's release store of the magic publishes the sequence numbers.
    g.write_header(ctl);
    Ok(())
}

struct Shared<'a> {
    region: &'a Region,
    ctl: &'a Control,
    geo: Geometry,
}

impl<'a> Shared<'a> {
    fn attach<T: Pod>(region: &'a Region, offset: usize) -> Result<Self> {
        let ctl = region.control(offset)?;
        let geo = Geometry::read_header(ctl, offset, region.len(), Kind::Mpmc, size_of::<T>(), SEQ_BYTES)?;
        Ok(Shared { region, ctl, geo })
    }

    /// Signed distance `seq - pos`. A slot's sequence number never lags the
    /// position we look at by more than a lap (positions below ours were
    /// claimed, so their slots reached at least `pos - capacity`); it may lead
    /// by any amount if our position is stale.
    fn lag(&self, seq: u32, pos: u32) -> Result<i64> {
        let d = seq.wrapping_sub(pos) as i32 as i64;
        if d < -(self.geo.capacity as i64) {
            return Err(Error::Corrupt { what: "MPMC slot sequence number more than a lap behind", value: seq });
        }
        Ok(d)
    }

    fn try_push<T: Pod>(&self, value: &T) -> Result<bool> {
        let enq = &self.ctl.producer.index;
        let mut pos = enq.load(Ordering::Relaxed);
        loop {
            let slot = self.geo.slot_offset(pos);
            let seq_word = self.region.atomic_u32(slot)?;
            // Acquire: pairs with the consumer's release of this slot, so its
            // read of the old payload happens before our write.
            let seq = seq_word.load(Ordering::Acquire);
            let d = self.lag(seq, pos)?;
            if d == 0 {
                match enq.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        self.region.write_pod(slot + SEQ_BYTES, value)?;
                        // Release: the payload is visible to the consumer that acquires seq == pos + 1.
                        seq_word.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(true);
                    }
                    Err(now) => pos = now,
                }
            } else if d < 0 {
                return Ok(false); // the slot still holds last lap's message: full
            } else {
                // Another producer took `pos`; its CAS happened before the
                // sequence store we acquired, so the position must have moved.
                let now = enq.load(Ordering::Relaxed);
                if now == pos {
                    return Err(Error::Corrupt {
                        what: "MPMC slot claimed but enqueue position unchanged",
                        value: seq,
                    });
                }
                pos = now;
            }
        }
    }

    fn try_pop<T: Pod>(&self) -> Result<Option<T>> {
        let deq = &self.ctl.consumer.index;
        let mut pos = deq.load(Ordering::Relaxed);
        loop {
            let slot = self.geo.slot_offset(pos);
            let seq_word = self.region.atomic_u32(slot)?;
            // Acquire: pairs with the producer's release, making the payload visible.
            let seq = seq_word.load(Ordering::Acquire);
            let d = self.lag(seq, pos.wrapping_add(1))?;
            if d == 0 {
                match deq.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        let v = self.region.read_pod::<T>(slot + SEQ_BYTES)?;
                        // Release: our read happens before the next lap's producer writes.
                        seq_word.store(pos.wrapping_add(self.geo.capacity), Ordering::Release);
                        return Ok(Some(v));
                    }
                    Err(now) => pos = now,
                }
            } else if d < 0 {
                return Ok(None); // not yet written: empty
            } else {
                let now = deq.load(Ordering::Relaxed);
                if now == pos {
                    return Err(Error::Corrupt {
                        what: "MPMC slot consumed but dequeue position unchanged",
                        value: seq,
                    });
                }
                pos = now;
            }
        }
    }

    /// Whether the slot at the dequeue position holds a message (for sleepers' re-checks).
    fn has_message(&self) -> Result<bool> {
        let pos = self.ctl.consumer.index.load(Ordering::Relaxed);
        let seq = self.region.atomic_u32(self.geo.slot_offset(pos))?.load(Ordering::Acquire);
        Ok(self.lag(seq, pos.wrapping_add(1))? >= 0)
    }

    /// Whether the slot at the enqueue position is free.
    fn has_room(&self) -> Result<bool> {
        let pos = self.ctl.producer.index.load(Ordering::Relaxed);
        let seq = self.region.atomic_u32(self.geo.slot_offset(pos))?.load(Ordering::Acquire);
        Ok(self.lag(seq, pos)? >= 0)
    }
}

/// A producing handle; any number of them, in any processes. `Sync`: threads may share one.
pub struct Producer<'a, T: Pod, W: Wake> {
    shared: Shared<'a>,
    wake: W,
    budget: u32,
    _t: PhantomData<T>,
}

impl<'a, T: Pod, W: Wake> Producer<'a, T, W> {
    pub fn attach(region: &'a Region, offset: usize, wake: W) -> Result<Self> {
        Ok(Producer {
            shared: Shared::attach::<T>(region, offset)?,
            wake,
            budget: DEFAULT_POLL_BUDGET,
            _t: PhantomData,
        })
    }

    pub fn set_poll_budget(&mut self, polls: u32) {
        self.budget = polls;
    }

    pub fn capacity(&self) -> u32 {
        self.shared.geo.capacity
    }

    /// Appends `value` if there is room (`Ok(false)` when full) and wakes a sleeping consumer.
    pub fn try_push(&self, value: T) -> Result<bool> {
        if !self.shared.try_push(&value)? {
            return Ok(false);
        }
        let w = &self.shared.ctl.wait;
        wake::wake_if_any_waiting(&w.consumer_waiting, &self.wake)?;
        wake::chain_if_waiting(&w.producer_waiting, &self.wake, || self.shared.has_room())?;
        Ok(true)
    }

    /// Appends `value`, polling then sleeping while the ring is full.
    pub fn push(&self, value: T) -> Result<()> {
        loop {
            if self.try_push(value)? {
                return Ok(());
            }
            let s = &self.shared;
            wake::wait_until_counted(&s.ctl.wait.producer_waiting, &self.wake, self.budget, || s.has_room())?;
        }
    }
}

/// A consuming handle; any number of them, in any processes.
pub struct Consumer<'a, T: Pod, W: Wake> {
    shared: Shared<'a>,
    wake: W,
    budget: u32,
    _t: PhantomData<T>,
}

impl<'a, T: Pod, W: Wake> Consumer<'a, T, W> {
    pub fn attach(region: &'a Region, offset: usize, wake: W) -> Result<Self> {
        Ok(Consumer {
            shared: Shared::attach::<T>(region, offset)?,
            wake,
            budget: DEFAULT_POLL_BUDGET,
            _t: PhantomData,
        })
    }

    pub fn set_poll_budget(&mut self, polls: u32) {
        self.budget = polls;
    }

    pub fn capacity(&self) -> u32 {
        self.shared.geo.capacity
    }

    /// Removes a message if one is ready and wakes a sleeping producer.
    pub fn try_pop(&self) -> Result<Option<T>> {
        let v = self.shared.try_pop::<T>()?;
        if v.is_some() {
            let w = &self.shared.ctl.wait;
            wake::wake_if_any_waiting(&w.producer_waiting, &self.wake)?;
            wake::chain_if_waiting(&w.consumer_waiting, &self.wake, || self.shared.has_message())?;
        }
        Ok(v)
    }

    /// Removes a message, polling then sleeping while the ring is empty.
    pub fn pop(&self) -> Result<T> {
        loop {
            if let Some(v) = self.try_pop()? {
                return Ok(v);
            }
            let s = &self.shared;
            wake::wait_until_counted(&s.ctl.wait.consumer_waiting, &self.wake, self.budget, || s.has_message())?;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::sync::atomic::{AtomicU32, AtomicU64};
    use std::vec::Vec;

    use super::*;
    use crate::layout::offsets;
    use crate::raw::heap::HeapRegion;
    use crate::wake::Poll;

    #[test]
    fn fifo_for_one_thread_with_full_empty_and_wraparound() {
        for first in [0, u32::MAX - 2] {
            let r = HeapRegion::new(ring_size::<u64>(4).unwrap());
            init_at::<u64>(&r, 0, 4, first).unwrap();
            let p = Producer::<u64, _>::attach(&r, 0, Poll).unwrap();
            let c = Consumer::<u64, _>::attach(&r, 0, Poll).unwrap();
            let (mut i, mut o) = (0u64, 0u64);
            for round in 0..30 {
                while p.try_push(i).unwrap() {
                    i += 1;
                }
                assert_eq!(i - o, 4);
                for _ in 0..(round % 4 + 1) {
                    assert_eq!(c.try_pop().unwrap(), Some(o));
                    o += 1;
                }
            }
            while let Some(v) = c.try_pop().unwrap() {
                assert_eq!(v, o);
                o += 1;
            }
            assert_eq!((i, c.try_pop().unwrap()), (o, None));
        }
    }

    #[test]
    fn threads_deliver_each_message_exactly_once() {
        const PRODUCERS: u64 = 3;
        const PER: u64 = 30_000;
        let r = HeapRegion::new(ring_size::<[u64; 2]>(8).unwrap());
        init_at::<[u64; 2]>(&r, 0, 8, u32::MAX - 3).unwrap();
        let seen: Vec<AtomicU32> = (0..PRODUCERS * PER).map(|_| AtomicU32::new(0)).collect();
        let done = AtomicU64::new(0);
        std::thread::scope(|s| {
            for id in 0..PRODUCERS {
                let r = &r;
                s.spawn(move || {
                    let p = Producer::<[u64; 2], _>::attach(r, 0, Poll).unwrap();
                    for k in 0..PER {
                        p.push([id, k]).unwrap();
                    }
                });
            }
            for _ in 0..3 {
                let (r, seen, done) = (&r, &seen, &done);
                s.spawn(move || {
                    let c = Consumer::<[u64; 2], _>::attach(r, 0, Poll).unwrap();
                    let mut last = [None::<u64>; PRODUCERS as usize];
                    while done.load(Ordering::Relaxed) < PRODUCERS * PER {
                        if let Some([id, k]) = c.try_pop().unwrap() {
                            // One consumer sees each producer's messages in order.
                            assert!(last[id as usize].map_or(true, |l| l < k));
                            last[id as usize] = Some(k);
                            assert_eq!(seen[(id * PER + k) as usize].fetch_add(1, Ordering::Relaxed), 0, "duplicate");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn hostile_sequence_numbers_produce_errors_not_hangs() {
        let r = HeapRegion::new(ring_size::<u64>(4).unwrap());
        init::<u64>(&r, 0, 4).unwrap();
        let p = Producer::<u64, _>::attach(&r, 0, Poll).unwrap();
        let c = Consumer::<u64, _>::attach(&r, 0, Poll).unwrap();
        let slot0 = offsets::DATA;
        // seq "ahead" of the enqueue position, which never moves.
        r.atomic_u32(slot0).unwrap().store(2, Ordering::Relaxed);
        assert!(matches!(p.try_push(1), Err(Error::Corrupt { .. })));
        assert!(matches!(p.push(1), Err(Error::Corrupt { .. })));
        // seq from a lap long gone.
        r.atomic_u32(slot0).unwrap().store(0x8000_0000, Ordering::Relaxed);
        assert!(matches!(c.try_pop(), Err(Error::Corrupt { .. })));
        assert!(matches!(c.pop(), Err(Error::Corrupt { .. })));
        // Garbage positions only ever select slots modulo the capacity.
        r.atomic_u32(slot0).unwrap().store(0, Ordering::Relaxed);
        r.atomic_u32(offsets::PRODUCER_INDEX).unwrap().store(0x7fff_fff0, Ordering::Relaxed);
        assert!(matches!(p.try_push(5), Err(Error::Corrupt { .. })));
    }
}
