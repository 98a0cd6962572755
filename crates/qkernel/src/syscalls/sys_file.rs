//! File-descriptor system calls. Until the VFS lands, descriptors are the
//! sandbox's stdio streams, served by the VMM with zero guest copies: the
//! host reads/writes the frames behind the user buffer directly.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{copy_to_user, read_user, strncpy_from_user, write_user};
use crate::hcall;
use crate::task::{self, fd::File};
use alloc::vec::Vec;
use qlib::hcall::{Call, GuestIovec, TTY_IOCTL_ALLOWLIST};
use qlib::linux::consts::fcntl::{
    AT_EMPTY_PATH, FD_CLOEXEC, F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_GETFL, F_SETFD, F_SETFL, O_CLOEXEC, O_RDONLY,
    O_WRONLY,
};
use qlib::linux::consts::ioctl::*;
use qlib::linux::types::{Iovec, Stat, Termios, Winsize};
use qlib::linux::Errno;

/// Most bytes one read/write moves (Linux's MAX_RW_COUNT).
const MAX_RW_COUNT: u64 = 0x7fff_f000;
/// Most iovecs readv/writev accept (UIO_MAXIOV).
const UIO_MAXIOV: u64 = 1024;

/// Collects the frames behind user buffers, stopping at the first bad page
/// (Linux writes/reads the valid prefix and returns a short count).
/// `fill` is true when the host will write into the buffers (a read).
fn collect(bufs: &[(u64, u64)], fill: bool) -> Result<Vec<GuestIovec>, Errno> {
    let mm = task::mm();
    let r = collect_in(&mm.space.read(), bufs, fill);
    mm.finish();
    r
}

fn collect_in(
    mm: &crate::mm::addrspace::AddressSpace,
    bufs: &[(u64, u64)],
    fill: bool,
) -> Result<Vec<GuestIovec>, Errno> {
    let mut out = Vec::new();
    let mut total = 0u64;
    for &(base, len) in bufs {
        let len = len.min(MAX_RW_COUNT - total);
        if len == 0 {
            continue;
        }
        match mm.user_frames(base, len, fill, &mut out) {
            Ok(()) => total += len,
            // Nothing resolved: the call fails; otherwise move the prefix.
            Err(e) if out.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(out)
}

fn stdio_io(fd_num: u8, bufs: &[(u64, u64)], write: bool) -> SysResult {
    if write && fd_num == 0 || !write && fd_num != 0 {
        return Err(Errno::EBADF);
    }
    let iovs = collect(bufs, !write)?;
    if iovs.is_empty() {
        return Ok(0);
    }
    let mut total = 0;
    for chunk in iovs.chunks(qlib::hcall::MAX_IOVECS) {
        // A task that must wait for the host parks; the vCPU stays free.
        match crate::hostq::stdio(fd_num, chunk, write) {
            Ok(got) => {
                total += got;
                let want: u64 = chunk.iter().map(|v| v.len).sum();
                if got < want {
                    break;
                }
            }
            Err(e) if total == 0 => {
                if e == Errno::EPIPE {
                    // Writing to a pipe nobody reads raises SIGPIPE.
                    let t = task::current_arc();
                    let info = crate::task::signal::SigInfo::kernel(qlib::linux::consts::signal::SIGPIPE);
                    crate::task::signal::send_to_task(&t, qlib::linux::consts::signal::SIGPIPE, info);
                }
                return Err(e);
            }
            Err(_) => break,
        }
    }
    Ok(total)
}

fn rw(fd: u64, bufs: &[(u64, u64)], write: bool) -> SysResult {
    let entry = task::files().lock().get(fd)?;
    match entry.file {
        File::Stdio(n) => stdio_io(n, bufs, write),
    }
}

pub fn read(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, count, ..] = args(f);
    rw(fd, &[(buf, count)], false)
}

pub fn write(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, count, ..] = args(f);
    rw(fd, &[(buf, count)], true)
}

fn iovecs(addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
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
    task::files().lock().get(fd)?;
    rw(fd, &iovecs(iov, cnt)?, false)
}

pub fn writev(f: &mut TrapFrame) -> SysResult {
    let [fd, iov, cnt, ..] = args(f);
    task::files().lock().get(fd)?;
    rw(fd, &iovecs(iov, cnt)?, true)
}

pub fn close(f: &mut TrapFrame) -> SysResult {
    task::files().lock().close(f.rdi)?;
    Ok(0)
}

fn stat_fd(fd: u64) -> Result<Stat, Errno> {
    let entry = task::files().lock().get(fd)?;
    match entry.file {
        File::Stdio(n) => crate::hostfile::stat_handle(n as u64),
    }
}

pub fn fstat(f: &mut TrapFrame) -> SysResult {
    let st = stat_fd(f.rdi)?;
    write_user(f.rsi, &st)?;
    Ok(0)
}

pub fn newfstatat(f: &mut TrapFrame) -> SysResult {
    let [dirfd, path, statbuf, flags, ..] = args(f);
    let mut name = [0u8; 1];
    let n = strncpy_from_user(&mut name, path).map_err(|e| if e == Errno::ENAMETOOLONG { Errno::ENOENT } else { e })?;
    if n == 0 && flags & AT_EMPTY_PATH != 0 {
        let st = stat_fd(dirfd)?;
        write_user(statbuf, &st)?;
        return Ok(0);
    }
    // Path lookups arrive with the VFS.
    Err(Errno::ENOENT)
}

pub fn ioctl(f: &mut TrapFrame) -> SysResult {
    let [fd, req, arg, ..] = args(f);
    let entry = task::files().lock().get(fd)?;
    let File::Stdio(n) = entry.file;
    if !TTY_IOCTL_ALLOWLIST.contains(&req) {
        return Err(Errno::ENOTTY);
    }
    let p = hcall::page();
    match req {
        TCSETS => {
            let t: Termios = read_user(arg)?;
            // SAFETY: Termios is plain data; the page's data area is larger.
            unsafe { core::ptr::copy_nonoverlapping(&t as *const Termios as *const u8, p.data.as_mut_ptr(), 36) };
        }
        TCGETS | TIOCGWINSZ | TIOCGPGRP => {}
        _ => return Err(Errno::ENOTTY),
    }
    p.args[0] = n as u64;
    p.args[1] = req;
    hcall::call_result(Call::TtyIoctl)?;
    let p = hcall::page();
    match req {
        TCGETS => copy_to_user(arg, &p.data[..core::mem::size_of::<Termios>()])?,
        TIOCGWINSZ => copy_to_user(arg, &p.data[..core::mem::size_of::<Winsize>()])?,
        // The host's process group means nothing here: the terminal's
        // foreground group is the sandbox's first process group.
        TIOCGPGRP => write_user(arg, &(task::process().pgid.load(core::sync::atomic::Ordering::Relaxed) as i32))?,
        _ => {}
    }
    Ok(0)
}

fn readlink_common(path: u64, buf: u64, size: u64) -> SysResult {
    if size as i64 <= 0 {
        return Err(Errno::EINVAL);
    }
    let mut name = [0u8; 256];
    let n = strncpy_from_user(&mut name, path).map_err(|e| if e == Errno::ENAMETOOLONG { Errno::ENOENT } else { e })?;
    if &name[..n] == b"/proc/self/exe" {
        let exe = task::process().exe.lock().clone();
        let len = exe.len().min(size as usize);
        copy_to_user(buf, &exe[..len])?;
        return Ok(len as u64);
    }
    Err(Errno::ENOENT)
}

pub fn readlink(f: &mut TrapFrame) -> SysResult {
    let [path, buf, size, ..] = args(f);
    readlink_common(path, buf, size)
}

pub fn readlinkat(f: &mut TrapFrame) -> SysResult {
    let [_dirfd, path, buf, size, ..] = args(f);
    readlink_common(path, buf, size)
}

fn nofile_limit() -> u64 {
    task::process().rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_NOFILE as usize].cur
}

pub fn dup(f: &mut TrapFrame) -> SysResult {
    let files = task::files();
    let mut t = files.lock();
    let e = t.get(f.rdi)?;
    t.install(crate::task::fd::FdEntry { cloexec: false, ..e }, 0, nofile_limit())
}

fn dup_to(old: u64, new: u64, cloexec: bool) -> SysResult {
    let files = task::files();
    let mut t = files.lock();
    let e = t.get(old)?;
    t.install_at(crate::task::fd::FdEntry { cloexec, ..e }, new, nofile_limit())?;
    Ok(new)
}

pub fn dup2(f: &mut TrapFrame) -> SysResult {
    if f.rdi == f.rsi {
        task::files().lock().get(f.rdi)?;
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
    let files = task::files();
    let mut t = files.lock();
    let e = t.get(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            t.install(crate::task::fd::FdEntry { cloexec: cmd == F_DUPFD_CLOEXEC, ..e }, arg, nofile_limit())
        }
        F_GETFD => Ok(e.cloexec as u64 * FD_CLOEXEC),
        F_SETFD => t.set_cloexec(fd, arg & FD_CLOEXEC != 0).map(|_| 0),
        F_GETFL => Ok(match e.file {
            File::Stdio(0) => O_RDONLY,
            File::Stdio(_) => O_WRONLY,
        }),
        F_SETFL => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}
