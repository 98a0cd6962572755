//! tmpfs: files in guest memory. File data lives in frames (the page cache
//! of the file), so MAP_SHARED mappings share those frames with the file.

use super::file::File;
use super::iobuf::IoBuf;
use super::pipe::Pipe;
use super::{new_ino, DirEntry, FileOps, FileType, Inode, InodeRef, SetAttr, Statfs, TimeChange};
use crate::mm::frame::{self, Zero};
use crate::sync::SpinLock;
use crate::task::Creds;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use qlib::layout::{phys_to_virt, PAGE_SIZE};
use qlib::linux::consts::mode::*;
use qlib::linux::types::{Stat, Timespec};
use qlib::linux::Errno;

const TMPFS_MAGIC: u64 = 0x0102_1994;
/// Largest tmpfs file.
const MAX_FILE_SIZE: u64 = 1 << 40;

/// Attributes.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    rdev: u64,
    atime: Timespec,
    mtime: Timespec,
    ctime: Timespec,
}

enum Data {
    Dir(SpinLock<BTreeMap<Vec<u8>, InodeRef>>),
    File(SpinLock<Pages>),
    Symlink(Vec<u8>),
    Fifo(Arc<Pipe>),
    /// Device nodes and sockets carry no data here.
    Special,
}

/// The frames of a regular file (holes read as zero).
#[derive(Default)]
struct Pages {
    size: u64,
    frames: BTreeMap<u64, u64>,
}

impl Pages {
    fn truncate(&mut self, size: u64) {
        let first_gone = size.div_ceil(PAGE_SIZE);
        let gone: Vec<u64> = self.frames.range(first_gone..).map(|(k, _)| *k).collect();
        for k in gone {
            if let Some(pa) = self.frames.remove(&k) {
                if frame::ref_dec(pa) == 0 {
                    frame::free_frame(pa);
                }
            }
        }
        // Zero the tail of the last page so a later extension reads zeros.
        if !size.is_multiple_of(PAGE_SIZE) {
            if let Some(&pa) = self.frames.get(&(size / PAGE_SIZE)) {
                let off = size % PAGE_SIZE;
                // SAFETY: the frame belongs to this file; direct map.
                unsafe { core::ptr::write_bytes((phys_to_virt(pa) + off) as *mut u8, 0, (PAGE_SIZE - off) as usize) };
            }
        }
        self.size = size;
    }

    fn frame(&mut self, index: u64) -> Result<u64, Errno> {
        if let Some(&pa) = self.frames.get(&index) {
            return Ok(pa);
        }
        let pa = frame::alloc_frame(Zero::Yes).ok_or(Errno::ENOSPC)?;
        frame::ref_init(pa);
        self.frames.insert(index, pa);
        Ok(pa)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.truncate(0);
    }
}

/// A tmpfs inode.
pub struct TmpInode {
    ino: u64,
    kind: FileType,
    meta: SpinLock<Meta>,
    data: Data,
}

fn now() -> Timespec {
    Timespec::from_ns(crate::time::realtime_ns())
}

impl TmpInode {
    fn new(kind: FileType, mode: u32, uid: u32, gid: u32, data: Data) -> Arc<TmpInode> {
        let t = now();
        Arc::new(TmpInode {
            ino: new_ino(),
            kind,
            meta: SpinLock::new(Meta {
                mode: kind.mode_bits() | (mode & 0o7777),
                uid,
                gid,
                nlink: if kind == FileType::Directory { 2 } else { 1 },
                rdev: 0,
                atime: t,
                mtime: t,
                ctime: t,
            }),
            data,
        })
    }

    fn dir(&self) -> Result<&SpinLock<BTreeMap<Vec<u8>, InodeRef>>, Errno> {
        match &self.data {
            Data::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn touch_dir(&self) {
        let t = now();
        let mut m = self.meta.lock();
        m.mtime = t;
        m.ctime = t;
    }

    fn add(&self, name: &[u8], inode: InodeRef) -> Result<InodeRef, Errno> {
        let mut d = self.dir()?.lock();
        if d.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        if inode.file_type() == FileType::Directory {
            self.meta.lock().nlink += 1;
        }
        d.insert(name.to_vec(), inode.clone());
        drop(d);
        self.touch_dir();
        Ok(inode)
    }

    fn as_tmp(i: &InodeRef) -> Option<&TmpInode> {
        i.as_any().downcast_ref::<TmpInode>()
    }

    fn change_links(i: &InodeRef, delta: i64) {
        if let Some(t) = Self::as_tmp(i) {
            let mut m = t.meta.lock();
            m.nlink = (m.nlink as i64 + delta).max(0) as u64;
            m.ctime = now();
        }
    }

    /// The in-memory frames of a regular file (for mmap).
    pub fn page(&self, index: u64) -> Result<u64, Errno> {
        match &self.data {
            Data::File(p) => p.lock().frame(index),
            _ => Err(Errno::ENODEV),
        }
    }
}

/// A new tmpfs root directory.
pub fn new_root(mode: u32) -> InodeRef {
    TmpInode::new(FileType::Directory, mode, 0, 0, Data::Dir(SpinLock::new(BTreeMap::new())))
}

/// A new, unlinked tmpfs directory (for synthesized mount points).
pub fn new_dir(mode: u32) -> InodeRef {
    new_root(mode)
}

fn ts(t: Timespec) -> (i64, i64) {
    (t.tv_sec, t.tv_nsec)
}

impl Inode for TmpInode {
    fn ino(&self) -> u64 {
        self.ino
    }

    fn file_type(&self) -> FileType {
        self.kind
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let m = *self.meta.lock();
        let size = match &self.data {
            Data::File(p) => p.lock().size,
            Data::Symlink(t) => t.len() as u64,
            Data::Dir(d) => (d.lock().len() as u64 + 2) * 20,
            _ => 0,
        };
        let (as_, an) = ts(m.atime);
        let (ms, mn) = ts(m.mtime);
        let (cs, cn) = ts(m.ctime);
        Ok(Stat {
            st_dev: 0x16,
            st_ino: self.ino,
            st_nlink: m.nlink,
            st_mode: m.mode,
            st_uid: m.uid,
            st_gid: m.gid,
            st_rdev: m.rdev,
            st_size: size as i64,
            st_blksize: 4096,
            st_blocks: (size.div_ceil(512)) as i64,
            st_atime: as_,
            st_atime_nsec: an,
            st_mtime: ms,
            st_mtime_nsec: mn,
            st_ctime: cs,
            st_ctime_nsec: cn,
            ..Stat::default()
        })
    }

    fn lookup(&self, name: &[u8]) -> Result<InodeRef, Errno> {
        self.dir()?.lock().get(name).cloned().ok_or(Errno::ENOENT)
    }

    fn create(&self, name: &[u8], mode: u32, c: &Creds) -> Result<InodeRef, Errno> {
        let i = TmpInode::new(FileType::Regular, mode, c.fsuid, c.fsgid, Data::File(SpinLock::new(Pages::default())));
        self.add(name, i)
    }

    fn mkdir(&self, name: &[u8], mode: u32, c: &Creds) -> Result<InodeRef, Errno> {
        let i = TmpInode::new(FileType::Directory, mode, c.fsuid, c.fsgid, Data::Dir(SpinLock::new(BTreeMap::new())));
        self.add(name, i)
    }

    fn mknod(&self, name: &[u8], mode: u32, rdev: u64, c: &Creds) -> Result<InodeRef, Errno> {
        let kind = FileType::from_mode(mode);
        let data = match kind {
            FileType::Fifo => Data::Fifo(Pipe::new()),
            FileType::Regular => Data::File(SpinLock::new(Pages::default())),
            FileType::CharDev | FileType::BlockDev | FileType::Socket => Data::Special,
            _ => return Err(Errno::EINVAL),
        };
        let i = TmpInode::new(kind, mode, c.fsuid, c.fsgid, data);
        i.meta.lock().rdev = rdev;
        self.add(name, i)
    }

    fn symlink(&self, name: &[u8], target: &[u8], c: &Creds) -> Result<InodeRef, Errno> {
        let i = TmpInode::new(FileType::Symlink, 0o777, c.fsuid, c.fsgid, Data::Symlink(target.to_vec()));
        self.add(name, i)
    }

    fn link(&self, name: &[u8], target: &InodeRef) -> Result<(), Errno> {
        if Self::as_tmp(target).is_none() {
            return Err(Errno::EXDEV);
        }
        self.add(name, target.clone())?;
        Self::change_links(target, 1);
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        let mut d = self.dir()?.lock();
        let i = d.get(name).cloned().ok_or(Errno::ENOENT)?;
        if i.file_type() == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        d.remove(name);
        drop(d);
        Self::change_links(&i, -1);
        self.touch_dir();
        Ok(())
    }

    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        let mut d = self.dir()?.lock();
        let i = d.get(name).cloned().ok_or(Errno::ENOENT)?;
        let t = Self::as_tmp(&i).ok_or(Errno::ENOTDIR)?;
        if !t.dir()?.lock().is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        d.remove(name);
        drop(d);
        t.meta.lock().nlink = 0;
        self.meta.lock().nlink -= 1;
        self.touch_dir();
        Ok(())
    }

    fn rename(&self, old: &[u8], new_dir: &InodeRef, new: &[u8], flags: u32) -> Result<(), Errno> {
        let nd = Self::as_tmp(new_dir).ok_or(Errno::EXDEV)?;
        let same = core::ptr::eq(nd, self);
        let src = self.lookup(old)?;
        let dst = nd.dir()?.lock().get(new).cloned();
        if flags & super::rename::NOREPLACE != 0 && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if flags & super::rename::EXCHANGE != 0 {
            let dst = dst.ok_or(Errno::ENOENT)?;
            self.dir()?.lock().insert(old.to_vec(), dst);
            nd.dir()?.lock().insert(new.to_vec(), src);
            self.touch_dir();
            nd.touch_dir();
            return Ok(());
        }
        if let Some(d) = &dst {
            if Arc::ptr_eq(d, &src) {
                return Ok(());
            }
            match (src.file_type() == FileType::Directory, d.file_type() == FileType::Directory) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !Self::as_tmp(d).ok_or(Errno::EXDEV)?.dir()?.lock().is_empty() => {
                    return Err(Errno::ENOTEMPTY)
                }
                _ => {}
            }
        }
        self.dir()?.lock().remove(old);
        if let Some(d) = nd.dir()?.lock().insert(new.to_vec(), src.clone()) {
            Self::change_links(&d, -1);
            if d.file_type() == FileType::Directory {
                nd.meta.lock().nlink -= 1;
            }
        }
        if !same && src.file_type() == FileType::Directory {
            self.meta.lock().nlink -= 1;
            nd.meta.lock().nlink += 1;
        }
        self.touch_dir();
        nd.touch_dir();
        Ok(())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        match &self.data {
            Data::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn readdir(&self, offset: u64, emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        let d = self.dir()?.lock();
        let entries: Vec<(Vec<u8>, u64, FileType)> =
            d.iter().map(|(n, i)| (n.clone(), i.ino(), i.file_type())).collect();
        drop(d);
        let mut pos = offset;
        if pos == 0 {
            if !emit(1, DirEntry { ino: self.ino, kind: FileType::Directory, name: b".".to_vec() }) {
                return Ok(());
            }
            pos = 1;
        }
        if pos == 1 {
            if !emit(2, DirEntry { ino: self.ino, kind: FileType::Directory, name: b"..".to_vec() }) {
                return Ok(());
            }
            pos = 2;
        }
        for (i, (name, ino, kind)) in entries.into_iter().enumerate().skip((pos - 2) as usize) {
            if !emit(i as u64 + 3, DirEntry { ino, kind, name }) {
                break;
            }
        }
        Ok(())
    }

    fn open(self: Arc<Self>, flags: u32) -> Result<Arc<dyn FileOps>, Errno> {
        match &self.data {
            Data::Fifo(p) => {
                let acc = flags & qlib::linux::consts::fcntl::O_ACCMODE as u32;
                Ok(p.open_end(acc != qlib::linux::consts::fcntl::O_RDONLY as u32) as Arc<dyn FileOps>)
            }
            Data::Special => Err(Errno::ENXIO),
            _ => Ok(Arc::new(TmpFile { inode: self })),
        }
    }

    fn setattr(&self, a: &SetAttr) -> Result<(), Errno> {
        if let Some(size) = a.size {
            match &self.data {
                Data::File(p) => {
                    if size > MAX_FILE_SIZE {
                        return Err(Errno::EFBIG);
                    }
                    p.lock().truncate(size);
                }
                Data::Dir(_) => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        }
        let t = now();
        let mut m = self.meta.lock();
        if let Some(mode) = a.mode {
            m.mode = (m.mode & S_IFMT) | (mode & 0o7777);
        }
        if let Some(u) = a.uid {
            m.uid = u;
        }
        if let Some(g) = a.gid {
            m.gid = g;
        }
        let resolve = |c: TimeChange| match c {
            TimeChange::Now => t,
            TimeChange::Set(s) => s,
        };
        if let Some(x) = a.atime {
            m.atime = resolve(x);
        }
        if let Some(x) = a.mtime {
            m.mtime = resolve(x);
        }
        if a.size.is_some() && a.mtime.is_none() {
            m.mtime = t;
        }
        m.ctime = t;
        Ok(())
    }

    fn statfs(&self) -> Result<Statfs, Errno> {
        let free = frame::free_bytes() / PAGE_SIZE;
        let total = crate::boot::params().user_mem_limit / PAGE_SIZE;
        Ok(Statfs {
            f_type: TMPFS_MAGIC,
            f_bsize: 4096,
            f_blocks: total,
            f_bfree: free,
            f_bavail: free,
            f_files: total,
            f_ffree: free,
            f_namelen: 255,
            f_frsize: 4096,
            ..Statfs::default()
        })
    }
}

/// An open tmpfs file or directory.
pub struct TmpFile {
    inode: Arc<TmpInode>,
}

/// A frame of a file, pinned (an extra reference) while it is copied
/// without the file's lock held: a user buffer may itself be a mapping of
/// this file, whose fault would take that lock.
struct Pinned(u64);

impl Pinned {
    #[allow(clippy::mut_from_ref)] // the frame is not owned by `self`: see SAFETY
    fn bytes(&self) -> &mut [u8] {
        // SAFETY: the frame stays allocated while pinned; direct map; the
        // kernel only copies through this slice.
        unsafe { core::slice::from_raw_parts_mut(phys_to_virt(self.0) as *mut u8, PAGE_SIZE as usize) }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if frame::ref_dec(self.0) == 0 {
            frame::free_frame(self.0);
        }
    }
}

static ZERO_PAGE: [u8; 4096] = [0; 4096];

impl FileOps for TmpFile {
    fn read(&self, _f: &File, buf: &mut IoBuf, offset: u64) -> Result<usize, Errno> {
        let Data::File(p) = &self.inode.data else { return Err(Errno::EISDIR) };
        let mut copied = 0usize;
        let mut pos = offset;
        loop {
            let (n, pinned) = {
                let pages = p.lock();
                if pos >= pages.size || buf.remaining() == 0 {
                    break;
                }
                let n = (PAGE_SIZE - pos % PAGE_SIZE).min(pages.size - pos).min(buf.remaining()) as usize;
                let pinned = pages.frames.get(&(pos / PAGE_SIZE)).map(|&pa| {
                    frame::ref_inc(pa);
                    Pinned(pa)
                });
                (n, pinned)
            };
            let in_page = (pos % PAGE_SIZE) as usize;
            let w = match &pinned {
                Some(f) => buf.write_from(&f.bytes()[in_page..in_page + n]),
                None => buf.write_from(&ZERO_PAGE[..n]),
            };
            let w = match w {
                Ok(w) => w,
                Err(e) if copied == 0 => return Err(e),
                Err(_) => break,
            };
            copied += w;
            pos += w as u64;
            if w < n {
                break;
            }
        }
        self.inode.meta.lock().atime = now();
        Ok(copied)
    }

    fn write(&self, f: &File, buf: &mut IoBuf, offset: u64) -> Result<usize, Errno> {
        let Data::File(p) = &self.inode.data else { return Err(Errno::EISDIR) };
        let append = f.flags() & qlib::linux::consts::fcntl::O_APPEND as u32 != 0;
        let mut pos = if append { p.lock().size } else { offset };
        let mut copied = 0usize;
        while buf.remaining() > 0 {
            let in_page = (pos % PAGE_SIZE) as usize;
            let want = ((PAGE_SIZE as usize - in_page) as u64).min(buf.remaining()) as usize;
            if pos + want as u64 > MAX_FILE_SIZE {
                return if copied == 0 { Err(Errno::EFBIG) } else { Ok(copied) };
            }
            let pinned = {
                let mut pages = p.lock();
                match pages.frame(pos / PAGE_SIZE) {
                    Ok(pa) => {
                        frame::ref_inc(pa);
                        Pinned(pa)
                    }
                    Err(e) if copied == 0 => return Err(e),
                    Err(_) => break,
                }
            };
            let n = match buf.read_into(&mut pinned.bytes()[in_page..in_page + want]) {
                Ok(n) => n,
                Err(e) if copied == 0 => return Err(e),
                Err(_) => break,
            };
            drop(pinned);
            if n == 0 {
                break;
            }
            pos += n as u64;
            let mut pages = p.lock();
            if pos > pages.size {
                pages.size = pos;
            }
            drop(pages);
            copied += n;
        }
        let t = now();
        let mut m = self.inode.meta.lock();
        m.mtime = t;
        m.ctime = t;
        Ok(copied)
    }

    fn readdir(&self, _f: &File, offset: u64, emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        self.inode.readdir(offset, emit)
    }

    fn page(&self, _f: &File, index: u64) -> Result<u64, Errno> {
        self.inode.page(index)
    }
}
