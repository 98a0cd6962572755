//! Wakeups: the waiting-flag protocol (here, once, for every ring kind) and the
//! [`Wake`] hook through which each environment plugs in its signal.
//!
//! # Protocol (SPSC message ring and byte stream)
//!
//! Each side has a *waiting flag* in the ring's wait line (`consumer_waiting`,
//! `producer_waiting`) and a *signal* it sleeps on (host: an eventfd; guest: a
//! parked task woken by an interrupt). The flag is set only by its owner and
//! cleared by either side.
//!
//! Sleeper (e.g. a consumer that found the ring empty), `wait_until`:
//! 1. poll the ring up to `poll_budget` times (`spin_loop` between polls);
//! 2. `waiting = 1`; **fence(SeqCst)**; re-check the ring (and the closed flag);
//! 3. if ready: `waiting = 0`, return; else `sleep()` and go to 2.
//!
//! Waker (e.g. a producer that published), `wake_if_waiting`:
//! 1. publish (`tail.store(release)` or `closed.store(release)`);
//! 2. **fence(SeqCst)**; if `waiting != 0` and `waiting.swap(0) != 0`: `wake_peer()`.
//!
//! **No lost wakeup.** The two fences are in the single total order of SeqCst
//! fences. If the waker's fence comes first, its publish is visible to the
//! sleeper's re-check (step 2), which then does not sleep. If the sleeper's
//! fence comes first, the waker reads `waiting == 1` (or 0 because the
//! sleeper already found data and cleared it) and signals. This is the
//! store→load (Dekker) pattern: acquire/release alone cannot order a store
//! before a later load, so each side needs one full fence between its store
//! and its load. On x86 a fence is one `mfence`; the producer pays it once per
//! publish (once per batch with the batch APIs), the consumer once per publish
//! of its head and once per sleep.
//!
//! **Coalescing.** The waker clears the flag with `swap`, so of many publishes
//! while the peer sleeps only the first signals; the next signal needs a new
//! sleep. Signals left over (the sleeper found data on its re-check after the
//! waker already swapped the flag) cause one spurious wakeup, never a missed one.
//!
//! **Signal requirements** ([`Wake`]): semaphore semantics (a `wake_peer`
//! before the peer's `sleep` makes that `sleep` return) and release/acquire
//! between `wake_peer` and the `sleep` it ends. An eventfd write/read gives
//! both (the kernel's wait-queue lock); a VM exit or an injected interrupt is
//! a full serialising event.
//!
//! The Promela models in `models/` check this protocol for lost wakeups and
//! deadlock, and catch the planted bugs (flag checked before publishing; index
//! published before the slot is written; a missing fence under TSO).
//!
//! # MPMC rings
//!
//! Several consumers (producers) may sleep: the waiting word is a count.
//! A sleeper increments it, fences, re-checks, sleeps, and decrements it when it
//! wakes; a waker fences after publishing and signals while the count is
//! non-zero. No coalescing across sleepers (a signal per publish while anyone
//! sleeps), which is the price of not tracking who sleeps.

use core::sync::atomic::{fence, AtomicU32, Ordering};

use crate::error::Result;

/// How one side of a ring sleeps and wakes its peer.
///
/// Host ↔ host: [`crate::host::EventWake`] (eventfds). Guest kernel: `sleep`
/// parks the task (the vCPU runs others or halts) until the host's interrupt,
/// `wake_peer` makes the "wake the host I/O thread" VMM call. Host side of a
/// guest ring: `sleep` waits on an eventfd, `wake_peer` kicks the vCPU or
/// injects the interrupt. The protocol guarantees `wake_peer` is called only
/// when the peer advertised it is (about to be) asleep.
pub trait Wake {
    /// Wakes the peer, which has set its waiting flag.
    fn wake_peer(&self) -> Result<()>;
    /// Blocks until the peer calls `wake_peer` (one that happened before this
    /// call counts), or returns early (spurious wakeups are allowed; the caller
    /// re-checks). An error (peer died) aborts the blocking operation.
    fn sleep(&self) -> Result<()>;
    /// MPMC only: wakes another sleeper of *this* side (the signal this side
    /// sleeps on), for the chain wakeup. SPSC rings never call it.
    fn wake_sibling(&self) -> Result<()>;
}

impl<W: Wake + ?Sized> Wake for &W {
    fn wake_peer(&self) -> Result<()> {
        (**self).wake_peer()
    }
    fn sleep(&self) -> Result<()> {
        (**self).sleep()
    }
    fn wake_sibling(&self) -> Result<()> {
        (**self).wake_sibling()
    }
}

/// Never sleeps: `sleep` returns at once (blocking calls busy-poll) and
/// `wake_peer` does nothing. Only for peers that both poll (tests, a guest
/// before interrupts work). Pairing it with a sleeping peer loses wakeups.
#[derive(Debug, Default, Clone, Copy)]
pub struct Poll;

impl Wake for Poll {
    fn wake_peer(&self) -> Result<()> {
        Ok(())
    }
    fn sleep(&self) -> Result<()> {
        core::hint::spin_loop();
        Ok(())
    }
    fn wake_sibling(&self) -> Result<()> {
        Ok(())
    }
}

/// Default number of polls before sleeping. One poll (an acquire load of the
/// peer's index plus a `pause`) takes about 32 ns on this machine's AMD EPYC
/// vCPUs (`shmq.wake.poll_ns` in shmq-bench), so 1024 polls ≈ 33 µs: about one
/// sleep + eventfd wakeup (16–28 µs one-way to a sleeping receiver), the
/// classic 2-competitive choice for spinning before blocking.
pub const DEFAULT_POLL_BUDGET: u32 = 1024;

/// Waker side, right after publishing: signal the peer if it sleeps.
#[inline]
pub(crate) fn wake_if_waiting<W: Wake>(peer_waiting: &AtomicU32, wake: &W) -> Result<()> {
    // SeqCst fence: orders our publish (a store) before the load of the peer's
    // flag below; pairs with the fence in `wait_until` (see the module docs).
    fence(Ordering::SeqCst);
    if peer_waiting.load(Ordering::Relaxed) != 0 && peer_waiting.swap(0, Ordering::Relaxed) != 0 {
        wake.wake_peer()?;
    }
    Ok(())
}

/// Sleeper side: returns once `ready()` is true, polling `budget` times first,
/// then advertising `my_waiting` and sleeping.
pub(crate) fn wait_until<W: Wake>(
    my_waiting: &AtomicU32,
    wake: &W,
    budget: u32,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    for _ in 0..budget {
        if ready()? {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    loop {
        my_waiting.store(1, Ordering::Relaxed);
        // SeqCst fence: orders the flag store before the re-check's index
        // loads; pairs with the fence in `wake_if_waiting`.
        fence(Ordering::SeqCst);
        let r = ready();
        if !matches!(r, Ok(false)) {
            my_waiting.store(0, Ordering::Relaxed);
            return r.map(|_| ());
        }
        if let Err(e) = wake.sleep() {
            my_waiting.store(0, Ordering::Relaxed);
            // A peer that died (or a signal that failed) may have left work:
            // report the error only if there is nothing to do.
            return if ready()? { Ok(()) } else { Err(e) };
        }
        // The waker cleared the flag (or this was a spurious wakeup and the
        // loop sets it again before sleeping).
        let r = ready();
        if !matches!(r, Ok(false)) {
            my_waiting.store(0, Ordering::Relaxed);
            return r.map(|_| ());
        }
    }
}

/// Event-loop sleeper: steps 2–3 of [`wait_until`] without the sleep, for a
/// side that sleeps elsewhere (a host thread in `poll` over several rings and
/// descriptors, a guest task parked by the scheduler). Sets `my_waiting`,
/// fences, re-checks: `Ok(true)` means work arrived meanwhile (the flag is
/// cleared again; do not sleep), `Ok(false)` means the caller may sleep and
/// the peer will call `wake_peer` after its next publish. A sleep that ends
/// for another reason leaves the flag set, which costs at most one spurious
/// `wake_peer` later (or clear it with [`disarm`]).
pub(crate) fn arm(my_waiting: &AtomicU32, ready: impl FnOnce() -> Result<bool>) -> Result<bool> {
    my_waiting.store(1, Ordering::Relaxed);
    // SeqCst fence: flag store → re-check loads, as in `wait_until`.
    fence(Ordering::SeqCst);
    let r = ready();
    if !matches!(r, Ok(false)) {
        my_waiting.store(0, Ordering::Relaxed);
    }
    r
}

/// Withdraws an [`arm`]: this side no longer wants a signal.
#[inline]
pub(crate) fn disarm(my_waiting: &AtomicU32) {
    my_waiting.store(0, Ordering::Relaxed);
}

/// MPMC waker side: signal while any peer sleeps.
#[inline]
pub(crate) fn wake_if_any_waiting<W: Wake>(waiting_count: &AtomicU32, wake: &W) -> Result<()> {
    // SeqCst fence: store (publish) → load (count), as in `wake_if_waiting`.
    fence(Ordering::SeqCst);
    if waiting_count.load(Ordering::Relaxed) != 0 {
        wake.wake_peer()?;
    }
    Ok(())
}

/// MPMC chain wakeup, after a successful pop (push) and its `wake_if_any_waiting`
/// (whose fence it relies on): if more is ready and a fellow sleeper exists,
/// wake one more. A sleeper can spend a signal on a position published out of
/// order (Vyukov rings consume in order), so without this a sleeper could
/// sleep through the signal meant for it while the one that took it stops.
#[inline]
pub(crate) fn chain_if_waiting<W: Wake>(
    my_side_count: &AtomicU32,
    wake: &W,
    more: impl FnOnce() -> Result<bool>,
) -> Result<()> {
    if my_side_count.load(Ordering::Relaxed) != 0 && more()? {
        wake.wake_sibling()?;
    }
    Ok(())
}

/// MPMC sleeper side: like `wait_until` with a count of sleepers.
pub(crate) fn wait_until_counted<W: Wake>(
    waiting_count: &AtomicU32,
    wake: &W,
    budget: u32,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    for _ in 0..budget {
        if ready()? {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    loop {
        waiting_count.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: count increment (store) → re-check (load).
        fence(Ordering::SeqCst);
        let r = ready();
        if !matches!(r, Ok(false)) {
            waiting_count.fetch_sub(1, Ordering::Relaxed);
            return r.map(|_| ());
        }
        let slept = wake.sleep();
        waiting_count.fetch_sub(1, Ordering::Relaxed);
        if ready()? {
            return Ok(());
        }
        slept?;
    }
}
