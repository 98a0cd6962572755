//! A shared anonymous mapping (`mmap(MAP_SHARED | MAP_ANONYMOUS)`), the kind of
//! memory a shared-memory ring lives in. The only `unsafe` of this crate.

use std::ffi::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

pub static MAPPED: AtomicUsize = AtomicUsize::new(0);
pub static UNMAPPED: AtomicUsize = AtomicUsize::new(0);

const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_SHARED: c_int = 1;
const MAP_ANONYMOUS: c_int = 0x20;
const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

extern "C" {
    fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, offset: c_long) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
}

pub struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; concurrent access goes through atomics (`word`)
// or is byte-wise volatile (`fill`), and JS sees it only through an ArrayBuffer.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    pub fn map(len: usize) -> std::io::Result<Region> {
        if len == 0 {
            return Err(std::io::Error::from_raw_os_error(22));
        }
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe { mmap(std::ptr::null_mut(), len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0) };
        if ptr == MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        MAPPED.fetch_add(1, Ordering::SeqCst);
        Ok(Region { ptr: ptr.cast(), len })
    }

    /// The 4-byte word at `offset` (4-aligned, in bounds: checked by the caller).
    pub fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len, "bad word offset {offset}");
        // SAFETY: in bounds and aligned (asserted; mmap returns page-aligned memory); the mapping lives as long
        // as `self`, and all Rust access to it is atomic.
        unsafe { AtomicU32::from_ptr(self.ptr.add(offset).cast()) }
    }

    pub fn fill(&self, byte: u8) {
        for i in 0..self.len {
            // SAFETY: in bounds; volatile so the writes are real stores into memory JS reads concurrently.
            unsafe { self.ptr.add(i).write_volatile(byte) };
        }
    }
}

// SAFETY: the mapping stays at `ptr` with `len` bytes until `Drop` unmaps it, which happens only after the
// last owner (including every ArrayBuffer's) is gone.
unsafe impl napi::ExternalMemory for Region {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, which nothing references any more.
        unsafe { munmap(self.ptr.cast(), self.len) };
        UNMAPPED.fetch_add(1, Ordering::SeqCst);
    }
}
