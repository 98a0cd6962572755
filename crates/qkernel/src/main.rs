//! qkernel: the Quark guest kernel.
//!
//! Runs in the sandbox VM's supervisor mode and implements the Linux x86-64
//! system-call ABI for unmodified programs running in guest user mode. See
//! README.md in this crate and docs/architecture.md for the design.
#![no_std]
#![no_main]

extern crate alloc;

pub mod arch;
pub mod boot;
pub mod fs;
pub mod hcall;
pub mod hostfile;
pub mod hostq;
pub mod loader;
pub mod log;
pub mod mem;
pub mod mm;
pub mod net;
pub mod panic;
pub mod random;
pub mod selftest;
pub mod stats;
pub mod sync;
pub mod syscalls;
pub mod task;
pub mod time;

use arch::x86_64::cpu;
use log::level;
use qlib::boot::{flags, ABI_VERSION, BOOT_MAGIC};

#[global_allocator]
static HEAP: mm::heap::KernelHeap = mm::heap::KernelHeap;

#[cfg(feature = "planted-sse")]
#[no_mangle]
#[inline(never)]
pub extern "C" fn planted_sse() {
    // SAFETY: never executed (see kmain); exists so the image check has an
    // SSE instruction to find.
    unsafe { core::arch::asm!("pxor xmm0, xmm0") };
}

/// Set by the boot vCPU once the kernel is initialised; the others wait.
static BOOTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// First Rust code on every vCPU (called from `_start`).
#[no_mangle]
pub extern "C" fn kmain(vcpu: u64, params: u64) -> ! {
    if vcpu != 0 {
        // Wait (halted) until the boot vCPU has initialised the kernel.
        while !BOOTED.load(core::sync::atomic::Ordering::Acquire) {
            cpu::wait_for_interrupt();
        }
        task::sched::idle_loop(vcpu as usize)
    }
    // SAFETY: the host passes the direct-map address of BootParams in RSI.
    unsafe { boot::init(params) };
    let p = boot::params();
    if p.magic != BOOT_MAGIC || p.abi_version != ABI_VERSION {
        panic!("boot parameters do not match this kernel's ABI version: rebuild quark-sandbox and qkernel together");
    }
    #[cfg(feature = "planted-sse")]
    if p.flags & (1 << 63) != 0 {
        // Never true (the host never sets bit 63); keeps the planted
        // instruction reachable so the linker does not discard it.
        planted_sse();
    }
    mm::frame::init(p.free_start, p.free_end);
    random::init(&p.seed);
    if p.flags & flags::USE_XSAVE != 0 {
        // SAFETY: only set by the host on VMX/SVM hosts with the XCR0 it
        // computed from the CPUID it gave us.
        unsafe { cpu::xsetbv(p.xcr0) };
    }
    task::exit::init();
    hostq::init();
    mm::vdso::init();
    let args = boot::InitArgs::read();
    task::set_hostname(args.hostname());
    if let Err(e) = fs::hostfs::init(p.flags & flags::READ_ONLY_ROOT != 0) {
        panic!("cannot reach the VMM's file service: {}", e.description());
    }
    fs::init();
    if p.flags & flags::CHECK_ONLY != 0 {
        selftest::start();
    } else if let Err((errno, path)) = task::init::spawn_init(&args) {
        klog!(level::ERROR, "cannot start ", &path[..], ": ", errno.description());
        // After the log call, which reuses the VMM-call page.
        let pg = hcall::page();
        let n = path.len().min(qlib::hcall::DATA_SIZE);
        pg.data[..n].copy_from_slice(&path[..n]);
        pg.args[2] = n as u64;
        hcall::exit(qlib::hcall::ExitKind::ExecFailed, errno.0 as u64)
    }
    BOOTED.store(true, core::sync::atomic::Ordering::Release);
    for c in 1..p.vcpu_count {
        arch::x86_64::apic::send_ipi(c, arch::x86_64::apic::WAKE_VECTOR);
    }
    task::sched::idle_loop(0)
}
