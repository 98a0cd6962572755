//! Read-only access to files beneath the container root, served by the VMM:
//! the minimal host call the program loader needs. The host resolves paths
//! with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) under the root and
//! reads straight into the guest frames we name; it never parses the file.

use crate::hcall;
use qlib::hcall::{Call, GuestIovec, MAX_IOVECS, MAX_PATH};
use qlib::layout::kernel_va_to_pa;
use qlib::linux::types::Stat;
use qlib::linux::Errno;

/// An open host file (closed on drop).
pub struct HostFile {
    handle: u64,
}

impl HostFile {
    /// Opens an absolute path beneath the container root, read-only.
    pub fn open(path: &[u8]) -> Result<HostFile, Errno> {
        if path.len() > MAX_PATH {
            return Err(Errno::ENAMETOOLONG);
        }
        let p = hcall::page();
        p.args[0] = kernel_va_to_pa(path.as_ptr() as u64);
        p.args[1] = path.len() as u64;
        let handle = hcall::call_result(Call::Open)?;
        Ok(HostFile { handle })
    }

    /// fstat.
    pub fn stat(&self) -> Result<Stat, Errno> {
        stat_handle(self.handle)
    }

    /// Reads at `offset` into guest-physical ranges; returns bytes read.
    pub fn pread(&self, offset: u64, iovs: &[GuestIovec]) -> Result<u64, Errno> {
        let mut total = 0;
        let mut off = offset;
        for chunk in iovs.chunks(MAX_IOVECS) {
            let n = hcall::put_iovecs(chunk);
            let p = hcall::page();
            p.args[0] = self.handle;
            p.args[1] = off;
            p.args[2] = n as u64;
            let got = hcall::call_result(Call::Pread)?;
            total += got;
            off += got;
            let want: u64 = chunk.iter().map(|v| v.len).sum();
            if got < want {
                break;
            }
        }
        Ok(total)
    }

    /// Reads into a kernel buffer (the host writes it directly: no guest copy).
    pub fn pread_kernel(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        // The buffer may span frames that are not physically contiguous when
        // it comes from the heap's large blocks; those are contiguous blocks,
        // and small heap objects never cross a frame.
        let iov = GuestIovec { gpa: kernel_va_to_pa(buf.as_mut_ptr() as u64), len: buf.len() as u64 };
        Ok(self.pread(offset, core::slice::from_ref(&iov))? as usize)
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let p = hcall::page();
        p.args[0] = self.handle;
        hcall::call(Call::Close);
    }
}

/// fstat of a host handle (stdio handles are 0, 1, 2).
pub fn stat_handle(handle: u64) -> Result<Stat, Errno> {
    let p = hcall::page();
    p.args[0] = handle;
    hcall::call_result(Call::Fstat)?;
    let mut st = Stat::default();
    // SAFETY: Stat is plain data (144 bytes); the host wrote it at data[0..144].
    unsafe {
        core::ptr::copy_nonoverlapping(p.data.as_ptr(), &mut st as *mut Stat as *mut u8, core::mem::size_of::<Stat>())
    };
    Ok(st)
}
