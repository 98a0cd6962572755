//! hostfs handles: the shared generational table of [`crate::handles`].

pub use crate::handles::{Full, Handle, Table};
