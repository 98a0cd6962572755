//! Memory-mapping system calls.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::copy_to_user;
use crate::task;
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
    let [addr, len, prot, flags, _fd, off] = args(f);
    if !off.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    match flags & MAP_TYPE {
        MAP_PRIVATE | MAP_SHARED | MAP_SHARED_VALIDATE => {}
        _ => return Err(Errno::EINVAL),
    }
    if flags & MAP_ANONYMOUS == 0 {
        // File mappings arrive with the VFS; no descriptor is mappable yet.
        return Err(Errno::ENODEV);
    }
    with_space(|s| s.map_anon(addr, len, prot, flags))
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
    with_space(|s| s.remap(old, old_len, new_len, flags, new_addr))
}

pub fn brk(f: &mut TrapFrame) -> SysResult {
    with_space(|s| Ok(s.set_brk(f.rdi)))
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
