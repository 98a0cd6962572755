//! Guest memory: one memfd mapped once into the VMM and registered as the
//! VM's single memory slot at guest-physical 0.
//!
//! **All guest-supplied addresses are untrusted.** The only way to reach
//! guest memory is through [`GuestMemory`]'s checked accessors: a
//! (gpa, len) pair is checked for overflow and against the memory size
//! before any host pointer is formed, and requests are copied out into host
//! memory once before they are validated and used. A guest-physical address
//! is never dereferenced as a host pointer.

use crate::sys::{self, Errno, Mapping};
use qlib::hcall::GuestIovec;
use std::os::fd::{AsRawFd, OwnedFd};

/// Why guest memory could not be set up or accessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryError {
    /// The requested size exceeds what the CPU's physical address width allows.
    TooLarge { size: u64, max: u64 },
    /// Creating or sizing the memfd, or mapping it, failed.
    Host { op: &'static str, errno: Errno },
    /// A guest-supplied range lies (partly) outside guest memory.
    OutOfRange { gpa: u64, len: u64 },
}

impl std::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryError::TooLarge { size, max } => write!(
                f,
                "guest memory of {} MiB exceeds this CPU's limit of {} MiB: choose a smaller --memory",
                size >> 20,
                max >> 20
            ),
            MemoryError::Host { op, errno } => {
                write!(f, "{op} for guest memory failed: {} ({})", errno.description(), errno.name())
            }
            MemoryError::OutOfRange { gpa, len } => {
                write!(f, "guest range {gpa:#x}+{len:#x} lies outside guest memory")
            }
        }
    }
}

impl std::error::Error for MemoryError {}

/// Plain-old-data types that may be copied to and from guest memory: every
/// bit pattern is a valid value and there is no padding that matters.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers (and arrays of them).
pub unsafe trait Pod: Copy + Default {}

// SAFETY: integers and arrays of integers accept every bit pattern.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for [u64; 8] {}
// SAFETY: repr(C) structs of integers (qlib asserts their layouts).
unsafe impl Pod for qlib::boot::BootParams {}
// SAFETY: as above.
unsafe impl Pod for qlib::boot::InitBlock {}
// SAFETY: as above.
unsafe impl Pod for qlib::linux::types::Stat {}
// SAFETY: as above.
unsafe impl Pod for qlib::hcall::GuestIovec {}
// SAFETY: as above.
unsafe impl Pod for qlib::stats::VcpuStats {}

/// The largest guest-physical address width (MAXPHYADDR) of this CPU, from
/// CPUID 0x80000008.
pub fn max_phys_bits() -> u32 {
    let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    if max_ext >= 0x8000_0008 {
        core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff
    } else {
        36
    }
}

/// Guest RAM.
pub struct GuestMemory {
    fd: OwnedFd,
    map: Mapping,
}

impl GuestMemory {
    /// Creates `size` bytes of zero-filled guest memory (pages materialise
    /// on first touch).
    pub fn new(size: u64) -> Result<GuestMemory, MemoryError> {
        let max = 1u64 << max_phys_bits().min(52);
        if size == 0 || size > max || !size.is_multiple_of(qlib::layout::PAGE_SIZE) {
            return Err(MemoryError::TooLarge { size, max });
        }
        let fd =
            sys::memfd_create(c"quark-guest-ram").map_err(|errno| MemoryError::Host { op: "memfd_create", errno })?;
        sys::ftruncate(fd.as_raw_fd(), size).map_err(|errno| MemoryError::Host { op: "ftruncate", errno })?;
        let map = Mapping::new(fd.as_raw_fd(), size, sys::PROT_RW, true)
            .map_err(|errno| MemoryError::Host { op: "mmap", errno })?;
        Ok(GuestMemory { fd, map })
    }

    /// Bytes of guest memory.
    pub fn size(&self) -> u64 {
        self.map.len()
    }

    /// Host address of guest-physical 0 (only for KVM_SET_USER_MEMORY_REGION).
    pub fn host_base(&self) -> u64 {
        self.map.addr()
    }

    /// The memfd (for hole punching and accounting).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Checks `[gpa, gpa+len)` and returns the host address of `gpa`.
    pub fn check(&self, gpa: u64, len: u64) -> Result<u64, MemoryError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size() => Ok(self.map.addr() + gpa),
            _ => Err(MemoryError::OutOfRange { gpa, len }),
        }
    }

    /// Copies guest memory out into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let hva = self.check(gpa, buf.len() as u64)?;
        // SAFETY: the range is inside our mapping; the guest may change it
        // concurrently, which only affects the bytes we copy, never safety.
        unsafe { std::ptr::copy_nonoverlapping(hva as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into guest memory.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let hva = self.check(gpa, data.len() as u64)?;
        // SAFETY: the range is inside our mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), hva as *mut u8, data.len()) };
        Ok(())
    }

    /// Reads a plain-data value (copied out once).
    pub fn read_obj<T: Pod>(&self, gpa: u64) -> Result<T, MemoryError> {
        let hva = self.check(gpa, std::mem::size_of::<T>() as u64)?;
        // SAFETY: in range; T accepts any bit pattern; unaligned read.
        Ok(unsafe { (hva as *const T).read_unaligned() })
    }

    /// Writes a plain-data value.
    pub fn write_obj<T: Pod>(&self, gpa: u64, v: &T) -> Result<(), MemoryError> {
        let hva = self.check(gpa, std::mem::size_of::<T>() as u64)?;
        // SAFETY: in range; unaligned write of plain data.
        unsafe { (hva as *mut T).write_unaligned(*v) };
        Ok(())
    }

    /// Turns guest ranges into host iovecs for readv/writev, checking each.
    /// The iovecs point into the guest mapping: pass them only to the
    /// kernel (which tolerates concurrent guest writes), never to Rust code.
    pub fn host_iovecs(&self, ranges: &[GuestIovec]) -> Result<Vec<[u64; 2]>, MemoryError> {
        ranges.iter().map(|r| self.check(r.gpa, r.len).map(|hva| [hva, r.len])).collect()
    }

    /// A shmq view of `[gpa, gpa+len)` (64-byte aligned), for rings shared
    /// with the guest. Valid as long as this `GuestMemory` lives: the caller
    /// keeps it (e.g. through `Arc<Services>`) while the region is in use.
    pub fn region(&self, gpa: u64, len: u64) -> Result<shmq::Region, MemoryError> {
        let hva = self.check(gpa, len)?;
        // SAFETY: the range lies inside our mapping, which stays mapped while
        // `self` lives (the caller's obligation above). shmq reaches it only
        // through atomics and raw copies, never through Rust references to
        // plain data, so the guest writing it concurrently is fine.
        unsafe { shmq::Region::new(hva as *mut u8, len as usize) }.map_err(|_| MemoryError::OutOfRange { gpa, len })
    }

    /// Releases the host pages behind `[gpa, gpa+len)`; they read as zero
    /// afterwards (fallocate PUNCH_HOLE on the memfd).
    pub fn punch_hole(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        self.check(gpa, len)?;
        const FALLOC_FL_KEEP_SIZE: u64 = 1;
        const FALLOC_FL_PUNCH_HOLE: u64 = 2;
        // SAFETY: integer arguments on our own memfd.
        unsafe {
            sys::syscall6(
                sys::nr::FALLOCATE,
                self.fd.as_raw_fd() as u64,
                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                gpa,
                len,
                0,
                0,
            )
        }
        .map(|_| ())
        .map_err(|errno| MemoryError::Host { op: "fallocate(PUNCH_HOLE)", errno })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let m = GuestMemory::new(1 << 20).unwrap();
        assert!(m.check(0, 1 << 20).is_ok());
        assert!(m.check(1, 1 << 20).is_err());
        assert!(m.check(u64::MAX, 2).is_err(), "overflow is refused");
        assert!(m.check((1 << 20) - 8, 8).is_ok());
        m.write_obj(0x100, &0x1122_3344_5566_7788u64).unwrap();
        assert_eq!(m.read_obj::<u64>(0x100).unwrap(), 0x1122_3344_5566_7788);
        assert!(m.read_obj::<u64>((1 << 20) - 4).is_err());
        let r = m.host_iovecs(&[GuestIovec { gpa: 0, len: 16 }, GuestIovec { gpa: 1 << 20, len: 1 }]);
        assert_eq!(r, Err(MemoryError::OutOfRange { gpa: 1 << 20, len: 1 }));
    }

    #[test]
    fn fresh_memory_is_zero_and_holes_read_zero() {
        let m = GuestMemory::new(1 << 20).unwrap();
        assert_eq!(m.read_obj::<u64>(0x8000).unwrap(), 0);
        m.write(0x8000, &[0xab; 4096]).unwrap();
        m.punch_hole(0x8000, 4096).unwrap();
        assert_eq!(m.read_obj::<u64>(0x8000).unwrap(), 0);
    }

    #[test]
    fn sizes_beyond_the_cpu_limit_are_refused() {
        assert!(matches!(GuestMemory::new(1 << 60), Err(MemoryError::TooLarge { .. })));
        assert!(matches!(GuestMemory::new(0), Err(MemoryError::TooLarge { .. })));
    }
}
