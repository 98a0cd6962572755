//! Memory management: physical frames, the kernel heap, page tables, user
//! address spaces and TLB shootdown. See README.md in this directory.
pub mod addrspace;
pub mod frame;
pub mod heap;
pub mod pagetable;
pub mod tlb;
pub mod vdso;

use crate::sync::RwLock;
use addrspace::{Access, AddressSpace, Fault};
use alloc::sync::Arc;
use core::sync::atomic::AtomicU64;

pub use frame::{alloc_frame, free_frame, Zero};

/// An address space shared by the threads of a process: the VMAs and page
/// tables behind an upgradable reader-writer lock, and the set of vCPUs that
/// have it loaded (for TLB shootdowns).
pub struct Mm {
    pub space: RwLock<AddressSpace>,
    /// vCPUs with this address space in CR3 (bit per vCPU).
    pub active: AtomicU64,
    root: u64,
}

impl Mm {
    /// A new, empty address space.
    pub fn new(mmap_base: u64) -> Option<Arc<Mm>> {
        Some(Self::from_space(AddressSpace::new(mmap_base)?))
    }

    /// Wraps an address space built elsewhere (exec, fork).
    pub fn from_space(space: AddressSpace) -> Arc<Mm> {
        let root = space.root();
        Arc::new(Mm { space: RwLock::new(space), active: AtomicU64::new(0), root })
    }

    /// The CR3 value.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Completes a change made under the lock (call after releasing it):
    /// makes other vCPUs drop stale translations, then frees the frames the
    /// change released.
    pub fn finish(&self) {
        let (pages, frames, objects) = self.space.read().take_deferred();
        if pages > 0 && tlb::shootdown(&self.active) {
            crate::stats::add(crate::stats::Counter::TlbPages, pages);
        }
        for pa in frames {
            frame::free_frame(pa);
        }
        drop(objects);
    }

    /// Resolves a page fault at a user address (shared lock; exclusive only
    /// to extend a grows-down area).
    pub fn fault(&self, addr: u64, access: Access) -> Result<(), Fault> {
        let r = {
            let s = self.space.read();
            let r = s.fault(addr, access);
            // Only a copy-on-write break leaves work for `finish`; skip its
            // locks otherwise (this is the hottest path of all).
            if r.is_ok() && !s.has_deferred() {
                return r;
            }
            r
        };
        let r = match r {
            Err(Fault::Grow) => {
                // A stack grows down to RLIMIT_STACK at most.
                let limit = if crate::task::has_current() {
                    crate::task::process().rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_STACK as usize].cur
                } else {
                    u64::MAX
                };
                self.space.write().grow_down(addr, limit).map_err(|_| Fault::Unmapped)?;
                self.space.read().fault(addr, access)
            }
            other => other,
        };
        self.finish();
        r
    }
}
