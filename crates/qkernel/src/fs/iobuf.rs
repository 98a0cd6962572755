//! The user buffers of one read/write call (one or more iovecs), consumed
//! front to back. File systems either copy through it (in-guest data:
//! tmpfs, pipes, procfs) or take the guest frames behind it so the host
//! moves the bytes itself (hostfs, host sockets, stdio) — no guest copy.

use crate::arch::x86_64::usercopy::{copy_from_user, copy_to_user};
use crate::task;
use alloc::vec::Vec;
use qlib::hcall::GuestIovec;
use qlib::linux::Errno;

/// Most bytes one call moves (Linux's MAX_RW_COUNT).
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// A cursor over user memory segments, or over a kernel buffer (for
/// kernel-internal reads such as loading a program).
pub struct IoBuf {
    segs: Vec<(u64, u64)>,
    /// Index of the current segment and the offset in it.
    seg: usize,
    off: u64,
    total: u64,
    done: u64,
    /// Kernel buffer mode: addresses are kernel virtual addresses.
    kernel: bool,
}

impl IoBuf {
    /// User segments `(address, length)`, capped at MAX_RW_COUNT in total.
    pub fn user(segs: Vec<(u64, u64)>) -> IoBuf {
        let mut total = 0u64;
        let segs: Vec<(u64, u64)> = segs
            .into_iter()
            .map(|(a, l)| {
                let l = l.min(MAX_RW_COUNT - total);
                total += l;
                (a, l)
            })
            .filter(|s| s.1 > 0)
            .collect();
        IoBuf { segs, seg: 0, off: 0, total, done: 0, kernel: false }
    }

    /// One user segment.
    pub fn user_one(addr: u64, len: u64) -> IoBuf {
        Self::user(alloc::vec![(addr, len)])
    }

    /// A kernel buffer.
    pub fn kernel(buf: &mut [u8]) -> IoBuf {
        let len = buf.len() as u64;
        IoBuf { segs: alloc::vec![(buf.as_mut_ptr() as u64, len)], seg: 0, off: 0, total: len, done: 0, kernel: true }
    }

    /// True for a kernel buffer ([`IoBuf::kernel`]).
    pub fn is_kernel(&self) -> bool {
        self.kernel
    }

    /// Bytes in total.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when zero-length.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> u64 {
        self.total - self.done
    }

    /// Bytes consumed so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        self.off += n;
        while self.seg < self.segs.len() && self.off >= self.segs[self.seg].1 {
            self.off -= self.segs[self.seg].1;
            self.seg += 1;
        }
    }

    /// Copies `data` into the buffer (a read); returns bytes copied. A fault
    /// after some bytes returns the short count; before any, EFAULT.
    pub fn write_from(&mut self, data: &[u8]) -> Result<usize, Errno> {
        let mut copied = 0usize;
        while copied < data.len() && self.seg < self.segs.len() {
            let (a, l) = self.segs[self.seg];
            let n = ((l - self.off) as usize).min(data.len() - copied);
            let dst = a + self.off;
            if self.kernel {
                // SAFETY: kernel buffers come from IoBuf::kernel over a live slice.
                unsafe { core::ptr::copy_nonoverlapping(data[copied..].as_ptr(), dst as *mut u8, n) };
                crate::arch::x86_64::percpu::stats().copied_bytes += n as u64;
            } else if let Err(e) = copy_to_user(dst, &data[copied..copied + n]) {
                return if copied == 0 { Err(e) } else { Ok(copied) };
            }
            copied += n;
            self.advance(n as u64);
        }
        Ok(copied)
    }

    /// Copies from the buffer into `out` (a write); returns bytes copied.
    pub fn read_into(&mut self, out: &mut [u8]) -> Result<usize, Errno> {
        let mut copied = 0usize;
        while copied < out.len() && self.seg < self.segs.len() {
            let (a, l) = self.segs[self.seg];
            let n = ((l - self.off) as usize).min(out.len() - copied);
            let src = a + self.off;
            if self.kernel {
                // SAFETY: kernel buffers come from IoBuf::kernel over a live slice.
                unsafe { core::ptr::copy_nonoverlapping(src as *const u8, out[copied..].as_mut_ptr(), n) };
                crate::arch::x86_64::percpu::stats().copied_bytes += n as u64;
            } else if let Err(e) = copy_from_user(&mut out[copied..copied + n], src) {
                return if copied == 0 { Err(e) } else { Ok(copied) };
            }
            copied += n;
            self.advance(n as u64);
        }
        Ok(copied)
    }

    /// The guest-physical ranges behind the next `max` unconsumed bytes
    /// (faulted in; writable when `fill`), for the host to move data itself.
    /// Stops at the first bad page; EFAULT when none is good. Does not
    /// consume: call [`IoBuf::consume`] with what the host moved.
    pub fn frames(&self, max: u64, fill: bool) -> Result<Vec<GuestIovec>, Errno> {
        // Room for a few ranges at once: no regrowth for the common buffer.
        let mut out = Vec::with_capacity(4);
        let mut want = max.min(self.remaining());
        if self.kernel {
            let mut i = self.seg;
            let mut off = self.off;
            while want > 0 && i < self.segs.len() {
                let (a, l) = self.segs[i];
                let n = (l - off).min(want);
                out.push(GuestIovec { gpa: qlib::layout::kernel_va_to_pa(a + off), len: n });
                want -= n;
                off = 0;
                i += 1;
            }
            return Ok(out);
        }
        let mm = task::mm();
        let deferred = {
            let space = mm.space.read();
            let mut i = self.seg;
            let mut off = self.off;
            while want > 0 && i < self.segs.len() {
                let (a, l) = self.segs[i];
                let n = (l - off).min(want);
                match space.user_frames(a + off, n, fill, &mut out) {
                    Ok(()) => {}
                    Err(e) if out.is_empty() => {
                        drop(space);
                        mm.finish();
                        return Err(e);
                    }
                    Err(_) => break,
                }
                want -= n;
                off = 0;
                i += 1;
            }
            // Only a copy-on-write break while faulting pages in leaves work
            // for `finish` (as in `Mm::fault`); skip its locks otherwise.
            space.has_deferred()
        };
        if deferred {
            mm.finish();
        }
        Ok(out)
    }

    /// Marks `n` bytes consumed (after the host moved them).
    pub fn consume(&mut self, n: u64) {
        self.advance(n.min(self.remaining()));
    }
}
