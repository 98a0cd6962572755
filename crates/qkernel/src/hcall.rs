//! Synchronous calls to the VMM (see `qlib::hcall` for the protocol).

use crate::arch::x86_64::{cpu, percpu};
use qlib::hcall::{Call, GuestIovec, HcallPage, MAX_IOVECS};
use qlib::layout::port;
use qlib::linux::Errno;

/// This vCPU's VMM-call page.
#[inline(always)]
pub fn page() -> &'static mut HcallPage {
    // SAFETY: the host set `hcall` to this vCPU's VMM-call page (direct map);
    // only this vCPU uses it, and calls do not nest (interrupts are off in the
    // kernel).
    unsafe { &mut *(percpu::this_cpu().hcall as *mut HcallPage) }
}

/// Performs a call whose request is already in the page; returns `ret`.
#[inline]
pub fn call(c: Call) -> i64 {
    percpu::stats().hcalls += 1;
    cpu::vmm_call(port::HCALL, c as u32);
    // The host wrote `ret` during the exit.
    // SAFETY: reading our own page; volatile because the write came from outside.
    unsafe { core::ptr::read_volatile(&page().ret) }
}

/// Performs a call and converts `-errno` results.
#[inline]
pub fn call_result(c: Call) -> Result<u64, Errno> {
    let r = call(c);
    match Errno::from_ret(r) {
        Some(e) => Err(e),
        None => Ok(r as u64),
    }
}

/// Stores iovecs in the page's data area; returns how many were stored.
pub fn put_iovecs(iovs: &[GuestIovec]) -> usize {
    let p = page();
    let n = iovs.len().min(MAX_IOVECS);
    for (i, v) in iovs[..n].iter().enumerate() {
        let o = i * 16;
        p.data[o..o + 8].copy_from_slice(&v.gpa.to_le_bytes());
        p.data[o + 8..o + 16].copy_from_slice(&v.len.to_le_bytes());
    }
    n
}

/// Writes guest-physical ranges to a host stdio descriptor.
pub fn write_stdio(fd: u64, iovs: &[GuestIovec]) -> Result<u64, Errno> {
    let n = put_iovecs(iovs);
    let p = page();
    p.args[0] = fd;
    p.args[1] = n as u64;
    call_result(Call::Write)
}

/// Tells the host the sandbox is over. Never returns.
pub fn exit(kind: qlib::hcall::ExitKind, code: u64) -> ! {
    let p = page();
    p.args[0] = kind as u64;
    p.args[1] = code;
    call(Call::Exit);
    cpu::halt_forever()
}

/// Hands free guest frames back to the host; they read as zero afterwards.
pub fn discard(iovs: &[GuestIovec]) -> Result<u64, Errno> {
    let n = put_iovecs(iovs);
    page().args[0] = n as u64;
    call_result(Call::Discard)
}

/// Has the host fill guest frames with random bytes; returns bytes written.
pub fn random(iovs: &[GuestIovec]) -> Result<u64, Errno> {
    let n = put_iovecs(iovs);
    page().args[0] = n as u64;
    call_result(Call::Random)
}
