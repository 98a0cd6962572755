//! Bounded single-producer single-consumer ring of fixed-size messages.
//!
//! Layout: the common control block ([`crate::layout`]) followed by
//! `capacity` slots of `size_of::<T>()` bytes rounded up to 8. Positions are
//! free-running `u32`s; position `p` lives in slot `p & (capacity - 1)`.
//!
//! ```
//! use shmq::{spsc, Poll, heap::HeapRegion};
//! let region = HeapRegion::new(spsc::ring_size::<u64>(8).unwrap());
//! spsc::init::<u64>(&region, 0, 8).unwrap();
//! let mut tx = spsc::Producer::<u64, _>::attach(&region, 0, Poll).unwrap();
//! let mut rx = spsc::Consumer::<u64, _>::attach(&region, 0, Poll).unwrap();
//! assert!(tx.try_push(42).unwrap());
//! assert_eq!(rx.try_pop().unwrap(), Some(42));
//! ```

use core::marker::PhantomData;
use core::mem::size_of;

use crate::ends::{self, ConsumerEnd, ProducerEnd};
use crate::error::{Error, Result};
use crate::layout::{Geometry, Kind};
use crate::raw::{Pod, Region};
use crate::wake::{Wake, DEFAULT_POLL_BUDGET};

fn geometry<T: Pod>(capacity: u32, offset: usize) -> Result<Geometry> {
    Geometry::new(Kind::Spsc, capacity, size_of::<T>(), 0, offset)
}

/// Bytes a ring of `capacity` messages of type `T` occupies (control block included).
pub fn ring_size<T: Pod>(capacity: u32) -> Result<usize> {
    Ok(geometry::<T>(capacity, 0)?.total_size)
}

/// Creates an empty ring at `offset` (64-byte aligned). Call once, before any side attaches.
pub fn init<T: Pod>(region: &Region, offset: usize, capacity: u32) -> Result<()> {
    init_at::<T>(region, offset, capacity, 0)
}

/// Like [`init`], with the first position at `first_index` instead of 0 (tests
/// use `u32::MAX - k` to exercise index wraparound).
pub fn init_at<T: Pod>(region: &Region, offset: usize, capacity: u32, first_index: u32) -> Result<()> {
    let mut g = geometry::<T>(capacity, offset)?;
    g.first_index = first_index;
    ends::init(region, offset, g)
}

/// Planted bugs, compiled only into unit tests, to prove the tests catch them.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlantedBug {
    /// Publishes the tail before writing the slot.
    PublishBeforeWrite,
    /// Reads the consumer's waiting flag before publishing the tail.
    FlagCheckBeforePublish,
}

/// The producing end. Exactly one per ring.
pub struct Producer<'a, T: Pod, W: Wake> {
    end: ProducerEnd<'a>,
    wake: W,
    budget: u32,
    _t: PhantomData<T>,
    #[cfg(test)]
    pub(crate) planted: Option<PlantedBug>,
}

impl<'a, T: Pod, W: Wake> Producer<'a, T, W> {
    /// Attaches to the ring at `offset`, checking magic, version, kind and slot size.
    pub fn attach(region: &'a Region, offset: usize, wake: W) -> Result<Self> {
        Ok(Producer {
            end: ProducerEnd::attach(region, offset, Kind::Spsc, size_of::<T>())?,
            wake,
            budget: DEFAULT_POLL_BUDGET,
            _t: PhantomData,
            #[cfg(test)]
            planted: None,
        })
    }

    /// Polls before sleeping in blocking calls (see [`crate::wake::DEFAULT_POLL_BUDGET`]).
    pub fn set_poll_budget(&mut self, polls: u32) {
        self.budget = polls;
    }

    pub fn capacity(&self) -> u32 {
        self.end.geo.capacity
    }

    pub fn wake(&self) -> &W {
        &self.wake
    }

    /// Appends `value` if there is room: `Ok(false)` when full, `Err(Closed)` once the consumer closed.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<bool> {
        if self.end.consumer_closed() {
            return Err(Error::Closed);
        }
        if self.end.free(1)? == 0 {
            return Ok(false);
        }
        #[cfg(test)]
        if let Some(bug) = self.planted {
            self.planted_push(bug, value)?;
            return Ok(true);
        }
        let off = self.end.geo.slot_offset(self.end.tail);
        self.end.region.write_pod(off, &value)?;
        self.end.publish(1, &self.wake)?;
        Ok(true)
    }

    /// Appends as many of `values` as fit with one publish (and at most one
    /// wakeup); returns how many.
    pub fn try_push_slice(&mut self, values: &[T]) -> Result<usize> {
        if self.end.consumer_closed() {
            return Err(Error::Closed);
        }
        let want = u32::try_from(values.len()).unwrap_or(u32::MAX);
        let n = self.end.free(want)?.min(want);
        if n == 0 {
            return Ok(0);
        }
        for (i, v) in values[..n as usize].iter().enumerate() {
            let off = self.end.geo.slot_offset(self.end.tail.wrapping_add(i as u32));
            self.end.region.write_pod(off, v)?;
        }
        self.end.publish(n, &self.wake)?;
        Ok(n as usize)
    }

    /// Appends `value`, polling then sleeping while the ring is full.
    pub fn push(&mut self, value: T) -> Result<()> {
        loop {
            if self.try_push(value)? {
                return Ok(());
            }
            self.end.wait_free(&self.wake, self.budget)?;
        }
    }

    /// Appends all of `values`, sleeping while the ring is full.
    pub fn push_slice(&mut self, mut values: &[T]) -> Result<()> {
        while !values.is_empty() {
            let n = self.try_push_slice(values)?;
            values = &values[n..];
            if n == 0 {
                self.end.wait_free(&self.wake, self.budget)?;
            }
        }
        Ok(())
    }

    /// Blocks until the ring has room (or the consumer closed: `Err(Closed)`).
    pub fn wait_free(&mut self) -> Result<()> {
        self.end.wait_free(&self.wake, self.budget)
    }

    /// For producers that sleep in an event loop instead of [`Producer::push`]:
    /// sets this side's waiting flag and re-checks (the protocol of
    /// [`crate::wake`], steps 2–3). `Ok(true)`: a slot is free (or the
    /// consumer closed), do not sleep. `Ok(false)`: sleep; the consumer calls
    /// `wake_peer` once it frees a slot.
    pub fn arm(&mut self) -> Result<bool> {
        self.end.arm_free()
    }

    /// Clears this side's waiting flag (it no longer wants a wakeup).
    pub fn disarm(&self) {
        crate::wake::disarm(&self.end.ctl.wait.producer_waiting);
    }

    /// Ends the stream of messages: once the consumer drained the ring, its
    /// pops fail with `Closed`.
    pub fn close(&mut self) -> Result<()> {
        self.end.close(&self.wake)
    }

    #[cfg(test)]
    fn planted_push(&mut self, bug: PlantedBug, value: T) -> Result<()> {
        use core::sync::atomic::{fence, Ordering};
        // Widens the window between the two reordered steps, as a preemption
        // would (so the test catches the bug on a loaded 2-CPU machine too).
        let widen = || {
            extern crate std;
            std::thread::sleep(std::time::Duration::from_micros(50));
        };
        let off = self.end.geo.slot_offset(self.end.tail);
        match bug {
            PlantedBug::PublishBeforeWrite => {
                self.end.publish(1, &self.wake)?;
                widen();
                self.end.region.write_pod(off, &value)?;
            }
            PlantedBug::FlagCheckBeforePublish => {
                self.end.region.write_pod(off, &value)?;
                let flag = &self.end.ctl.wait.consumer_waiting;
                fence(Ordering::SeqCst);
                let sleeping = flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::Relaxed) != 0;
                widen();
                self.end.publish_quiet(1);
                if sleeping {
                    self.wake.wake_peer()?;
                }
            }
        }
        Ok(())
    }
}

/// The consuming end. Exactly one per ring.
pub struct Consumer<'a, T: Pod, W: Wake> {
    end: ConsumerEnd<'a>,
    wake: W,
    budget: u32,
    _t: PhantomData<T>,
}

impl<'a, T: Pod, W: Wake> Consumer<'a, T, W> {
    /// Attaches to the ring at `offset`, checking magic, version, kind and slot size.
    pub fn attach(region: &'a Region, offset: usize, wake: W) -> Result<Self> {
        Ok(Consumer {
            end: ConsumerEnd::attach(region, offset, Kind::Spsc, size_of::<T>())?,
            wake,
            budget: DEFAULT_POLL_BUDGET,
            _t: PhantomData,
        })
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

    /// Cheapest "did the producer publish anything new?" for poll loops: one
    /// acquire load of the producer's index compared with the last one seen,
    /// no validation (the next `try_pop` validates). May say true spuriously
    /// (e.g. for a corrupt index), never false while messages wait unseen.
    #[inline]
    pub fn peek_nonempty(&self) -> bool {
        self.end.head != self.end.tail
            || self.end.ctl.producer.index.load(core::sync::atomic::Ordering::Acquire) != self.end.tail
    }

    /// Messages ready to pop (reloads the producer's index).
    pub fn len(&mut self) -> Result<u32> {
        self.end.refresh()
    }

    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes the oldest message, or `Ok(None)` if the ring is empty.
    #[inline]
    pub fn try_pop(&mut self) -> Result<Option<T>> {
        if self.end.available(1)? == 0 {
            return Ok(None);
        }
        let v = self.end.region.read_pod::<T>(self.end.geo.slot_offset(self.end.head))?;
        self.end.release(1, &self.wake)?;
        Ok(Some(v))
    }

    /// Removes up to `out.len()` messages with one release of their slots; returns how many.
    pub fn try_pop_into(&mut self, out: &mut [T]) -> Result<usize> {
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let n = self.end.available(want)?.min(want);
        if n == 0 {
            return Ok(0);
        }
        for (i, o) in out[..n as usize].iter_mut().enumerate() {
            *o = self.end.region.read_pod::<T>(self.end.geo.slot_offset(self.end.head.wrapping_add(i as u32)))?;
        }
        self.end.release(n, &self.wake)?;
        Ok(n as usize)
    }

    /// Removes the oldest message, polling then sleeping while the ring is
    /// empty. `Err(Closed)` once the producer closed and the ring is drained.
    pub fn pop(&mut self) -> Result<T> {
        loop {
            if let Some(v) = self.try_pop()? {
                return Ok(v);
            }
            if !self.end.wait_available(&self.wake, self.budget)? {
                return Err(Error::Closed);
            }
        }
    }

    /// Like [`Consumer::try_pop_into`] but waits for at least one message.
    pub fn pop_into(&mut self, out: &mut [T]) -> Result<usize> {
        loop {
            let n = self.try_pop_into(out)?;
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            if !self.end.wait_available(&self.wake, self.budget)? {
                return Err(Error::Closed);
            }
        }
    }

    /// Blocks until a message is ready (`Ok(true)`) or the producer closed with nothing left (`Ok(false)`).
    pub fn wait_available(&mut self) -> Result<bool> {
        self.end.wait_available(&self.wake, self.budget)
    }

    /// For consumers that sleep in an event loop (or park) instead of
    /// [`Consumer::pop`]: sets this side's waiting flag and re-checks (the
    /// protocol of [`crate::wake`], steps 2–3). `Ok(true)`: a message (or end
    /// of stream) is there, do not sleep. `Ok(false)`: sleep; the producer
    /// calls `wake_peer` after its next publish.
    pub fn arm(&mut self) -> Result<bool> {
        self.end.arm_available()
    }

    /// Clears this side's waiting flag (it no longer wants a wakeup).
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
    use core::sync::atomic::Ordering;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};
    use std::vec::Vec;

    use super::*;
    use crate::layout::offsets;
    use crate::raw::heap::HeapRegion;
    use crate::wake::Poll;

    type Msg = [u64; 4];

    fn ring(cap: u32, first: u32) -> HeapRegion {
        let r = HeapRegion::new(ring_size::<Msg>(cap).unwrap() + 64);
        init_at::<Msg>(&r, 64, cap, first).unwrap();
        r
    }

    #[test]
    fn fifo_full_empty_and_index_wraparound() {
        for first in [0, u32::MAX - 5, u32::MAX] {
            let r = ring(4, first);
            let mut tx = Producer::<Msg, _>::attach(&r, 64, Poll).unwrap();
            let mut rx = Consumer::<Msg, _>::attach(&r, 64, Poll).unwrap();
            let mut next_in = 0u64;
            let mut next_out = 0u64;
            for round in 0..50u64 {
                // Fill to the brim, check "full", drain some, check order.
                while tx.try_push([next_in, !next_in, round, 7]).unwrap() {
                    next_in += 1;
                }
                assert_eq!(next_in - next_out, 4, "full at exactly the capacity");
                for _ in 0..(round % 4 + 1) {
                    let m = rx.try_pop().unwrap().unwrap();
                    assert_eq!((m[0], m[1]), (next_out, !next_out));
                    next_out += 1;
                }
            }
            while let Some(m) = rx.try_pop().unwrap() {
                assert_eq!(m[0], next_out);
                next_out += 1;
            }
            assert_eq!(next_in, next_out);
            assert_eq!(rx.try_pop().unwrap(), None);
        }
    }

    #[test]
    fn batches_wrap_around_the_end_of_the_slots() {
        let r = ring(8, u32::MAX - 2);
        let mut tx = Producer::<Msg, _>::attach(&r, 64, Poll).unwrap();
        let mut rx = Consumer::<Msg, _>::attach(&r, 64, Poll).unwrap();
        let mut seq = 0u64;
        let mut expect = 0u64;
        for k in 1..40usize {
            let batch: Vec<Msg> = (0..k % 11).map(|i| [seq + i as u64, 0, 0, 0]).collect();
            let n = tx.try_push_slice(&batch).unwrap();
            assert!(n <= 8);
            seq += n as u64;
            let mut out = [[0u64; 4]; 5];
            let got = rx.try_pop_into(&mut out[..k % 6]).unwrap();
            for m in &out[..got] {
                assert_eq!(m[0], expect);
                expect += 1;
            }
        }
        let mut out = [[0u64; 4]; 8];
        let got = rx.try_pop_into(&mut out).unwrap();
        assert_eq!(expect + got as u64, seq);
    }

    #[test]
    fn attach_checks_kind_slot_size_and_initialisation() {
        let r = ring(4, 0);
        assert!(matches!(
            Producer::<u64, _>::attach(&r, 64, Poll),
            Err(Error::SlotMismatch { found: 32, expected: 8 })
        ));
        assert!(matches!(Consumer::<Msg, _>::attach(&r, 0, Poll), Err(Error::NotInitialized { offset: 0 })));
        assert!(matches!(crate::stream::Reader::attach(&r, 64, Poll), Err(Error::KindMismatch { found: 1, .. })));
        r.atomic_u32(64 + offsets::VERSION).unwrap().store(99, Ordering::Relaxed);
        assert!(matches!(Consumer::<Msg, _>::attach(&r, 64, Poll), Err(Error::VersionMismatch { found: 99, .. })));
        r.atomic_u32(64).unwrap().store(0xdead_beef, Ordering::Relaxed);
        assert!(matches!(Consumer::<Msg, _>::attach(&r, 64, Poll), Err(Error::BadMagic { found: 0xdead_beef, .. })));
        // A ring that does not fit in the region.
        let small = HeapRegion::new(ring_size::<Msg>(4).unwrap() - 1);
        assert!(matches!(init::<Msg>(&small, 0, 4), Err(Error::OutOfBounds { .. })));
    }

    #[test]
    fn hostile_indices_and_header_produce_errors_not_out_of_bounds_access() {
        let r = ring(4, 0);
        let mut tx = Producer::<Msg, _>::attach(&r, 64, Poll).unwrap();
        let mut rx = Consumer::<Msg, _>::attach(&r, 64, Poll).unwrap();
        assert!(tx.try_push([1; 4]).unwrap());
        // The peer rewrites the header after attach: handles keep their private geometry.
        r.atomic_u32(64 + offsets::CAPACITY).unwrap().store(1 << 20, Ordering::Relaxed);
        r.atomic_u32(64 + offsets::STRIDE).unwrap().store(4096, Ordering::Relaxed);
        assert_eq!(rx.try_pop().unwrap(), Some([1; 4]));
        // A tail far ahead of the head.
        let tail = r.atomic_u32(64 + offsets::PRODUCER_INDEX).unwrap();
        tail.store(1000, Ordering::Relaxed);
        assert!(matches!(rx.try_pop(), Err(Error::Corrupt { value: 1000, .. })));
        assert!(matches!(rx.pop(), Err(Error::Corrupt { .. })), "blocking pop fails instead of hanging");
        // A head that moved backwards past the tail.
        let head = r.atomic_u32(64 + offsets::CONSUMER_INDEX).unwrap();
        head.store(u32::MAX - 100, Ordering::Relaxed);
        for _ in 0..3 {
            let _ = tx.try_push([2; 4]);
        }
        assert!(matches!(tx.try_push([3; 4]), Err(Error::Corrupt { .. })));
        // Inconsistent headers fail attach cleanly.
        assert!(matches!(Consumer::<Msg, _>::attach(&r, 64, Poll), Err(Error::BadHeader { field: "stride", .. })));
        r.atomic_u32(64 + offsets::CAPACITY).unwrap().store(6, Ordering::Relaxed);
        assert!(matches!(Consumer::<Msg, _>::attach(&r, 64, Poll), Err(Error::BadHeader { field: "capacity", .. })));
        r.atomic_u32(64 + offsets::CAPACITY).unwrap().store(1 << 20, Ordering::Relaxed);
        r.atomic_u32(64 + offsets::STRIDE).unwrap().store(32, Ordering::Relaxed);
        r.atomic_u32(64 + offsets::TOTAL_SIZE).unwrap().store(256 + 32 * 4, Ordering::Relaxed);
        assert!(matches!(Consumer::<Msg, _>::attach(&r, 64, Poll), Err(Error::BadHeader { field: "total_size", .. })));
    }

    #[test]
    fn close_ends_the_stream_after_the_last_message() {
        let r = ring(4, 0);
        let mut tx = Producer::<Msg, _>::attach(&r, 64, Poll).unwrap();
        let mut rx = Consumer::<Msg, _>::attach(&r, 64, Poll).unwrap();
        tx.push([5; 4]).unwrap();
        tx.close().unwrap();
        assert_eq!(rx.pop().unwrap(), [5; 4]);
        assert_eq!(rx.pop(), Err(Error::Closed));
        rx.close().unwrap();
        assert_eq!(tx.try_push([6; 4]), Err(Error::Closed));
    }

    #[test]
    fn arm_rechecks_and_the_next_publish_signals_exactly_once() {
        let r = ring(4, 0);
        let (pw, cw, lost) = wake_pair(Duration::from_millis(500));
        let mut tx = Producer::<Msg, _>::attach(&r, 64, pw).unwrap();
        let mut rx = Consumer::<Msg, _>::attach(&r, 64, cw).unwrap();
        let flag = r.atomic_u32(64 + offsets::CONSUMER_WAITING).unwrap();
        // Empty: arming says "sleep" and leaves the flag set.
        assert!(!rx.arm().unwrap());
        assert_eq!(flag.load(Ordering::Relaxed), 1);
        // The first publish swaps the flag and signals; the second does not.
        tx.push([1; 4]).unwrap();
        tx.push([2; 4]).unwrap();
        assert_eq!(flag.load(Ordering::Relaxed), 0);
        assert_eq!(*rx.wake().mine.tokens.lock().unwrap(), 1, "one signal for two publishes");
        // Data present: arming says "do not sleep" and clears the flag again.
        assert!(rx.arm().unwrap());
        assert_eq!(flag.load(Ordering::Relaxed), 0);
        assert_eq!(rx.try_pop().unwrap(), Some([1; 4]));
        assert_eq!(rx.try_pop().unwrap(), Some([2; 4]));
        // Disarm withdraws a pending request for a signal.
        assert!(!rx.arm().unwrap());
        rx.disarm();
        tx.push([3; 4]).unwrap();
        assert_eq!(*rx.wake().mine.tokens.lock().unwrap(), 1, "no signal after disarm");
        // Producer side: arm on a full ring, the consumer's release signals.
        for v in 4..7 {
            tx.push([v; 4]).unwrap();
        }
        assert!(!tx.arm().unwrap(), "full ring: sleep");
        assert_eq!(rx.try_pop().unwrap(), Some([3; 4]));
        assert_eq!(*tx.wake().mine.tokens.lock().unwrap(), 1, "the release woke the producer");
        assert!(tx.arm().unwrap(), "room now");
        tx.close().unwrap();
        assert!(!lost.load(Ordering::Relaxed));
    }

    /// An in-process counting semaphore with a timeout: a sleep that lasts
    /// longer than `patience` is recorded as a lost wakeup (and ends as a
    /// spurious wakeup, so the run goes on and the test can report it).
    #[derive(Default)]
    struct Sem {
        tokens: Mutex<u64>,
        cv: Condvar,
    }
    struct ThreadWake {
        mine: Arc<Sem>,
        peer: Arc<Sem>,
        patience: Duration,
        lost: Arc<std::sync::atomic::AtomicBool>,
    }
    impl Wake for ThreadWake {
        fn wake_peer(&self) -> Result<()> {
            *self.peer.tokens.lock().unwrap() += 1;
            self.peer.cv.notify_one();
            Ok(())
        }
        fn sleep(&self) -> Result<()> {
            let g = self.mine.tokens.lock().unwrap();
            let (mut g, t) = self.mine.cv.wait_timeout_while(g, self.patience, |n| *n == 0).unwrap();
            if t.timed_out() {
                self.lost.store(true, Ordering::Relaxed);
            }
            *g = 0;
            Ok(())
        }
        fn wake_sibling(&self) -> Result<()> {
            Ok(())
        }
    }
    fn wake_pair(patience: Duration) -> (ThreadWake, ThreadWake, Arc<std::sync::atomic::AtomicBool>) {
        let (a, b) = (Arc::new(Sem::default()), Arc::new(Sem::default()));
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            ThreadWake { mine: a.clone(), peer: b.clone(), patience, lost: lost.clone() },
            ThreadWake { mine: b, peer: a, patience, lost: lost.clone() },
            lost,
        )
    }

    /// Two threads, a tiny ring, random pacing: checks order and completeness.
    /// `lockstep`: the producer waits until each message was received before
    /// sending the next (so a lost wakeup is not rescued by a later push).
    /// Returns the first failure (corrupt message or lost wakeup).
    fn run_threads(
        bug: Option<PlantedBug>,
        msgs: u64,
        deadline: Duration,
        budget: u32,
        lockstep: bool,
    ) -> core::result::Result<u64, std::string::String> {
        use std::sync::atomic::AtomicU64;
        let r = ring(4, u32::MAX - 1);
        // A correct run never sleeps through a signal; allow for a loaded machine there.
        let patience = Duration::from_millis(if bug.is_some() { 500 } else { 2000 });
        let (pw, cw, lost) = wake_pair(patience);
        let received = AtomicU64::new(0);
        let start = Instant::now();
        std::thread::scope(|s| {
            let region = &r;
            let received = &received;
            let prod = s.spawn(move || -> core::result::Result<u64, std::string::String> {
                let mut tx = Producer::<Msg, _>::attach(region, 64, pw).unwrap();
                tx.planted = bug;
                tx.set_poll_budget(budget);
                let mut rng = crate::testkit::SplitMix64::new(1);
                let mut sent = 0;
                while sent < msgs && start.elapsed() < deadline {
                    tx.push([sent, sent ^ 0x5555, sent.wrapping_mul(3), 0])
                        .map_err(|e| std::format!("producer: {e}"))?;
                    sent += 1;
                    if lockstep {
                        let t = Instant::now();
                        while received.load(Ordering::Acquire) < sent {
                            if t.elapsed() > Duration::from_secs(2) {
                                return Err(std::format!("message {} never received", sent - 1));
                            }
                            std::thread::yield_now();
                        }
                    } else if rng.below(8) == 0 {
                        std::thread::sleep(Duration::from_micros(rng.below(50)));
                    }
                }
                tx.close().map_err(|e| std::format!("producer: {e}"))?;
                Ok(sent)
            });
            let mut rx = Consumer::<Msg, _>::attach(region, 64, cw).unwrap();
            rx.set_poll_budget(budget);
            let mut rng = crate::testkit::SplitMix64::new(2);
            let mut expect = 0u64;
            let outcome = loop {
                match rx.pop() {
                    Ok(m) => {
                        if m != [expect, expect ^ 0x5555, expect.wrapping_mul(3), 0] {
                            break Err(std::format!("message {expect} arrived as {m:?}"));
                        }
                        expect += 1;
                        received.store(expect, Ordering::Release);
                        if lost.load(Ordering::Relaxed) {
                            break Err(std::format!("lost wakeup: message {} slept past the patience", expect - 1));
                        }
                        if lockstep {
                            // Dawdle 0–20 µs before the next pop (and its sleep),
                            // so the producer's next push races with our going to sleep.
                            let t = Instant::now();
                            let d = Duration::from_nanos(rng.below(20_000));
                            while t.elapsed() < d {
                                core::hint::spin_loop();
                            }
                        } else if rng.below(16) == 0 {
                            std::thread::yield_now();
                        }
                    }
                    Err(Error::Closed) => break Ok(()),
                    Err(e) => break Err(std::format!("consumer: {e}")),
                }
            };
            if outcome.is_err() {
                // Let a producer blocked on a full ring or on the lockstep ack give up.
                let _ = rx.close();
            }
            let sent = prod.join().unwrap();
            outcome?;
            let sent = sent?;
            if sent != expect {
                return Err(std::format!("sent {sent}, received {expect}"));
            }
            Ok(expect)
        })
    }

    #[test]
    fn threads_correct_protocol_delivers_everything_without_lost_wakeups() {
        // Every message, whatever the load (the deadline only guards against a hang).
        let minute = Duration::from_secs(60);
        assert_eq!(run_threads(None, 10_000, minute, 1 << 10, false), Ok(10_000), "polling sides");
        assert_eq!(run_threads(None, 10_000, minute, 0, false), Ok(10_000), "sleeping sides");
        assert_eq!(run_threads(None, 2_000, minute, 0, true), Ok(2_000), "lockstep");
    }

    #[test]
    fn planted_bug_publish_before_write_is_caught() {
        let e = run_threads(Some(PlantedBug::PublishBeforeWrite), 1_000_000, Duration::from_secs(30), 1 << 16, false)
            .expect_err("publishing the index before writing the slot must be detected");
        assert!(e.contains("arrived as"), "{e}");
    }

    #[test]
    fn planted_bug_flag_check_before_publish_is_caught() {
        let e = run_threads(Some(PlantedBug::FlagCheckBeforePublish), 1_000_000, Duration::from_secs(30), 0, true)
            .expect_err("checking the waiting flag before publishing must lose a wakeup");
        assert!(e.contains("lost wakeup") || e.contains("never received"), "{e}");
    }
}
