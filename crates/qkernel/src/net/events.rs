//! Readiness events from the host (docs/hostnet.md, "Readiness").
//!
//! The VMM's notifier thread posts `{handle, revents}` pairs into an shmq
//! SPSC ring in the host-events page and interrupts vCPU 0 only when the
//! guest armed `HostEvents::net_armed`. [`drain`] (called from the wake
//! interrupt and the idle loop) re-arms first, then empties the ring: each
//! event ORs its bits into the socket's readiness word and wakes the
//! socket's wait queue (tasks parked in blocking calls, poll/select and
//! epoll watchers). Events for a handle not registered yet are kept for it
//! (see [`Entry::Early`]); those for closed handles are dropped when the
//! slot is reused.

use super::inet::InetSocket;
use crate::sync::SpinLock;
use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::layout::{phys_to_virt, HostEvents, HOST_EVENTS_PA, NET_EVENTS_OFFSET, NET_EVENTS_SIZE};
use shmq::{spsc, Poll, Region};

type Consumer = spsc::Consumer<'static, [u64; 2], Poll>;

/// What a handle's slot holds.
#[derive(Clone)]
enum Entry {
    /// A registered socket.
    Live(u64, Weak<InetSocket>),
    /// Events for a handle not registered yet (the host reports a new
    /// socket's state as soon as it watches it, which can be drained before
    /// the `accept`/`socket` call that made it has wrapped it); `register`
    /// applies them. A later generation in the slot discards them.
    Early(u64, u32),
}

/// Sockets by host handle, indexed by the handle's slot (its low 32 bits:
/// the VMM's handles are `generation << 32 | index` with dense indexes), so
/// routing an event is one bounds check and a compare, whatever the number
/// of sockets. The full handle is kept to refuse a stale generation.
static SOCKETS: SpinLock<Vec<Option<Entry>>> = SpinLock::new(Vec::new());

fn slot(handle: u64) -> usize {
    (handle & 0xffff_ffff) as usize
}

/// The socket for `handle`; when there is none yet, keeps `revents` for
/// [`register`].
fn route(handle: u64, revents: u32) -> Option<Arc<InetSocket>> {
    let mut t = SOCKETS.lock();
    let i = slot(handle);
    if t.len() <= i {
        t.resize(i + 1, None);
    }
    match &mut t[i] {
        Some(Entry::Live(h, w)) if *h == handle => w.upgrade(),
        Some(Entry::Early(h, bits)) if *h == handle => {
            *bits |= revents;
            None
        }
        // A live socket holds the slot: the event is a closed socket's
        // (the guest unregisters before the host reuses a slot): drop it.
        Some(Entry::Live(..)) => None,
        // A socket not wrapped yet, or a closed one's late events: keep
        // them; another handle registering in this slot drops them.
        e => {
            *e = Some(Entry::Early(handle, revents));
            None
        }
    }
}

/// The ring's consumer end (attached at the first drain).
static RING: SpinLock<Option<Consumer>> = SpinLock::new(None);

/// Registers a socket for its host handle's events (and applies those that
/// came before).
pub fn register(handle: u64, s: &Arc<InetSocket>) {
    let i = slot(handle);
    let early = {
        let mut t = SOCKETS.lock();
        if t.len() <= i {
            t.resize(i + 1, None);
        }
        let old = t[i].replace(Entry::Live(handle, Arc::downgrade(s)));
        match old {
            Some(Entry::Early(h, bits)) if h == handle => bits,
            _ => 0,
        }
    };
    if early != 0 {
        s.on_event(early);
    }
}

/// Forgets a handle (the socket is being closed).
pub fn unregister(handle: u64) {
    let mut t = SOCKETS.lock();
    if let Some(e) = t.get_mut(slot(handle)) {
        if matches!(e, Some(Entry::Live(h, _)) if *h == handle) {
            *e = None;
        }
    }
}

fn armed() -> &'static AtomicU64 {
    let at = phys_to_virt(HOST_EVENTS_PA) + core::mem::offset_of!(HostEvents, net_armed) as u64;
    // SAFETY: an 8-byte aligned word of the host-events page (direct map),
    // which both sides access only atomically.
    unsafe { &*(at as *const AtomicU64) }
}

fn attach() -> Option<Consumer> {
    let base = phys_to_virt(HOST_EVENTS_PA + NET_EVENTS_OFFSET) as *mut u8;
    // SAFETY: the ring lives in the host-events page of guest RAM (direct
    // map, never unmapped), initialised by the VMM before the guest started,
    // and is accessed only through shmq (atomics and raw copies).
    let region = unsafe { Region::new(base, NET_EVENTS_SIZE as usize) }.ok()?;
    let region: &'static Region = Box::leak(Box::new(region));
    spsc::Consumer::attach(region, 0, Poll).ok()
}

/// Takes the posted events and applies them (interrupt and idle context).
pub fn drain() {
    if let Some(mut ring) = RING.try_lock() {
        drain_locked(&mut ring);
    }
}

/// Like [`drain`], waiting for another vCPU's drain to finish (system-call
/// context, after a request whose reply says the host posted events: they
/// must be applied before the call returns).
pub fn drain_now() {
    drain_locked(&mut RING.lock());
}

fn drain_locked(ring: &mut Option<Consumer>) {
    if ring.is_none() {
        *ring = attach();
    }
    let Some(c) = ring.as_mut() else { return };
    // Arm before looking: an event posted after our last look then finds
    // the word set and interrupts us.
    if armed().load(Ordering::Relaxed) == 0 {
        armed().store(1, Ordering::SeqCst);
    }
    core::sync::atomic::fence(Ordering::SeqCst);
    // Small: the buffer is zeroed on every drain (emulated `rep stos`).
    let mut buf = [[0u64; 2]; 8];
    loop {
        let n = c.try_pop_into(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        for &[handle, revents] in &buf[..n] {
            if let Some(s) = route(handle, revents as u32) {
                s.on_event(revents as u32);
            }
        }
    }
}
