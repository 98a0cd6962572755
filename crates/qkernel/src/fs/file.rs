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
///
/// Allocation is Linux's "lowest free descriptor" rule without a linear scan:
/// a bitmap of used slots is searched a 64-bit word at a time, starting at
/// `next_free`, below which every slot is known to be used. Opening the
/// 3000th descriptor costs a few instructions, not 3000 slot checks (each
/// supervisor instruction counts: emulated ones cost ~1 µs on some hosts).
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<FdEntry>>,
    /// Bit `i % 64` of word `i / 64` is set when slot `i` holds a file.
    used: Vec<u64>,
    /// Every slot below this one is used (a lower bound of the lowest free).
    next_free: usize,
}

impl FdTable {
    /// No descriptors.
    pub fn empty() -> FdTable {
        FdTable::default()
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
        let mut t = FdTable::empty();
        for (fd, flags) in [(0u8, O_RDONLY), (1, O_WRONLY), (2, O_WRONLY)] {
            let f = File::new(Arc::new(super::stdio::Stdio { fd }), None, None, flags as u32);
            t.put(fd as usize, FdEntry { file: f, cloexec: false });
        }
        t
    }

    /// Stores `e` in slot `i` (growing the table) and marks it used;
    /// returns what was there.
    fn put(&mut self, i: usize, e: FdEntry) -> Option<FdEntry> {
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        let words = i / 64 + 1;
        if self.used.len() < words {
            self.used.resize(words, 0);
        }
        self.used[i / 64] |= 1 << (i % 64);
        self.slots[i].replace(e)
    }

    /// Empties slot `i` (which exists); returns what was there.
    fn take(&mut self, i: usize) -> Option<FdEntry> {
        let e = self.slots[i].take();
        if e.is_some() {
            self.used[i / 64] &= !(1 << (i % 64));
            self.next_free = self.next_free.min(i);
        }
        e
    }

    /// The lowest unused slot `>= min` (possibly past the end of the table).
    fn lowest_free(&self, min: usize) -> usize {
        let start = min.max(self.next_free);
        let mut w = start / 64;
        // Slots below `start` in its word count as used.
        let mut below = (1u64 << (start % 64)) - 1;
        while w < self.used.len() {
            let free = !(self.used[w] | below);
            if free != 0 {
                return w * 64 + free.trailing_zeros() as usize;
            }
            below = 0;
            w += 1;
        }
        start.max(self.used.len() * 64)
    }

    /// Closes `fd`; returns the file (dropped by the caller outside the lock).
    pub fn close(&mut self, fd: u64) -> Result<Arc<File>, Errno> {
        let i = fd as usize;
        if i >= self.slots.len() {
            return Err(Errno::EBADF);
        }
        self.take(i).map(|e| e.file).ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free descriptor `>= min` below `limit`.
    pub fn install(&mut self, file: Arc<File>, cloexec: bool, min: u64, limit: u64) -> Result<u64, Errno> {
        let i = self.lowest_free(min as usize);
        if i as u64 >= limit {
            return Err(Errno::EMFILE);
        }
        self.put(i, FdEntry { file, cloexec });
        if i == self.next_free {
            self.next_free = i + 1;
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
        let old = self.put(i, FdEntry { file, cloexec }).map(|e| e.file);
        if i == self.next_free {
            self.next_free = i + 1;
        }
        Ok(old)
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
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|e| e.cloexec) {
                if let Some(e) = self.take(i) {
                    closed.push(e.file);
                }
            }
        }
        closed
    }

    /// Closes descriptors in `[first, last]` (close_range); returns them.
    pub fn close_range(&mut self, first: u64, last: u64, cloexec_only: bool) -> Vec<Arc<File>> {
        let mut closed = Vec::new();
        if first as usize >= self.slots.len() {
            return closed;
        }
        let end = (last as usize).min(self.slots.len() - 1);
        for i in first as usize..=end {
            if cloexec_only {
                if let Some(e) = self.slots[i].as_mut() {
                    e.cloexec = true;
                }
            } else if let Some(e) = self.take(i) {
                closed.push(e.file);
            }
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
