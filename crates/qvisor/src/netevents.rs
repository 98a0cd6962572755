//! Socket readiness from the host to the guest (docs/hostnet.md,
//! "Readiness").
//!
//! One thread waits on `HostNet`'s notifier (a host epoll of every socket,
//! edge-triggered), drains its `{handle, revents}` events and posts them into
//! an shmq SPSC ring in the guest's host-events page
//! (`qlib::layout::NET_EVENTS_OFFSET`). It interrupts the guest only when the
//! guest armed `HostEvents::net_armed` (it does so before each drain), so a
//! burst of events costs one interrupt. Events that do not fit stay in a
//! host-side list, coalesced per handle (OR-ing the bits, as the notifier
//! does), and go in once the guest has drained; nothing is dropped.

use crate::hostnet::HostNet;
use crate::sys;
use qlib::hostnet::Event;
use qlib::layout::{HostEvents, HOST_EVENTS_PA, NET_EVENTS_CAPACITY, NET_EVENTS_OFFSET, NET_EVENTS_SIZE};
use shmq::{spsc, Poll, Region};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The producer end and what waits to go in.
struct Pump {
    producer: spsc::Producer<'static, [u64; 2], Poll>,
    events: Vec<Event>,
    /// Held back while the ring is full: handle -> revents (coalesced).
    held: HashMap<u64, u32>,
    order: Vec<u64>,
    batch: Vec<[u64; 2]>,
}

/// The ring and the arming word, as host addresses inside guest memory.
/// Two kinds of thread post: the events thread (for everything the host
/// reports on its own) and vCPU threads after a socket request
/// ([`NetEvents::pump`]); one lock serialises harvesting and posting, so an
/// event a request made ready is in the ring when the request returns.
pub struct NetEvents {
    armed: &'static AtomicU64,
    pump: Mutex<Pump>,
}

impl NetEvents {
    /// Initialises the ring in guest memory (before any vCPU runs).
    /// `page_hva` is the host address of the host-events page.
    pub fn init(page_hva: u64) -> Result<NetEvents, String> {
        let at = page_hva + NET_EVENTS_OFFSET;
        // SAFETY: `page_hva` was checked by the caller to be the host address
        // of a whole page of guest memory, which stays mapped for the life of
        // the process (the VM's memory is never unmapped while it runs); the
        // ring occupies NET_EVENTS_SIZE bytes of it (asserted in qlib) and is
        // accessed only through this Region and the guest's.
        let region = unsafe { Region::new(at as *mut u8, NET_EVENTS_SIZE as usize) }
            .map_err(|e| format!("net events ring: {e}"))?;
        spsc::init::<[u64; 2]>(&region, 0, NET_EVENTS_CAPACITY).map_err(|e| format!("net events ring: {e}"))?;
        // One ring per process, alive as long as guest memory: leaked.
        let region: &'static Region = Box::leak(Box::new(region));
        let producer =
            spsc::Producer::<[u64; 2], Poll>::attach(region, 0, Poll).map_err(|e| format!("net events ring: {e}"))?;
        let armed_at = page_hva + std::mem::offset_of!(HostEvents, net_armed) as u64;
        // SAFETY: an 8-byte aligned word inside the same mapped page; the guest
        // accesses it only atomically.
        let armed = unsafe { &*(armed_at as *const AtomicU64) };
        // The guest wants an interrupt for the first events.
        armed.store(1, Ordering::Release);
        Ok(NetEvents {
            armed,
            pump: Mutex::new(Pump {
                producer,
                events: Vec::with_capacity(256),
                held: HashMap::new(),
                order: Vec::new(),
                batch: Vec::with_capacity(NET_EVENTS_CAPACITY as usize),
            }),
        })
    }

    /// Harvests the notifier without waiting and posts what fits into the
    /// ring (the rest is held, coalesced per handle). Returns whether it
    /// posted anything, and whether events are still held.
    pub fn pump(&self, net: &HostNet) -> (bool, bool) {
        let Ok(mut g) = self.pump.lock() else { return (false, false) };
        let p = &mut *g;
        p.events.clear();
        if net.notifier().drain(&mut p.events).is_err() {
            return (false, !p.held.is_empty());
        }
        for e in &p.events {
            match p.held.get_mut(&e.handle) {
                Some(bits) => *bits |= e.revents,
                None => {
                    p.held.insert(e.handle, e.revents);
                    p.order.push(e.handle);
                }
            }
        }
        if p.order.is_empty() {
            return (false, false);
        }
        p.batch.clear();
        let held = &p.held;
        p.batch.extend(p.order.iter().map(|h| [*h, u64::from(held.get(h).copied().unwrap_or(0))]));
        let n = p.producer.try_push_slice(&p.batch).unwrap_or(0);
        for h in p.order.drain(..n) {
            p.held.remove(&h);
        }
        (n > 0, !p.held.is_empty())
    }

    /// The events thread's loop, until `stop` is set: sleeps until the
    /// notifier has events (ppoll on its epoll descriptor, which leaves the
    /// events for [`NetEvents::pump`]), posts them and interrupts the guest
    /// if it armed the word.
    pub fn run(&self, net: &HostNet, stop: &AtomicBool, kick: impl Fn()) {
        let mut held = false;
        while !stop.load(Ordering::Relaxed) {
            if held {
                std::thread::sleep(Duration::from_micros(200));
            } else {
                // Bounded: events a vCPU's pump held back (ring full) are
                // not in the notifier any more, only a timeout finds them.
                let mut fds = [sys::PollFd { fd: net.notifier().fd().as_raw_fd(), events: sys::POLLIN, revents: 0 }];
                let _ = sys::ppoll(&mut fds, Some(20_000_000));
            }
            let (posted, still) = self.pump(net);
            held = still;
            if posted {
                // Pairs with the guest's SeqCst store of `armed` before it
                // drains: either it sees our events or we see it armed.
                std::sync::atomic::fence(Ordering::SeqCst);
                if self.armed.swap(0, Ordering::AcqRel) != 0 {
                    kick();
                }
            }
        }
    }
}

/// Where the host-events page is, for [`NetEvents::init`].
pub fn page_pa() -> u64 {
    HOST_EVENTS_PA
}
