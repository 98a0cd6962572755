//! Kernel diagnostics, sent to the sandbox log file through the VMM (never
//! to the program's stdout/stderr). No `core::fmt`: see `qlib::numfmt`.
//!
//! `klog!(level, "text", value, hex(value), ...)` appends each argument with
//! [`LogArg`] and sends one line.

use qlib::hcall::{Call, DATA_SIZE};
use qlib::numfmt::ByteBuf;

/// Log levels (the host prefixes the line with the name).
pub mod level {
    pub const ERROR: u64 = 0;
    pub const WARN: u64 = 1;
    pub const INFO: u64 = 2;
    pub const DEBUG: u64 = 3;
}

/// A log line under construction.
pub type Line = ByteBuf<512>;

/// Something that can be appended to a log line.
pub trait LogArg {
    fn append(&self, line: &mut Line);
}

impl LogArg for &str {
    fn append(&self, line: &mut Line) {
        line.push_str(self);
    }
}
impl LogArg for &[u8] {
    fn append(&self, line: &mut Line) {
        line.push_bytes(self);
    }
}
impl LogArg for u64 {
    fn append(&self, line: &mut Line) {
        line.push_u64(*self);
    }
}
impl LogArg for usize {
    fn append(&self, line: &mut Line) {
        line.push_u64(*self as u64);
    }
}
impl LogArg for u32 {
    fn append(&self, line: &mut Line) {
        line.push_u64(*self as u64);
    }
}
impl LogArg for i64 {
    fn append(&self, line: &mut Line) {
        line.push_i64(*self);
    }
}
impl LogArg for i32 {
    fn append(&self, line: &mut Line) {
        line.push_i64(*self as i64);
    }
}

/// Formats a number in hexadecimal.
pub struct Hex(pub u64);
impl LogArg for Hex {
    fn append(&self, line: &mut Line) {
        line.push_hex(self.0);
    }
}

/// Sends a finished line to the host.
pub fn send(level: u64, line: &Line) {
    let p = crate::hcall::page();
    let n = line.len().min(DATA_SIZE);
    p.data[..n].copy_from_slice(&line.as_bytes()[..n]);
    p.args[0] = level;
    p.args[1] = n as u64;
    crate::hcall::call(Call::Log);
}

/// True when verbose (debug) logging is on.
pub fn debug_enabled() -> bool {
    crate::boot::params().flags & qlib::boot::flags::DEBUG != 0
}

/// Logs a line: `klog!(level::INFO, "x=", x, " y=", Hex(y))`.
#[macro_export]
macro_rules! klog {
    ($lvl:expr, $($arg:expr),+ $(,)?) => {{
        let lvl = $lvl;
        if lvl <= $crate::log::level::INFO || $crate::log::debug_enabled() {
            let mut line = $crate::log::Line::new();
            $( $crate::log::LogArg::append(&$arg, &mut line); )+
            $crate::log::send(lvl, &line);
        }
    }};
}
