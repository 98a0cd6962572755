//! Exception and interrupt dispatch.

use super::apic;
use super::cpu;
use super::frame::TrapFrame;
use super::percpu;
use super::usercopy;
use crate::mm::addrspace::{Access, Fault};
use crate::task::signal::{self, code};
use crate::task::{self, ExitStatus};
use qlib::layout::USER_END;
use qlib::linux::consts::signal::*;
use qlib::numfmt::ByteBuf;

/// #PF error-code bits.
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_USER: u64 = 1 << 2;
const PF_INSTR: u64 = 1 << 4;

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 floating point",
    "alignment check",
    "machine check",
    "SIMD floating point",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

/// Called by the common entry with the saved frame.
#[no_mangle]
pub extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    if f.vector >= 32 && !f.from_user() {
        // An interrupt between the idle STI and HLT: resume after the HLT so
        // the idle loop re-checks its run queue (see `cpu::wait_for_interrupt`).
        f.rip = cpu::skip_halt(f.rip);
    }
    match f.vector {
        14 => page_fault(f),
        0..=31 => exception(f),
        v if v == apic::TIMER_VECTOR as u64 => {
            percpu::stats().interrupts += 1;
            apic::eoi();
            task::timer::interrupt();
        }
        v if v == crate::mm::tlb::TLB_VECTOR as u64 => {
            percpu::stats().interrupts += 1;
            apic::eoi();
            crate::mm::tlb::service_pending();
        }
        v if v == qlib::hostq::COMPLETION_VECTOR as u64 => {
            percpu::stats().interrupts += 1;
            apic::eoi();
            crate::hostq::interrupt();
        }
        v if v == apic::SPURIOUS_VECTOR as u64 => {}
        _ => {
            // Wake-up IPIs, host events and anything else: acknowledge; the
            // point was to leave HLT or return to user mode through the
            // checks below.
            percpu::stats().interrupts += 1;
            apic::eoi();
            task::poll_host_events();
            task::sched::kicked();
        }
    }
    if f.from_user() && task::has_current() {
        signal::exit_to_user(f);
    }
}

fn page_fault(f: &mut TrapFrame) {
    let addr = cpu::cr2();
    percpu::stats().page_faults += 1;
    let access = if f.error & PF_INSTR != 0 {
        Access::Exec
    } else if f.error & PF_WRITE != 0 {
        Access::Write
    } else {
        Access::Read
    };
    let user_mode = f.error & PF_USER != 0;
    let mm = if addr < USER_END && task::has_current() { task::sched::loaded_mm() } else { None };
    let result = mm.map(|m| m.fault(addr, access));
    match result {
        Some(Ok(())) => return,
        Some(Err(Fault::NoMemory)) if user_mode => {
            crate::klog!(
                crate::log::level::WARN,
                "pid ",
                task::process().pid,
                ": out of memory (sandbox memory limit reached): killed"
            );
            task::exit::exit_group(ExitStatus::Signaled(SIGKILL, false));
        }
        _ => {}
    }
    if user_mode {
        let c = if f.error & PF_PRESENT != 0 || matches!(result, Some(Err(Fault::Protection))) {
            code::SEGV_ACCERR
        } else {
            code::SEGV_MAPERR
        };
        signal::force_fault(SIGSEGV, c, addr);
        return;
    }
    // A kernel access to user memory that cannot be resolved: EFAULT.
    if addr < USER_END {
        if let Some(fixup) = usercopy::fixup_for(f.rip) {
            f.rip = fixup;
            return;
        }
    }
    kernel_fault(f, addr);
}

fn exception(f: &mut TrapFrame) {
    if f.from_user() {
        let (sig, c, addr) = match f.vector {
            0 => (SIGFPE, code::FPE_INTDIV, f.rip),
            1 => (SIGTRAP, code::TRAP_TRACE, f.rip),
            // int3 on VMX/SVM hosts: RIP is already past the instruction.
            3 => (SIGTRAP, code::SI_KERNEL, 0),
            4 | 5 => (SIGSEGV, code::SI_KERNEL, 0),
            6 => {
                // On kvm_pvm hosts INT3 and INT n from user mode arrive as #UD.
                let (sig, c, addr, rip) = signal::decode_invalid_opcode(f);
                f.rip = rip;
                (sig, c, addr)
            }
            16 | 19 => (SIGFPE, fpu_exception_code(f.vector == 19), f.rip),
            17 => (SIGBUS, code::BUS_ADRALN, 0),
            12 => (SIGBUS, code::SI_KERNEL, 0),
            _ => (SIGSEGV, code::SI_KERNEL, 0),
        };
        signal::force_fault(sig, c, addr);
        return;
    }
    kernel_fault(f, cpu::cr2());
}

/// The si_code of an x87 (#MF) or SIMD (#XM) exception: the first unmasked
/// exception flag that is set, in Linux's order (`fpu__exception_code`).
fn fpu_exception_code(simd: bool) -> i32 {
    // The user's registers are still live (the kernel never uses the FPU):
    // snapshot them to read the status and control words.
    let fpu = task::current().fpu();
    fpu.save();
    let img = fpu.legacy();
    let word = |o: usize| u16::from_le_bytes([img[o], img[o + 1]]) as u32;
    let err = if simd {
        let mxcsr = word(24) | (word(26) << 16);
        // Flags in bits 0-5, their masks in bits 7-12.
        !(mxcsr >> 7) & mxcsr & 0x3f
    } else {
        // FSW flags (with the stack fault bit 6) against the FCW masks.
        let (cwd, swd) = (word(0), word(2));
        if swd & !cwd & 0x40 != 0 {
            return code::FPE_FLTINV;
        }
        swd & !cwd & 0x3f
    };
    if err & 0x01 != 0 {
        code::FPE_FLTINV
    } else if err & 0x04 != 0 {
        code::FPE_FLTDIV
    } else if err & 0x08 != 0 {
        code::FPE_FLTOVF
    } else if err & 0x12 != 0 {
        code::FPE_FLTUND
    } else if err & 0x20 != 0 {
        code::FPE_FLTRES
    } else {
        0
    }
}

/// An exception in supervisor mode that nothing handles: a kernel bug.
fn kernel_fault(f: &TrapFrame, cr2: u64) -> ! {
    let mut m = ByteBuf::<512>::new();
    m.push_str("kernel fault: ")
        .push_str(EXCEPTION_NAMES.get(f.vector as usize).copied().unwrap_or("interrupt"))
        .push_str(" (vector ")
        .push_u64(f.vector)
        .push_str(", error ")
        .push_hex(f.error)
        .push_str(") rip ")
        .push_hex(f.rip)
        .push_str(" rsp ")
        .push_hex(f.rsp)
        .push_str(" cr2 ")
        .push_hex(cr2)
        .push_str(" rax ")
        .push_hex(f.rax)
        .push_str(" rdi ")
        .push_hex(f.rdi)
        .push_str(" rsi ")
        .push_hex(f.rsi);
    crate::panic::report(m.as_bytes(), f.rip, f.rsp)
}
