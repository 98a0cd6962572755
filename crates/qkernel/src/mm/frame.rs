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

use crate::sync::{Once, SpinLock};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
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
    /// Single frames handed back to the host (hole-punched): zero again,
    /// and not touched (the list lives in the heap, not in the frames).
    zeroed: alloc::vec::Vec<u64>,
}

static FRAMES: SpinLock<Frames> = SpinLock::new(Frames {
    zero_next: 0,
    zero_end: 0,
    free: [0; MAX_ORDER + 1],
    free_bytes_dirty: 0,
    zeroed: alloc::vec::Vec::new(),
});

/// Per-frame reference counts of user-mapped frames (copy-on-write sharing),
/// indexed by frame number. Allocated from the zero pool, so it costs no
/// initialisation.
static REFS: Once<&'static [AtomicU16]> = Once::new();

/// Frames user memory may not take (page tables, kernel stacks and the
/// kernel heap need them to keep going, and to clean up, when a program
/// exhausts the sandbox's memory): 1/64 of the memory, at least 1 MiB.
static RESERVE: AtomicU64 = AtomicU64::new(256);
/// Set when free memory came near the reserve: user allocations then check
/// the exact amount (under the global lock) first.
static LOW: AtomicBool = AtomicBool::new(false);

/// Hands the allocator the free range `[start, end)` (page aligned) and
/// carves the reference-count table from its start.
pub fn init(start: u64, end: u64) {
    let frames = end / PAGE_SIZE;
    RESERVE.store(((end - start) / PAGE_SIZE / 64).max(256), Ordering::Relaxed);
    let table_bytes = qlib::layout::align_up(frames * 2, PAGE_SIZE).unwrap_or(end);
    {
        let mut f = FRAMES.lock();
        f.zero_next = start + table_bytes;
        f.zero_end = end;
    }
    // SAFETY: the range is fresh (zero) memory owned by nobody else, mapped
    // by the direct map; AtomicU16 has the layout of u16, zero is 0.
    let table = unsafe { core::slice::from_raw_parts(phys_to_virt(start) as *const AtomicU16, frames as usize) };
    // SAFETY: boot vCPU, before any other user of the table.
    unsafe { REFS.init(table) };
}

fn refs(pa: u64) -> &'static AtomicU16 {
    &REFS.get()[(pa / PAGE_SIZE) as usize]
}

/// Sets the reference count of a frame newly mapped into user memory.
#[inline]
pub fn ref_init(pa: u64) {
    refs(pa).store(1, Ordering::Relaxed);
}

/// Adds a reference (fork, shared mapping).
#[inline]
pub fn ref_inc(pa: u64) {
    refs(pa).fetch_add(1, Ordering::Relaxed);
}

/// Drops a reference; returns the remaining count (0: free the frame).
#[inline]
pub fn ref_dec(pa: u64) -> u16 {
    refs(pa).fetch_sub(1, Ordering::AcqRel) - 1
}

/// Current reference count.
#[inline]
pub fn ref_count(pa: u64) -> u16 {
    refs(pa).load(Ordering::Acquire)
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

/// Frames kept per vCPU so single-frame allocation and free (page faults,
/// page tables, heap slabs) take no global lock on the hot path.
struct Cache {
    /// Known-zero frames.
    zero: [u64; CACHE_ZERO],
    nzero: usize,
    /// Freed (dirty) frames.
    dirty: [u64; CACHE_DIRTY],
    ndirty: usize,
}

const CACHE_ZERO: usize = 32;
const CACHE_DIRTY: usize = 64;
/// Frames moved between a cache and the global pools at once.
const BATCH: usize = 16;

static CACHES: [SpinLock<Cache>; qlib::layout::MAX_VCPUS as usize] =
    [const { SpinLock::new(Cache { zero: [0; CACHE_ZERO], nzero: 0, dirty: [0; CACHE_DIRTY], ndirty: 0 }) };
        qlib::layout::MAX_VCPUS as usize];

fn cache() -> &'static SpinLock<Cache> {
    &CACHES[crate::arch::x86_64::percpu::cpu_index()]
}

/// One frame from this vCPU's cache, refilled in batches.
fn alloc_cached(zero: Zero) -> Option<u64> {
    let mut c = cache().lock();
    if zero == Zero::No && c.ndirty > 0 {
        c.ndirty -= 1;
        return Some(c.dirty[c.ndirty]);
    }
    if c.nzero == 0 {
        // Refill with known-zero frames from the global pools.
        let mut f = FRAMES.lock();
        note_free(&f);
        while c.nzero < BATCH {
            let pa = match f.zeroed.pop() {
                Some(pa) => pa,
                None => match from_zero_pool(&mut f, 0) {
                    Some(pa) => pa,
                    None => break,
                },
            };
            let n = c.nzero;
            c.zero[n] = pa;
            c.nzero += 1;
        }
    }
    if c.nzero > 0 {
        c.nzero -= 1;
        return Some(c.zero[c.nzero]);
    }
    if c.ndirty > 0 {
        c.ndirty -= 1;
        let pa = c.dirty[c.ndirty];
        drop(c);
        zero_frame(pa);
        return Some(pa);
    }
    drop(c);
    None
}

/// Up to `out.len()` known-zero frames for user memory (fault-around), from
/// this vCPU's cache and one refill: never frames that would need zeroing,
/// and none once memory comes near the kernel's reserve. Returns how many.
pub fn alloc_user_zeroed(out: &mut [u64]) -> usize {
    if LOW.load(Ordering::Relaxed) {
        return 0;
    }
    let mut c = cache().lock();
    if c.nzero < out.len() {
        let mut f = FRAMES.lock();
        note_free(&f);
        while c.nzero < CACHE_ZERO {
            let pa = match f.zeroed.pop() {
                Some(pa) => pa,
                None => match from_zero_pool(&mut f, 0) {
                    Some(pa) => pa,
                    None => break,
                },
            };
            let n = c.nzero;
            c.zero[n] = pa;
            c.nzero += 1;
        }
    }
    let n = out.len().min(c.nzero);
    for slot in out[..n].iter_mut() {
        c.nzero -= 1;
        *slot = c.zero[c.nzero];
    }
    n
}

fn zero_frame(pa: u64) {
    // SAFETY: the frame was just allocated and is exclusively ours.
    unsafe { core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, PAGE_SIZE as usize) };
}

/// Free frames in the global pools.
fn free_frames(f: &Frames) -> u64 {
    (f.zero_end - f.zero_next) / PAGE_SIZE + f.free_bytes_dirty / PAGE_SIZE + f.zeroed.len() as u64
}

/// Marks memory as low when the global pools come within twice the reserve.
fn note_free(f: &Frames) {
    if free_frames(f) < 2 * RESERVE.load(Ordering::Relaxed) {
        LOW.store(true, Ordering::Relaxed);
    }
}

/// A frame for user memory (page faults, copy-on-write copies, shared
/// memory): None when only the kernel's reserve is left, so the program
/// gets ENOMEM or is killed while the kernel keeps working.
pub fn alloc_user(zero: Zero) -> Option<u64> {
    if LOW.load(Ordering::Relaxed) {
        let f = FRAMES.lock();
        if free_frames(&f) < RESERVE.load(Ordering::Relaxed) {
            return None;
        }
        if free_frames(&f) >= 2 * RESERVE.load(Ordering::Relaxed) {
            LOW.store(false, Ordering::Relaxed);
        }
    }
    alloc(0, zero)
}

/// Allocates a block of `2^order` frames; returns its guest-physical address.
pub fn alloc(order: usize, zero: Zero) -> Option<u64> {
    if order > MAX_ORDER {
        return None;
    }
    if order == 0 {
        if let Some(pa) = alloc_cached(zero) {
            return Some(pa);
        }
    }
    let mut f = FRAMES.lock();
    note_free(&f);
    let (pa, dirty) = match zero {
        Zero::No => match pop(&mut f, order) {
            Some(pa) => (pa, true),
            None => match from_zero_pool(&mut f, order) {
                Some(pa) => (pa, false),
                None => (split_from_larger(&mut f, order)?, true),
            },
        },
        Zero::Yes if order == 0 && !f.zeroed.is_empty() => (f.zeroed.pop().expect("not empty"), false),
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
    if order == 0 {
        let mut c = cache().lock();
        if c.ndirty == CACHE_DIRTY {
            // Spill a batch to the global pool.
            let mut f = FRAMES.lock();
            for _ in 0..BATCH {
                c.ndirty -= 1;
                let p = c.dirty[c.ndirty];
                push(&mut f, p, 0);
            }
        }
        let n = c.ndirty;
        c.dirty[n] = pa;
        c.ndirty += 1;
        return;
    }
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
    (f.zero_end - f.zero_next) + f.free_bytes_dirty + f.zeroed.len() as u64 * PAGE_SIZE
}

/// Dirty single frames beyond which freed memory is handed back to the host.
const RECLAIM_THRESHOLD: u64 = 4096; // 16 MiB

/// Hands free dirty single frames back to the host (hole punch) so the
/// sandbox's memory shrinks; they come back zeroed, so later zero-page
/// allocations need no zeroing. Called when a process exits.
pub fn reclaim() {
    let mut batch: alloc::vec::Vec<u64> = alloc::vec::Vec::new();
    loop {
        {
            let mut f = FRAMES.lock();
            if f.free_bytes_dirty / PAGE_SIZE < RECLAIM_THRESHOLD && batch.is_empty() {
                return;
            }
            while batch.len() < qlib::hcall::MAX_IOVECS {
                match pop(&mut f, 0) {
                    Some(pa) => batch.push(pa),
                    None => break,
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        batch.sort_unstable();
        let mut iovs: alloc::vec::Vec<qlib::hcall::GuestIovec> = alloc::vec::Vec::new();
        for &pa in &batch {
            match iovs.last_mut() {
                Some(l) if l.gpa + l.len == pa => l.len += PAGE_SIZE,
                _ => iovs.push(qlib::hcall::GuestIovec { gpa: pa, len: PAGE_SIZE }),
            }
        }
        let punched = crate::hcall::discard(&iovs).is_ok();
        let mut f = FRAMES.lock();
        for pa in batch.drain(..) {
            if punched {
                f.zeroed.push(pa);
            } else {
                push(&mut f, pa, 0);
            }
        }
        if !punched || f.free_bytes_dirty / PAGE_SIZE < RECLAIM_THRESHOLD {
            return;
        }
    }
}

/// The smallest order whose block holds `bytes`.
pub fn order_for(bytes: u64) -> usize {
    let pages = bytes.div_ceil(PAGE_SIZE).max(1);
    (64 - (pages - 1).leading_zeros()) as usize
}
