//! The virtual file system. See README.md in this directory for the design.
//!
//! - [`Inode`]: a file system object (hostfs, tmpfs, devfs, procfs, pipes...).
//! - [`dentry::Dentry`]: a cached name → inode binding in a tree, with the
//!   mount stacked on it, if any.
//! - [`mount::Mount`]: a mounted file system; [`path::Path`] = (mount, dentry).
//! - [`file::File`]: an open file description (shared by dup'ed descriptors)
//!   with its [`FileOps`].

pub mod dentry;
pub mod devfs;
pub mod eventfd;
pub mod file;
pub mod hostfs;
pub mod iobuf;
pub mod mount;
pub mod path;
pub mod pipe;
pub mod poll;
pub mod procfs;
pub mod signalfd;
pub mod stdio;
pub mod timerfd;
pub mod tmpfs;
pub mod vfs;

pub use vfs::{read_frames, read_kernel};

use crate::task::wait::WaitQueue;
use crate::task::Creds;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU64, Ordering};
use file::File;
use iobuf::IoBuf;
use qlib::linux::consts::mode::*;
use qlib::linux::types::{Stat, Timespec};
use qlib::linux::Errno;

/// An inode.
pub type InodeRef = Arc<dyn Inode>;

/// Kinds of files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

impl FileType {
    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> FileType {
        match mode & S_IFMT {
            S_IFDIR => FileType::Directory,
            S_IFLNK => FileType::Symlink,
            S_IFCHR => FileType::CharDev,
            S_IFBLK => FileType::BlockDev,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            _ => FileType::Regular,
        }
    }

    /// The `S_IFMT` bits.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => S_IFREG,
            FileType::Directory => S_IFDIR,
            FileType::Symlink => S_IFLNK,
            FileType::CharDev => S_IFCHR,
            FileType::BlockDev => S_IFBLK,
            FileType::Fifo => S_IFIFO,
            FileType::Socket => S_IFSOCK,
        }
    }

    /// The `d_type` of getdents64.
    pub fn dirent_type(self) -> u8 {
        match self {
            FileType::Fifo => 1,
            FileType::CharDev => 2,
            FileType::Directory => 4,
            FileType::BlockDev => 6,
            FileType::Regular => 8,
            FileType::Symlink => 10,
            FileType::Socket => 12,
        }
    }
}

/// A directory entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileType,
    pub name: Vec<u8>,
}

/// A timestamp change in setattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeChange {
    Now,
    Set(Timespec),
}

/// Attribute changes (chmod, chown, truncate, utimensat).
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeChange>,
    pub mtime: Option<TimeChange>,
}

/// `struct statfs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Statfs {
    pub f_type: u64,
    pub f_bsize: u64,
    pub f_blocks: u64,
    pub f_bfree: u64,
    pub f_bavail: u64,
    pub f_files: u64,
    pub f_ffree: u64,
    pub f_fsid: [u32; 2],
    pub f_namelen: u64,
    pub f_frsize: u64,
    pub f_flags: u64,
    pub f_spare: [u64; 4],
}

/// renameat2 flags.
pub mod rename {
    pub const NOREPLACE: u32 = 1;
    pub const EXCHANGE: u32 = 2;
    pub const WHITEOUT: u32 = 4;
}

/// Where a "magic" symlink (/proc/<pid>/fd/<n>, cwd, root, exe) leads:
/// straight to an open file or a location, not through its text.
pub enum Magic {
    File(Arc<File>),
    Path(path::Path),
}

/// A file system object. Directory operations take a single name component.
pub trait Inode: Send + Sync {
    /// Inode number.
    fn ino(&self) -> u64;
    /// Kind (cheap).
    fn file_type(&self) -> FileType;
    /// Full attributes.
    fn stat(&self) -> Result<Stat, Errno>;
    /// For downcasting (rename/link need both ends on the same file system).
    fn as_any(&self) -> &dyn Any;

    /// Mode, owner and group for permission checks on path walks (hostfs
    /// answers from what it learned at lookup, without a host call).
    fn perm(&self) -> Result<Stat, Errno> {
        self.stat()
    }
    /// Whether cached lookups below this directory are still trusted
    /// (hostfs revalidates entries the host may change behind our back).
    fn revalidate(&self, _name: &[u8], _child: &InodeRef) -> bool {
        true
    }
    fn lookup(&self, _name: &[u8]) -> Result<InodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }
    fn create(&self, _name: &[u8], _mode: u32, _c: &Creds) -> Result<InodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }
    fn mkdir(&self, _name: &[u8], _mode: u32, _c: &Creds) -> Result<InodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }
    fn mknod(&self, _name: &[u8], _mode: u32, _rdev: u64, _c: &Creds) -> Result<InodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }
    fn symlink(&self, _name: &[u8], _target: &[u8], _c: &Creds) -> Result<InodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }
    fn link(&self, _name: &[u8], _target: &InodeRef) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }
    fn unlink(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }
    fn rmdir(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }
    /// Moves `old` in this directory to `new` in `new_dir` (same file system).
    fn rename(&self, _old: &[u8], _new_dir: &InodeRef, _new: &[u8], _flags: u32) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }
    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        Err(Errno::EINVAL)
    }
    /// For procfs's magic links: the target to follow instead of the text.
    fn magic_target(&self) -> Option<Magic> {
        None
    }
    /// Calls `emit(next_offset, entry)` for entries from `offset` until it
    /// returns false.
    fn readdir(&self, _offset: u64, _emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }
    /// Opens the inode (the VFS checked permissions and flags already).
    fn open(self: Arc<Self>, flags: u32) -> Result<Arc<dyn FileOps>, Errno>;
    fn setattr(&self, _a: &SetAttr) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }
    fn statfs(&self) -> Result<Statfs, Errno> {
        Ok(Statfs { f_bsize: 4096, f_namelen: 255, f_frsize: 4096, ..Statfs::default() })
    }
}

/// Operations of an open file.
pub trait FileOps: Send + Sync {
    /// Reads at `offset` (the file position for seekable files).
    fn read(&self, _f: &File, _buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    /// Writes at `offset`.
    fn write(&self, _f: &File, _buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    /// False for pipes, sockets, terminals (ESPIPE for lseek/pread).
    fn seekable(&self) -> bool {
        true
    }
    /// Readiness (POLLIN, POLLOUT, POLLHUP...).
    fn poll(&self, _f: &File) -> u32 {
        poll::POLLIN | poll::POLLOUT
    }
    /// The queue woken when readiness changes (None: always ready).
    fn wait_queue(&self) -> Option<&WaitQueue> {
        None
    }
    fn ioctl(&self, _f: &File, _req: u64, _arg: u64) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }
    fn fsync(&self, _f: &File) -> Result<(), Errno> {
        Ok(())
    }
    /// Directory listing (getdents).
    fn readdir(&self, _f: &File, _offset: u64, _emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }
    /// The frame holding page `index` of the file, for mmap (the page cache).
    fn page(&self, _f: &File, _index: u64) -> Result<u64, Errno> {
        Err(Errno::ENODEV)
    }
    /// Called when the last descriptor for the file is closed.
    fn release(&self, _f: &File) {}
    /// Attributes of files without an inode (stdio, anonymous files): by
    /// default those of Linux's anonymous inodes (mode 0600, no file type).
    fn stat(&self, f: &File) -> Result<Stat, Errno> {
        let c = crate::task::process().creds.lock().clone();
        Ok(Stat {
            st_dev: 0xe,
            st_ino: anon_ino(f),
            st_nlink: 1,
            st_mode: 0o600,
            st_uid: c.euid,
            st_gid: c.egid,
            st_blksize: 4096,
            ..Stat::default()
        })
    }
    /// The host file behind this description (loader, file mappings).
    fn host_file(&self) -> Option<&hostfs::HostFile> {
        None
    }
    /// What /proc/<pid>/fd shows for a file without a path.
    fn anon_name(&self) -> &'static str {
        "anon_inode:[unknown]"
    }
    /// The signalfd behind this description.
    fn signalfd(&self) -> Option<&signalfd::SignalFd> {
        None
    }
    /// The timer behind a timerfd.
    fn timerfd(&self) -> Option<&Arc<timerfd::TimerFd>> {
        None
    }
    /// The epoll instance behind this description (epoll_ctl nesting checks).
    fn as_epoll(&self) -> Option<&poll::Epoll> {
        None
    }
    /// The socket behind this description (socket system calls; ENOTSOCK
    /// otherwise).
    fn as_socket(&self) -> Option<&Arc<dyn crate::net::Socket>> {
        None
    }
}

/// An open file with no name (a pipe, stdio, an eventfd...) reached
/// through /proc/<pid>/fd/<n>: opening it opens the same object.
pub struct AnonInode {
    file: Arc<File>,
    ino: u64,
}

impl AnonInode {
    /// Wraps an open file.
    pub fn new(file: Arc<File>) -> AnonInode {
        AnonInode { ino: anon_ino(&file), file }
    }
}

/// A stable number for an open file without an inode.
pub fn anon_ino(f: &File) -> u64 {
    (Arc::as_ptr(&f.ops) as *const u8 as u64 >> 4) & 0xffff_ffff
}

impl Inode for AnonInode {
    fn ino(&self) -> u64 {
        self.ino
    }
    fn file_type(&self) -> FileType {
        FileType::Fifo
    }
    fn stat(&self) -> Result<Stat, Errno> {
        self.file.ops.stat(&self.file)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn open(self: Arc<Self>, _flags: u32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(self.file.ops.clone())
    }
}

static NEXT_INO: AtomicU64 = AtomicU64::new(2);

/// A fresh inode number for in-memory file systems.
pub fn new_ino() -> u64 {
    NEXT_INO.fetch_add(1, Ordering::Relaxed)
}

/// Access bits.
pub const MAY_READ: u32 = 4;
/// See [`MAY_READ`].
pub const MAY_WRITE: u32 = 2;
/// See [`MAY_READ`].
pub const MAY_EXEC: u32 = 1;

/// The DAC check: may `c` access a file with `st` for `mask`?
/// CAP_DAC_OVERRIDE bypasses everything but execute permission on files with
/// no execute bit; CAP_DAC_READ_SEARCH is folded into it here.
pub fn may_access(st: &Stat, c: &Creds, mask: u32) -> Result<(), Errno> {
    let mode = st.st_mode;
    if c.fsuid == 0 || c.has(crate::task::cap::DAC_OVERRIDE) {
        if mask & MAY_EXEC == 0 || mode & S_IFMT == S_IFDIR || mode & 0o111 != 0 {
            return Ok(());
        }
        return Err(Errno::EACCES);
    }
    let bits = if c.fsuid == st.st_uid {
        (mode >> 6) & 7
    } else if c.fsgid == st.st_gid || c.groups.contains(&st.st_gid) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    if bits & mask == mask {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// Boot-time set-up: the mount tree (root from the host, /dev, /proc, /tmp...).
pub fn init() {
    mount::init();
}
