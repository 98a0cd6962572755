//! The fixed memory layout shared by every ring kind.
//!
//! A ring is placed at a 64-byte aligned `offset` inside a shared region and
//! occupies `CONTROL_SIZE + capacity * stride` bytes:
//!
//! ```text
//! offset+0    Header      (64 B)  magic, version, kind, capacity, slot size, stride, total size
//! offset+64   producer    (64 B)  tail / enqueue position      written by the producer(s) only
//! offset+128  consumer    (64 B)  head / dequeue position      written by the consumer(s) only
//! offset+192  wait        (64 B)  waiting flags, closed flags  written rarely (sleep, close)
//! offset+256  data        capacity * stride bytes
//! ```
//!
//! All fields are little-endian `u32` (x86-64 guest and host). Everything in
//! the control block is an atomic: the peer may write any of it at any time.
//! Nothing in shared memory is a pointer; positions are free-running `u32`
//! counters reduced modulo the capacity (a power of two).

use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// `b"SHMQ"` read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SHMQ");
/// Bumped on every incompatible change of this layout or of the protocol.
pub const VERSION: u32 = 1;
/// Cache-line size the layout is padded to (x86-64).
pub const CACHE_LINE: usize = 64;
/// Bytes before the data area of every ring.
pub const CONTROL_SIZE: usize = size_of::<Control>();
/// Largest capacity (slots or bytes): keeps every index difference far from `u32` wraparound.
pub const MAX_CAPACITY: u32 = 1 << 30;
/// Largest message (slot payload) size.
pub const MAX_SLOT_SIZE: usize = 1 << 16;

/// What a ring holds. Stored in the header so a peer attaching the wrong kind fails clearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    Spsc = 1,
    Mpmc = 2,
    Stream = 3,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Spsc => "SPSC message ring",
            Kind::Mpmc => "MPMC message ring",
            Kind::Stream => "SPSC byte stream",
        }
    }
    pub(crate) fn name_of(v: u32) -> &'static str {
        match v {
            1 => Kind::Spsc.name(),
            2 => Kind::Mpmc.name(),
            3 => Kind::Stream.name(),
            _ => "unknown",
        }
    }
}

/// Ring header, the first cache line. Written once by `init` (magic last, with
/// release ordering); read once by `attach` (magic first, with acquire). A
/// handle never reads it again: it keeps private copies of the geometry, so a
/// peer scribbling over the header later cannot move our accesses out of bounds.
#[repr(C, align(64))]
pub struct Header {
    pub magic: AtomicU32,
    pub version: AtomicU32,
    pub kind: AtomicU32,
    /// Slots (message rings) or bytes (stream); a power of two.
    pub capacity: AtomicU32,
    /// Payload bytes per slot (`size_of::<T>()`); 1 for a byte stream.
    pub slot_size: AtomicU32,
    /// Distance between slots in bytes.
    pub stride: AtomicU32,
    /// `CONTROL_SIZE + capacity * stride`.
    pub total_size: AtomicU32,
    /// Position of the first message (0 unless a test exercises counter wraparound).
    pub first_index: AtomicU32,
    _reserved: [AtomicU32; 8],
}

/// One index on its own cache line, so producer and consumer never write the same line.
#[repr(C, align(64))]
pub struct IndexLine {
    pub index: AtomicU32,
    _pad: [AtomicU32; 15],
}

/// Flags written only when a side goes to sleep or closes. Kept off the index
/// lines: each side reads the other's waiting flag after every publish, and a
/// line that is rarely written stays cached (shared) in both cores.
#[repr(C, align(64))]
pub struct WaitLine {
    /// SPSC/stream: 1 while the consumer is (about to be) asleep. MPMC: number of sleeping consumers.
    pub consumer_waiting: AtomicU32,
    /// SPSC/stream: 1 while the producer is (about to be) asleep. MPMC: number of sleeping producers.
    pub producer_waiting: AtomicU32,
    /// 1 once the producer closed its end (end of stream).
    pub producer_closed: AtomicU32,
    /// 1 once the consumer closed its end (writes fail with `Closed`).
    pub consumer_closed: AtomicU32,
    _pad: [AtomicU32; 12],
}

/// The control block at the start of every ring.
#[repr(C)]
pub struct Control {
    pub header: Header,
    pub producer: IndexLine,
    pub consumer: IndexLine,
    pub wait: WaitLine,
}

// The layout is part of the cross-process ABI: pin every offset.
const _: () = {
    assert!(size_of::<Header>() == 64);
    assert!(size_of::<IndexLine>() == 64);
    assert!(size_of::<WaitLine>() == 64);
    assert!(size_of::<Control>() == 256);
    assert!(align_of::<Control>() == CACHE_LINE);
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 4);
    assert!(offset_of!(Header, kind) == 8);
    assert!(offset_of!(Header, capacity) == 12);
    assert!(offset_of!(Header, slot_size) == 16);
    assert!(offset_of!(Header, stride) == 20);
    assert!(offset_of!(Header, total_size) == 24);
    assert!(offset_of!(Header, first_index) == 28);
    assert!(offset_of!(Control, producer) == 64);
    assert!(offset_of!(Control, consumer) == 128);
    assert!(offset_of!(Control, wait) == 192);
    assert!(offset_of!(WaitLine, consumer_waiting) == 0);
    assert!(offset_of!(WaitLine, producer_waiting) == 4);
    assert!(offset_of!(WaitLine, producer_closed) == 8);
    assert!(offset_of!(WaitLine, consumer_closed) == 12);
    assert!(size_of::<AtomicU32>() == 4);
};

/// Byte offsets of the control fields relative to the ring's offset (for documentation and peers in other languages).
pub mod offsets {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 8;
    pub const CAPACITY: usize = 12;
    pub const SLOT_SIZE: usize = 16;
    pub const STRIDE: usize = 20;
    pub const TOTAL_SIZE: usize = 24;
    pub const FIRST_INDEX: usize = 28;
    pub const PRODUCER_INDEX: usize = 64;
    pub const CONSUMER_INDEX: usize = 128;
    pub const CONSUMER_WAITING: usize = 192;
    pub const PRODUCER_WAITING: usize = 196;
    pub const PRODUCER_CLOSED: usize = 200;
    pub const CONSUMER_CLOSED: usize = 204;
    pub const DATA: usize = 256;
}

/// Geometry of a ring, validated once and then kept privately by each handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub kind: Kind,
    pub capacity: u32,
    pub slot_size: u32,
    pub stride: u32,
    /// Absolute offset of the data area in the region.
    pub data: usize,
    pub total_size: usize,
    pub first_index: u32,
}

impl Geometry {
    /// Computes the geometry of a ring of `capacity` slots of `slot_size` bytes,
    /// each slot preceded by `slot_prefix` bytes (the MPMC sequence number).
    pub fn new(kind: Kind, capacity: u32, slot_size: usize, slot_prefix: usize, offset: usize) -> Result<Self> {
        if !capacity.is_power_of_two() || !(2..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::BadCapacity { capacity });
        }
        if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err(Error::BadSlotSize { size: slot_size });
        }
        if offset % CACHE_LINE != 0 {
            return Err(Error::Misaligned { offset, align: CACHE_LINE });
        }
        // Streams pack bytes; message slots are padded to 8 bytes.
        let stride = if kind == Kind::Stream { 1 } else { (slot_prefix + slot_size + 7) & !7 };
        let too_big = Error::OutOfBounds { offset, size: usize::MAX, region_len: 0 };
        let total = (capacity as usize)
            .checked_mul(stride)
            .and_then(|d| d.checked_add(CONTROL_SIZE))
            .filter(|t| *t <= u32::MAX as usize)
            .ok_or(too_big)?;
        Ok(Geometry {
            kind,
            capacity,
            slot_size: slot_size as u32,
            stride: stride as u32,
            data: offset.checked_add(CONTROL_SIZE).ok_or(too_big)?,
            total_size: total,
            first_index: 0,
        })
    }

    pub fn mask(&self) -> u32 {
        self.capacity - 1
    }

    /// Absolute offset of the slot holding position `pos`; always inside the data area.
    pub fn slot_offset(&self, pos: u32) -> usize {
        self.data + (pos & self.mask()) as usize * self.stride as usize
    }

    /// Writes the header (magic last, release) over a zeroed control block.
    pub(crate) fn write_header(&self, ctl: &Control) {
        let h = &ctl.header;
        h.magic.store(0, Ordering::Relaxed);
        h.version.store(VERSION, Ordering::Relaxed);
        h.kind.store(self.kind as u32, Ordering::Relaxed);
        h.capacity.store(self.capacity, Ordering::Relaxed);
        h.slot_size.store(self.slot_size, Ordering::Relaxed);
        h.stride.store(self.stride, Ordering::Relaxed);
        h.total_size.store(self.total_size as u32, Ordering::Relaxed);
        h.first_index.store(self.first_index, Ordering::Relaxed);
        for w in &h._reserved {
            w.store(0, Ordering::Relaxed);
        }
        for line in [&ctl.producer._pad, &ctl.consumer._pad] {
            for w in line {
                w.store(0, Ordering::Relaxed);
            }
        }
        ctl.producer.index.store(self.first_index, Ordering::Relaxed);
        ctl.consumer.index.store(self.first_index, Ordering::Relaxed);
        let w = &ctl.wait;
        for a in [&w.consumer_waiting, &w.producer_waiting, &w.producer_closed, &w.consumer_closed] {
            a.store(0, Ordering::Relaxed);
        }
        for a in &w._pad {
            a.store(0, Ordering::Relaxed);
        }
        // Release: a peer that reads the magic with acquire sees every field above
        // (and the data area the caller initialised before).
        h.magic.store(MAGIC, Ordering::Release);
    }

    /// Reads and validates a header written by a peer. `expected` is this side's
    /// view (kind, slot size, prefix); the capacity comes from the header.
    pub(crate) fn read_header(
        ctl: &Control,
        offset: usize,
        region_len: usize,
        kind: Kind,
        slot_size: usize,
        slot_prefix: usize,
    ) -> Result<Self> {
        let h = &ctl.header;
        let magic = h.magic.load(Ordering::Acquire);
        if magic == 0 {
            return Err(Error::NotInitialized { offset });
        }
        if magic != MAGIC {
            return Err(Error::BadMagic { offset, found: magic });
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != VERSION {
            return Err(Error::VersionMismatch { found: version, expected: VERSION });
        }
        let found_kind = h.kind.load(Ordering::Relaxed);
        if found_kind != kind as u32 {
            return Err(Error::KindMismatch { found: found_kind, expected: kind });
        }
        let found_slot = h.slot_size.load(Ordering::Relaxed);
        if found_slot as usize != slot_size {
            return Err(Error::SlotMismatch { found: found_slot, expected: slot_size as u32 });
        }
        let capacity = h.capacity.load(Ordering::Relaxed);
        let mut g = match Geometry::new(kind, capacity, slot_size, slot_prefix, offset) {
            Err(Error::BadCapacity { capacity }) => {
                return Err(Error::BadHeader { field: "capacity", value: capacity })
            }
            other => other?,
        };
        let stride = h.stride.load(Ordering::Relaxed);
        if stride != g.stride {
            return Err(Error::BadHeader { field: "stride", value: stride });
        }
        let total = h.total_size.load(Ordering::Relaxed);
        if total as usize != g.total_size {
            return Err(Error::BadHeader { field: "total_size", value: total });
        }
        let fits = matches!(offset.checked_add(g.total_size), Some(end) if end <= region_len);
        if !fits {
            return Err(Error::OutOfBounds { offset, size: g.total_size, region_len });
        }
        g.first_index = h.first_index.load(Ordering::Relaxed);
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_bad_capacities_and_sizes() {
        assert_eq!(Geometry::new(Kind::Spsc, 3, 8, 0, 0), Err(Error::BadCapacity { capacity: 3 }));
        assert_eq!(Geometry::new(Kind::Spsc, 1, 8, 0, 0), Err(Error::BadCapacity { capacity: 1 }));
        assert_eq!(Geometry::new(Kind::Spsc, 1 << 31, 8, 0, 0), Err(Error::BadCapacity { capacity: 1 << 31 }));
        assert_eq!(Geometry::new(Kind::Spsc, 4, 0, 0, 0), Err(Error::BadSlotSize { size: 0 }));
        assert_eq!(Geometry::new(Kind::Spsc, 4, 8, 0, 32), Err(Error::Misaligned { offset: 32, align: 64 }));
        assert!(matches!(Geometry::new(Kind::Spsc, 1 << 30, 1 << 16, 0, 0), Err(Error::OutOfBounds { .. })));
        let g = Geometry::new(Kind::Mpmc, 8, 12, 8, 128).unwrap();
        assert_eq!((g.stride, g.data, g.total_size), (24, 384, 256 + 8 * 24));
        let s = Geometry::new(Kind::Stream, 1024, 1, 0, 0).unwrap();
        assert_eq!((s.stride, s.total_size), (1, 256 + 1024));
    }

    #[test]
    fn error_messages_say_what_to_do() {
        extern crate std;
        use std::string::ToString;
        let e = Error::VersionMismatch { found: 7, expected: VERSION }.to_string();
        assert!(e.contains("version 7") && e.contains("rebuild both sides"), "{e}");
        let e = Error::KindMismatch { found: 3, expected: Kind::Mpmc }.to_string();
        assert!(e.contains("SPSC byte stream") && e.contains("MPMC message ring"), "{e}");
        let e = Error::NotInitialized { offset: 64 }.to_string();
        assert!(e.contains("init()"), "{e}");
    }
}
