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
use qlib::hostnet::Event;
use qlib::layout::{HostEvents, HOST_EVENTS_PA, NET_EVENTS_CAPACITY, NET_EVENTS_OFFSET, NET_EVENTS_SIZE};
use shmq::{spsc, Poll, Region};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The ring and the arming word, as host addresses inside guest memory.
pub struct NetEvents {
    region: Region,
    armed: &'static AtomicU64,
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
        let armed_at = page_hva + std::mem::offset_of!(HostEvents, net_armed) as u64;
        // SAFETY: an 8-byte aligned word inside the same mapped page; the guest
        // accesses it only atomically.
        let armed = unsafe { &*(armed_at as *const AtomicU64) };
        // The guest wants an interrupt for the first events.
        armed.store(1, Ordering::Release);
        Ok(NetEvents { region, armed })
    }

    /// The notifier thread's loop: until `stop` is set.
    pub fn run(&self, net: &HostNet, stop: &AtomicBool, kick: impl Fn()) {
        let Ok(mut producer) = spsc::Producer::<[u64; 2], Poll>::attach(&self.region, 0, Poll) else {
            return;
        };
        let mut events: Vec<Event> = Vec::with_capacity(256);
        // Held back while the ring is full: handle -> revents (coalesced).
        let mut held: HashMap<u64, u32> = HashMap::new();
        let mut order: Vec<u64> = Vec::new();
        let mut batch: Vec<[u64; 2]> = Vec::with_capacity(NET_EVENTS_CAPACITY as usize);
        while !stop.load(Ordering::Relaxed) {
            let timeout = if held.is_empty() { Duration::from_millis(250) } else { Duration::from_micros(200) };
            if held.is_empty() {
                let _ = net.notifier().wait(Some(timeout));
            } else {
                std::thread::sleep(timeout);
            }
            events.clear();
            if net.notifier().drain(&mut events).is_err() {
                continue;
            }
            for e in &events {
                match held.get_mut(&e.handle) {
                    Some(bits) => *bits |= e.revents,
                    None => {
                        held.insert(e.handle, e.revents);
                        order.push(e.handle);
                    }
                }
            }
            if order.is_empty() {
                continue;
            }
            batch.clear();
            batch.extend(order.iter().map(|h| [*h, u64::from(held.get(h).copied().unwrap_or(0))]));
            let n = producer.try_push_slice(&batch).unwrap_or(0);
            for h in order.drain(..n) {
                held.remove(&h);
            }
            if n > 0 {
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
