//! Physical frame allocator.
//!
//! Two pools:
//! * the **zero pool**: memory never used since boot, handed out by a bump
//!   pointer. Its frames are known to be zero (fresh memfd pages), so a
//!   caller that needs zeroed memory gets it without the guest writing a
//!   byte — zeroing a 4 KiB frame costs ~150 µs where supervisor code is
//!   emulated (docs/platform.md).
//! * the **dirty pool**: freed blocks on per-order free lists (the link is
//!   kept in the block itself), reused first by callers that overwrite the
//!   whole block anyway (the host reads file data into it, page tables that
//!   we clear, heap slabs). Larger blocks are split on demand.
//!
//! Orders: a block of order `k` is `2^k` contiguous frames.

use crate::sync::SpinLock;
use qlib::layout::{phys_to_virt, PAGE_SIZE};

/// Largest block order (2^MAX_ORDER frames = 4 MiB).
pub const MAX_ORDER: usize = 10;

/// Whether the caller needs the block zeroed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Zero {
    /// Must read as zero.
    Yes,
    /// The caller overwrites every byte it uses.
    No,
}

struct Frames {
    zero_next: u64,
    zero_end: u64,
    free: [u64; MAX_ORDER + 1],
    free_bytes_dirty: u64,
}

static FRAMES: SpinLock<Frames> =
    SpinLock::new(Frames { zero_next: 0, zero_end: 0, free: [0; MAX_ORDER + 1], free_bytes_dirty: 0 });

/// Hands the allocator the free range `[start, end)` (page aligned).
pub fn init(start: u64, end: u64) {
    let mut f = FRAMES.lock();
    f.zero_next = start;
    f.zero_end = end;
}

fn block_bytes(order: usize) -> u64 {
    PAGE_SIZE << order
}

fn push(f: &mut Frames, pa: u64, order: usize) {
    // SAFETY: `pa` is a free block owned by the allocator; its first word
    // holds the free-list link (direct map, always mapped).
    unsafe { *(phys_to_virt(pa) as *mut u64) = f.free[order] };
    f.free[order] = pa;
    f.free_bytes_dirty += block_bytes(order);
}

fn pop(f: &mut Frames, order: usize) -> Option<u64> {
    let pa = f.free[order];
    if pa == 0 {
        return None;
    }
    // SAFETY: `pa` heads the free list; its first word is the link.
    f.free[order] = unsafe { *(phys_to_virt(pa) as *const u64) };
    f.free_bytes_dirty -= block_bytes(order);
    Some(pa)
}

fn from_zero_pool(f: &mut Frames, order: usize) -> Option<u64> {
    let size = block_bytes(order);
    let start = qlib::layout::align_up(f.zero_next, size)?;
    let end = start.checked_add(size)?;
    if end > f.zero_end {
        return None;
    }
    // Frames skipped for alignment join the dirty pool as single frames.
    let mut p = f.zero_next;
    while p < start {
        push(f, p, 0);
        p += PAGE_SIZE;
    }
    f.zero_next = end;
    Some(start)
}

fn split_from_larger(f: &mut Frames, order: usize) -> Option<u64> {
    let mut k = order + 1;
    while k <= MAX_ORDER && f.free[k] == 0 {
        k += 1;
    }
    if k > MAX_ORDER {
        return None;
    }
    let block = pop(f, k)?;
    // Keep the low half, return the upper halves to the lists below.
    while k > order {
        k -= 1;
        push(f, block + block_bytes(k), k);
    }
    Some(block)
}

/// Allocates a block of `2^order` frames; returns its guest-physical address.
pub fn alloc(order: usize, zero: Zero) -> Option<u64> {
    if order > MAX_ORDER {
        return None;
    }
    let mut f = FRAMES.lock();
    let (pa, dirty) = match zero {
        Zero::No => match pop(&mut f, order) {
            Some(pa) => (pa, true),
            None => match from_zero_pool(&mut f, order) {
                Some(pa) => (pa, false),
                None => (split_from_larger(&mut f, order)?, true),
            },
        },
        Zero::Yes => match from_zero_pool(&mut f, order) {
            Some(pa) => (pa, false),
            None => match pop(&mut f, order) {
                Some(pa) => (pa, true),
                None => (split_from_larger(&mut f, order)?, true),
            },
        },
    };
    drop(f);
    if dirty && zero == Zero::Yes {
        // SAFETY: the block was just allocated and is exclusively ours.
        unsafe { core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, block_bytes(order) as usize) };
    }
    Some(pa)
}

/// Frees a block allocated with the same order.
pub fn free(pa: u64, order: usize) {
    let mut f = FRAMES.lock();
    push(&mut f, pa, order);
}

/// Allocates one frame.
#[inline]
pub fn alloc_frame(zero: Zero) -> Option<u64> {
    alloc(0, zero)
}

/// Frees one frame.
#[inline]
pub fn free_frame(pa: u64) {
    free(pa, 0)
}

/// Bytes currently free (both pools).
pub fn free_bytes() -> u64 {
    let f = FRAMES.lock();
    (f.zero_end - f.zero_next) + f.free_bytes_dirty
}

/// The smallest order whose block holds `bytes`.
pub fn order_for(bytes: u64) -> usize {
    let pages = bytes.div_ceil(PAGE_SIZE).max(1);
    (64 - (pages - 1).leading_zeros()) as usize
}
