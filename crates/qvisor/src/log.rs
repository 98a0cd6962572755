//! The sandbox log file: every diagnostic of the VMM and the guest kernel
//! goes here, never to the program's stdout/stderr.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A log sink (a file; or nothing, which discards). Clones share the file.
#[derive(Clone)]
pub struct Log {
    file: Arc<Mutex<Option<File>>>,
    start_ns: u64,
}

/// Names of the guest's log levels.
pub fn level_name(level: u64) -> &'static str {
    match level {
        0 => "error",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    }
}

impl Log {
    /// Logs to `file`.
    pub fn new(file: Option<File>) -> Log {
        Log { file: Arc::new(Mutex::new(file)), start_ns: crate::sys::clock_ns(crate::sys::CLOCK_MONOTONIC) }
    }

    /// Appends one line: `[  0.123456] <source> <level>: <message>`.
    pub fn line(&self, source: &str, level: &str, msg: &str) {
        let t = crate::sys::clock_ns(crate::sys::CLOCK_MONOTONIC).saturating_sub(self.start_ns);
        let text = format!("[{:4}.{:06}] {source} {level}: {msg}\n", t / 1_000_000_000, (t % 1_000_000_000) / 1000);
        if let Ok(mut g) = self.file.lock() {
            if let Some(f) = g.as_mut() {
                let _ = f.write_all(text.as_bytes());
            }
        }
    }

    /// A VMM line.
    pub fn vmm(&self, level: &str, msg: &str) {
        self.line("vmm", level, msg);
    }
}
