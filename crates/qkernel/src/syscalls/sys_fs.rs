//! Path-based file system calls: open, stat, directories, links, names,
//! attributes, the working directory.

use super::sys_file::{install, stat_file};
use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{copy_to_user, read_user, strncpy_from_user, write_user};
use crate::fs::path::{self, Follow, Path};
use crate::fs::vfs::{self, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW};
use crate::fs::{may_access, FileType, SetAttr, TimeChange, MAY_EXEC, MAY_WRITE};
use crate::task::{self, Creds};
use alloc::vec;
use alloc::vec::Vec;
use qlib::linux::consts::fcntl::*;
use qlib::linux::consts::mode::*;
use qlib::linux::types::{Stat, Timespec};
use qlib::linux::Errno;

const AT_REMOVEDIR_: u64 = 0x200;
const AT_SYMLINK_FOLLOW_: u64 = 0x400;
const AT_EACCESS: u64 = 0x200;
const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

/// Copies a path argument (ENAMETOOLONG past PATH_MAX).
pub fn user_path(addr: u64) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; path::PATH_MAX];
    let n = strncpy_from_user(&mut buf, addr)?;
    buf.truncate(n);
    Ok(buf)
}

fn creds() -> Creds {
    task::process().creds.lock().clone()
}

fn dirfd(v: u64) -> i64 {
    v as i32 as i64
}

pub fn open(f: &mut TrapFrame) -> SysResult {
    let [p, flags, mode, ..] = args(f);
    do_open(AT_FDCWD, p, flags, mode)
}

pub fn openat(f: &mut TrapFrame) -> SysResult {
    let [d, p, flags, mode, ..] = args(f);
    do_open(dirfd(d), p, flags, mode)
}

pub fn creat(f: &mut TrapFrame) -> SysResult {
    let [p, mode, ..] = args(f);
    do_open(AT_FDCWD, p, O_CREAT | O_WRONLY | O_TRUNC, mode)
}

pub fn openat2(f: &mut TrapFrame) -> SysResult {
    let [d, p, how, size, ..] = args(f);
    if size < 24 {
        return Err(Errno::EINVAL);
    }
    let h: [u64; 3] = read_user(how)?;
    if h[2] != 0 {
        // RESOLVE_* restrictions are not implemented: refuse rather than
        // resolve less strictly than asked.
        return Err(Errno::EINVAL);
    }
    do_open(dirfd(d), p, h[0], h[1])
}

fn do_open(d: i64, p: u64, flags: u64, mode: u64) -> SysResult {
    let path = user_path(p)?;
    let file = vfs::openat(d, &path, flags as u32, mode as u32)?;
    install(file, flags & O_CLOEXEC != 0)
}

fn lookup(d: i64, p: u64, flags: u64) -> Result<Path, Errno> {
    let path = user_path(p)?;
    let follow = if flags & AT_SYMLINK_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    vfs::lookup_at(d, &path, follow, flags & AT_EMPTY_PATH != 0)
}

fn stat_at(d: i64, p: u64, flags: u64) -> Result<Stat, Errno> {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800/* AT_NO_AUTOMOUNT */) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = user_path(p)?;
    if path.is_empty() && flags & AT_EMPTY_PATH != 0 && d != AT_FDCWD {
        return stat_file(&*super::sys_file::file(d as u64)?);
    }
    let follow = if flags & AT_SYMLINK_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    vfs::lookup_at(d, &path, follow, flags & AT_EMPTY_PATH != 0)?.dentry.inode.stat()
}

pub fn stat(f: &mut TrapFrame) -> SysResult {
    let st = stat_at(AT_FDCWD, f.rdi, 0)?;
    write_user(f.rsi, &st).map(|_| 0)
}

pub fn lstat(f: &mut TrapFrame) -> SysResult {
    let st = stat_at(AT_FDCWD, f.rdi, AT_SYMLINK_NOFOLLOW)?;
    write_user(f.rsi, &st).map(|_| 0)
}

pub fn newfstatat(f: &mut TrapFrame) -> SysResult {
    let [d, p, buf, flags, ..] = args(f);
    let st = stat_at(dirfd(d), p, flags)?;
    write_user(buf, &st).map(|_| 0)
}

pub fn statx(f: &mut TrapFrame) -> SysResult {
    let [d, p, flags, _mask, buf, ..] = args(f);
    let st = stat_at(dirfd(d), p, flags & !0x6000 /* AT_STATX_SYNC_TYPE */)?;
    let ts = |s: i64, n: i64| qlib::hostfs::StatxTimestamp { tv_sec: s, tv_nsec: n as u32, _reserved: 0 };
    let sx = qlib::hostfs::Statx {
        stx_mask: 0x7ff,
        stx_blksize: st.st_blksize as u32,
        stx_nlink: st.st_nlink as u32,
        stx_uid: st.st_uid,
        stx_gid: st.st_gid,
        stx_mode: st.st_mode as u16,
        stx_ino: st.st_ino,
        stx_size: st.st_size as u64,
        stx_blocks: st.st_blocks as u64,
        stx_atime: ts(st.st_atime, st.st_atime_nsec),
        stx_mtime: ts(st.st_mtime, st.st_mtime_nsec),
        stx_ctime: ts(st.st_ctime, st.st_ctime_nsec),
        stx_rdev_major: ((st.st_rdev >> 8) & 0xfff) as u32,
        stx_rdev_minor: ((st.st_rdev & 0xff) | ((st.st_rdev >> 12) & !0xff)) as u32,
        stx_dev_major: ((st.st_dev >> 8) & 0xfff) as u32,
        stx_dev_minor: ((st.st_dev & 0xff) | ((st.st_dev >> 12) & !0xff)) as u32,
        ..Default::default()
    };
    write_user(buf, &sx).map(|_| 0)
}

fn access_at(d: i64, p: u64, mode: u64, flags: u64) -> SysResult {
    if mode & !7 != 0 || flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let pth = lookup(d, p, flags)?;
    if mode == 0 {
        return Ok(0);
    }
    // access(2) checks with the real ids unless AT_EACCESS.
    let mut c = creds();
    if flags & AT_EACCESS == 0 {
        c.fsuid = c.uid;
        c.fsgid = c.gid;
    }
    if mode & 2 != 0 && pth.mnt.readonly() {
        return Err(Errno::EROFS);
    }
    may_access(&pth.dentry.inode.stat()?, &c, mode as u32).map(|_| 0)
}

pub fn access(f: &mut TrapFrame) -> SysResult {
    access_at(AT_FDCWD, f.rdi, f.rsi, 0)
}

pub fn faccessat(f: &mut TrapFrame) -> SysResult {
    let [d, p, mode, ..] = args(f);
    access_at(dirfd(d), p, mode, 0)
}

pub fn faccessat2(f: &mut TrapFrame) -> SysResult {
    let [d, p, mode, flags, ..] = args(f);
    access_at(dirfd(d), p, mode, flags)
}

fn readlink_at(d: i64, p: u64, buf: u64, size: u64) -> SysResult {
    if size as i64 <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = user_path(p)?;
    let pth = vfs::lookup_at(d, &path, Follow::No, true)?;
    let inode = &pth.dentry.inode;
    if inode.file_type() != FileType::Symlink {
        return Err(Errno::EINVAL);
    }
    let target = inode.readlink()?;
    let n = target.len().min(size as usize);
    copy_to_user(buf, &target[..n])?;
    Ok(n as u64)
}

pub fn readlink(f: &mut TrapFrame) -> SysResult {
    let [p, buf, size, ..] = args(f);
    readlink_at(AT_FDCWD, p, buf, size)
}

pub fn readlinkat(f: &mut TrapFrame) -> SysResult {
    let [d, p, buf, size, ..] = args(f);
    readlink_at(dirfd(d), p, buf, size)
}

pub fn getcwd(f: &mut TrapFrame) -> SysResult {
    let [buf, size, ..] = args(f);
    let (root, cwd, _) = vfs::snapshot();
    let mut name = cwd.absolute(&root);
    name.push(0);
    if name.len() > size as usize {
        return Err(Errno::ERANGE);
    }
    copy_to_user(buf, &name)?;
    Ok(name.len() as u64)
}

fn set_cwd(p: Path) -> SysResult {
    if p.dentry.inode.file_type() != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    may_access(&p.dentry.inode.stat()?, &creds(), MAY_EXEC)?;
    vfs::fs_ref().lock().cwd = p;
    Ok(0)
}

pub fn chdir(f: &mut TrapFrame) -> SysResult {
    set_cwd(lookup(AT_FDCWD, f.rdi, 0)?)
}

pub fn fchdir(f: &mut TrapFrame) -> SysResult {
    let file = super::sys_file::file(f.rdi)?;
    set_cwd(file.path.clone().ok_or(Errno::ENOTDIR)?)
}

pub fn chroot(f: &mut TrapFrame) -> SysResult {
    if !creds().has(crate::task::cap::SYS_CHROOT) {
        return Err(Errno::EPERM);
    }
    let p = lookup(AT_FDCWD, f.rdi, 0)?;
    if p.dentry.inode.file_type() != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    vfs::fs_ref().lock().root = p;
    Ok(0)
}

pub fn umask(f: &mut TrapFrame) -> SysResult {
    let r = vfs::fs_ref();
    let mut c = r.lock();
    let old = c.umask;
    c.umask = f.rdi as u32 & 0o777;
    Ok(old as u64)
}

/// The parent directory of a new name, checked for writing.
fn parent_for_change(d: i64, p: u64) -> Result<(Path, Vec<u8>), Errno> {
    let path = user_path(p)?;
    let (dir, name) = vfs::lookup_parent_at(d, &path)?;
    if name == b"." || name == b".." {
        return Err(Errno::EEXIST);
    }
    may_access(&dir.dentry.inode.stat()?, &creds(), MAY_WRITE | MAY_EXEC)?;
    vfs::check_writable_mount(&dir)?;
    Ok((dir, name))
}

fn mkdir_at(d: i64, p: u64, mode: u64) -> SysResult {
    let (dir, name) = parent_for_change(d, p)?;
    if dir.dentry.child(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    let umask = vfs::snapshot().2;
    let inode = dir.dentry.inode.mkdir(&name, mode as u32 & 0o7777 & !umask, &creds())?;
    dir.dentry.insert(&name, inode);
    Ok(0)
}

pub fn mkdir(f: &mut TrapFrame) -> SysResult {
    mkdir_at(AT_FDCWD, f.rdi, f.rsi)
}

pub fn mkdirat(f: &mut TrapFrame) -> SysResult {
    let [d, p, mode, ..] = args(f);
    mkdir_at(dirfd(d), p, mode)
}

fn mknod_at(d: i64, p: u64, mode: u64, dev: u64) -> SysResult {
    let kind = mode as u32 & S_IFMT;
    let c = creds();
    match kind {
        0 | S_IFREG | S_IFIFO | S_IFSOCK => {}
        S_IFCHR | S_IFBLK => {
            if !c.has(crate::task::cap::MKNOD) {
                return Err(Errno::EPERM);
            }
        }
        _ => return Err(Errno::EINVAL),
    }
    let (dir, name) = parent_for_change(d, p)?;
    if dir.dentry.child(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    let umask = vfs::snapshot().2;
    let kind = if kind == 0 { S_IFREG } else { kind };
    let inode = dir.dentry.inode.mknod(&name, kind | (mode as u32 & 0o7777 & !umask), dev, &c)?;
    dir.dentry.insert(&name, inode);
    Ok(0)
}

pub fn mknod(f: &mut TrapFrame) -> SysResult {
    let [p, mode, dev, ..] = args(f);
    mknod_at(AT_FDCWD, p, mode, dev)
}

pub fn mknodat(f: &mut TrapFrame) -> SysResult {
    let [d, p, mode, dev, ..] = args(f);
    mknod_at(dirfd(d), p, mode, dev)
}

/// Sticky directories: only the owner of the file or the directory (or
/// CAP_FOWNER) may remove or rename entries.
fn sticky_ok(dir: &Path, victim: &Stat, c: &Creds) -> Result<(), Errno> {
    let ds = dir.dentry.inode.stat()?;
    if ds.st_mode & S_ISVTX != 0 && c.fsuid != victim.st_uid && c.fsuid != ds.st_uid && !c.has(crate::task::cap::FOWNER)
    {
        return Err(Errno::EPERM);
    }
    Ok(())
}

fn unlink_at(d: i64, p: u64, flags: u64) -> SysResult {
    if flags & !AT_REMOVEDIR_ != 0 {
        return Err(Errno::EINVAL);
    }
    let path = user_path(p)?;
    let (dir, name) = vfs::lookup_parent_at(d, &path)?;
    let rmdir = flags & AT_REMOVEDIR_ != 0;
    if name == b"." {
        return Err(if rmdir { Errno::EINVAL } else { Errno::EISDIR });
    }
    if name == b".." {
        return Err(if rmdir { Errno::ENOTEMPTY } else { Errno::EISDIR });
    }
    let c = creds();
    may_access(&dir.dentry.inode.stat()?, &c, MAY_WRITE | MAY_EXEC)?;
    let child = dir.dentry.child(&name)?;
    if child.mount_here().is_some() {
        return Err(Errno::EBUSY);
    }
    let st = child.inode.stat()?;
    vfs::check_writable_mount(&dir)?;
    sticky_ok(&dir, &st, &c)?;
    let is_dir = child.inode.file_type() == FileType::Directory;
    if rmdir {
        if !is_dir {
            return Err(Errno::ENOTDIR);
        }
        dir.dentry.inode.rmdir(&name)?;
    } else {
        if is_dir {
            return Err(Errno::EISDIR);
        }
        if path.ends_with(b"/") {
            return Err(Errno::ENOTDIR);
        }
        dir.dentry.inode.unlink(&name)?;
    }
    dir.dentry.forget(&name);
    Ok(0)
}

pub fn unlink(f: &mut TrapFrame) -> SysResult {
    unlink_at(AT_FDCWD, f.rdi, 0)
}

pub fn rmdir(f: &mut TrapFrame) -> SysResult {
    unlink_at(AT_FDCWD, f.rdi, AT_REMOVEDIR_)
}

pub fn unlinkat(f: &mut TrapFrame) -> SysResult {
    let [d, p, flags, ..] = args(f);
    unlink_at(dirfd(d), p, flags)
}

fn rename_at(od: i64, op: u64, nd: i64, np: u64, flags: u64) -> SysResult {
    use crate::fs::rename::*;
    if flags & !((NOREPLACE | EXCHANGE | WHITEOUT) as u64) != 0
        || (flags & NOREPLACE as u64 != 0 && flags & EXCHANGE as u64 != 0)
    {
        return Err(Errno::EINVAL);
    }
    if flags & WHITEOUT as u64 != 0 {
        return Err(Errno::EINVAL);
    }
    let opath = user_path(op)?;
    let npath = user_path(np)?;
    let (odir, oname) = vfs::lookup_parent_at(od, &opath)?;
    let (ndir, nname) = vfs::lookup_parent_at(nd, &npath)?;
    for n in [&oname, &nname] {
        if n.as_slice() == b"." || n.as_slice() == b".." {
            return Err(Errno::EBUSY);
        }
    }
    if !alloc::sync::Arc::ptr_eq(&odir.mnt, &ndir.mnt) {
        return Err(Errno::EXDEV);
    }
    let c = creds();
    may_access(&odir.dentry.inode.stat()?, &c, MAY_WRITE | MAY_EXEC)?;
    may_access(&ndir.dentry.inode.stat()?, &c, MAY_WRITE | MAY_EXEC)?;
    vfs::check_writable_mount(&odir)?;
    let src = odir.dentry.child(&oname)?;
    sticky_ok(&odir, &src.inode.stat()?, &c)?;
    // Moving a directory into itself.
    if src.inode.file_type() == FileType::Directory {
        let mut p = Some(ndir.dentry.clone());
        while let Some(d) = p {
            if alloc::sync::Arc::ptr_eq(&d, &src) {
                return Err(Errno::EINVAL);
            }
            p = d.parent.clone();
        }
    }
    odir.dentry.inode.rename(&oname, &ndir.dentry.inode, &nname, flags as u32)?;
    odir.dentry.forget(&oname);
    ndir.dentry.forget(&nname);
    Ok(0)
}

pub fn rename(f: &mut TrapFrame) -> SysResult {
    rename_at(AT_FDCWD, f.rdi, AT_FDCWD, f.rsi, 0)
}

pub fn renameat(f: &mut TrapFrame) -> SysResult {
    let [od, op, nd, np, ..] = args(f);
    rename_at(dirfd(od), op, dirfd(nd), np, 0)
}

pub fn renameat2(f: &mut TrapFrame) -> SysResult {
    let [od, op, nd, np, flags, ..] = args(f);
    rename_at(dirfd(od), op, dirfd(nd), np, flags)
}

fn link_at(od: i64, op: u64, nd: i64, np: u64, flags: u64) -> SysResult {
    if flags & !(AT_SYMLINK_FOLLOW_ | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let follow = if flags & AT_SYMLINK_FOLLOW_ != 0 { 0 } else { AT_SYMLINK_NOFOLLOW };
    let src = lookup(od, op, follow | (flags & AT_EMPTY_PATH))?;
    if src.dentry.inode.file_type() == FileType::Directory {
        return Err(Errno::EPERM);
    }
    let (dir, name) = parent_for_change(nd, np)?;
    if !alloc::sync::Arc::ptr_eq(&src.mnt, &dir.mnt) {
        return Err(Errno::EXDEV);
    }
    if dir.dentry.child(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    dir.dentry.inode.link(&name, &src.dentry.inode)?;
    dir.dentry.forget(&name);
    Ok(0)
}

pub fn link(f: &mut TrapFrame) -> SysResult {
    link_at(AT_FDCWD, f.rdi, AT_FDCWD, f.rsi, 0)
}

pub fn linkat(f: &mut TrapFrame) -> SysResult {
    let [od, op, nd, np, flags, ..] = args(f);
    link_at(dirfd(od), op, dirfd(nd), np, flags)
}

fn symlink_at(t: u64, d: i64, p: u64) -> SysResult {
    let target = user_path(t)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let (dir, name) = parent_for_change(d, p)?;
    if dir.dentry.child(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    let inode = dir.dentry.inode.symlink(&name, &target, &creds())?;
    dir.dentry.insert(&name, inode);
    Ok(0)
}

pub fn symlink(f: &mut TrapFrame) -> SysResult {
    symlink_at(f.rdi, AT_FDCWD, f.rsi)
}

pub fn symlinkat(f: &mut TrapFrame) -> SysResult {
    let [t, d, p, ..] = args(f);
    symlink_at(t, dirfd(d), p)
}

/// Applies an attribute change with ownership checks.
fn change(p: &Path, a: SetAttr) -> SysResult {
    let c = creds();
    let st = p.dentry.inode.stat()?;
    vfs::check_writable_mount(p)?;
    let owner = c.fsuid == st.st_uid || c.has(crate::task::cap::FOWNER);
    let mut a = a;
    if let Some(mode) = a.mode {
        if !owner {
            return Err(Errno::EPERM);
        }
        // Only group members (or CAP_FSETID) keep setgid.
        if mode & S_ISGID != 0
            && c.fsgid != st.st_gid
            && !c.groups.contains(&st.st_gid)
            && !c.has(crate::task::cap::FSETID)
        {
            a.mode = Some(mode & !S_ISGID);
        }
    }
    if a.uid.is_some_and(|u| u != st.st_uid) && !c.has(crate::task::cap::CHOWN) {
        return Err(Errno::EPERM);
    }
    if let Some(g) = a.gid {
        if g != st.st_gid && !c.has(crate::task::cap::CHOWN) && !(owner && (c.fsgid == g || c.groups.contains(&g))) {
            return Err(Errno::EPERM);
        }
    }
    if a.uid.is_some() || a.gid.is_some() {
        // chown clears set-id bits of non-directories.
        if st.st_mode & S_IFMT != S_IFDIR && st.st_mode & (S_ISUID | S_ISGID) != 0 && a.mode.is_none() {
            a.mode = Some(st.st_mode & 0o7777 & !(S_ISUID | S_ISGID));
        }
    }
    p.dentry.inode.setattr(&a).map(|_| 0)
}

fn chmod_at(d: i64, p: u64, mode: u64, flags: u64) -> SysResult {
    let pth = lookup(d, p, flags)?;
    change(&pth, SetAttr { mode: Some(mode as u32 & 0o7777), ..Default::default() })
}

pub fn chmod(f: &mut TrapFrame) -> SysResult {
    chmod_at(AT_FDCWD, f.rdi, f.rsi, 0)
}

pub fn fchmodat(f: &mut TrapFrame) -> SysResult {
    let [d, p, mode, ..] = args(f);
    chmod_at(dirfd(d), p, mode, 0)
}

pub fn fchmod(f: &mut TrapFrame) -> SysResult {
    let file = super::sys_file::file(f.rdi)?;
    let p = file.path.clone().ok_or(Errno::EBADF)?;
    change(&p, SetAttr { mode: Some(f.rsi as u32 & 0o7777), ..Default::default() })
}

fn ids(uid: u64, gid: u64) -> SetAttr {
    let id = |v: u64| if v as u32 == u32::MAX { None } else { Some(v as u32) };
    SetAttr { uid: id(uid), gid: id(gid), ..Default::default() }
}

pub fn chown(f: &mut TrapFrame) -> SysResult {
    let [p, u, g, ..] = args(f);
    change(&lookup(AT_FDCWD, p, 0)?, ids(u, g))
}

pub fn lchown(f: &mut TrapFrame) -> SysResult {
    let [p, u, g, ..] = args(f);
    change(&lookup(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW)?, ids(u, g))
}

pub fn fchown(f: &mut TrapFrame) -> SysResult {
    let [fd, u, g, ..] = args(f);
    let file = super::sys_file::file(fd)?;
    change(&file.path.clone().ok_or(Errno::EBADF)?, ids(u, g))
}

pub fn fchownat(f: &mut TrapFrame) -> SysResult {
    let [d, p, u, g, flags, ..] = args(f);
    change(&lookup(dirfd(d), p, flags)?, ids(u, g))
}

pub fn truncate(f: &mut TrapFrame) -> SysResult {
    let [p, len, ..] = args(f);
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let pth = lookup(AT_FDCWD, p, 0)?;
    match pth.dentry.inode.file_type() {
        FileType::Directory => return Err(Errno::EISDIR),
        FileType::Regular => {}
        _ => return Err(Errno::EINVAL),
    }
    may_access(&pth.dentry.inode.stat()?, &creds(), MAY_WRITE)?;
    vfs::check_writable_mount(&pth)?;
    pth.dentry.inode.setattr(&SetAttr { size: Some(len), ..Default::default() }).map(|_| 0)
}

fn time_change(t: Timespec) -> Result<Option<TimeChange>, Errno> {
    match t.tv_nsec {
        UTIME_OMIT => Ok(None),
        UTIME_NOW => Ok(Some(TimeChange::Now)),
        n if (0..1_000_000_000).contains(&n) => Ok(Some(TimeChange::Set(t))),
        _ => Err(Errno::EINVAL),
    }
}

pub fn utimensat(f: &mut TrapFrame) -> SysResult {
    let [d, p, times, flags, ..] = args(f);
    let (a, m) = if times == 0 {
        (Some(TimeChange::Now), Some(TimeChange::Now))
    } else {
        let t: [Timespec; 2] = read_user(times)?;
        (time_change(t[0])?, time_change(t[1])?)
    };
    let pth =
        if p == 0 { super::sys_file::file(d)?.path.clone().ok_or(Errno::EBADF)? } else { lookup(dirfd(d), p, flags)? };
    let c = creds();
    let st = pth.dentry.inode.stat()?;
    vfs::check_writable_mount(&pth)?;
    let explicit = matches!(a, Some(TimeChange::Set(_))) || matches!(m, Some(TimeChange::Set(_)));
    if c.fsuid != st.st_uid && !c.has(crate::task::cap::FOWNER) {
        if explicit {
            return Err(Errno::EPERM);
        }
        may_access(&st, &c, MAY_WRITE)?;
    }
    pth.dentry.inode.setattr(&SetAttr { atime: a, mtime: m, ..Default::default() }).map(|_| 0)
}

pub fn statfs(f: &mut TrapFrame) -> SysResult {
    let p = lookup(AT_FDCWD, f.rdi, 0)?;
    let mut s = p.dentry.inode.statfs()?;
    if p.mnt.readonly() {
        s.f_flags |= 1;
    }
    write_user(f.rsi, &s).map(|_| 0)
}

pub fn fstatfs(f: &mut TrapFrame) -> SysResult {
    let file = super::sys_file::file(f.rdi)?;
    let s = match &file.inode {
        Some(i) => i.statfs()?,
        None => crate::fs::Statfs { f_type: 0x50495045, f_bsize: 4096, f_namelen: 255, ..Default::default() },
    };
    write_user(f.rsi, &s).map(|_| 0)
}

/// mount(2) inside the sandbox (its own mount namespace): tmpfs, proc,
/// bind mounts and remounts. Needs CAP_SYS_ADMIN, which the OCI default
/// capability set does not grant.
pub fn mount(f: &mut TrapFrame) -> SysResult {
    use crate::fs::mount::{self as m, flags as mf};
    let [src, target, fstype, flags, _data, _] = args(f);
    if !creds().has(crate::task::cap::SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    let at = lookup(AT_FDCWD, target, 0)?;
    let keep = flags & (mf::RDONLY | mf::NOSUID | mf::NODEV | mf::NOEXEC);
    if flags & mf::REMOUNT != 0 {
        if !at.is_mount_root() {
            return Err(Errno::EINVAL);
        }
        *at.mnt.flags.lock() = keep;
        return Ok(0);
    }
    if at.dentry.inode.file_type() != FileType::Directory && flags & mf::BIND == 0 {
        return Err(Errno::ENOTDIR);
    }
    if flags & mf::BIND != 0 {
        let from = lookup(AT_FDCWD, src, 0)?;
        if (from.dentry.inode.file_type() == FileType::Directory)
            != (at.dentry.inode.file_type() == FileType::Directory)
        {
            return Err(Errno::ENOTDIR);
        }
        let source = vfs::path_name(&from);
        m::mount_at(&at, from.dentry.inode.clone(), from.mnt.fstype, &source, keep)?;
        return Ok(0);
    }
    let ty = user_path(fstype)?;
    let source = if src == 0 { b"none".to_vec() } else { user_path(src)? };
    let root = match ty.as_slice() {
        b"tmpfs" => crate::fs::tmpfs::new_root(0o1777),
        b"proc" => crate::fs::procfs::root(),
        b"sysfs" => crate::fs::procfs::sys_root(),
        b"devtmpfs" => crate::fs::devfs::root(),
        b"" => return Err(Errno::EINVAL),
        _ => return Err(Errno::ENODEV),
    };
    let name: &'static str = match ty.as_slice() {
        b"tmpfs" => "tmpfs",
        b"proc" => "proc",
        b"sysfs" => "sysfs",
        _ => "devtmpfs",
    };
    m::mount_at(&at, root, name, &source, keep)?;
    Ok(0)
}

pub fn umount2(f: &mut TrapFrame) -> SysResult {
    let [target, flags, ..] = args(f);
    if !creds().has(crate::task::cap::SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    const MNT_FORCE: u64 = 1;
    const MNT_DETACH: u64 = 2;
    const MNT_EXPIRE: u64 = 4;
    const UMOUNT_NOFOLLOW: u64 = 8;
    if flags & !(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    let at = lookup(AT_FDCWD, target, if flags & UMOUNT_NOFOLLOW != 0 { AT_SYMLINK_NOFOLLOW } else { 0 })?;
    crate::fs::mount::unmount(&at).map(|_| 0)
}

/// copy_file_range: copies through a kernel buffer (the host-side copy
/// comes with the queued host calls).
pub fn copy_file_range(f: &mut TrapFrame) -> SysResult {
    let [in_fd, in_off, out_fd, out_off, len, flags] = args(f);
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let inf = super::sys_file::file(in_fd)?;
    let outf = super::sys_file::file(out_fd)?;
    for x in [&inf, &outf] {
        if x.inode.as_ref().is_none_or(|i| i.file_type() != FileType::Regular) {
            return Err(Errno::EINVAL);
        }
    }
    if outf.flags() & O_APPEND as u32 != 0 {
        return Err(Errno::EBADF);
    }
    let mut ioff: Option<u64> = if in_off != 0 { Some(read_user(in_off)?) } else { None };
    let mut ooff: Option<u64> = if out_off != 0 { Some(read_user(out_off)?) } else { None };
    let n = super::sys_file::copy_between(&inf, &mut ioff, &outf, &mut ooff, len)?;
    if let Some(o) = ioff {
        if in_off != 0 {
            write_user(in_off, &o)?;
        }
    }
    if let Some(o) = ooff {
        if out_off != 0 {
            write_user(out_off, &o)?;
        }
    }
    Ok(n)
}

/// splice: one end must be a pipe; copies through a kernel buffer.
pub fn splice(f: &mut TrapFrame) -> SysResult {
    let [in_fd, in_off, out_fd, out_off, len, _flags] = args(f);
    let inf = super::sys_file::file(in_fd)?;
    let outf = super::sys_file::file(out_fd)?;
    let is_pipe = |x: &crate::fs::file::File| !x.ops.seekable() && x.inode.is_none();
    if !is_pipe(&inf) && !is_pipe(&outf) {
        return Err(Errno::EINVAL);
    }
    if (in_off != 0 && is_pipe(&inf)) || (out_off != 0 && is_pipe(&outf)) {
        return Err(Errno::ESPIPE);
    }
    let mut ioff: Option<u64> = if in_off != 0 { Some(read_user(in_off)?) } else { None };
    let mut ooff: Option<u64> = if out_off != 0 { Some(read_user(out_off)?) } else { None };
    let n = super::sys_file::copy_between(&inf, &mut ioff, &outf, &mut ooff, len.min(1 << 16))?;
    if let (Some(o), true) = (ioff, in_off != 0) {
        write_user(in_off, &o)?;
    }
    if let (Some(o), true) = (ooff, out_off != 0) {
        write_user(out_off, &o)?;
    }
    Ok(n)
}

/// sysinfo: uptime, memory of the sandbox, process count.
pub fn sysinfo(f: &mut TrapFrame) -> SysResult {
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct SysInfo {
        uptime: i64,
        loads: [u64; 3],
        totalram: u64,
        freeram: u64,
        sharedram: u64,
        bufferram: u64,
        totalswap: u64,
        freeswap: u64,
        procs: u16,
        _pad: [u16; 3],
        totalhigh: u64,
        freehigh: u64,
        mem_unit: u32,
        _f: [u32; 1],
    }
    let total = crate::boot::params().user_mem_limit;
    let info = SysInfo {
        uptime: (crate::time::uptime_ns() / 1_000_000_000) as i64,
        totalram: total,
        freeram: crate::mm::frame::free_bytes().min(total),
        procs: crate::task::pid::processes().len().min(u16::MAX as usize) as u16,
        mem_unit: 1,
        ..Default::default()
    };
    write_user(f.rdi, &info).map(|_| 0)
}

/// fadvise64: advice is a hint; the descriptor and advice are checked.
pub fn fadvise64(f: &mut TrapFrame) -> SysResult {
    let [fd, _off, _len, advice, ..] = args(f);
    let file = super::sys_file::file(fd)?;
    if !file.ops.seekable() {
        return Err(Errno::ESPIPE);
    }
    if advice > 5 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// sync and syncfs: data written through the file service is in the host
/// kernel already; its own write-back is the host's business.
pub fn sync(_f: &mut TrapFrame) -> SysResult {
    Ok(0)
}

pub fn syncfs(f: &mut TrapFrame) -> SysResult {
    super::sys_file::file(f.rdi)?;
    Ok(0)
}
