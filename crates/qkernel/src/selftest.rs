//! `quark check`'s in-guest platform check: runs a tiny built-in user
//! program that makes system calls, so the report shows how SYSCALL arrives
//! on this host (directly, or through the compat-mode #PF redirect).

use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::percpu;
use crate::mm::addrspace::{AddressSpace, Backing, Vma};
use crate::mm::frame::{self, Zero};
use crate::mm::Mm;
use crate::task::{self, pid, Creds};
use alloc::vec::Vec;
use qlib::layout::{phys_to_virt, PAGE_SIZE};
use qlib::linux::consts::mman::{PROT_EXEC, PROT_READ, PROT_WRITE};

/// Number of getpid calls the check makes.
pub const CHECK_SYSCALLS: u32 = 100;

const CODE_VA: u64 = 0x40_0000;
const STACK_VA: u64 = 0x50_0000;

/// `mov $N,%ebx; 1: mov $39,%eax; syscall; dec %ebx; jnz 1b;
///  mov $231,%eax; xor %edi,%edi; syscall`
fn program() -> [u8; 27] {
    let n = CHECK_SYSCALLS.to_le_bytes();
    [
        0xbb, n[0], n[1], n[2], n[3], // mov $N, %ebx
        0xb8, 39, 0, 0, 0, // mov $39, %eax
        0x0f, 0x05, // syscall
        0xff, 0xcb, // dec %ebx
        0x75, 0xf5, // jnz -11
        0xb8, 231, 0, 0, 0, // mov $231, %eax
        0x31, 0xff, // xor %edi, %edi
        0x0f, 0x05, // syscall
        0x0f, 0x0b, // ud2 (never reached)
    ]
}

/// Queues the check program as PID 1; its exit_group reports and ends the sandbox.
pub fn start() {
    let mut space = AddressSpace::new(0x7f00_0000_0000).expect("memory for the check's address space");
    space.insert(Vma {
        start: CODE_VA,
        end: CODE_VA + PAGE_SIZE,
        prot: PROT_READ | PROT_EXEC,
        backing: Backing::Anon,
        grows_down: false,
    });
    space.insert(Vma {
        start: STACK_VA,
        end: STACK_VA + PAGE_SIZE,
        prot: PROT_READ | PROT_WRITE,
        backing: Backing::Anon,
        grows_down: false,
    });
    let code = frame::alloc_frame(Zero::Yes).expect("a frame for the check program");
    let bytes = program();
    // SAFETY: the frame was just allocated and is exclusively ours.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys_to_virt(code) as *mut u8, bytes.len()) };
    space.map_frame(CODE_VA, code, PROT_READ | PROT_EXEC).expect("mapping the check program");
    let tid = pid::alloc().expect("an id for the check program");
    let process = task::init::new_process(tid, Mm::from_space(space), Creds::initial(0, 0), Vec::new(), b"/".to_vec());
    task::init::start(process, tid, TrapFrame { rip: CODE_VA, rsp: STACK_VA + PAGE_SIZE, ..TrapFrame::default() })
        .expect("starting the check program");
}

/// Reports how the check's system calls arrived (called at its exit).
pub fn report() {
    let s = percpu::stats();
    let p = crate::hcall::page();
    p.args[0] = s.syscalls_via_pf;
    p.args[1] = s.syscalls - s.syscalls_via_pf;
    crate::hcall::call(qlib::hcall::Call::Report);
}
