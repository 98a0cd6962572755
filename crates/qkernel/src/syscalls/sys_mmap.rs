//! Memory-mapping system calls.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::copy_to_user;
use crate::mm::frame::{self, Zero};
use crate::task;
use alloc::vec::Vec;
use qlib::layout::PAGE_SIZE;
use qlib::linux::consts::mman::*;
use qlib::linux::Errno;

/// Runs `op` on the current address space under the exclusive lock, then
/// completes it (TLB shootdown, freeing frames) after releasing the lock.
fn with_space<R>(op: impl FnOnce(&mut crate::mm::addrspace::AddressSpace) -> Result<R, Errno>) -> Result<R, Errno> {
    let mm = task::mm();
    let r = op(&mut mm.space.write());
    mm.finish();
    r
}

pub fn mmap(f: &mut TrapFrame) -> SysResult {
    let [addr, len, prot, flags, fd, off] = args(f);
    if !off.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    match flags & MAP_TYPE {
        MAP_PRIVATE | MAP_SHARED | MAP_SHARED_VALIDATE => {}
        _ => return Err(Errno::EINVAL),
    }
    let data = flags & MAP_TYPE == MAP_PRIVATE && prot & PROT_WRITE != 0 && flags & MAP_GROWSDOWN == 0;
    let pages = qlib::layout::align_up(len, PAGE_SIZE).ok_or(Errno::ENOMEM)?;
    check_vm_limits(&task::mm().space.read(), pages, if data { pages } else { 0 })?;
    if flags & MAP_ANONYMOUS == 0 {
        return map_file(addr, len, prot, flags, fd, off);
    }
    with_space(|s| s.map_anon(addr, len, prot, flags))
}

/// RLIMIT_AS and RLIMIT_DATA: ENOMEM when adding `more` bytes of address
/// space, `more_data` of them private and writable, would pass a limit.
fn check_vm_limits(s: &crate::mm::addrspace::AddressSpace, more: u64, more_data: u64) -> Result<(), Errno> {
    use qlib::linux::consts::rlimit::{RLIMIT_AS, RLIMIT_DATA};
    let (as_limit, data_limit) = {
        let l = task::process().rlimits.lock();
        (l[RLIMIT_AS as usize].cur, l[RLIMIT_DATA as usize].cur)
    };
    if as_limit == u64::MAX && data_limit == u64::MAX {
        return Ok(());
    }
    let (total, data) = s.vm_usage();
    if total.saturating_add(more) > as_limit || (more_data > 0 && data.saturating_add(more_data) > data_limit) {
        return Err(Errno::ENOMEM);
    }
    Ok(())
}

/// mmap of a file. Private mappings (and shared read-only ones, which
/// nobody can write through) are filled from the file when mapped: the host
/// reads the file bytes straight into fresh frames, past the end of the file
/// the pages stay zero. Shared writable mappings of in-memory files map the
/// file's own frames. Shared writable mappings of host files need a page
/// cache with write-back and are refused (ENODEV) for now.
fn map_file(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> SysResult {
    use crate::fs::FileType;
    use qlib::hcall::GuestIovec;
    let file = crate::syscalls::sys_file::file(fd)?;
    if !file.readable() {
        return Err(Errno::EACCES);
    }
    let inode = file.inode.clone().ok_or(Errno::ENODEV)?;
    if inode.file_type() != FileType::Regular {
        return Err(Errno::ENODEV);
    }
    let shared = flags & MAP_TYPE != MAP_PRIVATE;
    if shared && prot & PROT_WRITE != 0 && !file.writable() {
        return Err(Errno::EACCES);
    }
    if let Some(p) = &file.path {
        if prot & PROT_EXEC != 0 && p.mnt.noexec() {
            return Err(Errno::EPERM);
        }
    }
    let len_pages = qlib::layout::align_up(len, PAGE_SIZE).ok_or(Errno::ENOMEM)?;
    off.checked_add(len_pages).ok_or(Errno::EOVERFLOW)?;
    let size = inode.stat()?.st_size as u64;
    let writable_shared = shared && prot & PROT_WRITE != 0;
    // Shared writable mappings of host files: the frames are filled from
    // the file now, shared with forked children, and written back on msync,
    // munmap and exit. (Writes through write(2) meanwhile are not seen in
    // the mapping: there is no page cache shared with the file yet.)
    let host_shared = writable_shared && file.ops.host_file().is_some();
    let anon_flags = if writable_shared { flags } else { (flags & !MAP_TYPE) | MAP_PRIVATE };
    let mm = task::mm();
    let r = (|| {
        let mut s = mm.space.write();
        if !writable_shared {
            // Private (or read-only shared): pages come from the file when
            // first touched, a few at a time.
            let fr = crate::mm::addrspace::FileRef { file: file.clone(), off };
            let start = s.map_file_private(addr, len, prot, anon_flags, fr)?;
            if flags & MAP_POPULATE != 0 {
                let _ = s.populate(start, len_pages.min(size.saturating_sub(off)), false);
            }
            return Ok(start);
        }
        let start = s.map_anon(addr, len, prot, anon_flags & !MAP_POPULATE)?;
        if prot == PROT_NONE {
            return Ok(start);
        }
        let file_end = size.saturating_sub(off).min(len_pages);
        let mut va = start;
        if host_shared {
            s.writeback.push(crate::mm::addrspace::WriteBack {
                start,
                end: start + len_pages,
                off,
                file: file.clone(),
            });
        }
        if writable_shared && !host_shared {
            // In-memory file: its frames are the mapping.
            while va < start + file_end {
                let pa = file.ops.page(&file, (off + (va - start)) / PAGE_SIZE)?;
                s.map_shared_frame(va, pa, prot)?;
                va += PAGE_SIZE;
            }
            return Ok(start);
        }
        let mut iovs: Vec<GuestIovec> = Vec::new();
        if host_shared && file_end > 0 {
            // The area's shared object owns the frames (fork and mremap
            // aliases see the same ones): fault them in, then fill them.
            s.populate(start, file_end, true)?;
        }
        while va < start + file_end {
            let pa = if host_shared {
                s.frame_at(va).ok_or(Errno::ENOMEM)?
            } else {
                let pa = frame::alloc_frame(Zero::Yes).ok_or(Errno::ENOMEM)?;
                s.map_frame(va, pa, prot)?;
                pa
            };
            match iovs.last_mut() {
                Some(last) if last.gpa + last.len == pa => last.len += PAGE_SIZE,
                _ => iovs.push(GuestIovec { gpa: pa, len: PAGE_SIZE }),
            }
            va += PAGE_SIZE;
        }
        // Only the file's bytes: the tail of the last page stays zero.
        let want = size.saturating_sub(off).min(file_end);
        let mut left = want;
        for v in iovs.iter_mut() {
            v.len = v.len.min(left);
            left -= v.len;
        }
        iovs.retain(|v| v.len > 0);
        if want > 0 {
            crate::fs::read_frames(&file, off, &iovs)?;
        }
        Ok(start)
    })();
    mm.finish();
    r
}

pub fn munmap(f: &mut TrapFrame) -> SysResult {
    let [addr, len, ..] = args(f);
    with_space(|s| s.unmap(addr, len)).map(|_| 0)
}

pub fn mprotect(f: &mut TrapFrame) -> SysResult {
    let [addr, len, prot, ..] = args(f);
    with_space(|s| s.protect(addr, len, prot)).map(|_| 0)
}

pub fn mremap(f: &mut TrapFrame) -> SysResult {
    let [old, old_len, new_len, flags, new_addr, _] = args(f);
    with_space(|s| {
        if new_len > old_len {
            check_vm_limits(s, new_len - old_len, 0)?;
        }
        s.remap(old, old_len, new_len, flags, new_addr)
    })
}

pub fn brk(f: &mut TrapFrame) -> SysResult {
    with_space(|s| {
        // Growing past RLIMIT_DATA (the heap's size) or RLIMIT_AS fails:
        // brk then returns the old break.
        let (old_end, new_end) = (page_up(s.brk), page_up(f.rdi));
        if f.rdi > s.brk {
            let heap = page_up(f.rdi) - s.brk_start;
            let data_limit = task::process().rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_DATA as usize].cur;
            if heap > data_limit || (new_end > old_end && check_vm_limits(s, new_end - old_end, 0).is_err()) {
                return Ok(s.brk);
            }
        }
        Ok(s.set_brk(f.rdi))
    })
}

fn page_up(a: u64) -> u64 {
    qlib::layout::align_up(a, PAGE_SIZE).unwrap_or(u64::MAX)
}

pub fn madvise(f: &mut TrapFrame) -> SysResult {
    let [addr, len, advice, ..] = args(f);
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    match advice {
        MADV_DONTNEED | MADV_FREE => with_space(|s| s.discard(addr, len)).map(|_| 0),
        // Other valid advice is a hint this kernel may ignore.
        0..=25 | 100..=103 => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn msync(f: &mut TrapFrame) -> SysResult {
    let [addr, len, flags, ..] = args(f);
    const MS_ASYNC: u64 = 1;
    const MS_INVALIDATE: u64 = 2;
    const MS_SYNC: u64 = 4;
    if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 || flags & (MS_ASYNC | MS_SYNC) == (MS_ASYNC | MS_SYNC) {
        return Err(Errno::EINVAL);
    }
    task::mm().space.read().msync(addr, len).map(|_| 0)
}

pub fn mincore(f: &mut TrapFrame) -> SysResult {
    let [addr, len, vec, ..] = args(f);
    let v = task::mm().space.read().mincore(addr, len)?;
    copy_to_user(vec, &v)?;
    Ok(0)
}
