//! The operations system calls share: resolving `(dirfd, path)` pairs in
//! the calling process's context, opening with Linux's flag semantics and
//! permission checks, and reading files from the kernel (the loader).

use super::file::File;
use super::iobuf::IoBuf;
use super::path::{self, Follow, FsContext, FsRef, Path};
use super::{devfs, may_access, FileOps, FileType, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::sync::SpinLock;
use crate::task::{self, Creds};
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::hcall::GuestIovec;
use qlib::linux::consts::fcntl::*;
use qlib::linux::consts::mode::*;
use qlib::linux::Errno;

/// `AT_FDCWD`.
pub const AT_FDCWD: i64 = -100;
/// `AT_EMPTY_PATH`.
pub const AT_EMPTY_PATH: u64 = 0x1000;
/// `AT_SYMLINK_NOFOLLOW`.
pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

/// The calling process's file-system context.
pub fn fs_ref() -> FsRef {
    task::process().fs.lock().clone()
}

/// A copy of the caller's root and cwd (cheap: two pairs of Arcs).
pub fn snapshot() -> (Path, Path, u32) {
    let r = fs_ref();
    let c = r.lock();
    (c.root.clone(), c.cwd.clone(), c.umask)
}

/// A fresh context rooted at the sandbox root with `cwd` (absolute; the
/// root when it cannot be resolved).
pub fn initial_context(cwd: &[u8], creds: &Creds) -> FsRef {
    let root = super::mount::root_path();
    let cwd = path::resolve(&root, &root, cwd, Follow::Yes, creds)
        .ok()
        .filter(|p| p.dentry.inode.file_type() == FileType::Directory)
        .unwrap_or_else(|| root.clone());
    Arc::new(SpinLock::new(FsContext { root, cwd, umask: 0o022 }))
}

/// A snapshot of a context, not shared (for long resolutions such as
/// execve, which must not hold the context's lock).
pub fn copy_context(r: &FsRef) -> FsContext {
    let c = r.lock();
    FsContext { root: c.root.clone(), cwd: c.cwd.clone(), umask: c.umask }
}

/// A copy of a context (fork without CLONE_FS).
pub fn clone_context(r: &FsRef) -> FsRef {
    let c = r.lock();
    Arc::new(SpinLock::new(FsContext { root: c.root.clone(), cwd: c.cwd.clone(), umask: c.umask }))
}

/// The directory `dirfd` names (AT_FDCWD: the working directory).
pub fn dir_of(dirfd: i64, cwd: &Path) -> Result<Path, Errno> {
    if dirfd == AT_FDCWD {
        return Ok(cwd.clone());
    }
    if dirfd < 0 {
        return Err(Errno::EBADF);
    }
    let f = task::files().lock().get(dirfd as u64)?;
    let p = f.path.clone().ok_or(Errno::ENOTDIR)?;
    if p.dentry.inode.file_type() != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok(p)
}

/// Resolves `(dirfd, path)`; with AT_EMPTY_PATH an empty path names
/// `dirfd` itself (any file type).
pub fn lookup_at(dirfd: i64, path: &[u8], follow: Follow, empty_ok: bool) -> Result<Path, Errno> {
    let creds = task::process().creds.lock().clone();
    let (root, cwd, _) = snapshot();
    if path.is_empty() {
        if !empty_ok {
            return Err(Errno::ENOENT);
        }
        if dirfd == AT_FDCWD {
            return Ok(cwd);
        }
        let f = task::files().lock().get(dirfd as u64)?;
        return f.path.clone().ok_or(Errno::EBADF);
    }
    let start = if path[0] == b'/' { root.clone() } else { dir_of(dirfd, &cwd)? };
    path::resolve(&root, &start, path, follow, &creds)
}

/// Resolves everything but the final component of `(dirfd, path)`.
pub fn lookup_parent_at(dirfd: i64, path: &[u8]) -> Result<(Path, Vec<u8>), Errno> {
    let creds = task::process().creds.lock().clone();
    let (root, cwd, _) = snapshot();
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = if path[0] == b'/' { root.clone() } else { dir_of(dirfd, &cwd)? };
    path::resolve_parent(&root, &start, path, &creds)
}

/// Description operations of an O_PATH file: nothing but fstat.
struct PathOnly;

impl FileOps for PathOnly {
    fn read(&self, _f: &File, _b: &mut IoBuf, _o: u64) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    fn write(&self, _f: &File, _b: &mut IoBuf, _o: u64) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
}

/// Checks that a write to the object at `p` is allowed by the mount.
pub fn check_writable_mount(p: &Path) -> Result<(), Errno> {
    if p.mnt.readonly() {
        return Err(Errno::EROFS);
    }
    Ok(())
}

/// Opens the object at `p` with `flags` (permission checks included; no
/// creation).
pub fn open_path(p: &Path, flags: u32, creds: &Creds) -> Result<Arc<File>, Errno> {
    let inode = p.dentry.inode.clone();
    let kind = inode.file_type();
    if flags & O_PATH as u32 != 0 {
        let keep = flags & (O_PATH | O_CLOEXEC | O_DIRECTORY | O_NOFOLLOW) as u32;
        return Ok(File::new(Arc::new(PathOnly), Some(inode), Some(p.clone()), keep));
    }
    if flags & O_DIRECTORY as u32 != 0 && kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    let acc = flags & O_ACCMODE as u32;
    let want_write = acc == O_WRONLY as u32 || acc == O_RDWR as u32;
    if acc == O_ACCMODE as u32 {
        return Err(Errno::EINVAL);
    }
    if kind == FileType::Directory && want_write {
        return Err(Errno::EISDIR);
    }
    if kind == FileType::Symlink {
        return Err(Errno::ELOOP);
    }
    let st = inode.stat()?;
    let mut mask = 0;
    if acc != O_WRONLY as u32 {
        mask |= MAY_READ;
    }
    if want_write {
        mask |= MAY_WRITE;
    }
    if flags & O_TRUNC as u32 != 0 && !want_write {
        // Linux truncates even O_RDONLY|O_TRUNC when it may write.
        mask |= MAY_WRITE;
    }
    may_access(&st, creds, mask)?;
    if want_write && kind == FileType::Regular {
        check_writable_mount(p)?;
        if is_running_program(&inode) {
            return Err(Errno::ETXTBSY);
        }
    }
    let ops: Arc<dyn FileOps> = match kind {
        FileType::CharDev | FileType::BlockDev => {
            if p.mnt.nodev() {
                return Err(Errno::EACCES);
            }
            devfs::open(st.st_rdev)?
        }
        FileType::Socket => return Err(Errno::ENXIO),
        _ => {
            let host = inode.as_any().is::<super::hostfs::HostInode>();
            if flags & O_TRUNC as u32 != 0 && kind == FileType::Regular && !host {
                check_writable_mount(p)?;
                inode.setattr(&super::SetAttr { size: Some(0), ..Default::default() })?;
            }
            inode.clone().open(flags)?
        }
    };
    let keep = flags & !(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY) as u32;
    Ok(File::new(ops, Some(inode), Some(p.clone()), keep))
}

/// True when some process is running the program in `inode`.
fn is_running_program(inode: &super::InodeRef) -> bool {
    let ino = inode.ino();
    let data = Arc::as_ptr(inode) as *const u8;
    crate::task::pid::processes().iter().any(|p| {
        p.exe_file.lock().as_ref().and_then(|f| f.inode.as_ref()).is_some_and(|i| {
            core::ptr::eq(Arc::as_ptr(i) as *const u8, data)
                || (i.ino() == ino && i.as_any().type_id() == inode.as_any().type_id())
        })
    })
}

/// openat(2).
pub fn openat(dirfd: i64, path: &[u8], flags: u32, mode: u32) -> Result<Arc<File>, Errno> {
    let creds = task::process().creds.lock().clone();
    let (root, cwd, umask) = snapshot();
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = if path[0] == b'/' { root.clone() } else { dir_of(dirfd, &cwd)? };
    let nofollow = flags & O_NOFOLLOW as u32 != 0;
    // O_TMPFILE (which includes O_DIRECTORY): no file system here offers
    // unnamed files yet; callers such as glibc's tmpfile() fall back.
    if flags & 0o20000000 != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if flags & O_CREAT as u32 != 0 && flags & O_PATH as u32 == 0 {
        if flags & O_DIRECTORY as u32 != 0 {
            return Err(Errno::EINVAL);
        }
        let (dir, name) = match path::resolve_parent(&root, &start, path, &creds) {
            Ok(v) => v,
            Err(Errno::EEXIST) => return Err(Errno::EISDIR),
            Err(e) => return Err(e),
        };
        if name == b"." || name == b".." || path.ends_with(b"/") {
            return Err(Errno::EISDIR);
        }
        match dir.dentry.child(&name) {
            Ok(d) => {
                if flags & O_EXCL as u32 != 0 {
                    return Err(Errno::EEXIST);
                }
                let mut p = Path { mnt: dir.mnt.clone(), dentry: d }.follow_mounts();
                if p.dentry.inode.file_type() == FileType::Symlink {
                    if nofollow {
                        return Err(Errno::ELOOP);
                    }
                    p = path::resolve(&root, &start, path, Follow::Yes, &creds)?;
                }
                open_path(&p, flags, &creds)
            }
            Err(Errno::ENOENT) => {
                may_access(&dir.dentry.inode.stat()?, &creds, MAY_WRITE | MAY_EXEC)?;
                check_writable_mount(&dir)?;
                let inode = dir.dentry.inode.create(&name, mode & 0o7777 & !umask, &creds)?;
                let d = dir.dentry.insert(&name, inode);
                let p = Path { mnt: dir.mnt.clone(), dentry: d };
                // The creator may open what it created whatever the mode says.
                let root_creds = Creds { fsuid: 0, ..creds.clone() };
                open_path(&p, flags & !(O_TRUNC as u32), &root_creds)
            }
            Err(e) => Err(e),
        }
    } else {
        let p = path::resolve(&root, &start, path, if nofollow { Follow::No } else { Follow::Yes }, &creds)?;
        if nofollow && p.dentry.inode.file_type() == FileType::Symlink && flags & O_PATH as u32 == 0 {
            return Err(Errno::ELOOP);
        }
        open_path(&p, flags, &creds)
    }
}

/// Reads file bytes at `offset` into a kernel buffer; returns bytes read.
pub fn read_kernel(f: &File, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        let mut io = IoBuf::kernel(&mut buf[done..]);
        let n = f.ops.read(f, &mut io, offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Reads file bytes at `offset` into guest frames; returns bytes read. The
/// host moves host files' bytes itself.
pub fn read_frames(f: &File, offset: u64, iovs: &[GuestIovec]) -> Result<u64, Errno> {
    if let Some(h) = f.ops.host_file() {
        return h.read_frames(offset, iovs);
    }
    let mut total = 0u64;
    for v in iovs {
        // SAFETY: the frames are the caller's, mapped by the direct map.
        let buf =
            unsafe { core::slice::from_raw_parts_mut(qlib::layout::phys_to_virt(v.gpa) as *mut u8, v.len as usize) };
        let n = read_kernel(f, offset + total, buf)? as u64;
        total += n;
        if n < v.len {
            break;
        }
    }
    Ok(total)
}

/// True when `kind` is a type whose open must not be attempted for exec.
pub fn is_exec_type(kind: FileType) -> bool {
    kind == FileType::Regular
}

/// The absolute path of `p` seen from the caller's root.
pub fn path_name(p: &Path) -> Vec<u8> {
    let (root, _, _) = snapshot();
    p.absolute(&root)
}

/// Whether the caller may search (execute) directory `p`.
pub fn may_search(p: &Path, creds: &Creds) -> Result<(), Errno> {
    may_access(&p.dentry.inode.stat()?, creds, MAY_EXEC)
}

/// S_ISDIR on a mode.
pub fn is_dir_mode(m: u32) -> bool {
    m & S_IFMT == S_IFDIR
}
