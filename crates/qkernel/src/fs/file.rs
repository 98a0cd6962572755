//! Open file descriptions and descriptor tables.

use super::path::Path;
use super::{FileOps, InodeRef};
use crate::sync::SpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use qlib::linux::consts::fcntl::*;
use qlib::linux::Errno;

/// Status flags that F_SETFL may change.
pub const SETFL_MASK: u32 = (O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME | 0o20000/* O_ASYNC */) as u32;

/// An open file description (shared by descriptors dup'ed from one open).
pub struct File {
    pub ops: Arc<dyn FileOps>,
    pub inode: Option<InodeRef>,
    pub path: Option<Path>,
    /// Access mode and status flags (O_RDONLY/O_WRONLY/O_RDWR, O_APPEND,
    /// O_NONBLOCK, O_PATH...).
    pub flags: AtomicU32,
    pub pos: SpinLock<u64>,
}

impl File {
    /// A description over `ops`.
    pub fn new(ops: Arc<dyn FileOps>, inode: Option<InodeRef>, path: Option<Path>, flags: u32) -> Arc<File> {
        Arc::new(File { ops, inode, path, flags: AtomicU32::new(flags), pos: SpinLock::new(0) })
    }

    /// Current flags.
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Opened for reading.
    pub fn readable(&self) -> bool {
        let f = self.flags();
        f & O_PATH as u32 == 0 && (f & O_ACCMODE as u32) != O_WRONLY as u32
    }

    /// Opened for writing.
    pub fn writable(&self) -> bool {
        let f = self.flags();
        f & O_PATH as u32 == 0 && (f & O_ACCMODE as u32) != O_RDONLY as u32
    }

    /// O_NONBLOCK is set.
    pub fn nonblocking(&self) -> bool {
        self.flags() & O_NONBLOCK as u32 != 0
    }
}

impl Drop for File {
    fn drop(&mut self) {
        self.ops.release(self);
    }
}

/// One descriptor slot.
#[derive(Clone)]
pub struct FdEntry {
    pub file: Arc<File>,
    pub cloexec: bool,
}

/// A process's descriptors.
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<FdEntry>>,
    /// Every slot below this index is in use (the lowest free descriptor is
    /// at or above it), so `install` does not rescan a full table.
    free_hint: usize,
}

impl FdTable {
    /// No descriptors.
    pub fn empty() -> FdTable {
        FdTable { slots: Vec::new(), free_hint: 0 }
    }

    /// The file behind `fd`.
    pub fn get(&self, fd: u64) -> Result<Arc<File>, Errno> {
        self.slots.get(fd as usize).and_then(|s| s.as_ref()).map(|e| e.file.clone()).ok_or(Errno::EBADF)
    }

    /// The entry of `fd`.
    pub fn entry(&self, fd: u64) -> Result<FdEntry, Errno> {
        self.slots.get(fd as usize).and_then(|s| s.clone()).ok_or(Errno::EBADF)
    }

    /// The first process's table: 0, 1 and 2 on the sandbox's stdio.
    pub fn with_stdio() -> FdTable {
        let mk = |fd: u8, flags: u64| {
            let f = File::new(Arc::new(super::stdio::Stdio { fd }), None, None, flags as u32);
            Some(FdEntry { file: f, cloexec: false })
        };
        FdTable { slots: alloc::vec![mk(0, O_RDONLY), mk(1, O_WRONLY), mk(2, O_WRONLY)], free_hint: 3 }
    }

    /// Closes `fd`; returns the file (dropped by the caller outside the lock).
    pub fn close(&mut self, fd: u64) -> Result<Arc<File>, Errno> {
        match self.slots.get_mut(fd as usize) {
            Some(slot @ Some(_)) => {
                let f = slot.take().expect("checked").file;
                self.free_hint = self.free_hint.min(fd as usize);
                Ok(f)
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// Installs `file` at the lowest free descriptor `>= min` below `limit`.
    pub fn install(&mut self, file: Arc<File>, cloexec: bool, min: u64, limit: u64) -> Result<u64, Errno> {
        let mut i = (min as usize).max(self.free_hint);
        while i < self.slots.len() && self.slots[i].is_some() {
            i += 1;
        }
        if i as u64 >= limit {
            return Err(Errno::EMFILE);
        }
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(FdEntry { file, cloexec });
        if i == self.free_hint {
            self.free_hint = i + 1;
        }
        Ok(i as u64)
    }

    /// Installs `file` at exactly `fd` (dup2); returns what was there.
    pub fn install_at(
        &mut self,
        file: Arc<File>,
        cloexec: bool,
        fd: u64,
        limit: u64,
    ) -> Result<Option<Arc<File>>, Errno> {
        if fd >= limit {
            return Err(Errno::EBADF);
        }
        let i = fd as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        Ok(self.slots[i].replace(FdEntry { file, cloexec }).map(|e| e.file))
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

    /// execve: closes the descriptors marked close-on-exec; returns them.
    pub fn close_on_exec(&mut self) -> Vec<Arc<File>> {
        let mut closed = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.as_ref().is_some_and(|e| e.cloexec) {
                if let Some(e) = s.take() {
                    self.free_hint = self.free_hint.min(i);
                    closed.push(e.file);
                }
            }
        }
        closed
    }

    /// Closes descriptors in `[first, last]` (close_range); returns them.
    pub fn close_range(&mut self, first: u64, last: u64, cloexec_only: bool) -> Vec<Arc<File>> {
        let mut closed = Vec::new();
        let end = (last as usize).min(self.slots.len().saturating_sub(1));
        if first as usize >= self.slots.len() {
            return closed;
        }
        for s in self.slots[first as usize..=end].iter_mut() {
            if cloexec_only {
                if let Some(e) = s.as_mut() {
                    e.cloexec = true;
                }
            } else if let Some(e) = s.take() {
                closed.push(e.file);
            }
        }
        if !cloexec_only {
            self.free_hint = self.free_hint.min(first as usize);
        }
        closed
    }

    /// Open descriptors.
    pub fn open_fds(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as u64)
    }

    /// Number of open descriptors.
    pub fn count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}
