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
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<FdEntry>>,
}

impl FdTable {
    /// No descriptors.
    pub fn empty() -> FdTable {
        FdTable { slots: Vec::new() }
    }

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

    /// Installs `e` at the lowest free descriptor `>= min` below `limit`.
    pub fn install(&mut self, e: FdEntry, min: u64, limit: u64) -> Result<u64, Errno> {
        let mut i = min as usize;
        while i < self.slots.len() && self.slots[i].is_some() {
            i += 1;
        }
        if i as u64 >= limit {
            return Err(Errno::EMFILE);
        }
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(e);
        Ok(i as u64)
    }

    /// Installs `e` at exactly `fd` (dup2), closing what was there.
    pub fn install_at(&mut self, e: FdEntry, fd: u64, limit: u64) -> Result<(), Errno> {
        if fd >= limit {
            return Err(Errno::EBADF);
        }
        let i = fd as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(e);
        Ok(())
    }

    /// Sets or clears close-on-exec.
    pub fn set_cloexec(&mut self, fd: u64, on: bool) -> Result<(), Errno> {
        match self.slots.get_mut(fd as usize) {
            Some(Some(e)) => {
                e.cloexec = on;
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// execve: closes the descriptors marked close-on-exec.
    pub fn close_on_exec(&mut self) {
        for s in self.slots.iter_mut() {
            if s.is_some_and(|e| e.cloexec) {
                *s = None;
            }
        }
    }

    /// Open descriptors (for /proc and close_range).
    pub fn open_fds(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as u64)
    }
}
