//! x86-64: entry/exit paths, CPU instructions, per-CPU data, traps, the local
//! APIC and user-memory access with exception fixups.
pub mod apic;
pub mod cpu;
pub mod entry;
pub mod fpu;
pub mod frame;
pub mod percpu;
pub mod switch;
pub mod trap;
pub mod usercopy;
