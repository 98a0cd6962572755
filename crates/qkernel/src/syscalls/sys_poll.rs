//! Readiness system calls: poll/ppoll, select/pselect6, epoll, eventfd.

use super::sys_file::{file, install};
use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{copy_from_user, copy_to_user, read_user, write_user};
use crate::fs::eventfd::EventFd;
use crate::fs::file::File;
use crate::fs::poll::{self, Epoll, EpollFile, POLLIN, POLLNVAL, POLLOUT, POLLPRI};
use crate::task::signal::{SigSet, UNBLOCKABLE};
use crate::task::wait::WaitResult;
use crate::task::{self};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use qlib::linux::consts::fcntl::{O_CLOEXEC, O_NONBLOCK, O_RDWR};
use qlib::linux::types::Timespec;
use qlib::linux::Errno;

/// Most descriptors poll accepts (RLIMIT_NOFILE caps it further).
const MAX_POLL_FDS: u64 = 1 << 20;

fn now() -> u64 {
    crate::time::monotonic_ns()
}

/// A relative timeout in ms (negative: none) as a deadline.
fn deadline_ms(ms: i32) -> Option<u64> {
    if ms < 0 {
        None
    } else {
        Some(now().saturating_add(ms as u64 * 1_000_000))
    }
}

fn deadline_ts(addr: u64) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let ts: Timespec = read_user(addr)?;
    let ns = ts.to_ns().ok_or(Errno::EINVAL)?;
    Ok(Some(now().saturating_add(ns)))
}

/// Installs `mask` as the blocked set for the wait; the exit path restores
/// the old one (or a handler's frame keeps it), as for sigsuspend.
fn set_wait_mask(mask_addr: u64, size: u64) -> Result<(), Errno> {
    if mask_addr == 0 {
        return Ok(());
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mask: SigSet = read_user(mask_addr)?;
    let t = task::current();
    let mut s = t.sig.lock();
    if s.saved_mask.is_none() {
        s.saved_mask = Some(s.blocked);
    }
    s.blocked = mask & !UNBLOCKABLE;
    drop(s);
    t.sig_flag.store(true, Ordering::Release);
    Ok(())
}

/// `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

fn do_poll(fds_addr: u64, nfds: u64, deadline: Option<u64>) -> SysResult {
    let limit = task::process().rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_NOFILE as usize].cur;
    if nfds > limit.max(MAX_POLL_FDS) || nfds > MAX_POLL_FDS {
        return Err(Errno::EINVAL);
    }
    let mut pfds = vec![PollFd::default(); nfds as usize];
    for (i, p) in pfds.iter_mut().enumerate() {
        *p = read_user(fds_addr + 8 * i as u64)?;
    }
    let table = task::files();
    let files: Vec<Option<Arc<File>>> =
        pfds.iter().map(|p| if p.fd < 0 { None } else { table.lock().get(p.fd as u64).ok() }).collect();
    let live: Vec<Arc<File>> = files.iter().flatten().cloned().collect();
    let mut ready = 0u64;
    let scan = |pfds: &mut [PollFd]| -> u64 {
        let mut n = 0;
        for (p, f) in pfds.iter_mut().zip(files.iter()) {
            p.revents = 0;
            if p.fd < 0 {
                continue;
            }
            let r = match f {
                None => POLLNVAL,
                Some(f) => poll::revents(f, p.events as u16 as u32),
            };
            p.revents = r as i16;
            if r != 0 {
                n += 1;
            }
        }
        n
    };
    let mut done = false;
    let res = if deadline.is_some_and(|d| d <= now()) {
        ready = scan(&mut pfds);
        WaitResult::Ready
    } else {
        poll::wait_ready(
            &live,
            || {
                ready = scan(&mut pfds);
                done = ready > 0;
                done
            },
            deadline,
        )
    };
    if res == WaitResult::Interrupted && !done {
        return Err(Errno::ERESTARTNOHAND);
    }
    for (i, p) in pfds.iter().enumerate() {
        write_user(fds_addr + 8 * i as u64 + 6, &p.revents)?;
    }
    Ok(ready)
}

pub fn poll(f: &mut TrapFrame) -> SysResult {
    let [fds, nfds, timeout, ..] = args(f);
    do_poll(fds, nfds, deadline_ms(timeout as i32))
}

pub fn ppoll(f: &mut TrapFrame) -> SysResult {
    let [fds, nfds, ts, mask, size, _] = args(f);
    let deadline = deadline_ts(ts)?;
    set_wait_mask(mask, size)?;
    let r = do_poll(fds, nfds, deadline);
    if r == Err(Errno::ERESTARTNOHAND) {
        return Err(Errno::EINTR);
    }
    r
}

const FD_SETSIZE: u64 = 1024;

fn do_select(nfds: u64, rd: u64, wr: u64, ex: u64, deadline: Option<u64>) -> SysResult {
    if nfds > FD_SETSIZE.max(1 << 20) {
        return Err(Errno::EINVAL);
    }
    let words = nfds.div_ceil(64) as usize;
    let load = |addr: u64| -> Result<Vec<u64>, Errno> {
        let mut v = vec![0u64; words];
        if addr != 0 && words > 0 {
            let mut bytes = vec![0u8; nfds.div_ceil(8) as usize];
            copy_from_user(&mut bytes, addr)?;
            for (i, b) in bytes.iter().enumerate() {
                v[i / 8] |= (*b as u64) << ((i % 8) * 8);
            }
        }
        Ok(v)
    };
    let (ri, wi, ei) = (load(rd)?, load(wr)?, load(ex)?);
    let table = task::files();
    let mut files: Vec<(u64, Arc<File>)> = Vec::new();
    for fd in 0..nfds {
        let (w, b) = ((fd / 64) as usize, fd % 64);
        if (ri[w] | wi[w] | ei[w]) & (1 << b) != 0 {
            files.push((fd, table.lock().get(fd).map_err(|_| Errno::EBADF)?));
        }
    }
    let live: Vec<Arc<File>> = files.iter().map(|(_, f)| f.clone()).collect();
    let (mut ro, mut wo, mut eo) = (vec![0u64; words], vec![0u64; words], vec![0u64; words]);
    let mut count = 0u64;
    let scan = |ro: &mut Vec<u64>, wo: &mut Vec<u64>, eo: &mut Vec<u64>| -> u64 {
        let mut n = 0;
        ro.fill(0);
        wo.fill(0);
        eo.fill(0);
        for (fd, f) in &files {
            let (w, b) = ((*fd / 64) as usize, *fd % 64);
            let r = poll::revents(f, POLLIN | POLLOUT | POLLPRI);
            let hup_err = r & (poll::POLLHUP | poll::POLLERR) != 0;
            if ri[w] & (1 << b) != 0 && (r & POLLIN != 0 || hup_err) {
                ro[w] |= 1 << b;
                n += 1;
            }
            if wi[w] & (1 << b) != 0 && (r & POLLOUT != 0 || r & poll::POLLERR != 0) {
                wo[w] |= 1 << b;
                n += 1;
            }
            if ei[w] & (1 << b) != 0 && r & POLLPRI != 0 {
                eo[w] |= 1 << b;
                n += 1;
            }
        }
        n
    };
    let mut done = false;
    let res = if deadline.is_some_and(|d| d <= now()) {
        count = scan(&mut ro, &mut wo, &mut eo);
        WaitResult::Ready
    } else {
        poll::wait_ready(
            &live,
            || {
                count = scan(&mut ro, &mut wo, &mut eo);
                done = count > 0;
                done
            },
            deadline,
        )
    };
    if res == WaitResult::Interrupted && !done {
        return Err(Errno::ERESTARTNOHAND);
    }
    let store = |addr: u64, v: &Vec<u64>| -> Result<(), Errno> {
        if addr == 0 || words == 0 {
            return Ok(());
        }
        let mut bytes = vec![0u8; nfds.div_ceil(8) as usize];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (v[i / 8] >> ((i % 8) * 8)) as u8;
        }
        copy_to_user(addr, &bytes)
    };
    store(rd, &ro)?;
    store(wr, &wo)?;
    store(ex, &eo)?;
    Ok(count)
}

pub fn select(f: &mut TrapFrame) -> SysResult {
    let [nfds, rd, wr, ex, tv, _] = args(f);
    let deadline = if tv == 0 {
        None
    } else {
        let t: [i64; 2] = read_user(tv)?;
        if t[0] < 0 || !(0..1_000_000).contains(&t[1]) {
            return Err(Errno::EINVAL);
        }
        Some(now().saturating_add(t[0] as u64 * 1_000_000_000 + t[1] as u64 * 1000))
    };
    let r = do_select(nfds, rd, wr, ex, deadline);
    if tv != 0 && r.is_ok() {
        // Linux writes back the time not slept.
        let left = deadline.map(|d| d.saturating_sub(now())).unwrap_or(0);
        write_user(tv, &[(left / 1_000_000_000) as i64, ((left % 1_000_000_000) / 1000) as i64])?;
    }
    r
}

pub fn pselect6(f: &mut TrapFrame) -> SysResult {
    let [nfds, rd, wr, ex, ts, sig] = args(f);
    let deadline = deadline_ts(ts)?;
    if sig != 0 {
        // struct { const sigset_t *ss; size_t ss_len; }
        let pair: [u64; 2] = read_user(sig)?;
        set_wait_mask(pair[0], pair[1])?;
    }
    let r = do_select(nfds, rd, wr, ex, deadline);
    if r == Err(Errno::ERESTARTNOHAND) {
        return Err(Errno::EINTR);
    }
    r
}

fn new_epoll(flags: u64) -> SysResult {
    if flags & !O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let f = File::new(Arc::new(EpollFile(Epoll::new())), None, None, O_RDWR as u32);
    install(f, flags & O_CLOEXEC != 0)
}

pub fn epoll_create(f: &mut TrapFrame) -> SysResult {
    if f.rdi as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    new_epoll(0)
}

pub fn epoll_create1(f: &mut TrapFrame) -> SysResult {
    new_epoll(f.rdi)
}

pub fn epoll_ctl(f: &mut TrapFrame) -> SysResult {
    let [epfd, op, fd, ev, ..] = args(f);
    let ep = file(epfd)?;
    let target = file(fd)?;
    let e = ep.ops_as_epoll().ok_or(Errno::EINVAL)?;
    if epfd == fd {
        return Err(Errno::EINVAL);
    }
    if target.inode.as_ref().is_some_and(|i| i.file_type() == crate::fs::FileType::Regular)
        || target.inode.as_ref().is_some_and(|i| i.file_type() == crate::fs::FileType::Directory)
    {
        return Err(Errno::EPERM);
    }
    let (events, data) = if op == poll::EPOLL_CTL_DEL {
        (0, 0)
    } else {
        // struct epoll_event is packed: u32 events, u64 data.
        let raw: [u8; 12] = read_user(ev)?;
        let events = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let mut d = [0u8; 8];
        d.copy_from_slice(&raw[4..12]);
        (events, u64::from_le_bytes(d))
    };
    e.ctl(op, fd, &target, events, data).map(|_| 0)
}

fn do_epoll_wait(epfd: u64, evs: u64, max: u64, deadline: Option<u64>) -> SysResult {
    if max as i32 <= 0 || max > (i32::MAX as u64) / 12 {
        return Err(Errno::EINVAL);
    }
    let ep = file(epfd)?;
    let e = ep.ops_as_epoll().ok_or(Errno::EINVAL)?;
    let got = e.wait(max as usize, deadline)?;
    let mut out = Vec::with_capacity(got.len() * 12);
    for (ev, data) in &got {
        out.extend_from_slice(&ev.to_le_bytes());
        out.extend_from_slice(&data.to_le_bytes());
    }
    copy_to_user(evs, &out)?;
    Ok(got.len() as u64)
}

pub fn epoll_wait(f: &mut TrapFrame) -> SysResult {
    let [epfd, evs, max, timeout, ..] = args(f);
    do_epoll_wait(epfd, evs, max, deadline_ms(timeout as i32))
}

pub fn epoll_pwait(f: &mut TrapFrame) -> SysResult {
    let [epfd, evs, max, timeout, mask, size] = args(f);
    set_wait_mask(mask, size)?;
    do_epoll_wait(epfd, evs, max, deadline_ms(timeout as i32))
}

pub fn epoll_pwait2(f: &mut TrapFrame) -> SysResult {
    let [epfd, evs, max, ts, mask, size] = args(f);
    let deadline = deadline_ts(ts)?;
    set_wait_mask(mask, size)?;
    do_epoll_wait(epfd, evs, max, deadline)
}

fn new_eventfd(init: u64, flags: u64) -> SysResult {
    if flags & !(O_CLOEXEC | O_NONBLOCK | crate::fs::eventfd::EFD_SEMAPHORE) != 0 {
        return Err(Errno::EINVAL);
    }
    let ops = Arc::new(EventFd::new(init as u32 as u64, flags & crate::fs::eventfd::EFD_SEMAPHORE != 0));
    let f = File::new(ops, None, None, O_RDWR as u32 | (flags & O_NONBLOCK) as u32);
    install(f, flags & O_CLOEXEC != 0)
}

pub fn eventfd(f: &mut TrapFrame) -> SysResult {
    new_eventfd(f.rdi, 0)
}

pub fn eventfd2(f: &mut TrapFrame) -> SysResult {
    new_eventfd(f.rdi, f.rsi)
}

const TFD_TIMER_ABSTIME: u64 = 1;
const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_BOOTTIME: u64 = 7;

pub fn timerfd_create(f: &mut TrapFrame) -> SysResult {
    let [clock, flags, ..] = args(f);
    if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    if !matches!(clock, CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME | 8 | 9) {
        return Err(Errno::EINVAL);
    }
    let t = crate::fs::timerfd::TimerFd::new(clock == CLOCK_REALTIME || clock == 8);
    let file = File::new(
        Arc::new(crate::fs::timerfd::TimerFdFile(t)),
        None,
        None,
        O_RDWR as u32 | (flags & O_NONBLOCK) as u32,
    );
    install(file, flags & O_CLOEXEC != 0)
}

fn timerfd_of(fd: u64) -> Result<Arc<crate::fs::timerfd::TimerFd>, Errno> {
    let file = file(fd)?;
    // The descriptor must be a timerfd: compare through the poll identity.
    let any = file.ops.clone();
    crate::fs::timerfd::lookup(&any).ok_or(Errno::EINVAL)
}

fn put_itimerspec(addr: u64, (rem, interval): (u64, u64)) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    let v = [Timespec::from_ns(interval), Timespec::from_ns(rem)];
    write_user(addr, &v)
}

pub fn timerfd_settime(f: &mut TrapFrame) -> SysResult {
    let [fd, flags, new, old, ..] = args(f);
    if flags & !(TFD_TIMER_ABSTIME | 2) != 0 {
        return Err(Errno::EINVAL);
    }
    let t = timerfd_of(fd)?;
    let v: [Timespec; 2] = read_user(new)?;
    let interval = v[0].to_ns().ok_or(Errno::EINVAL)?;
    let value = v[1].to_ns().ok_or(Errno::EINVAL)?;
    let deadline = if value == 0 && v[1].tv_sec == 0 {
        0
    } else if flags & TFD_TIMER_ABSTIME != 0 {
        let now_clock = if t.realtime { crate::time::realtime_ns() } else { now() };
        now().saturating_add(value.saturating_sub(now_clock)).max(1)
    } else {
        now().saturating_add(value)
    };
    let prev = t.set(deadline, interval);
    put_itimerspec(old, prev).map(|_| 0)
}

pub fn timerfd_gettime(f: &mut TrapFrame) -> SysResult {
    let [fd, cur, ..] = args(f);
    let t = timerfd_of(fd)?;
    put_itimerspec(cur, t.get()).map(|_| 0)
}

fn do_signalfd(fd: u64, mask_addr: u64, size: u64, flags: u64) -> SysResult {
    if size != 8 || flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let mask: SigSet = read_user(mask_addr)?;
    if fd as i32 != -1 {
        let f = file(fd)?;
        let s = f.ops.signalfd().ok_or(Errno::EINVAL)?;
        *s.mask.lock() = mask & !UNBLOCKABLE;
        return Ok(fd);
    }
    let ops = Arc::new(crate::fs::signalfd::SignalFd::new(mask));
    let f = File::new(ops, None, None, O_RDWR as u32 | (flags & O_NONBLOCK) as u32);
    install(f, flags & O_CLOEXEC != 0)
}

pub fn signalfd(f: &mut TrapFrame) -> SysResult {
    let [fd, mask, size, ..] = args(f);
    do_signalfd(fd, mask, size, 0)
}

pub fn signalfd4(f: &mut TrapFrame) -> SysResult {
    let [fd, mask, size, flags, ..] = args(f);
    do_signalfd(fd, mask, size, flags)
}
