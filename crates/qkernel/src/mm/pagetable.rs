//! 4-level x86-64 page tables, reached through the direct map.
//!
//! The upper half (PML4 slots 256..512: direct map and kernel image) is built
//! by the host before boot and shared by every address space: a new address
//! space copies those slots from the template. The lower half belongs to one
//! address space; intermediate tables are created on demand with U|W|P (the
//! leaf entry decides the real permissions) and freed with the space.
//!
//! Entries are read and written atomically: page faults run concurrently
//! under the address space's shared lock and install entries with
//! compare-and-swap; changes that remove or narrow mappings run under the
//! exclusive lock.

use super::frame::{self, Zero};
use crate::sync::SpinLock;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::layout::{phys_to_virt, PAGE_SIZE, USER_END};

pub const PTE_P: u64 = 1 << 0;
pub const PTE_W: u64 = 1 << 1;
pub const PTE_U: u64 = 1 << 2;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_G: u64 = 1 << 8;
/// Software bit: the frame may be shared; write faults copy it first.
pub const PTE_COW: u64 = 1 << 9;
/// Software bit: a PROT_NONE page that keeps its frame (P is clear, so any
/// access faults; mprotect back restores P).
pub const PTE_PROTNONE: u64 = 1 << 10;
pub const PTE_NX: u64 = 1 << 63;
/// Physical-address bits of an entry.
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

#[inline(always)]
fn table(pa: u64) -> &'static [AtomicU64; 512] {
    // SAFETY: page-table frames are owned by their address space and mapped
    // by the direct map; entries are only accessed atomically.
    unsafe { &*(phys_to_virt(pa) as *const [AtomicU64; 512]) }
}

#[inline(always)]
fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 511) as usize
}

/// The page tables of one address space.
pub struct PageTable {
    pml4: u64,
    /// Every lower-half table frame below the PML4, so `destroy` frees them
    /// without scanning tables (each entry read costs ~1 µs where supervisor
    /// code is emulated: a full scan of one table is ~2 ms).
    tables: SpinLock<Vec<u64>>,
    /// The leaf table of the last 2 MiB region `entry` resolved: tables are
    /// never freed before the space is, so the pair stays valid. Packed in
    /// one word so concurrent faults never see half an update: bit 63 valid,
    /// bits 28..54 the region (va >> 21), bits 0..28 the table's frame
    /// number (guest memory below 1 TiB).
    last_leaf: AtomicU64,
}

const LEAF_VALID: u64 = 1 << 63;
const LEAF_FRAME_BITS: u32 = 28;

impl PageTable {
    /// A new address space sharing the kernel's upper half.
    pub fn new() -> Option<PageTable> {
        let pml4 = frame::alloc_frame(Zero::Yes)?;
        let template = table(crate::boot::params().kernel_pml4_pa);
        let t = table(pml4);
        for i in 256..512 {
            t[i].store(template[i].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        Some(PageTable { pml4, tables: SpinLock::new(Vec::new()), last_leaf: AtomicU64::new(0) })
    }

    /// Guest-physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// The leaf entry for `va`, creating intermediate tables when `create`
    /// (safe against concurrent creators).
    #[inline]
    pub fn entry(&self, va: u64, create: bool) -> Option<&'static AtomicU64> {
        Some(&table(self.leaf(va, create)?)[index(va, 0)])
    }

    /// The leaf table (page table proper) covering `va`, created with its
    /// parents when `create`.
    #[inline]
    pub fn leaf_table(&self, va: u64, create: bool) -> Option<&'static [AtomicU64; 512]> {
        Some(table(self.leaf(va, create)?))
    }

    /// Guest-physical address of the leaf table covering `va`.
    fn leaf(&self, va: u64, create: bool) -> Option<u64> {
        debug_assert!(va < USER_END);
        let region = va >> 21;
        let cached = self.last_leaf.load(Ordering::Relaxed);
        if cached & LEAF_VALID != 0 && (cached & !LEAF_VALID) >> LEAF_FRAME_BITS == region {
            return Some((cached & ((1 << LEAF_FRAME_BITS) - 1)) << 12);
        }
        let mut t = self.pml4;
        for level in (1..4).rev() {
            let e = &table(t)[index(va, level)];
            let mut v = e.load(Ordering::Acquire);
            if v & PTE_P == 0 {
                if !create {
                    return None;
                }
                let next = frame::alloc_frame(Zero::Yes)?;
                match e.compare_exchange(0, next | PTE_P | PTE_W | PTE_U, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        self.tables.lock().push(next);
                        v = next | PTE_P
                    }
                    Err(existing) => {
                        frame::free_frame(next);
                        v = existing;
                    }
                }
            }
            t = v & PTE_ADDR;
        }
        if t >> 12 < 1 << LEAF_FRAME_BITS {
            self.last_leaf.store(LEAF_VALID | (region << LEAF_FRAME_BITS) | (t >> 12), Ordering::Relaxed);
        }
        Some(t)
    }

    /// Calls `f(base, table, first, end)` for every present leaf table that
    /// overlaps `[start, end)`: `base` is the address its entry 0 maps, and
    /// entries `first..end` are the part inside the range. Loops over the
    /// entries stay in the caller (no call per entry).
    pub fn for_each_leaf_table(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, &'static [AtomicU64; 512], usize, usize),
    ) {
        let end = end.min(USER_END);
        let mut va = start & !((1 << 21) - 1);
        while va < end {
            let next = va + (1 << 21);
            if let Some(t) = self.leaf_table(va, false) {
                let first = if start > va { index(start, 0) } else { 0 };
                let last = if end < next { ((end - va) >> 12) as usize } else { 512 };
                f(va, t, first, last);
            } else {
                // Skip everything the absent directory entry would map.
                let span = self.absent_span(va);
                va = (va & !(span - 1)) + span;
                continue;
            }
            va = next;
        }
    }

    /// The span an absent directory entry on the way to `va` would map
    /// (2 MiB, 1 GiB or 512 GiB); 2 MiB when the leaf table exists.
    fn absent_span(&self, va: u64) -> u64 {
        let mut t = self.pml4;
        for l in (1..4).rev() {
            let v = table(t)[index(va, l)].load(Ordering::Acquire);
            if v & PTE_P == 0 {
                return 1 << (12 + 9 * l);
            }
            t = v & PTE_ADDR;
        }
        1 << 21
    }

    /// The present leaf entry for `va`.
    pub fn lookup(&self, va: u64) -> Option<u64> {
        let e = self.entry(va, false)?.load(Ordering::Acquire);
        (e & PTE_P != 0).then_some(e)
    }

    /// The entry for `va` if it holds a frame (present or PROT_NONE).
    pub fn mapped(&self, va: u64) -> Option<u64> {
        let e = self.entry(va, false)?.load(Ordering::Acquire);
        (e & (PTE_P | PTE_PROTNONE) != 0).then_some(e)
    }

    /// Maps `va` to frame `pa` with `flags` (PTE_P added), replacing any entry.
    pub fn map(&self, va: u64, pa: u64, flags: u64) -> Option<()> {
        self.entry(va, true)?.store(pa | flags | PTE_P, Ordering::Release);
        Some(())
    }

    /// Installs `new` at `va` only if the entry still equals `old`.
    pub fn replace(&self, va: u64, old: u64, new: u64) -> Result<(), u64> {
        match self.entry(va, true) {
            Some(e) => e.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).map(|_| ()),
            None => Err(old),
        }
    }

    /// Calls `f(va, entry)` for every leaf entry in `[start, end)` that holds
    /// a frame (present, or PROT_NONE), skipping absent tables wholesale.
    pub fn for_each_mapped(&self, start: u64, end: u64, mut f: impl FnMut(u64, &AtomicU64)) {
        fn walk(t: u64, level: u32, base: u64, start: u64, end: u64, f: &mut dyn FnMut(u64, &AtomicU64)) {
            let span = 1u64 << (12 + 9 * level);
            let tab = table(t);
            let first = if start > base { ((start - base) / span) as usize } else { 0 };
            for (i, e) in tab.iter().enumerate().skip(first) {
                let va = base + i as u64 * span;
                if va >= end {
                    break;
                }
                let v = e.load(Ordering::Acquire);
                if level == 0 {
                    if v & (PTE_P | PTE_PROTNONE) != 0 {
                        f(va, e);
                    }
                    continue;
                }
                if v & PTE_P != 0 {
                    walk(v & PTE_ADDR, level - 1, va, start, end, f);
                }
            }
        }
        walk(self.pml4, 3, 0, start, end.min(USER_END), &mut f);
    }

    /// Frees every lower-half table (not the frames the leaves point to:
    /// the address space releases those first) and the PML4. The table must
    /// not be used afterwards.
    pub fn destroy(&mut self) {
        if self.pml4 == 0 {
            return;
        }
        for t in core::mem::take(&mut *self.tables.lock()) {
            frame::free_frame(t);
        }
        frame::free_frame(self.pml4);
        self.pml4 = 0;
    }
}

/// Page-aligned start of `va`'s page.
#[inline(always)]
pub fn page_of(va: u64) -> u64 {
    va & !(PAGE_SIZE - 1)
}
