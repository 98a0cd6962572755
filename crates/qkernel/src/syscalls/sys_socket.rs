//! Socket system calls: descriptor plumbing, user-memory structures
//! (`sockaddr`, `msghdr`, `mmsghdr`, control buffers) and blocking flags;
//! the protocols are in `crate::net`.

use super::sys_file::{file, install, iovecs};
use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{copy_from_user, copy_to_user, read_user, write_user};
use crate::fs::file::File;
use crate::fs::iobuf::IoBuf;
use crate::net::{self, RecvOut, SendMsg, SockFile, Socket};
use crate::net::{MSG_DONTWAIT, MSG_ERRQUEUE, MSG_WAITFORONE, SOCK_CLOEXEC, SOCK_NONBLOCK};
use crate::task;
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::linux::Errno;

/// Longest socket address accepted (sizeof(struct sockaddr_storage)).
const MAX_ADDR: u64 = 128;
/// Longest control buffer accepted on send.
const MAX_CONTROL: u64 = 64 << 10;
/// Most messages one sendmmsg/recvmmsg handles (UIO_MAXIOV).
const MAX_MMSG: u64 = 1024;

fn sock(fd: u64) -> Result<(Arc<File>, Arc<dyn Socket>), Errno> {
    let f = file(fd)?;
    let s = f.ops.as_socket().cloned().ok_or(Errno::ENOTSOCK)?;
    Ok((f, s))
}

fn read_addr(ptr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len as i32 as i64 > MAX_ADDR as i64 || (len as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let mut a = alloc::vec![0u8; len as i32 as usize];
    copy_from_user(&mut a, ptr)?;
    Ok(a)
}

/// Copies `addr` to the user (truncated to the room the user gave) and
/// stores its full length.
fn write_addr(ptr: u64, lenp: u64, addr: &[u8]) -> Result<(), Errno> {
    if ptr == 0 || lenp == 0 {
        return Ok(());
    }
    let room: i32 = read_user(lenp)?;
    if room < 0 {
        return Err(Errno::EINVAL);
    }
    let n = (room as usize).min(addr.len());
    copy_to_user(ptr, &addr[..n])?;
    write_user(lenp, &(addr.len() as u32))
}

fn split_type(ty: u64) -> Result<(u32, bool, bool), Errno> {
    let ty = ty as u32;
    let flags = ty & !net::SOCK_TYPE_MASK;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok((ty & net::SOCK_TYPE_MASK, flags & SOCK_NONBLOCK != 0, flags & SOCK_CLOEXEC != 0))
}

pub fn socket(f: &mut TrapFrame) -> SysResult {
    let [domain, ty, protocol, ..] = args(f);
    let (ty, nonblock, cloexec) = split_type(ty)?;
    let s = net::create(domain, ty, protocol as u32)?;
    install(SockFile::open(s, nonblock), cloexec)
}

pub fn socketpair(f: &mut TrapFrame) -> SysResult {
    let [domain, ty, protocol, sv, ..] = args(f);
    let (ty, nonblock, cloexec) = split_type(ty)?;
    if domain as u16 != net::AF_UNIX {
        return Err(if matches!(domain as u16, net::AF_INET | net::AF_INET6) {
            Errno::EOPNOTSUPP
        } else {
            Errno::EAFNOSUPPORT
        });
    }
    if protocol != 0 {
        return Err(Errno::EPROTONOSUPPORT);
    }
    let (a, b) = net::unix::UnixSocket::pair(ty)?;
    let fa = install(SockFile::open(a, nonblock), cloexec)?;
    let fb = match install(SockFile::open(b, nonblock), cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = task::files().lock().close(fa);
            return Err(e);
        }
    };
    if let Err(e) = write_user(sv, &[fa as i32, fb as i32]) {
        let files = task::files();
        let mut t = files.lock();
        let _ = t.close(fa);
        let _ = t.close(fb);
        return Err(e);
    }
    Ok(0)
}

pub fn bind(f: &mut TrapFrame) -> SysResult {
    let [fd, addr, len, ..] = args(f);
    let (_, s) = sock(fd)?;
    s.bind(&read_addr(addr, len)?)?;
    Ok(0)
}

pub fn listen(f: &mut TrapFrame) -> SysResult {
    let [fd, backlog, ..] = args(f);
    let (_, s) = sock(fd)?;
    s.listen((backlog as i32).min(4096))?;
    Ok(0)
}

fn do_accept(fd: u64, addr: u64, lenp: u64, flags: u64) -> SysResult {
    if flags as u32 & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let (f, s) = sock(fd)?;
    let (c, peer) = s.accept(f.nonblocking())?;
    let nf = SockFile::open(c, flags as u32 & SOCK_NONBLOCK != 0);
    let newfd = install(nf, flags as u32 & SOCK_CLOEXEC != 0)?;
    if let Err(e) = write_addr(addr, lenp, &peer) {
        let _ = task::files().lock().close(newfd);
        return Err(e);
    }
    Ok(newfd)
}

pub fn accept(f: &mut TrapFrame) -> SysResult {
    let [fd, addr, lenp, ..] = args(f);
    do_accept(fd, addr, lenp, 0)
}

pub fn accept4(f: &mut TrapFrame) -> SysResult {
    let [fd, addr, lenp, flags, ..] = args(f);
    do_accept(fd, addr, lenp, flags)
}

pub fn connect(f: &mut TrapFrame) -> SysResult {
    let [fd, addr, len, ..] = args(f);
    let (file, s) = sock(fd)?;
    s.connect(&read_addr(addr, len)?, file.nonblocking())?;
    Ok(0)
}

pub fn shutdown(f: &mut TrapFrame) -> SysResult {
    let [fd, how, ..] = args(f);
    let (_, s) = sock(fd)?;
    if how > 2 {
        return Err(Errno::EINVAL);
    }
    s.shutdown(how)?;
    Ok(0)
}

pub fn getsockname(f: &mut TrapFrame) -> SysResult {
    let [fd, addr, lenp, ..] = args(f);
    let (_, s) = sock(fd)?;
    let a = s.getsockname()?;
    write_addr(addr, lenp, &a)?;
    Ok(0)
}

pub fn getpeername(f: &mut TrapFrame) -> SysResult {
    let [fd, addr, lenp, ..] = args(f);
    let (_, s) = sock(fd)?;
    let a = s.getpeername()?;
    write_addr(addr, lenp, &a)?;
    Ok(0)
}

pub fn setsockopt(f: &mut TrapFrame) -> SysResult {
    let [fd, level, name, val, len, ..] = args(f);
    let (_, s) = sock(fd)?;
    if len as i32 as i64 > 4096 || (len as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let mut v = alloc::vec![0u8; len as i32 as usize];
    copy_from_user(&mut v, val)?;
    s.setsockopt(level as i32, name as i32, &v)?;
    Ok(0)
}

pub fn getsockopt(f: &mut TrapFrame) -> SysResult {
    let [fd, level, name, val, lenp, ..] = args(f);
    let (_, s) = sock(fd)?;
    let room: i32 = read_user(lenp)?;
    if room < 0 {
        return Err(Errno::EINVAL);
    }
    let v = s.getsockopt(level as i32, name as i32, room as usize)?;
    let n = (room as usize).min(v.len());
    copy_to_user(val, &v[..n])?;
    write_user(lenp, &(n as u32))?;
    Ok(0)
}

/// `struct msghdr` fields.
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn read_msghdr(at: u64) -> Result<MsgHdr, Errno> {
    let w: [u64; 7] = read_user(at)?;
    Ok(MsgHdr { name: w[0], namelen: w[1] as u32, iov: w[2], iovlen: w[3], control: w[4], controllen: w[5] })
}

fn nonblocking(f: &File, flags: u32) -> bool {
    f.nonblocking() || flags & MSG_DONTWAIT != 0
}

fn send_one(f: &File, s: &dyn Socket, m: &MsgHdr, flags: u32) -> Result<usize, Errno> {
    let addr = if m.name != 0 && m.namelen > 0 { Some(read_addr(m.name, m.namelen as u64)?) } else { None };
    let mut control = Vec::new();
    if m.controllen > 0 && m.control != 0 {
        if m.controllen > MAX_CONTROL {
            return Err(Errno::ENOBUFS);
        }
        control.resize(m.controllen as usize, 0);
        copy_from_user(&mut control, m.control)?;
    }
    let mut sm = SendMsg { buf: IoBuf::user(iovecs(m.iov, m.iovlen)?), addr, control };
    s.sendmsg(&mut sm, flags, nonblocking(f, flags))
}

/// Receives one message described by the msghdr at `at`; fills its
/// namelen, controllen and flags.
fn recv_one(f: &File, s: &dyn Socket, at: u64, flags: u32) -> Result<usize, Errno> {
    let m = read_msghdr(at)?;
    if flags & MSG_ERRQUEUE != 0 {
        return Err(Errno::EAGAIN);
    }
    let mut buf = IoBuf::user(iovecs(m.iov, m.iovlen)?);
    let mut out = RecvOut::default();
    let cap = if m.control != 0 { m.controllen as usize } else { 0 };
    let n = s.recvmsg(&mut buf, flags, nonblocking(f, flags), cap, &mut out)?;
    if m.name != 0 {
        let k = (m.namelen as usize).min(out.addr.len());
        copy_to_user(m.name, &out.addr[..k])?;
        write_user(at + 8, &(out.addr.len() as u32))?;
    } else {
        write_user(at + 8, &0u32)?;
    }
    let k = cap.min(out.control.len());
    if k < out.control.len() {
        out.flags |= qlib::hostnet::msg::MSG_CTRUNC;
    }
    if k > 0 {
        copy_to_user(m.control, &out.control[..k])?;
    }
    if m.control != 0 || m.controllen != 0 {
        write_user(at + 40, &(k as u64))?;
    }
    write_user(at + 48, &(out.flags as i32))?;
    Ok(n)
}

pub fn sendto(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, len, flags, addr, alen] = args(f);
    let (file, s) = sock(fd)?;
    let a = if addr != 0 && alen > 0 { Some(read_addr(addr, alen)?) } else { None };
    let mut sm = SendMsg { buf: IoBuf::user_one(buf, len), addr: a, control: Vec::new() };
    Ok(s.sendmsg(&mut sm, flags as u32, nonblocking(&file, flags as u32))? as u64)
}

pub fn recvfrom(f: &mut TrapFrame) -> SysResult {
    let [fd, buf, len, flags, addr, lenp] = args(f);
    let (file, s) = sock(fd)?;
    let mut b = IoBuf::user_one(buf, len);
    let mut out = RecvOut::default();
    let n = s.recvmsg(&mut b, flags as u32, nonblocking(&file, flags as u32), 0, &mut out)?;
    if addr != 0 {
        write_addr(addr, lenp, &out.addr)?;
    }
    Ok(n as u64)
}

pub fn sendmsg(f: &mut TrapFrame) -> SysResult {
    let [fd, msg, flags, ..] = args(f);
    let (file, s) = sock(fd)?;
    let m = read_msghdr(msg)?;
    Ok(send_one(&file, &*s, &m, flags as u32)? as u64)
}

pub fn recvmsg(f: &mut TrapFrame) -> SysResult {
    let [fd, msg, flags, ..] = args(f);
    let (file, s) = sock(fd)?;
    Ok(recv_one(&file, &*s, msg, flags as u32 & !MSG_WAITFORONE)? as u64)
}

pub fn sendmmsg(f: &mut TrapFrame) -> SysResult {
    let [fd, vec, vlen, flags, ..] = args(f);
    let (file, s) = sock(fd)?;
    let mut done = 0u64;
    for i in 0..vlen.min(MAX_MMSG) {
        let at = vec + i * 64;
        let m = read_msghdr(at)?;
        match send_one(&file, &*s, &m, flags as u32) {
            Ok(n) => write_user(at + 56, &(n as u32))?,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
        done += 1;
    }
    Ok(done)
}

pub fn recvmmsg(f: &mut TrapFrame) -> SysResult {
    let [fd, vec, vlen, flags, timeout, ..] = args(f);
    let (file, s) = sock(fd)?;
    let deadline = if timeout != 0 {
        let ts: [i64; 2] = read_user(timeout)?;
        if ts[0] < 0 || !(0..1_000_000_000).contains(&ts[1]) {
            return Err(Errno::EINVAL);
        }
        Some(crate::time::monotonic_ns().saturating_add(ts[0] as u64 * 1_000_000_000 + ts[1] as u64))
    } else {
        None
    };
    let mut flags = flags as u32;
    let mut done = 0u64;
    for i in 0..vlen.min(MAX_MMSG) {
        let at = vec + i * 64;
        match recv_one(&file, &*s, at, flags & !MSG_WAITFORONE) {
            Ok(n) => write_user(at + 56, &(n as u32))?,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
        done += 1;
        if flags & MSG_WAITFORONE != 0 {
            flags |= MSG_DONTWAIT;
        }
        if deadline.is_some_and(|d| crate::time::monotonic_ns() >= d) {
            break;
        }
    }
    Ok(done)
}
