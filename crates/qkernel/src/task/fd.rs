//! File-descriptor tables: see `crate::fs::file`.

pub use crate::fs::file::{FdEntry, FdTable, File};
