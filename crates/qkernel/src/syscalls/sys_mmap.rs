//! Memory-mapping system calls.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::task;
use qlib::layout::PAGE_SIZE;
use qlib::linux::consts::mman::*;
use qlib::linux::Errno;

pub fn mmap(f: &mut TrapFrame) -> SysResult {
    let [addr, len, prot, flags, _fd, off] = args(f);
    if off % PAGE_SIZE != 0 {
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
    // Without fork there is no second process to share with, so a shared
    // anonymous mapping behaves exactly like a private one.
    task::current().process.mm.lock().map_anon(addr, len, prot, flags)
}

pub fn munmap(f: &mut TrapFrame) -> SysResult {
    let [addr, len, ..] = args(f);
    task::current().process.mm.lock().unmap(addr, len)?;
    Ok(0)
}

pub fn mprotect(f: &mut TrapFrame) -> SysResult {
    let [addr, len, prot, ..] = args(f);
    task::current().process.mm.lock().protect(addr, len, prot)?;
    Ok(0)
}

pub fn brk(f: &mut TrapFrame) -> SysResult {
    Ok(task::current().process.mm.lock().set_brk(f.rdi))
}

pub fn madvise(f: &mut TrapFrame) -> SysResult {
    let [addr, len, advice, ..] = args(f);
    if addr % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    match advice {
        MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED | MADV_FREE | MADV_DONTNEED => {}
        // Other advice (hugepages, merging, ...) is accepted as a no-op like a
        // kernel without those features would for valid numbers.
        0..=100 => {}
        _ => return Err(Errno::EINVAL),
    }
    if advice == MADV_DONTNEED || advice == MADV_FREE {
        task::current().process.mm.lock().discard(addr, len)?;
    }
    Ok(0)
}
