//! Kernel panics: the message, source location, RIP and RSP go to the host,
//! which scans the kernel stack for return addresses, symbolises them, prints
//! the report to the sandbox log and stderr, and ends the sandbox non-zero.

use crate::arch::x86_64::cpu;
use core::panic::PanicInfo;
use qlib::hcall::{Call, DATA_SIZE};
use qlib::numfmt::ByteBuf;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let mut msg = ByteBuf::<1024>::new();
    msg.push_str("kernel panic: ");
    // Only literal messages are available without core::fmt (which uses SSE).
    match info.message().as_str() {
        Some(s) => msg.push_str(s),
        None => msg.push_str("(formatted message unavailable)"),
    };
    if let Some(loc) = info.location() {
        msg.push_str(" at ").push_str(loc.file()).push_str(":").push_u64(loc.line() as u64);
    }
    report(msg.as_bytes(), cpu::instruction_pointer(), cpu::stack_pointer())
}

/// Sends a panic report for a fault or assertion and stops this vCPU.
pub fn report(msg: &[u8], rip: u64, rsp: u64) -> ! {
    let p = crate::hcall::page();
    let n = msg.len().min(qlib::hcall::PANIC_FRAMES_OFFSET).min(DATA_SIZE);
    p.data[..n].copy_from_slice(&msg[..n]);
    p.args[0] = n as u64;
    p.args[1] = rip;
    p.args[2] = rsp;
    p.args[3] = 0;
    crate::hcall::call(Call::Panic);
    cpu::halt_forever()
}
