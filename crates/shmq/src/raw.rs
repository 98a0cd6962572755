//! The raw view of a shared region: the only module of the core with `unsafe`.
//!
//! A [`Region`] is a base address and a length. Everything else in the crate
//! reaches shared memory through the bounds-checked accessors below, by
//! offset: atomics for control words, raw byte copies for payloads. Nothing
//! ever turns shared payload bytes into a Rust reference (`&[u8]`, `&T`): the
//! peer may write them at any time, so they are only copied into private
//! memory (like `copy_from_user`) or handed to the kernel as `iovec`s.
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64};

use crate::error::{Error, Result};
use crate::layout::{Control, CACHE_LINE};

/// Plain old data that may be copied in and out of shared memory as bytes.
///
/// # Safety
/// Implement only for `Copy` types with no padding bytes, no pointers or
/// references, no interior mutability, and for which **every** bit pattern is
/// a valid value (a hostile peer chooses the bytes): integers, arrays of them,
/// `#[repr(C)]` structs of such fields without padding.
pub unsafe trait Pod: Copy + 'static {}

// SAFETY: integers have no padding and every bit pattern is a valid value.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for u128 {}
// SAFETY: as above.
unsafe impl Pod for usize {}
// SAFETY: as above.
unsafe impl Pod for i8 {}
// SAFETY: as above.
unsafe impl Pod for i16 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: as above.
unsafe impl Pod for i128 {}
// SAFETY: as above.
unsafe impl Pod for isize {}
// SAFETY: an array of Pod has no padding between elements (size is a multiple of align) and is valid for any bits.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// A shared memory region seen by this process, addressed by offsets.
///
/// The same bytes may be mapped at different addresses in other processes or
/// in the guest kernel; only offsets ever go into shared memory.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a Region only hands out atomics and performs raw copies; it is as
// thread-safe as the shared memory it describes (which other processes access
// concurrently anyway).
unsafe impl Send for Region {}
// SAFETY: as above: no method relies on exclusive access.
unsafe impl Sync for Region {}

impl core::fmt::Debug for Region {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Region").field("base", &self.base).field("len", &self.len).finish()
    }
}

impl Region {
    /// Describes `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base + len` must stay mapped, readable and writable, for as long
    /// as the returned `Region` and everything borrowed from it live. The
    /// memory may be written concurrently by other processes or the guest, but
    /// this process must access it only through this `Region` (or through
    /// other `Region`s, atomics and raw copies), never through Rust references
    /// that assume exclusive or immutable access.
    pub unsafe fn new(base: *mut u8, len: usize) -> Result<Region> {
        let base = NonNull::new(base).ok_or(Error::InvalidArgument("the shared region's base address is null"))?;
        if base.as_ptr() as usize % CACHE_LINE != 0 {
            return Err(Error::Misaligned { offset: base.as_ptr() as usize, align: CACHE_LINE });
        }
        if len > isize::MAX as usize {
            return Err(Error::InvalidArgument("the shared region is larger than isize::MAX bytes"));
        }
        Ok(Region { base, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base address in this process (for diagnostics and for mapping APIs; never store it in shared memory).
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    fn check(&self, offset: usize, size: usize, align: usize) -> Result<*mut u8> {
        match offset.checked_add(size) {
            Some(end) if end <= self.len => {}
            _ => return Err(Error::OutOfBounds { offset, size, region_len: self.len }),
        }
        if offset % align != 0 {
            return Err(Error::Misaligned { offset, align });
        }
        // SAFETY: offset + size <= len, so the result stays inside (or one past) the mapping.
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }

    /// The 32-bit atomic at `offset` (4-byte aligned, in bounds).
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        let p = self.check(offset, size_of::<AtomicU32>(), align_of::<AtomicU32>())?;
        // SAFETY: p is in bounds and aligned; the memory lives as long as &self
        // (contract of `new`), AtomicU32 has the layout of u32 and is valid for
        // any bits, and all accesses to it go through atomics.
        Ok(unsafe { &*(p as *const AtomicU32) })
    }

    /// The 64-bit atomic at `offset` (8-byte aligned, in bounds).
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        let p = self.check(offset, size_of::<AtomicU64>(), align_of::<AtomicU64>())?;
        // SAFETY: as in atomic_u32, for a u64.
        Ok(unsafe { &*(p as *const AtomicU64) })
    }

    /// The ring control block at `offset` (64-byte aligned, in bounds).
    pub(crate) fn control(&self, offset: usize) -> Result<&Control> {
        let p = self.check(offset, size_of::<Control>(), align_of::<Control>())?;
        // SAFETY: in bounds and aligned; `Control` consists only of AtomicU32
        // fields and arrays (no padding: its size is asserted in layout.rs), so a
        // shared reference to it is valid for any bits and any concurrent
        // atomic writer.
        Ok(unsafe { &*(p as *const Control) })
    }

    /// Copies `src` into the region at `offset`.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<()> {
        let p = self.check(offset, src.len(), 1)?;
        // SAFETY: destination in bounds (checked), source is a private slice
        // that cannot overlap the shared mapping we hand out no references to.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
        Ok(())
    }

    /// Copies bytes at `offset` out of the region into `dst`.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let p = self.check(offset, dst.len(), 1)?;
        // SAFETY: source in bounds; dst is exclusive private memory. A hostile
        // peer writing concurrently can only change which bytes we copy.
        unsafe { core::ptr::copy_nonoverlapping(p as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Fills `len` bytes at `offset` with zeroes.
    pub fn zero(&self, offset: usize, len: usize) -> Result<()> {
        let p = self.check(offset, len, 1)?;
        // SAFETY: in bounds (checked).
        unsafe { core::ptr::write_bytes(p, 0, len) };
        Ok(())
    }

    /// Copies a `Pod` value into the region at `offset` (no alignment needed).
    pub fn write_pod<T: Pod>(&self, offset: usize, value: &T) -> Result<()> {
        let p = self.check(offset, size_of::<T>(), 1)?;
        // SAFETY: in bounds; T: Pod has no padding, so all its bytes are initialised.
        unsafe { core::ptr::copy_nonoverlapping(value as *const T as *const u8, p, size_of::<T>()) };
        Ok(())
    }

    /// Copies a `Pod` value out of the region at `offset` (no alignment needed).
    pub fn read_pod<T: Pod>(&self, offset: usize) -> Result<T> {
        let p = self.check(offset, size_of::<T>(), 1)?;
        let mut v = MaybeUninit::<T>::uninit();
        // SAFETY: in bounds; we write all size_of::<T>() bytes of v, and T: Pod
        // is valid for every bit pattern, so assume_init is sound.
        unsafe {
            core::ptr::copy_nonoverlapping(p as *const u8, v.as_mut_ptr() as *mut u8, size_of::<T>());
            Ok(v.assume_init())
        }
    }

    /// A raw window of `len` bytes at `offset`, for scatter/gather I/O.
    pub fn window(&self, offset: usize, len: usize) -> Result<Window<'_>> {
        let p = self.check(offset, len, 1)?;
        Ok(Window { ptr: p, len, offset, _region: PhantomData })
    }
}

/// A contiguous run of shared bytes that the holder currently owns by the ring
/// protocol (free space for a writer, data for a reader).
///
/// It is deliberately not a `&[u8]`: a hostile peer could write those bytes
/// concurrently. Copy through [`Window::write_at`]/[`Window::read_at`] or pass
/// [`Window::as_ptr`]/[`Window::len`] to the kernel as an `iovec`
/// (`readv`, `writev`, `recvmsg`, `preadv`...).
pub struct Window<'a> {
    ptr: *mut u8,
    len: usize,
    offset: usize,
    _region: PhantomData<&'a Region>,
}

impl core::fmt::Debug for Window<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Window").field("offset", &self.offset).field("len", &self.len).finish()
    }
}

impl Window<'_> {
    /// Address of the first byte in this process (for an `iovec`; never store it in shared memory).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Offset of the first byte in the region.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn check(&self, at: usize, n: usize) -> Result<*mut u8> {
        match at.checked_add(n) {
            Some(end) if end <= self.len => {
                // SAFETY: at + n <= len: inside the window, which is inside the region.
                Ok(unsafe { self.ptr.add(at) })
            }
            _ => Err(Error::InvalidArgument("access beyond the end of a ring window")),
        }
    }

    /// Copies `src` into the window at byte `at`.
    pub fn write_at(&self, at: usize, src: &[u8]) -> Result<()> {
        let p = self.check(at, src.len())?;
        // SAFETY: destination checked to be inside the window; src is private memory.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
        Ok(())
    }

    /// Copies bytes at `at` out of the window into `dst`.
    pub fn read_at(&self, at: usize, dst: &mut [u8]) -> Result<()> {
        let p = self.check(at, dst.len())?;
        // SAFETY: source checked to be inside the window; dst is exclusive private memory.
        unsafe { core::ptr::copy_nonoverlapping(p as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
}

/// Heap-backed regions for unit tests (the real ones are memfd mappings or guest memory).
#[cfg(any(test, feature = "std"))]
pub mod heap {
    extern crate std;
    use std::boxed::Box;
    use std::vec;

    use super::Region;

    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    struct Line([u8; 64]);

    /// A private, 64-byte aligned, zeroed buffer with a `Region` over it. For
    /// tests and for rings shared only between threads of one process.
    pub struct HeapRegion {
        region: Region,
        buf: *mut [Line],
    }

    // SAFETY: the buffer is owned by this value and only reached through the
    // (Send + Sync) Region.
    unsafe impl Send for HeapRegion {}
    // SAFETY: as above.
    unsafe impl Sync for HeapRegion {}

    impl HeapRegion {
        pub fn new(len: usize) -> HeapRegion {
            let lines = len.div_ceil(64).max(1);
            // Leaked into a raw pointer (freed in Drop) so that no Box asserts
            // unique access while the Region aliases the buffer.
            let buf = Box::into_raw(vec![Line([0; 64]); lines].into_boxed_slice());
            let base = buf as *mut u8;
            // SAFETY: the buffer is 64-byte aligned, at least `len` bytes long,
            // lives until Drop (the Region is only lent out borrowed from self),
            // and is never referenced otherwise.
            let region = unsafe { Region::new(base, len) }.expect("aligned heap buffer");
            HeapRegion { region, buf }
        }
    }

    impl Drop for HeapRegion {
        fn drop(&mut self) {
            // SAFETY: `buf` came from Box::into_raw in new() and is freed once;
            // no borrow of the Region outlives self.
            drop(unsafe { Box::from_raw(self.buf) });
        }
    }

    impl core::ops::Deref for HeapRegion {
        type Target = Region;
        fn deref(&self) -> &Region {
            &self.region
        }
    }
}

#[cfg(test)]
mod tests {
    use super::heap::HeapRegion;
    use super::*;

    #[test]
    fn accessors_check_bounds_and_alignment() {
        let r = HeapRegion::new(128);
        assert!(r.atomic_u32(124).is_ok());
        assert_eq!(r.atomic_u32(126).err(), Some(Error::OutOfBounds { offset: 126, size: 4, region_len: 128 }));
        assert_eq!(r.atomic_u32(2).err(), Some(Error::Misaligned { offset: 2, align: 4 }));
        assert!(matches!(r.atomic_u64(usize::MAX - 3), Err(Error::OutOfBounds { .. })));
        assert!(r.control(0).is_err(), "a 256-byte control block does not fit in 128 bytes");
        assert!(r.write_bytes(120, &[1; 9]).is_err());
        r.write_bytes(120, &[7; 8]).unwrap();
        let mut b = [0u8; 8];
        r.read_bytes(120, &mut b).unwrap();
        assert_eq!(b, [7; 8]);
        r.write_pod(3, &0x1122_3344_5566_7788u64).unwrap();
        assert_eq!(r.read_pod::<u64>(3).unwrap(), 0x1122_3344_5566_7788);
        assert!(r.read_pod::<[u64; 2]>(120).is_err());
        let w = r.window(100, 20).unwrap();
        w.write_at(18, &[1, 2]).unwrap();
        assert!(w.write_at(19, &[1, 2]).is_err());
        let mut two = [0u8; 2];
        w.read_at(18, &mut two).unwrap();
        assert_eq!(two, [1, 2]);
        assert!(r.window(100, 29).is_err());
    }

    #[test]
    fn region_rejects_misaligned_or_null_base() {
        let h = HeapRegion::new(256);
        // SAFETY: the pointer is inside a live buffer; we only expect the constructor to reject it.
        let e = unsafe { Region::new(h.base().add(8), 64) }.err();
        assert!(matches!(e, Some(Error::Misaligned { align: 64, .. })));
        // SAFETY: a null base is rejected before any use.
        let e = unsafe { Region::new(core::ptr::null_mut(), 64) }.err();
        assert!(matches!(e, Some(Error::InvalidArgument(_))));
    }
}
