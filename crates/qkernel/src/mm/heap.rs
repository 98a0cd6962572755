//! The kernel heap (`#[global_allocator]`): power-of-two size classes from
//! 16 to 2048 bytes carved from single frames, and whole frame blocks for
//! anything larger. Slabs never return to the frame allocator; large blocks
//! do.

use super::frame::{self, Zero};
use crate::sync::SpinLock;
use core::alloc::{GlobalAlloc, Layout};
use qlib::layout::{phys_to_virt, virt_to_phys, PAGE_SIZE};

const CLASSES: usize = 8; // 16, 32, ..., 2048
const MIN_SHIFT: u32 = 4;

struct Heap {
    free: [u64; CLASSES],
}

static HEAP: SpinLock<Heap> = SpinLock::new(Heap { free: [0; CLASSES] });

/// The kernel's global allocator.
pub struct KernelHeap;

fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    if size > 2048 {
        return None;
    }
    let shift = usize::BITS - (size - 1).leading_zeros();
    Some((shift - MIN_SHIFT) as usize)
}

// SAFETY: allocations are disjoint (each object is on exactly one free list or
// handed out), aligned to their size class (slabs are page aligned and
// objects are multiples of the class size), and all state is behind a lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > PAGE_SIZE as usize {
            return core::ptr::null_mut();
        }
        match class_of(&layout) {
            Some(c) => {
                let mut h = HEAP.lock();
                if h.free[c] == 0 {
                    let Some(pa) = frame::alloc_frame(Zero::No) else {
                        return core::ptr::null_mut();
                    };
                    let base = phys_to_virt(pa);
                    let size = 16u64 << c;
                    let mut off = PAGE_SIZE;
                    while off >= size {
                        off -= size;
                        // SAFETY: the slab frame is ours; each object's first
                        // word holds the free-list link.
                        unsafe { *((base + off) as *mut u64) = h.free[c] };
                        h.free[c] = base + off;
                    }
                }
                let obj = h.free[c];
                // SAFETY: `obj` heads the list; its first word is the link.
                h.free[c] = unsafe { *(obj as *const u64) };
                obj as *mut u8
            }
            None => match frame::alloc(frame::order_for(layout.size() as u64), Zero::No) {
                Some(pa) => phys_to_virt(pa) as *mut u8,
                None => core::ptr::null_mut(),
            },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(&layout).is_none() && layout.align() <= PAGE_SIZE as usize {
            // Large zeroed blocks come from the zero pool without writing.
            return match frame::alloc(frame::order_for(layout.size() as u64), Zero::Yes) {
                Some(pa) => phys_to_virt(pa) as *mut u8,
                None => core::ptr::null_mut(),
            };
        }
        // SAFETY: same contract as alloc.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: `p` is valid for layout.size() bytes.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of(&layout) {
            Some(c) => {
                let mut h = HEAP.lock();
                // SAFETY: `ptr` came from this class; reuse its first word.
                unsafe { *(ptr as *mut u64) = h.free[c] };
                h.free[c] = ptr as u64;
            }
            None => frame::free(virt_to_phys(ptr as u64), frame::order_for(layout.size() as u64)),
        }
    }
}
