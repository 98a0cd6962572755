//! Exception and interrupt dispatch.

use super::apic;
use super::cpu;
use super::frame::TrapFrame;
use super::percpu;
use super::usercopy;
use crate::mm::addrspace::Access;
use crate::task;
use qlib::layout::USER_END;
use qlib::linux::consts::signal::*;
use qlib::numfmt::ByteBuf;

/// #PF error-code bits.
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
    match f.vector {
        14 => page_fault(f),
        0..=31 => exception(f),
        v if v == apic::TIMER_VECTOR as u64 || v == apic::WAKE_VECTOR as u64 => {
            percpu::stats().interrupts += 1;
            apic::eoi();
        }
        v if v == apic::SPURIOUS_VECTOR as u64 => {}
        _ => {
            percpu::stats().interrupts += 1;
            apic::eoi();
        }
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
    if addr < USER_END && task::has_current() {
        let resolved = task::current().process.mm.lock().fault(addr, access).is_ok();
        if resolved {
            return;
        }
    }
    if user_mode {
        task::signal::force_fault(f, SIGSEGV, addr);
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
        let sig = match f.vector {
            0 | 16 | 19 => SIGFPE,
            1 | 3 => SIGTRAP,
            6 => SIGILL,
            17 => SIGBUS,
            _ => SIGSEGV,
        };
        task::signal::force_fault(f, sig, f.rip);
    }
    kernel_fault(f, cpu::cr2());
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
