//! User address spaces: virtual memory areas (VMAs), demand paging, brk,
//! mmap/munmap/mprotect of anonymous memory, and the frames behind user
//! buffers for zero-copy host I/O.
//!
//! Frames are allocated on first touch from the zero pool, so a page the
//! program never touches costs nothing and a fresh page costs no zeroing.

use super::frame::{self, Zero};
use super::pagetable::{page_of, PageTable, PTE_ADDR, PTE_NX, PTE_P, PTE_PROTNONE, PTE_U, PTE_W};
use crate::arch::x86_64::cpu;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use qlib::hcall::GuestIovec;
use qlib::layout::{align_up, PAGE_SIZE, USER_END};
use qlib::linux::consts::mman::*;
use qlib::linux::Errno;

/// Lowest address mmap hands out (like Linux's default mmap_min_addr).
pub const MMAP_MIN_ADDR: u64 = 0x10000;

/// What backs a VMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Private anonymous memory (zero-filled on demand).
    Anon,
}

/// A virtual memory area: `[start, end)`, page aligned.
#[derive(Clone, Copy, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// PROT_* bits.
    pub prot: u64,
    pub backing: Backing,
    /// The area is the main stack or was mapped MAP_GROWSDOWN.
    pub grows_down: bool,
}

/// Kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

fn pte_flags(prot: u64) -> u64 {
    let mut f = PTE_U;
    if prot & PROT_WRITE != 0 {
        f |= PTE_W;
    }
    if prot & PROT_EXEC == 0 {
        f |= PTE_NX;
    }
    f
}

/// One address space.
pub struct AddressSpace {
    pt: PageTable,
    /// VMAs keyed by their end address (so `range(addr + 1..)` finds the VMA
    /// containing `addr` first).
    vmas: BTreeMap<u64, Vma>,
    pub brk_start: u64,
    pub brk: u64,
    /// mmap allocates top-down below this address.
    pub mmap_base: u64,
    /// Pages currently mapped to frames.
    pub resident_pages: u64,
}

impl AddressSpace {
    /// An empty address space.
    pub fn new(mmap_base: u64) -> Option<AddressSpace> {
        Some(AddressSpace {
            pt: PageTable::new()?,
            vmas: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
            mmap_base,
            resident_pages: 0,
        })
    }

    /// The CR3 value.
    pub fn root(&self) -> u64 {
        self.pt.root()
    }

    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        let (_, v) = self.vmas.range(addr + 1..).next()?;
        (v.start <= addr).then_some(v)
    }

    /// True when no VMA overlaps `[start, end)`.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        match self.vmas.range(start + 1..).next() {
            Some((_, v)) => v.start >= end,
            None => true,
        }
    }

    /// Inserts a VMA; the range must be free.
    pub fn insert(&mut self, vma: Vma) {
        debug_assert!(self.is_free(vma.start, vma.end));
        self.vmas.insert(vma.end, vma);
    }

    /// Finds a free range of `len` bytes top-down below `mmap_base`.
    pub fn find_free(&self, len: u64) -> Option<u64> {
        let mut top = self.mmap_base;
        for (_, v) in self.vmas.range(..=self.mmap_base).rev() {
            if v.end <= top && top - v.end >= len {
                return Some(top - len);
            }
            top = top.min(v.start);
        }
        let start = top.checked_sub(len)?;
        (start >= MMAP_MIN_ADDR).then_some(start)
    }

    /// Unmaps and frees the frames of `[start, end)` (page aligned), flushing
    /// this vCPU's TLB entries.
    fn release_pages(&mut self, start: u64, end: u64) {
        let mut freed = 0;
        self.pt.for_each_mapped(start, end, |va, e| {
            frame::free_frame(*e & PTE_ADDR);
            *e = 0;
            cpu::invlpg(va);
            freed += 1;
        });
        self.resident_pages -= freed;
    }

    /// Removes `[start, end)` from the VMA map, splitting VMAs at the edges.
    fn carve(&mut self, start: u64, end: u64) -> Vec<Vma> {
        let mut removed = Vec::new();
        let keys: Vec<u64> = self.vmas.range(start + 1..).take_while(|(_, v)| v.start < end).map(|(k, _)| *k).collect();
        for k in keys {
            let Some(v) = self.vmas.remove(&k) else {
                continue;
            };
            if v.start < start {
                self.vmas.insert(start, Vma { end: start, ..v });
            }
            if v.end > end {
                self.vmas.insert(v.end, Vma { start: end, ..v });
            }
            removed.push(Vma { start: v.start.max(start), end: v.end.min(end), ..v });
        }
        removed
    }

    /// munmap: removes mappings in `[start, start + len)`.
    pub fn unmap(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        if !start.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = align_up(start.checked_add(len).ok_or(Errno::EINVAL)?, PAGE_SIZE).ok_or(Errno::EINVAL)?;
        if end > USER_END {
            return Err(Errno::EINVAL);
        }
        self.carve(start, end);
        self.release_pages(start, end);
        Ok(())
    }

    /// MADV_DONTNEED on private anonymous memory: drop the frames; the next
    /// touch reads zeros.
    pub fn discard(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        let end = align_up(start.checked_add(len).ok_or(Errno::EINVAL)?, PAGE_SIZE).ok_or(Errno::EINVAL)?;
        if end > USER_END {
            return Err(Errno::EINVAL);
        }
        self.release_pages(start, end);
        Ok(())
    }

    /// mmap of anonymous private memory (file and shared mappings come with
    /// the VFS). Returns the address.
    pub fn map_anon(&mut self, addr: u64, len: u64, prot: u64, flags: u64) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = align_up(len, PAGE_SIZE).ok_or(Errno::ENOMEM)?;
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > USER_END {
                return Err(Errno::ENOMEM);
            }
            if addr < MMAP_MIN_ADDR {
                return Err(Errno::EPERM);
            }
            if !self.is_free(addr, end) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                self.unmap(addr, len)?;
            }
            addr
        } else {
            let hint = page_of(addr);
            match hint.checked_add(len) {
                Some(end) if hint >= MMAP_MIN_ADDR && end <= USER_END && self.is_free(hint, end) => hint,
                _ => self.find_free(len).ok_or(Errno::ENOMEM)?,
            }
        };
        self.insert(Vma {
            start,
            end: start + len,
            prot: prot & (PROT_READ | PROT_WRITE | PROT_EXEC),
            backing: Backing::Anon,
            grows_down: flags & MAP_GROWSDOWN != 0,
        });
        if flags & MAP_POPULATE != 0 {
            let _ = self.populate(start, len, prot & PROT_WRITE != 0);
        }
        Ok(start)
    }

    /// mprotect.
    pub fn protect(&mut self, start: u64, len: u64, prot: u64) -> Result<(), Errno> {
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP) != 0 {
            return Err(Errno::EINVAL);
        }
        let end = align_up(start.checked_add(len).ok_or(Errno::ENOMEM)?, PAGE_SIZE).ok_or(Errno::ENOMEM)?;
        if end > USER_END {
            return Err(Errno::ENOMEM);
        }
        // Linux fails with ENOMEM if any page in the range is unmapped.
        let mut cursor = start;
        for (_, v) in self.vmas.range(start + 1..) {
            if v.start >= end {
                break;
            }
            if v.start > cursor {
                return Err(Errno::ENOMEM);
            }
            cursor = v.end;
        }
        if cursor < end {
            return Err(Errno::ENOMEM);
        }
        let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
        for v in self.carve(start, end) {
            self.vmas.insert(v.end, Vma { prot, ..v });
        }
        let flags = pte_flags(prot);
        self.pt.for_each_mapped(start, end, |va, e| {
            let frame = *e & PTE_ADDR;
            *e = if prot == PROT_NONE { frame | PTE_PROTNONE } else { frame | flags | PTE_P };
            cpu::invlpg(va);
        });
        Ok(())
    }

    /// brk.
    pub fn set_brk(&mut self, new: u64) -> u64 {
        if new < self.brk_start || new >= self.mmap_base {
            return self.brk;
        }
        let old_end = align_up(self.brk, PAGE_SIZE).unwrap_or(self.brk);
        let new_end = match align_up(new, PAGE_SIZE) {
            Some(e) => e,
            None => return self.brk,
        };
        if new_end > old_end {
            if !self.is_free(old_end, new_end) {
                return self.brk;
            }
            // Extend the heap VMA (or create it).
            let prev = self.vmas.remove(&old_end);
            let start = match prev {
                Some(v) if v.backing == Backing::Anon => v.start,
                Some(v) => {
                    self.vmas.insert(v.end, v);
                    old_end
                }
                None => old_end,
            };
            self.insert(Vma {
                start,
                end: new_end,
                prot: PROT_READ | PROT_WRITE,
                backing: Backing::Anon,
                grows_down: false,
            });
        } else if new_end < old_end {
            let _ = self.unmap(new_end, old_end - new_end);
        }
        self.brk = new;
        new
    }

    /// Handles a page fault at `addr`. `present` is the #PF P bit.
    pub fn fault(&mut self, addr: u64, access: Access) -> Result<(), Errno> {
        let vma = *self.find(addr).ok_or(Errno::EFAULT)?;
        let allowed = match access {
            Access::Read => vma.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0,
            Access::Write => vma.prot & PROT_WRITE != 0,
            Access::Exec => vma.prot & PROT_EXEC != 0,
        };
        if !allowed {
            return Err(Errno::EACCES);
        }
        let va = page_of(addr);
        if self.pt.lookup(va).is_some() {
            // Present with the right VMA permissions: another vCPU resolved
            // it, or a stale TLB entry. Nothing to do.
            cpu::invlpg(va);
            return Ok(());
        }
        let pa = frame::alloc_frame(Zero::Yes).ok_or(Errno::ENOMEM)?;
        if self.pt.map(va, pa, pte_flags(vma.prot)).is_none() {
            frame::free_frame(pa);
            return Err(Errno::ENOMEM);
        }
        self.resident_pages += 1;
        Ok(())
    }

    /// Makes every page of `[start, start + len)` present (writable when
    /// `write`), faulting them in.
    pub fn populate(&mut self, start: u64, len: u64, write: bool) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::EFAULT)?;
        let mut va = page_of(start);
        while va < end {
            match self.pt.lookup(va) {
                Some(e) if !write || e & PTE_W != 0 => {}
                _ => self.fault(va, if write { Access::Write } else { Access::Read })?,
            }
            va += PAGE_SIZE;
        }
        Ok(())
    }

    /// The guest-physical ranges behind the user buffer `[addr, addr+len)`,
    /// faulted in first (writable when `write`), with physically contiguous
    /// pages merged. The host moves data straight into/out of them.
    pub fn user_frames(&mut self, addr: u64, len: u64, write: bool, out: &mut Vec<GuestIovec>) -> Result<(), Errno> {
        crate::arch::x86_64::usercopy::check_user_range(addr, len)?;
        let end = addr + len;
        let mut va = addr;
        while va < end {
            let page = page_of(va);
            let e = match self.pt.lookup(page) {
                Some(e) if !write || e & PTE_W != 0 => e,
                _ => {
                    self.fault(page, if write { Access::Write } else { Access::Read }).map_err(|_| Errno::EFAULT)?;
                    self.pt.lookup(page).ok_or(Errno::EFAULT)?
                }
            };
            let chunk = (page + PAGE_SIZE).min(end) - va;
            let gpa = (e & PTE_ADDR) + (va - page);
            match out.last_mut() {
                Some(last) if last.gpa + last.len == gpa => last.len += chunk,
                _ => out.push(GuestIovec { gpa, len: chunk }),
            }
            va += chunk;
        }
        Ok(())
    }

    /// Maps a frame the caller allocated and filled at `va` with `prot`.
    pub fn map_frame(&mut self, va: u64, pa: u64, prot: u64) -> Result<(), Errno> {
        self.pt.map(va, pa, pte_flags(prot)).ok_or(Errno::ENOMEM)?;
        self.resident_pages += 1;
        Ok(())
    }

    /// The frame mapped at `va`, if any.
    pub fn frame_at(&mut self, va: u64) -> Option<u64> {
        self.pt.lookup(page_of(va)).map(|e| e & PTE_ADDR)
    }

    /// Iterates over the VMAs in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        self.release_pages(0, USER_END);
        self.pt.destroy();
    }
}
