//! 4-level x86-64 page tables, reached through the direct map.
//!
//! The upper half (PML4 slots 256..512: direct map and kernel image) is built
//! by the host before boot and shared by every address space: a new address
//! space copies those slots from the template. The lower half belongs to one
//! address space; intermediate tables are created on demand with U|W|P (the
//! leaf entry decides the real permissions) and freed with the space.

use super::frame::{self, Zero};
use qlib::layout::{phys_to_virt, PAGE_SIZE, USER_END};

pub const PTE_P: u64 = 1 << 0;
pub const PTE_W: u64 = 1 << 1;
pub const PTE_U: u64 = 1 << 2;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_G: u64 = 1 << 8;
/// Software bit: the frame is shared copy-on-write (write-protected on purpose).
pub const PTE_COW: u64 = 1 << 9;
/// Software bit: a PROT_NONE page that keeps its frame (P is clear, so any
/// access faults; mprotect back restores P).
pub const PTE_PROTNONE: u64 = 1 << 10;
pub const PTE_NX: u64 = 1 << 63;
/// Physical-address bits of an entry.
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

#[inline(always)]
fn table(pa: u64) -> &'static mut [u64; 512] {
    // SAFETY: page-table frames are owned by their address space and mapped by
    // the direct map; callers hold the address space's lock.
    unsafe { &mut *(phys_to_virt(pa) as *mut [u64; 512]) }
}

#[inline(always)]
fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 511) as usize
}

/// The page tables of one address space.
pub struct PageTable {
    pml4: u64,
}

impl PageTable {
    /// A new address space sharing the kernel's upper half.
    pub fn new() -> Option<PageTable> {
        let pml4 = frame::alloc_frame(Zero::Yes)?;
        let template = table(crate::boot::params().kernel_pml4_pa);
        table(pml4)[256..].copy_from_slice(&template[256..]);
        Some(PageTable { pml4 })
    }

    /// Guest-physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// The leaf entry for `va`, creating intermediate tables when `create`.
    pub fn entry(&mut self, va: u64, create: bool) -> Option<&'static mut u64> {
        debug_assert!(va < USER_END);
        let mut t = self.pml4;
        for level in (1..4).rev() {
            let e = &mut table(t)[index(va, level)];
            if *e & PTE_P == 0 {
                if !create {
                    return None;
                }
                let next = frame::alloc_frame(Zero::Yes)?;
                *e = next | PTE_P | PTE_W | PTE_U;
            }
            t = *e & PTE_ADDR;
        }
        Some(&mut table(t)[index(va, 0)])
    }

    /// The present leaf entry for `va`.
    pub fn lookup(&mut self, va: u64) -> Option<u64> {
        let e = *self.entry(va, false)?;
        (e & PTE_P != 0).then_some(e)
    }

    /// Maps `va` to frame `pa` with `flags` (PTE_P added).
    pub fn map(&mut self, va: u64, pa: u64, flags: u64) -> Option<()> {
        *self.entry(va, true)? = pa | flags | PTE_P;
        Some(())
    }

    /// Removes the mapping of `va`; returns the old entry if it was present.
    /// The caller flushes the TLB.
    pub fn unmap(&mut self, va: u64) -> Option<u64> {
        let e = self.entry(va, false)?;
        let old = *e;
        *e = 0;
        (old & PTE_P != 0).then_some(old)
    }

    /// Calls `f(va, entry)` for every leaf entry in `[start, end)` that holds
    /// a frame (present, or PROT_NONE), skipping absent tables wholesale.
    pub fn for_each_mapped(&mut self, start: u64, end: u64, mut f: impl FnMut(u64, &mut u64)) {
        fn walk(t: u64, level: u32, base: u64, start: u64, end: u64, f: &mut dyn FnMut(u64, &mut u64)) {
            let span = 1u64 << (12 + 9 * level);
            let tab = table(t);
            let first = if start > base { ((start - base) / span) as usize } else { 0 };
            for (i, e) in tab.iter_mut().enumerate().skip(first) {
                let va = base + i as u64 * span;
                if va >= end {
                    break;
                }
                if level == 0 {
                    if *e & (PTE_P | PTE_PROTNONE) != 0 {
                        f(va, e);
                    }
                    continue;
                }
                if *e & PTE_P == 0 {
                    continue;
                }
                if level == 0 {
                    f(va, e);
                } else {
                    walk(*e & PTE_ADDR, level - 1, va, start, end, f);
                }
            }
        }
        walk(self.pml4, 3, 0, start, end.min(USER_END), &mut f);
    }

    /// Frees every lower-half table (not the frames the leaves point to:
    /// the address space frees those first) and the PML4. The table must not
    /// be used afterwards.
    pub fn destroy(&mut self) {
        fn free_level(t: u64, level: u32) {
            for e in table(t).iter() {
                if *e & PTE_P != 0 && level > 0 {
                    free_level(*e & PTE_ADDR, level - 1);
                }
            }
            frame::free_frame(t);
        }
        for i in 0..256 {
            let e = table(self.pml4)[i];
            if e & PTE_P != 0 {
                free_level(e & PTE_ADDR, 2);
            }
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
