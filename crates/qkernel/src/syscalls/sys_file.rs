//! File-descriptor system calls: I/O on open files, descriptor management,
//! pipes. Path-based calls are in `sys_fs.rs`. Data moves through
//! [`IoBuf`]: host-backed files (the container root, stdio) hand the guest
//! frames behind the user buffer to the host, in-guest files copy.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{read_user, write_user};
use crate::fs::file::{File, SETFL_MASK};
use crate::fs::iobuf::IoBuf;
use crate::fs::pipe::Pipe;
use crate::fs::{DirEntry, FileType};
use crate::task;
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::linux::consts::fcntl::*;
use qlib::linux::types::{Iovec, Stat};
use qlib::linux::Errno;

/// Most iovecs readv/writev accept (UIO_MAXIOV).
const UIO_MAXIOV: u64 = 1024;
const SEEK_SET: u64 = 0;
const SEEK_CUR: u64 = 1;
const SEEK_END: u64 = 2;
const FIONREAD: u64 = 0x541b;
const FIONBIO: u64 = 0x5421;
const FIOCLEX: u64 = 0x5451;
const FIONCLEX: u64 = 0x5450;

/// The open file behind `fd`.
pub fn file(fd: u64) -> Result<Arc<File>, Errno> {
    task::files().lock().get(fd)
}

fn nofile_limit() -> u64 {
    task::process().rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_NOFILE as usize].cur
}

/// Installs `f` at the lowest free descriptor.
pub fn install(f: Arc<File>, cloexec: bool) -> SysResult {
    task::files().lock().install(f, cloexec, 0, nofile_limit())
}

/// Reads or writes `buf` at the file position (advancing it) or at
/// `offset`.
fn io(f: &File, buf: &mut IoBuf, offset: Option<u64>, write: bool) -> SysResult {
    if write && !f.writable() || !write && !f.readable() {
        return Err(Errno::EBADF);
    }
    if let Some(ino) = &f.inode {
        if ino.file_type() == FileType::Directory && !write {
            return Err(Errno::EISDIR);
        }
    }
    let seekable = f.ops.seekable();
    match offset {
        Some(off) => {
            if !seekable {
                return Err(Errno::ESPIPE);
            }
            if off as i64 <= -1 {
                return Err(Errno::EINVAL);
            }
            let n = if write { f.ops.write(f, buf, off)? } else { f.ops.read(f, buf, off)? };
            Ok(n as u64)
        }
        None if seekable => {
            let pos = *f.pos.lock();
            let n = if write { f.ops.write(f, buf, pos)? } else { f.ops.read(f, buf, pos)? };
            let mut p = f.pos.lock();
            if write && f.flags() & O_APPEND as u32 != 0 {
                // The file system moved the position to the new end.
                if *p == pos {
                    *p = pos + n as u64;
                }
            } else {
                *p = pos + n as u64;
            }
            Ok(n as u64)
        }
        None => {
            let n = if write { f.ops.write(f, buf, 0)? } else { f.ops.read(f, buf, 0)? };
            Ok(n as u64)
        }
    }
}

fn rw(fd: u64, segs: Vec<(u64, u64)>, offset: Option<u64>, write: bool) -> SysResult {
    let f = file(fd)?;
    let mut buf = IoBuf::user(segs);
    if buf.is_empty() && !write {
        // read(fd, p, 0) still checks the descriptor.
        return io(&f, &mut buf, offset, write).or(Ok(0));
    }
    io(&f, &mut buf, offset, write)
}

pub fn read(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, count, ..] = args(f);
    rw(fd, alloc::vec![(buf, count)], None, false)
}

pub fn write(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, count, ..] = args(f);
    rw(fd, alloc::vec![(buf, count)], None, true)
}

pub fn pread64(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, count, off, ..] = args(f);
    rw(fd, alloc::vec![(buf, count)], Some(off), false)
}

pub fn pwrite64(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, count, off, ..] = args(f);
    rw(fd, alloc::vec![(buf, count)], Some(off), true)
}

pub(crate) fn iovecs(addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if count > UIO_MAXIOV {
        return Err(Errno::EINVAL);
    }
    let mut v = Vec::with_capacity(count as usize);
    let mut total: u64 = 0;
    for i in 0..count {
        let iov: Iovec = read_user(addr + i * 16)?;
        total = total.checked_add(iov.len).filter(|t| *t <= i64::MAX as u64).ok_or(Errno::EINVAL)?;
        v.push((iov.base, iov.len));
    }
    Ok(v)
}

pub fn readv(f: &mut TrapFrame) -> SysResult {
    let [fd, iov, cnt, ..] = args(f);
    file(fd)?;
    rw(fd, iovecs(iov, cnt)?, None, false)
}

pub fn writev(f: &mut TrapFrame) -> SysResult {
    let [fd, iov, cnt, ..] = args(f);
    file(fd)?;
    rw(fd, iovecs(iov, cnt)?, None, true)
}

fn pos_arg(off: u64) -> Option<u64> {
    // preadv2/pwritev2: -1 means the file position.
    if off as i64 == -1 {
        None
    } else {
        Some(off)
    }
}

pub fn preadv(f: &mut TrapFrame) -> SysResult {
    let [fd, iov, cnt, off, ..] = args(f);
    file(fd)?;
    rw(fd, iovecs(iov, cnt)?, Some(off), false)
}

pub fn pwritev(f: &mut TrapFrame) -> SysResult {
    let [fd, iov, cnt, off, ..] = args(f);
    file(fd)?;
    rw(fd, iovecs(iov, cnt)?, Some(off), true)
}

pub fn preadv2(f: &mut TrapFrame) -> SysResult {
    let [fd, iov, cnt, off, ..] = args(f);
    file(fd)?;
    rw(fd, iovecs(iov, cnt)?, pos_arg(off), false)
}

pub fn pwritev2(f: &mut TrapFrame) -> SysResult {
    let [fd, iov, cnt, off, ..] = args(f);
    file(fd)?;
    rw(fd, iovecs(iov, cnt)?, pos_arg(off), true)
}

/// The attributes of an open file.
pub fn stat_file(f: &File) -> Result<Stat, Errno> {
    match &f.inode {
        Some(i) => i.stat(),
        None => f.ops.stat(f),
    }
}

pub fn fstat(f: &mut TrapFrame) -> SysResult {
    let st = stat_file(&*file(f.rdi)?)?;
    write_user(f.rsi, &st)?;
    Ok(0)
}

pub fn lseek(f: &mut TrapFrame) -> SysResult {
    let [fd, off, whence, ..] = args(f);
    let file = file(fd)?;
    if !file.ops.seekable() {
        return Err(Errno::ESPIPE);
    }
    let base = match whence {
        SEEK_SET => 0i64,
        SEEK_CUR => *file.pos.lock() as i64,
        SEEK_END => stat_file(&file)?.st_size,
        // SEEK_DATA/SEEK_HOLE: the whole file is data.
        3 | 4 => {
            let size = stat_file(&file)?.st_size;
            if off as i64 >= size || (off as i64) < 0 {
                return Err(Errno::ENXIO);
            }
            let p = if whence == 3 { off as i64 } else { size };
            *file.pos.lock() = p as u64;
            return Ok(p as u64);
        }
        _ => return Err(Errno::EINVAL),
    };
    let new = base.checked_add(off as i64).ok_or(Errno::EOVERFLOW)?;
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    *file.pos.lock() = new as u64;
    Ok(new as u64)
}

pub fn close(f: &mut TrapFrame) -> SysResult {
    let closed = task::files().lock().close(f.rdi)?;
    drop(closed);
    Ok(0)
}

pub fn close_range(f: &mut TrapFrame) -> SysResult {
    let [first, last, flags, ..] = args(f);
    const CLOSE_RANGE_UNSHARE: u64 = 2;
    const CLOSE_RANGE_CLOEXEC: u64 = 4;
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    let closed = task::files().lock().close_range(first, last, flags & CLOSE_RANGE_CLOEXEC != 0);
    drop(closed);
    Ok(0)
}

pub fn ioctl(f: &mut TrapFrame) -> SysResult {
    let [fd, req, arg, ..] = args(f);
    let file = file(fd)?;
    match req {
        FIOCLEX | FIONCLEX => {
            task::files().lock().set_cloexec(fd, req == FIOCLEX)?;
            Ok(0)
        }
        FIONBIO => {
            let on: i32 = read_user(arg)?;
            let nb = O_NONBLOCK as u32;
            let old = file.flags();
            file.flags.store(if on != 0 { old | nb } else { old & !nb }, core::sync::atomic::Ordering::Relaxed);
            Ok(0)
        }
        FIONREAD if file.inode.as_ref().is_some_and(|i| i.file_type() == FileType::Regular) => {
            let st = stat_file(&file)?;
            let avail = (st.st_size as u64).saturating_sub(*file.pos.lock());
            write_user(arg, &(avail.min(i32::MAX as u64) as i32))?;
            Ok(0)
        }
        _ => file.ops.ioctl(&file, req, arg),
    }
}

pub fn dup(f: &mut TrapFrame) -> SysResult {
    let files = task::files();
    let mut t = files.lock();
    let e = t.get(f.rdi)?;
    t.install(e, false, 0, nofile_limit())
}

fn dup_to(old: u64, new: u64, cloexec: bool) -> SysResult {
    let files = task::files();
    let replaced = {
        let mut t = files.lock();
        let e = t.get(old)?;
        t.install_at(e, cloexec, new, nofile_limit())?
    };
    drop(replaced);
    Ok(new)
}

pub fn dup2(f: &mut TrapFrame) -> SysResult {
    if f.rdi == f.rsi {
        file(f.rdi)?;
        return Ok(f.rsi);
    }
    dup_to(f.rdi, f.rsi, false)
}

pub fn dup3(f: &mut TrapFrame) -> SysResult {
    let [old, new, flags, ..] = args(f);
    if old == new || flags & !O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    dup_to(old, new, flags & O_CLOEXEC != 0)
}

pub fn fcntl(f: &mut TrapFrame) -> SysResult {
    let [fd, cmd, arg, ..] = args(f);
    const F_GETLK: u64 = 5;
    const F_SETLK: u64 = 6;
    const F_SETLKW: u64 = 7;
    const F_OFD_GETLK: u64 = 36;
    const F_OFD_SETLK: u64 = 37;
    const F_OFD_SETLKW: u64 = 38;
    const F_SETPIPE_SZ: u64 = 1031;
    const F_GETPIPE_SZ: u64 = 1032;
    const F_ADD_SEALS: u64 = 1033;
    const F_GET_SEALS: u64 = 1034;
    let files = task::files();
    let mut t = files.lock();
    let e = t.entry(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let limit = nofile_limit();
            if arg >= limit {
                return Err(Errno::EINVAL);
            }
            t.install(e.file, cmd == F_DUPFD_CLOEXEC, arg, limit)
        }
        F_GETFD => Ok(e.cloexec as u64 * FD_CLOEXEC),
        F_SETFD => t.set_cloexec(fd, arg & FD_CLOEXEC != 0).map(|_| 0),
        F_GETFL => Ok((e.file.flags() & !(O_CLOEXEC as u32)) as u64 | 0o100000 /* O_LARGEFILE */),
        F_SETFL => {
            let old = e.file.flags();
            let new = (old & !SETFL_MASK) | (arg as u32 & SETFL_MASK);
            e.file.flags.store(new, core::sync::atomic::Ordering::Relaxed);
            Ok(0)
        }
        // Record locks: one sandbox holds the files, and its processes
        // coordinate through these; without contention tracking yet every
        // lock is granted (F_GETLK reports the range unlocked).
        F_GETLK | F_OFD_GETLK => {
            // struct flock: l_type (i16) first; F_UNLCK = 2.
            write_user(arg, &2i16)?;
            Ok(0)
        }
        F_SETLK | F_SETLKW | F_OFD_SETLK | F_OFD_SETLKW => {
            let _: [u8; 32] = read_user(arg)?;
            Ok(0)
        }
        F_GETPIPE_SZ | F_SETPIPE_SZ => {
            drop(t);
            e.file.ops.ioctl(&e.file, 0x1_0000_0000 | cmd, arg)
        }
        F_ADD_SEALS | F_GET_SEALS => Err(Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

pub fn getdents64(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, count, ..] = args(f);
    let file = file(fd)?;
    if file.inode.as_ref().is_none_or(|i| i.file_type() != FileType::Directory) {
        return Err(Errno::ENOTDIR);
    }
    let start = *file.pos.lock();
    let mut out: Vec<u8> = Vec::new();
    let mut next = start;
    let mut too_small = false;
    let mut emit = |off: u64, e: DirEntry| -> bool {
        let reclen = (19 + e.name.len() + 1 + 7) & !7;
        if out.len() + reclen > count as usize {
            too_small = out.is_empty();
            return false;
        }
        let at = out.len();
        out.resize(at + reclen, 0);
        out[at..at + 8].copy_from_slice(&e.ino.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        out[at + 16..at + 18].copy_from_slice(&(reclen as u16).to_le_bytes());
        out[at + 18] = e.kind.dirent_type();
        out[at + 19..at + 19 + e.name.len()].copy_from_slice(&e.name);
        next = off;
        true
    };
    file.ops.readdir(&file, start, &mut emit)?;
    if too_small {
        return Err(Errno::EINVAL);
    }
    crate::arch::x86_64::usercopy::copy_to_user(buf, &out)?;
    *file.pos.lock() = next;
    Ok(out.len() as u64)
}

pub fn fsync(f: &mut TrapFrame) -> SysResult {
    let file = file(f.rdi)?;
    file.ops.fsync(&file).map(|_| 0)
}

pub fn ftruncate(f: &mut TrapFrame) -> SysResult {
    let [fd, len, ..] = args(f);
    let file = file(fd)?;
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if !file.writable() {
        return Err(Errno::EINVAL);
    }
    let inode = file.inode.clone().ok_or(Errno::EINVAL)?;
    if inode.file_type() != FileType::Regular {
        return Err(Errno::EINVAL);
    }
    inode.setattr(&crate::fs::SetAttr { size: Some(len), ..Default::default() }).map(|_| 0)
}

pub fn fallocate(f: &mut TrapFrame) -> SysResult {
    let [fd, mode, off, len, ..] = args(f);
    let file = file(fd)?;
    if (off as i64) < 0 || (len as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    if !file.writable() {
        return Err(Errno::EBADF);
    }
    if mode != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let inode = file.inode.clone().ok_or(Errno::ENODEV)?;
    let size = inode.stat()?.st_size as u64;
    let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
    if end > size {
        inode.setattr(&crate::fs::SetAttr { size: Some(end), ..Default::default() })?;
    }
    Ok(0)
}

fn make_pipe(fds: u64, flags: u64) -> SysResult {
    if flags & !(O_CLOEXEC | O_NONBLOCK | O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = Pipe::new();
    let extra = (flags & (O_NONBLOCK | O_DIRECT)) as u32;
    let r = File::new(p.open_end(false), None, None, O_RDONLY as u32 | extra);
    let w = File::new(p.open_end(true), None, None, O_WRONLY as u32 | extra);
    let cloexec = flags & O_CLOEXEC != 0;
    let files = task::files();
    let (a, b) = {
        let mut t = files.lock();
        let a = t.install(r, cloexec, 0, nofile_limit())?;
        match t.install(w, cloexec, 0, nofile_limit()) {
            Ok(b) => (a, b),
            Err(e) => {
                let _ = t.close(a);
                return Err(e);
            }
        }
    };
    if let Err(e) = write_user(fds, &[a as i32, b as i32]) {
        let mut t = files.lock();
        let _ = t.close(a);
        let _ = t.close(b);
        return Err(e);
    }
    Ok(0)
}

pub fn pipe(f: &mut TrapFrame) -> SysResult {
    make_pipe(f.rdi, 0)
}

pub fn pipe2(f: &mut TrapFrame) -> SysResult {
    make_pipe(f.rdi, f.rsi)
}

/// sendfile: copies through a kernel buffer (host-to-host moves come with
/// the queued host calls).
pub fn sendfile(f: &mut TrapFrame) -> SysResult {
    let [out_fd, in_fd, offp, count, ..] = args(f);
    let inf = file(in_fd)?;
    let outf = file(out_fd)?;
    if !inf.readable() || !outf.writable() {
        return Err(Errno::EBADF);
    }
    let mut off: Option<u64> = if offp != 0 { Some(read_user::<u64>(offp)?) } else { None };
    let mut total = 0u64;
    let mut chunk = alloc::vec![0u8; 64 << 10];
    while total < count {
        let want = ((count - total) as usize).min(chunk.len());
        let mut rb = IoBuf::kernel(&mut chunk[..want]);
        let n = match io(&inf, &mut rb, off, false) {
            Ok(n) => n as usize,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let mut wb = IoBuf::kernel(&mut chunk[..n]);
        let w = match io(&outf, &mut wb, None, true) {
            Ok(w) => w,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        total += w;
        if let Some(o) = off.as_mut() {
            *o += w;
        }
        if (w as usize) < n {
            break;
        }
    }
    if let Some(o) = off {
        write_user(offp, &o)?;
    }
    Ok(total)
}

/// flock: checks the operation; locks are granted at once (the sandbox's
/// processes share one kernel, and contention tracking is not built yet).
pub fn flock(f: &mut TrapFrame) -> SysResult {
    let [fd, op, ..] = args(f);
    const LOCK_SH: u64 = 1;
    const LOCK_EX: u64 = 2;
    const LOCK_NB: u64 = 4;
    const LOCK_UN: u64 = 8;
    file(fd)?;
    match op & !LOCK_NB {
        LOCK_SH | LOCK_EX | LOCK_UN => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// Copies up to `count` bytes from `inf` to `outf` through a kernel buffer,
/// at the given offsets (advanced) or the file positions.
pub fn copy_between(inf: &File, ioff: &mut Option<u64>, outf: &File, ooff: &mut Option<u64>, count: u64) -> SysResult {
    if !inf.readable() || !outf.writable() {
        return Err(Errno::EBADF);
    }
    let mut total = 0u64;
    let mut chunk = alloc::vec![0u8; (64 << 10).min(count.max(1) as usize)];
    while total < count {
        let want = ((count - total) as usize).min(chunk.len());
        let mut rb = IoBuf::kernel(&mut chunk[..want]);
        let n = match io(inf, &mut rb, *ioff, false) {
            Ok(n) => n as usize,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let mut wb = IoBuf::kernel(&mut chunk[..n]);
        let w = match io(outf, &mut wb, *ooff, true) {
            Ok(w) => w,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        total += w;
        if let Some(o) = ioff.as_mut() {
            *o += w;
        }
        if let Some(o) = ooff.as_mut() {
            *o += w;
        }
        if (w as usize) < n || n < want {
            break;
        }
    }
    Ok(total)
}
