//! File-descriptor tables. Until the VFS exists, a descriptor refers to one
//! of the sandbox's host stdio streams.

use alloc::vec::Vec;
use qlib::linux::Errno;

/// What a descriptor refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    /// Host stdin/stdout/stderr (0, 1, 2), served by the VMM.
    Stdio(u8),
}

/// One descriptor slot.
#[derive(Clone, Copy, Debug)]
pub struct FdEntry {
    pub file: File,
    pub cloexec: bool,
}

/// A process's descriptors.
pub struct FdTable {
    slots: Vec<Option<FdEntry>>,
}

impl FdTable {
    /// The first process's table: 0, 1, 2 on the host stdio.
    pub fn with_stdio() -> FdTable {
        let e = |n| Some(FdEntry { file: File::Stdio(n), cloexec: false });
        FdTable { slots: alloc::vec![e(0), e(1), e(2)] }
    }

    /// The entry for `fd`.
    pub fn get(&self, fd: u64) -> Result<FdEntry, Errno> {
        self.slots.get(fd as usize).copied().flatten().ok_or(Errno::EBADF)
    }

    /// Closes `fd`.
    pub fn close(&mut self, fd: u64) -> Result<(), Errno> {
        match self.slots.get_mut(fd as usize) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }
}
