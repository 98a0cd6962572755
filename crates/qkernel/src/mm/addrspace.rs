//! User address spaces: virtual memory areas (VMAs), demand paging,
//! copy-on-write, brk, mmap/munmap/mprotect/mremap of anonymous memory, and
//! the frames behind user buffers for zero-copy host I/O.
//!
//! Locking (see `Mm`): page faults and user-buffer resolution run under the
//! shared lock and touch only page-table entries, atomically; everything
//! that changes VMAs or removes/narrows mappings runs under the exclusive
//! lock and records frames to free and whether other vCPUs must flush their
//! TLBs; `Mm::finish` does both after the lock is released.
//!
//! Frames are allocated on first touch from the zero pool, so an untouched
//! page costs nothing and a fresh page costs no zeroing.

use super::frame::{self, Zero};
use super::pagetable::{page_of, PageTable, PTE_ADDR, PTE_COW, PTE_NX, PTE_P, PTE_PROTNONE, PTE_U, PTE_W};
use crate::arch::x86_64::cpu;
use crate::sync::SpinLock;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use qlib::hcall::GuestIovec;
use qlib::layout::{align_up, phys_to_virt, PAGE_SIZE, USER_END};
use qlib::linux::consts::mman::*;
use qlib::linux::Errno;

/// Lowest address mmap hands out (like Linux's default mmap_min_addr).
pub const MMAP_MIN_ADDR: u64 = 0x10000;
/// How far below a grows-down area a fault may extend it (Linux's stack guard gap).
pub const STACK_GUARD_GAP: u64 = 256 * PAGE_SIZE;

/// A shared writable mapping of a host file: `[start, end)` holds the
/// file's bytes from `off`.
#[derive(Clone)]
pub struct WriteBack {
    pub start: u64,
    pub end: u64,
    pub off: u64,
    pub file: alloc::sync::Arc<crate::fs::file::File>,
}

/// What backs a VMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Private anonymous memory (zero-filled on demand, copied on write
    /// after fork).
    Anon,
    /// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS): fork shares the
    /// frames, writes are seen by every sharer.
    SharedAnon,
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

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No mapping (SIGSEGV, SEGV_MAPERR).
    Unmapped,
    /// Mapping forbids the access (SIGSEGV, SEGV_ACCERR).
    Protection,
    /// Out of memory (the process is killed).
    NoMemory,
    /// A grows-down area must be extended first (needs the exclusive lock).
    Grow,
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

/// Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`): the frames every
/// mapping of it sees (the parent's and children's after fork, and mremap
/// aliases), allocated zeroed on first touch. The object holds one reference
/// on each of its frames; mappings hold their own.
pub struct Shm {
    /// Page index -> frame.
    frames: SpinLock<BTreeMap<u64, u64>>,
}

impl Shm {
    fn new() -> Arc<Shm> {
        Arc::new(Shm { frames: SpinLock::new(BTreeMap::new()) })
    }

    /// The frame of page `index`, allocated on first use.
    fn frame(&self, index: u64) -> Option<u64> {
        let mut f = self.frames.lock();
        if let Some(&pa) = f.get(&index) {
            return Some(pa);
        }
        let pa = frame::alloc_user(Zero::Yes)?;
        frame::ref_init(pa);
        f.insert(index, pa);
        Some(pa)
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // Only dropped once no page table maps it and other vCPUs have
        // flushed (see `AddressSpace::retire`).
        for (_, pa) in core::mem::take(&mut *self.frames.lock()) {
            if frame::ref_dec(pa) == 0 {
                frame::free_frame(pa);
            }
        }
    }
}

/// The shared object behind a shared anonymous area and the page of it at
/// the area's start.
#[derive(Clone)]
struct ShmRef {
    obj: Arc<Shm>,
    pgoff: u64,
}

impl ShmRef {
    /// The reference for the part of an area starting `bytes` after its start.
    fn skip(&self, bytes: u64) -> ShmRef {
        ShmRef { obj: self.obj.clone(), pgoff: self.pgoff + bytes / PAGE_SIZE }
    }
}

/// The file behind a private file mapping: pages are read from it on first
/// touch (then behave like anonymous memory: copied on write, shared
/// copy-on-write across fork).
#[derive(Clone)]
pub struct FileRef {
    pub file: Arc<crate::fs::file::File>,
    /// File offset of the area's first page.
    pub off: u64,
}

/// A VMA and, for shared anonymous memory, its object; for private file
/// mappings, the file.
#[derive(Clone)]
struct Area {
    vma: Vma,
    shm: Option<ShmRef>,
    file: Option<FileRef>,
}

impl Area {
    /// The part `[start, end)` of this area (within it).
    fn slice(&self, start: u64, end: u64) -> Area {
        Area {
            vma: Vma { start, end, ..self.vma },
            shm: self.shm.as_ref().map(|s| s.skip(start - self.vma.start)),
            file: self.file.as_ref().map(|f| FileRef { file: f.file.clone(), off: f.off + (start - self.vma.start) }),
        }
    }
}

/// Pages read around a fault in a file mapping (one host request).
const FILE_READAROUND: u64 = 16;

/// The VMAs keyed by their end address (so `range(addr + 1..)` finds the VMA
/// containing `addr` first), with a hint: the area the last lookup found.
/// Page faults mostly hit the area of the previous one, and a B-tree search
/// costs ~80 instructions (~80 µs where supervisor code is emulated).
struct Vmas {
    map: BTreeMap<u64, Area>,
    /// Points into `map`; valid while the map is not changed, which needs
    /// `&mut` (the exclusive lock): `map_mut` clears it.
    hint: AtomicPtr<Area>,
}

impl Vmas {
    fn new() -> Vmas {
        Vmas { map: BTreeMap::new(), hint: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// The map, for changes (forgets the hint).
    fn map_mut(&mut self) -> &mut BTreeMap<u64, Area> {
        *self.hint.get_mut() = core::ptr::null_mut();
        &mut self.map
    }

    /// The area containing `addr`.
    #[inline]
    fn lookup(&self, addr: u64) -> Option<&Area> {
        let h = self.hint.load(Ordering::Relaxed);
        if !h.is_null() {
            // SAFETY: the hint points at a value of `map`, which has not been
            // changed since it was set (changes clear it) and lives as long
            // as `self` is borrowed.
            let a = unsafe { &*h };
            if a.vma.start <= addr && addr < a.vma.end {
                return Some(a);
            }
        }
        let (_, a) = self.map.range(addr + 1..).next()?;
        if a.vma.start > addr {
            return None;
        }
        self.hint.store(a as *const Area as *mut Area, Ordering::Relaxed);
        Some(a)
    }
}

impl Clone for Vmas {
    fn clone(&self) -> Vmas {
        Vmas { map: self.map.clone(), hint: AtomicPtr::new(core::ptr::null_mut()) }
    }
}

/// One address space.
pub struct AddressSpace {
    pt: PageTable,
    /// VMAs keyed by their end address (so `range(addr + 1..)` finds the VMA
    /// containing `addr` first).
    vmas: Vmas,
    pub brk_start: u64,
    pub brk: u64,
    /// mmap allocates top-down below this address.
    pub mmap_base: u64,
    /// Where the initial stack holds argv and envp strings (/proc cmdline
    /// and environ).
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Shared writable mappings of host files: written back to the file on
    /// msync, munmap and when the address space goes away.
    pub writeback: Vec<WriteBack>,
    /// Pages currently mapped to frames.
    resident: AtomicU64,
    /// Frames to free once no vCPU can still use them (after a shootdown).
    deferred: SpinLock<Vec<u64>>,
    /// Pages whose mappings were removed or narrowed since the last
    /// shootdown: other vCPUs must flush before `deferred` is freed.
    flush: AtomicU64,
    /// Shared objects no longer mapped here, released with `deferred`.
    retired: SpinLock<Vec<Arc<Shm>>>,
    /// Where the next fault lands if memory is touched sequentially (just
    /// past the pages the last fault mapped): such a fault maps the pages
    /// after it too (fault-around). Racy by design: only a hint.
    next_seq: AtomicU64,
}

/// Pages unmapped with one INVLPG each; more flush the whole TLB once.
const LOCAL_INVLPG_MAX: u64 = 8;

/// Pages a sequential fault maps beyond the faulting one. A fault costs
/// ~400 supervisor instructions and 3-4 VM exits; each extra page ~40
/// instructions and none.
const FAULT_AROUND: usize = 15;

impl AddressSpace {
    /// An empty address space.
    pub fn new(mmap_base: u64) -> Option<AddressSpace> {
        Some(AddressSpace {
            pt: PageTable::new()?,
            vmas: Vmas::new(),
            brk_start: 0,
            brk: 0,
            mmap_base,
            arg_start: 0,
            arg_end: 0,
            env_start: 0,
            env_end: 0,
            writeback: Vec::new(),
            resident: AtomicU64::new(0),
            deferred: SpinLock::new(Vec::new()),
            flush: AtomicU64::new(0),
            retired: SpinLock::new(Vec::new()),
            next_seq: AtomicU64::new(0),
        })
    }

    /// The name /proc/<pid>/maps shows for an area, if any.
    pub fn vma_name(&self, v: &Vma) -> Option<&'static [u8]> {
        if v.grows_down && v.start <= self.arg_start && self.arg_start < v.end {
            Some(b"[stack]")
        } else if self.brk > self.brk_start && v.start < self.brk && v.end > self.brk_start {
            Some(b"[heap]")
        } else {
            None
        }
    }

    /// Pages of `[start, end)` that are mapped to frames.
    pub fn resident_in(&self, start: u64, end: u64) -> u64 {
        let mut n = 0;
        let mut va = page_of(start);
        while va < end {
            if self.pt.lookup(va).is_some() {
                n += 1;
            }
            va += PAGE_SIZE;
        }
        n
    }

    /// The CR3 value.
    pub fn root(&self) -> u64 {
        self.pt.root()
    }

    /// Pages mapped to frames.
    pub fn resident_pages(&self) -> u64 {
        self.resident.load(Ordering::Relaxed)
    }

    /// Takes the frames to free, the shared objects to release and the
    /// number of pages other vCPUs must flush first.
    pub fn take_deferred(&self) -> (u64, Vec<u64>, Vec<Arc<Shm>>) {
        let flush = self.flush.swap(0, Ordering::AcqRel);
        (flush, core::mem::take(&mut *self.deferred.lock()), core::mem::take(&mut *self.retired.lock()))
    }

    /// True when a change left pages to flush on other vCPUs (and frames
    /// to free after that): `Mm::finish` has work.
    #[inline]
    pub fn has_deferred(&self) -> bool {
        self.flush.load(Ordering::Acquire) != 0
    }

    /// A shared object left this space: release it after the shootdown.
    fn retire(&self, a: Area) {
        if let Some(s) = a.shm {
            self.retired.lock().push(s.obj);
        }
    }

    /// Bytes of address space in use (RLIMIT_AS) and in private writable
    /// areas other than stacks (RLIMIT_DATA), as Linux counts them.
    pub fn vm_usage(&self) -> (u64, u64) {
        let mut total = 0;
        let mut data = 0;
        for a in self.vmas.map.values() {
            let v = &a.vma;
            total += v.end - v.start;
            if v.backing == Backing::Anon && v.prot & PROT_WRITE != 0 && !v.grows_down {
                data += v.end - v.start;
            }
        }
        (total, data)
    }

    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.find_area(addr).map(|a| &a.vma)
    }

    fn find_area(&self, addr: u64) -> Option<&Area> {
        self.vmas.lookup(addr)
    }

    /// True when no VMA overlaps `[start, end)`.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        match self.vmas.map.range(start + 1..).next() {
            Some((_, a)) => a.vma.start >= end,
            None => true,
        }
    }

    /// Inserts a VMA; the range must be free.
    pub fn insert(&mut self, vma: Vma) {
        self.insert_area(Area { vma, shm: None, file: None });
    }

    fn insert_area(&mut self, a: Area) {
        debug_assert!(self.is_free(a.vma.start, a.vma.end));
        self.vmas.map_mut().insert(a.vma.end, a);
    }

    /// Finds a free range of `len` bytes top-down below `mmap_base`.
    pub fn find_free(&self, len: u64) -> Option<u64> {
        let mut top = self.mmap_base;
        for (_, Area { vma: v, .. }) in self.vmas.map.range(..=self.mmap_base).rev() {
            if v.end <= top && top - v.end >= len {
                return Some(top - len);
            }
            top = top.min(v.start);
        }
        let start = top.checked_sub(len)?;
        (start >= MMAP_MIN_ADDR).then_some(start)
    }

    /// Drops one reference to a frame that left a mapping.
    fn drop_frame(&self, pa: u64) {
        if frame::ref_dec(pa) == 0 {
            let mut d = self.deferred.lock();
            if d.try_reserve(1).is_ok() {
                d.push(pa);
            } else {
                // No memory to remember it: make every vCPU flush now, then
                // free it at once.
                drop(d);
                super::tlb::shootdown_all();
                frame::free_frame(pa);
            }
        }
    }

    /// Unmaps `[start, end)` (page aligned), releasing the frames once
    /// other vCPUs have flushed (see `Mm::finish`).
    fn release_pages(&self, start: u64, end: u64) {
        let mut freed = 0;
        let mut dead: Vec<u64> = Vec::with_capacity((((end - start) / PAGE_SIZE) as usize).min(256));
        self.pt.for_each_leaf_table(start, end, |base, table, first, last| {
            for (i, e) in table.iter().enumerate().take(last).skip(first) {
                // Plain accesses suffice: faults cannot race (exclusive lock),
                // and an accessed/dirty bit the MMU sets is of no interest.
                let old = e.load(Ordering::Relaxed);
                if old & (PTE_P | PTE_PROTNONE) == 0 {
                    continue;
                }
                e.store(0, Ordering::Relaxed);
                if frame::ref_dec(old & PTE_ADDR) == 0 {
                    dead.push(old & PTE_ADDR);
                }
                if freed < LOCAL_INVLPG_MAX {
                    cpu::invlpg(base + i as u64 * PAGE_SIZE);
                }
                freed += 1;
            }
        });
        if freed > LOCAL_INVLPG_MAX {
            // One reload instead of an INVLPG per page.
            super::tlb::flush_local();
        }
        if freed > 0 {
            self.resident.fetch_sub(freed, Ordering::Relaxed);
            self.flush.fetch_add(freed, Ordering::AcqRel);
        }
        if dead.is_empty() {
            return;
        }
        let mut d = self.deferred.lock();
        if d.try_reserve(dead.len()).is_ok() {
            d.append(&mut dead);
        } else {
            // No memory to remember them: make every vCPU flush now, then
            // free them at once.
            drop(d);
            super::tlb::shootdown_all();
            for pa in dead {
                frame::free_frame(pa);
            }
        }
    }

    /// Removes `[start, end)` from the VMA map, splitting VMAs at the edges.
    fn carve(&mut self, start: u64, end: u64) -> Vec<Area> {
        let mut removed = Vec::new();
        let keys: Vec<u64> =
            self.vmas.map.range(start + 1..).take_while(|(_, a)| a.vma.start < end).map(|(k, _)| *k).collect();
        for k in keys {
            let Some(a) = self.vmas.map_mut().remove(&k) else { continue };
            let v = a.vma;
            if v.start < start {
                self.vmas.map_mut().insert(start, a.slice(v.start, start));
            }
            if v.end > end {
                self.vmas.map_mut().insert(v.end, a.slice(end, v.end));
            }
            removed.push(a.slice(v.start.max(start), v.end.min(end)));
        }
        removed
    }

    fn range_end(start: u64, len: u64, err: Errno) -> Result<u64, Errno> {
        let end = align_up(start.checked_add(len).ok_or(err)?, PAGE_SIZE).ok_or(err)?;
        if end > USER_END {
            return Err(err);
        }
        Ok(end)
    }

    /// Writes the pages of shared host-file mappings in `[start, end)` back
    /// to their files (only up to each file's current size: a mapping never
    /// extends its file). The host reads the frames directly.
    pub fn write_back(&self, start: u64, end: u64) {
        for w in &self.writeback {
            let (s, e) = (w.start.max(start), w.end.min(end));
            if s >= e {
                continue;
            }
            let Some(h) = w.file.ops.host_file() else { continue };
            let size = w.file.inode.as_ref().and_then(|i| i.stat().ok()).map(|st| st.st_size as u64).unwrap_or(0);
            let mut va = s;
            while va < e {
                let off = w.off + (va - w.start);
                if off >= size {
                    break;
                }
                let mut iovs: Vec<GuestIovec> = Vec::new();
                let first = off;
                while va < e && w.off + (va - w.start) < size {
                    let Some(entry) = self.pt.lookup(va) else { break };
                    let len = PAGE_SIZE.min(size - (w.off + (va - w.start)));
                    iovs.push(GuestIovec { gpa: entry & PTE_ADDR, len });
                    va += PAGE_SIZE;
                }
                if !iovs.is_empty() {
                    let _ = h.write_frames(first, &iovs);
                }
                // Skip a hole (a page never faulted in).
                if self.pt.lookup(va).is_none() {
                    va += PAGE_SIZE;
                }
            }
        }
    }

    /// Forgets write-back records inside `[start, end)` (clipping partial
    /// overlaps).
    fn drop_writeback(&mut self, start: u64, end: u64) {
        let mut out = Vec::new();
        for w in self.writeback.drain(..) {
            if w.end <= start || w.start >= end {
                out.push(w);
                continue;
            }
            if w.start < start {
                out.push(WriteBack { end: start, ..w.clone() });
            }
            if w.end > end {
                out.push(WriteBack { start: end, off: w.off + (end - w.start), ..w.clone() });
            }
        }
        self.writeback = out;
    }

    /// munmap: removes mappings in `[start, start + len)`.
    pub fn unmap(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        if !start.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = Self::range_end(start, len, Errno::EINVAL)?;
        if !self.writeback.is_empty() {
            self.write_back(start, end);
            self.drop_writeback(start, end);
        }
        for a in self.carve(start, end) {
            self.retire(a);
        }
        self.release_pages(start, end);
        Ok(())
    }

    /// MADV_DONTNEED on private anonymous memory: drop the frames; the next
    /// touch reads zeros.
    pub fn discard(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        let end = Self::range_end(start, len, Errno::EINVAL)?;
        self.release_pages(start, end);
        Ok(())
    }

    /// mmap of anonymous memory. Returns the address.
    pub fn map_anon(&mut self, addr: u64, len: u64, prot: u64, flags: u64) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = align_up(len, PAGE_SIZE).ok_or(Errno::ENOMEM)?;
        // The heuristic of Linux's default overcommit mode: a single mapping
        // larger than all guest memory can never be backed.
        if len > crate::boot::params().user_mem_limit && flags & MAP_NORESERVE == 0 {
            return Err(Errno::ENOMEM);
        }
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
        let shared = flags & MAP_TYPE != MAP_PRIVATE;
        self.insert_area(Area {
            vma: Vma {
                start,
                end: start + len,
                prot: prot & (PROT_READ | PROT_WRITE | PROT_EXEC),
                backing: if shared { Backing::SharedAnon } else { Backing::Anon },
                grows_down: flags & MAP_GROWSDOWN != 0 && !shared,
            },
            shm: shared.then(|| ShmRef { obj: Shm::new(), pgoff: 0 }),
            file: None,
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
        let end = Self::range_end(start, len, Errno::ENOMEM)?;
        self.check_mapped(start, end)?;
        let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
        for mut a in self.carve(start, end) {
            a.vma.prot = prot;
            self.vmas.map_mut().insert(a.vma.end, a);
        }
        let flags = pte_flags(prot);
        let mut changed = 0;
        let mut narrowed = 0;
        self.pt.for_each_leaf_table(start, end, |base, table, first, last| {
            for (i, e) in table.iter().enumerate().take(last).skip(first) {
                let old = e.load(Ordering::Relaxed);
                if old & (PTE_P | PTE_PROTNONE) == 0 {
                    continue;
                }
                let frame = old & PTE_ADDR;
                let cow = old & PTE_COW;
                let new = if prot == PROT_NONE {
                    frame | PTE_PROTNONE | cow
                } else if cow != 0 {
                    // Still shared: stays read-only until a write copies it.
                    (frame | flags | PTE_P | cow) & !PTE_W
                } else {
                    frame | flags | PTE_P
                };
                e.store(new, Ordering::Relaxed);
                if changed < LOCAL_INVLPG_MAX {
                    cpu::invlpg(base + i as u64 * PAGE_SIZE);
                }
                changed += 1;
                // Other vCPUs must drop translations that allow more than
                // the new entry (wider ones just fault once and refresh).
                let lost_w = old & PTE_W != 0 && new & PTE_W == 0;
                let lost_x = old & PTE_NX == 0 && new & PTE_NX != 0;
                if old & PTE_P != 0 && (new & PTE_P == 0 || lost_w || lost_x) {
                    narrowed += 1;
                }
            }
        });
        if changed > LOCAL_INVLPG_MAX {
            super::tlb::flush_local();
        }
        self.flush.fetch_add(narrowed, Ordering::AcqRel);
        Ok(())
    }

    /// Fails with ENOMEM unless every page of `[start, end)` is mapped.
    fn check_mapped(&self, start: u64, end: u64) -> Result<(), Errno> {
        let mut cursor = start;
        for (_, Area { vma: v, .. }) in self.vmas.map.range(start + 1..) {
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
        Ok(())
    }

    /// msync: validates the range (anonymous memory has nothing to write back).
    pub fn msync(&self, start: u64, len: u64) -> Result<(), Errno> {
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = Self::range_end(start, len, Errno::ENOMEM)?;
        self.check_mapped(start, end)?;
        self.write_back(start, end);
        Ok(())
    }

    /// mincore: one byte per page, 1 when resident.
    pub fn mincore(&self, start: u64, len: u64) -> Result<Vec<u8>, Errno> {
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = Self::range_end(start, len, Errno::ENOMEM)?;
        self.check_mapped(start, end)?;
        let mut v = Vec::with_capacity(((end - start) / PAGE_SIZE) as usize);
        let mut va = start;
        while va < end {
            v.push(self.pt.mapped(va).is_some() as u8);
            va += PAGE_SIZE;
        }
        Ok(v)
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
            let start = match self.vmas.map_mut().remove(&old_end) {
                Some(a) if a.vma.backing == Backing::Anon && !a.vma.grows_down && a.vma.start >= self.brk_start => {
                    a.vma.start
                }
                Some(a) => {
                    self.vmas.map_mut().insert(a.vma.end, a);
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

    /// mremap.
    pub fn remap(&mut self, old: u64, old_len: u64, new_len: u64, flags: u64, new_addr: u64) -> Result<u64, Errno> {
        if !old.is_multiple_of(PAGE_SIZE) || flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0 || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = align_up(old_len, PAGE_SIZE).ok_or(Errno::EINVAL)?;
        let new_len = align_up(new_len, PAGE_SIZE).ok_or(Errno::EINVAL)?;
        let area = self.find_area(old).ok_or(Errno::EFAULT)?.clone();
        let vma = area.vma;
        if old + old_len > vma.end {
            return Err(Errno::EFAULT);
        }
        // A zero old length duplicates a shared mapping (a second mapping of
        // the same pages); private ones cannot be duplicated.
        if old_len == 0 && area.shm.is_none() {
            return Err(Errno::EINVAL);
        }
        let moved_area = |dest: u64| Area {
            vma: Vma { start: dest, end: dest + new_len, ..vma },
            shm: area.shm.as_ref().map(|s| s.skip(old - vma.start)),
            file: area.file.as_ref().map(|f| FileRef { file: f.file.clone(), off: f.off + (old - vma.start) }),
        };
        if flags & MREMAP_FIXED == 0 {
            if new_len <= old_len {
                if new_len < old_len {
                    self.unmap(old + new_len, old_len - new_len)?;
                }
                return Ok(old);
            }
            // Grow in place when the space after it is free.
            let grow_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
            if old + old_len == vma.end && grow_end <= USER_END && self.is_free(vma.end, grow_end) {
                if let Some(mut a) = self.vmas.map_mut().remove(&vma.end) {
                    a.vma.end = grow_end;
                    self.vmas.map_mut().insert(grow_end, a);
                }
                return Ok(old);
            }
            if flags & MREMAP_MAYMOVE == 0 {
                return Err(Errno::ENOMEM);
            }
        }
        let dest = if flags & MREMAP_FIXED != 0 {
            if !new_addr.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            let dend = new_addr.checked_add(new_len).ok_or(Errno::EINVAL)?;
            if dend > USER_END || (new_addr < old + old_len && dend > old) {
                return Err(Errno::EINVAL);
            }
            self.unmap(new_addr, new_len)?;
            new_addr
        } else {
            self.find_free(new_len).ok_or(Errno::ENOMEM)?
        };
        // Move the pages' entries, then the VMA.
        let moved = old_len.min(new_len);
        let mut moves: Vec<(u64, u64)> = Vec::new();
        self.pt.for_each_mapped(old, old + moved, |va, e| {
            moves.push((va, e.swap(0, Ordering::AcqRel)));
            cpu::invlpg(va);
        });
        for (va, entry) in moves {
            if let Some(e) = self.pt.entry(dest + (va - old), true) {
                e.store(entry, Ordering::Release);
            }
        }
        self.flush.fetch_add(moved / PAGE_SIZE, Ordering::AcqRel);
        for a in self.carve(old, old + old_len) {
            self.retire(a);
        }
        if old_len > moved {
            self.release_pages(old + moved, old + old_len);
        }
        self.insert_area(moved_area(dest));
        Ok(dest)
    }

    /// Extends a grows-down area down to the page of `addr` (exclusive lock).
    pub fn grow_down(&mut self, addr: u64, limit: u64) -> Result<(), Errno> {
        let page = page_of(addr);
        let (&key, area) = self.vmas.map.range(addr + 1..).next().ok_or(Errno::EFAULT)?;
        let vma = &area.vma;
        if !vma.grows_down || vma.start <= page || vma.start - page > STACK_GUARD_GAP {
            return Err(Errno::EFAULT);
        }
        if !self.is_free(page, vma.start) || vma.end - page > limit {
            return Err(Errno::EFAULT);
        }
        let a = Area { vma: Vma { start: page, ..*vma }, shm: None, file: None };
        self.vmas.map_mut().insert(key, a);
        Ok(())
    }

    /// mmap of a file, private: an area whose pages are read from the file
    /// when first touched. Returns the address.
    pub fn map_file_private(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file: FileRef,
    ) -> Result<u64, Errno> {
        let flags = (flags & !MAP_TYPE & !MAP_POPULATE) | MAP_PRIVATE;
        let start = self.map_anon(addr, len, prot, flags)?;
        let end = start + align_up(len, PAGE_SIZE).ok_or(Errno::ENOMEM)?;
        if let Some(a) = self.vmas.map_mut().get_mut(&end) {
            a.file = Some(file);
        }
        Ok(start)
    }

    /// Reads the pages of a file area around `va` (not yet present, up to
    /// [`FILE_READAROUND`], within the area) into fresh frames with one host
    /// request and installs them. The faulting page is always among them.
    fn fault_file(&self, va: u64, vma: &Vma, f: &FileRef) -> Result<(), Fault> {
        let mut pages: Vec<(u64, u64)> = Vec::new();
        let mut iovs: Vec<GuestIovec> = Vec::new();
        let mut p = va;
        while p < vma.end && (p - va) / PAGE_SIZE < FILE_READAROUND {
            if p != va && self.pt.lookup(p).is_some() {
                break;
            }
            let pa = frame::alloc_frame(Zero::Yes).ok_or(Fault::NoMemory)?;
            frame::ref_init(pa);
            pages.push((p, pa));
            match iovs.last_mut() {
                Some(last) if last.gpa + last.len == pa => last.len += PAGE_SIZE,
                _ => iovs.push(GuestIovec { gpa: pa, len: PAGE_SIZE }),
            }
            p += PAGE_SIZE;
        }
        // Past the end of the file the frames stay zero.
        let _ = crate::fs::read_frames(&f.file, f.off + (va - vma.start), &iovs);
        let flags = pte_flags(vma.prot);
        for (p, pa) in pages {
            let installed = self.pt.entry(p, true).is_some_and(|e| {
                e.compare_exchange(0, pa | flags | PTE_P, Ordering::AcqRel, Ordering::Acquire).is_ok()
            });
            if installed {
                self.resident.fetch_add(1, Ordering::Relaxed);
            } else if frame::ref_dec(pa) == 0 {
                frame::free_frame(pa);
            }
        }
        Ok(())
    }

    /// Handles a page fault at `addr` (shared lock suffices).
    pub fn fault(&self, addr: u64, access: Access) -> Result<(), Fault> {
        let (vma, shm, file) = match self.find_area(addr) {
            Some(a) => (a.vma, a.shm.as_ref(), a.file.as_ref()),
            None => {
                // Just below a grows-down area: it may be extended.
                if let Some((_, Area { vma: v, .. })) = self.vmas.map.range(addr + 1..).next() {
                    if v.grows_down && v.start > addr && v.start - page_of(addr) <= STACK_GUARD_GAP {
                        return Err(Fault::Grow);
                    }
                }
                return Err(Fault::Unmapped);
            }
        };
        let allowed = match access {
            Access::Read => vma.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0,
            Access::Write => vma.prot & PROT_WRITE != 0,
            Access::Exec => vma.prot & PROT_EXEC != 0,
        };
        if !allowed {
            return Err(Fault::Protection);
        }
        let va = page_of(addr);
        let entry = self.pt.entry(va, true).ok_or(Fault::NoMemory)?;
        loop {
            let old = entry.load(Ordering::Acquire);
            if old == 0 {
                if let Some(f) = file {
                    self.fault_file(va, &vma, f)?;
                    // Installed (or raced by another vCPU): a write may
                    // still need its own copy below.
                    continue;
                }
            }
            if old & PTE_P == 0 && old & PTE_PROTNONE == 0 {
                // Not mapped yet: the shared object's frame, or a zero frame.
                let pa = match shm {
                    Some(s) => {
                        let pa = s.obj.frame(s.pgoff + (va - vma.start) / PAGE_SIZE).ok_or(Fault::NoMemory)?;
                        frame::ref_inc(pa);
                        pa
                    }
                    None => {
                        let pa = frame::alloc_user(Zero::Yes).ok_or(Fault::NoMemory)?;
                        frame::ref_init(pa);
                        pa
                    }
                };
                let new = pa | pte_flags(vma.prot) | PTE_P;
                if entry.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    if frame::ref_dec(pa) == 0 {
                        frame::free_frame(pa);
                    }
                    continue;
                }
                let extra = if shm.is_none() { self.fault_around(va, &vma) } else { 0 };
                self.resident.fetch_add(1 + extra, Ordering::Relaxed);
                return Ok(());
            }
            if old & PTE_P == 0 {
                // PROT_NONE entry under a VMA that allows access: mprotect is
                // rewriting it; retry.
                cpu::pause();
                continue;
            }
            if access == Access::Write && old & PTE_W == 0 {
                return self.break_cow(va, entry, old, &vma);
            }
            // Present with the right permissions: another vCPU resolved it,
            // or our TLB was stale.
            cpu::invlpg(va);
            return Ok(());
        }
    }

    /// After a fault at `va` just past the previous fault's pages, maps the
    /// following absent pages of the area (in the same leaf table) with
    /// known-zero frames; returns how many.
    fn fault_around(&self, va: u64, vma: &Vma) -> u64 {
        let sequential = self.next_seq.load(Ordering::Relaxed) == va;
        let mut next = va + PAGE_SIZE;
        if sequential {
            let table_end = (va | ((1 << 21) - 1)) + 1;
            let limit = vma.end.min(table_end).min(va + (FAULT_AROUND as u64 + 1) * PAGE_SIZE);
            let want = ((limit - next) / PAGE_SIZE) as usize;
            let mut frames = [0u64; FAULT_AROUND];
            let got = frame::alloc_user_zeroed(&mut frames[..want]);
            let flags = pte_flags(vma.prot) | PTE_P;
            let mut used = 0;
            while used < got {
                let Some(e) = self.pt.entry(next, false) else { break };
                let pa = frames[used];
                frame::ref_init(pa);
                if e.compare_exchange(0, pa | flags, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    break;
                }
                used += 1;
                next += PAGE_SIZE;
            }
            for &pa in &frames[used..got] {
                frame::free_frame(pa);
            }
        }
        self.next_seq.store(next, Ordering::Relaxed);
        (next - va) / PAGE_SIZE - 1
    }

    /// A write to a read-only page of a writable area: copy-on-write.
    fn break_cow(&self, va: u64, entry: &AtomicU64, old: u64, vma: &Vma) -> Result<(), Fault> {
        let old_pa = old & PTE_ADDR;
        let flags = pte_flags(vma.prot);
        if frame::ref_count(old_pa) == 1 || vma.backing == Backing::SharedAnon {
            // The last user takes the frame over; shared memory is never copied.
            let new = old_pa | flags | PTE_P;
            let _ = entry.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire);
            cpu::invlpg(va);
            return Ok(());
        }
        let pa = frame::alloc_user(Zero::No).ok_or(Fault::NoMemory)?;
        // SAFETY: both frames are mapped by the direct map; the new one is
        // ours, the old one is read-only to everyone while shared.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(old_pa) as *const u8,
                phys_to_virt(pa) as *mut u8,
                PAGE_SIZE as usize,
            )
        };
        frame::ref_init(pa);
        let new = pa | flags | PTE_P;
        if entry.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_err() {
            frame::ref_dec(pa);
            frame::free_frame(pa);
            return Ok(());
        }
        cpu::invlpg(va);
        self.drop_frame(old_pa);
        crate::stats::add(crate::stats::Counter::CowFaults, 1);
        // Other vCPUs may still read the old frame through stale entries.
        self.flush.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Makes every page of `[start, start + len)` present (writable when
    /// `write`), faulting them in.
    pub fn populate(&self, start: u64, len: u64, write: bool) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::EFAULT)?;
        let mut va = page_of(start);
        while va < end {
            match self.pt.lookup(va) {
                Some(e) if !write || e & PTE_W != 0 => {}
                _ => self.fault(va, if write { Access::Write } else { Access::Read }).map_err(fault_errno)?,
            }
            va += PAGE_SIZE;
        }
        Ok(())
    }

    /// The guest-physical ranges behind the user buffer `[addr, addr+len)`,
    /// faulted in first (writable when `write`), with physically contiguous
    /// pages merged. The host moves data straight into/out of them.
    pub fn user_frames(&self, addr: u64, len: u64, write: bool, out: &mut Vec<GuestIovec>) -> Result<(), Errno> {
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
        frame::ref_init(pa);
        self.pt.map(va, pa, pte_flags(prot)).ok_or(Errno::ENOMEM)?;
        self.resident.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Maps a frame shared with others (read-only data such as the vDSO):
    /// adds a reference instead of taking ownership.
    pub fn map_shared_frame(&mut self, va: u64, pa: u64, prot: u64) -> Result<(), Errno> {
        frame::ref_inc(pa);
        self.pt.map(va, pa, pte_flags(prot) | PTE_COW).ok_or(Errno::ENOMEM)?;
        self.resident.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The frame mapped at `va`, if any.
    pub fn frame_at(&self, va: u64) -> Option<u64> {
        self.pt.lookup(page_of(va)).map(|e| e & PTE_ADDR)
    }

    /// Iterates over the VMAs in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.map.values().map(|a| &a.vma)
    }

    /// fork: a copy-on-write copy. Writable private pages become read-only in
    /// both spaces and are copied at the first write; shared areas share
    /// their frames. The caller flushes the other vCPUs running this space.
    pub fn fork(&self) -> Option<AddressSpace> {
        let mut child = AddressSpace::new(self.mmap_base)?;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        (child.arg_start, child.arg_end, child.env_start, child.env_end) =
            (self.arg_start, self.arg_end, self.env_start, self.env_end);
        child.writeback = self.writeback.clone();
        child.vmas = self.vmas.clone();
        let mut ok = true;
        let mut count = 0;
        let mut narrowed = 0;
        // A leaf table at a time, entries in a plain loop: the caller holds
        // the exclusive lock, so no fault changes entries meanwhile (an
        // accessed/dirty bit the MMU sets is of no interest), and one TLB
        // flush at the end replaces an INVLPG per page.
        for Area { vma: v, .. } in self.vmas.map.values() {
            let shared = v.backing == Backing::SharedAnon;
            self.pt.for_each_leaf_table(v.start, v.end, |base, table, first, last| {
                let Some(child_table) = child.pt.leaf_table(base + (first as u64) * PAGE_SIZE, true) else {
                    ok = false;
                    return;
                };
                for i in first..last {
                    let e = &table[i];
                    let mut entry = e.load(Ordering::Relaxed);
                    if entry & (PTE_P | PTE_PROTNONE) == 0 {
                        continue;
                    }
                    if !shared {
                        if entry & PTE_P != 0 && entry & PTE_W != 0 {
                            entry = (entry & !PTE_W) | PTE_COW;
                            e.store(entry, Ordering::Relaxed);
                            narrowed += 1;
                        } else if entry & PTE_COW == 0 {
                            entry |= PTE_COW;
                            e.store(entry, Ordering::Relaxed);
                        }
                    }
                    frame::ref_inc(entry & PTE_ADDR);
                    child_table[i].store(entry, Ordering::Relaxed);
                    count += 1;
                }
            });
        }
        if narrowed > 0 {
            super::tlb::flush_local();
        }
        child.resident.store(count, Ordering::Relaxed);
        self.flush.fetch_add(narrowed, Ordering::AcqRel);
        ok.then_some(child)
    }
}

/// The errno a failed fault means for a kernel access.
pub fn fault_errno(f: Fault) -> Errno {
    match f {
        Fault::NoMemory => Errno::ENOMEM,
        _ => Errno::EFAULT,
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        self.write_back(0, USER_END);
        // Nobody runs this space any more (a vCPU that ran it flushed its
        // TLB when it loaded another CR3): free at once, without clearing
        // entries of tables about to be freed. Only the areas' ranges are
        // walked: the whole lower half would read every entry of every table.
        for a in self.vmas.map.values() {
            self.pt.for_each_leaf_table(a.vma.start, a.vma.end, |_, table, first, last| {
                for e in &table[first..last] {
                    let v = e.load(Ordering::Relaxed);
                    if v & (PTE_P | PTE_PROTNONE) != 0 && frame::ref_dec(v & PTE_ADDR) == 0 {
                        frame::free_frame(v & PTE_ADDR);
                    }
                }
            });
        }
        for pa in core::mem::take(&mut *self.deferred.lock()) {
            frame::free_frame(pa);
        }
        self.pt.destroy();
    }
}
