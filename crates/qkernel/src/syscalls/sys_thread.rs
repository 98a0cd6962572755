//! Thread and process system calls.

use super::{args, SysResult};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::percpu;
use crate::arch::x86_64::usercopy::{copy_to_user, put_user_u64, read_user, strncpy_from_user, write_user};
use crate::task::exit::{self, opt, Which};
use crate::task::fork::{self, flags as cf, CloneArgs};
use crate::task::{self, exec, pid, sched, ExitStatus};
use alloc::vec;
use core::sync::atomic::Ordering;
use qlib::layout::USER_END;
use qlib::linux::consts::arch_prctl::*;
use qlib::linux::consts::rlimit::{RLIMIT_NOFILE, RLIM_NLIMITS};
use qlib::linux::consts::signal::SIGCHLD;
use qlib::linux::types::Rlimit;
use qlib::linux::Errno;

pub fn getpid(_: &mut TrapFrame) -> SysResult {
    Ok(task::process().pid as u64)
}

pub fn gettid(_: &mut TrapFrame) -> SysResult {
    Ok(task::current().tid as u64)
}

pub fn getppid(_: &mut TrapFrame) -> SysResult {
    Ok(task::process().parent.lock().upgrade().map(|p| p.pid).unwrap_or(0) as u64)
}

pub fn exit(f: &mut TrapFrame) -> SysResult {
    exit::exit_thread((f.rdi & 0xff) as u8)
}

pub fn exit_group(f: &mut TrapFrame) -> SysResult {
    exit::exit_group(ExitStatus::Exited((f.rdi & 0xff) as u8))
}

pub fn clone(f: &mut TrapFrame) -> SysResult {
    // x86-64 argument order: flags, stack, parent_tid, child_tid, tls.
    let [flags, stack, ptid, ctid, tls, _] = args(f);
    let a = CloneArgs {
        flags: flags & !cf::CSIGNAL,
        stack,
        parent_tid: ptid,
        child_tid: ctid,
        tls,
        exit_signal: (flags & cf::CSIGNAL) as u32,
    };
    let frame = *f;
    fork::do_clone(&a, &frame).map(|t| t as u64)
}

pub fn clone3(f: &mut TrapFrame) -> SysResult {
    let [uargs, size, ..] = args(f);
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
    // stack, stack_size, tls (64 bytes in version 0).
    if size < 64 {
        return Err(Errno::EINVAL);
    }
    let w: [u64; 8] = read_user(uargs)?;
    if w[4] > 64 || w[0] & cf::CSIGNAL != 0 {
        return Err(Errno::EINVAL);
    }
    let stack = if w[5] != 0 { w[5].checked_add(w[6]).ok_or(Errno::EINVAL)? } else { 0 };
    let a = CloneArgs { flags: w[0], stack, parent_tid: w[3], child_tid: w[2], tls: w[7], exit_signal: w[4] as u32 };
    let frame = *f;
    fork::do_clone(&a, &frame).map(|t| t as u64)
}

pub fn fork(f: &mut TrapFrame) -> SysResult {
    let frame = *f;
    fork::do_clone(&CloneArgs { exit_signal: SIGCHLD, ..CloneArgs::default() }, &frame).map(|t| t as u64)
}

pub fn vfork(f: &mut TrapFrame) -> SysResult {
    let frame = *f;
    let a = CloneArgs { flags: cf::CLONE_VM | cf::CLONE_VFORK, exit_signal: SIGCHLD, ..CloneArgs::default() };
    fork::do_clone(&a, &frame).map(|t| t as u64)
}

fn user_path(ptr: u64) -> Result<alloc::vec::Vec<u8>, Errno> {
    let mut buf = vec![0u8; 4096];
    let n = strncpy_from_user(&mut buf, ptr)?;
    if n == 0 {
        return Err(Errno::ENOENT);
    }
    buf.truncate(n);
    Ok(buf)
}

pub fn execve(f: &mut TrapFrame) -> SysResult {
    let [path, argv, envp, ..] = args(f);
    let path = user_path(path)?;
    let mut total = 0;
    let argv = exec::copy_strings(argv, &mut total)?;
    let envp = exec::copy_strings(envp, &mut total)?;
    exec::execve(&path, &argv, &envp, f)?;
    Ok(0)
}

pub fn execveat(f: &mut TrapFrame) -> SysResult {
    let [dirfd, path, argv, envp, flags, _] = args(f);
    const AT_EMPTY_PATH: u64 = 0x1000;
    let path = user_path(path)?;
    if flags & AT_EMPTY_PATH != 0 || (dirfd as i32 != -100 && path.first() != Some(&b'/')) {
        // Descriptor-relative execution arrives with the VFS.
        return Err(Errno::ENOSYS);
    }
    let mut total = 0;
    let argv = exec::copy_strings(argv, &mut total)?;
    let envp = exec::copy_strings(envp, &mut total)?;
    exec::execve(&path, &argv, &envp, f)?;
    Ok(0)
}

fn which_of(pid: i64) -> Which {
    match pid {
        -1 => Which::Any,
        0 => Which::Pgid(task::process().pgid.load(Ordering::Relaxed)),
        p if p < -1 => Which::Pgid((-p) as u32),
        p => Which::Pid(p as u32),
    }
}

fn write_rusage(addr: u64, self_ns: u64) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    // struct rusage: utime, stime (timevals) then 14 longs.
    let mut r = [0u64; 18];
    r[0] = self_ns / 1_000_000_000;
    r[1] = (self_ns % 1_000_000_000) / 1000;
    write_user(addr, &r)
}

pub fn wait4(f: &mut TrapFrame) -> SysResult {
    let [pid, status, options, rusage, ..] = args(f);
    // `options` is an int: __WCLONE (bit 31) arrives sign-extended.
    let options = options as u32 as u64;
    if options & !(opt::WNOHANG | opt::WUNTRACED | opt::WCONTINUED | opt::WNOTHREAD | opt::WALL | opt::WCLONE) != 0 {
        return Err(Errno::EINVAL);
    }
    let options = options | opt::WEXITED;
    match exit::wait_child(which_of(pid as i32 as i64), options)? {
        Some(ev) => {
            if status != 0 {
                write_user(status, &ev.status)?;
            }
            write_rusage(rusage, 0)?;
            Ok(ev.pid as u64)
        }
        None => Ok(0),
    }
}

pub fn waitid(f: &mut TrapFrame) -> SysResult {
    let [idtype, id, infop, options, rusage, _] = args(f);
    let options = options as u32 as u64;
    const P_ALL: u64 = 0;
    const P_PID: u64 = 1;
    const P_PGID: u64 = 2;
    let which = match idtype {
        P_ALL => Which::Any,
        P_PID if id > 0 => Which::Pid(id as u32),
        P_PGID if id == 0 => Which::Pgid(task::process().pgid.load(Ordering::Relaxed)),
        P_PGID => Which::Pgid(id as u32),
        _ => return Err(Errno::EINVAL),
    };
    if options & (opt::WEXITED | opt::WSTOPPED | opt::WCONTINUED) == 0 {
        return Err(Errno::EINVAL);
    }
    let ev = exit::wait_child(which, options)?;
    if infop != 0 {
        let mut info = [0u32; 32];
        if let Some(ev) = &ev {
            info[0] = SIGCHLD;
            info[2] = ev.code as u32;
            info[4] = ev.pid;
            info[5] = ev.uid;
            info[6] = ev.si_status as u32;
        }
        write_user(infop, &info)?;
    }
    write_rusage(rusage, 0)?;
    Ok(0)
}

pub fn sched_yield(_: &mut TrapFrame) -> SysResult {
    sched::yield_now();
    Ok(0)
}

pub fn set_tid_address(f: &mut TrapFrame) -> SysResult {
    let t = task::current();
    t.clear_child_tid.store(f.rdi, Ordering::Relaxed);
    Ok(t.tid as u64)
}

/// Size of `struct robust_list_head`.
const ROBUST_LIST_HEAD_SIZE: u64 = 24;

pub fn set_robust_list(f: &mut TrapFrame) -> SysResult {
    if f.rsi != ROBUST_LIST_HEAD_SIZE {
        return Err(Errno::EINVAL);
    }
    task::current().robust_list.store(f.rdi, Ordering::Relaxed);
    Ok(0)
}

pub fn get_robust_list(f: &mut TrapFrame) -> SysResult {
    let [pid, head_ptr, len_ptr, ..] = args(f);
    let t = if pid == 0 { task::current_arc() } else { pid::task(pid as u32).ok_or(Errno::ESRCH)? };
    put_user_u64(head_ptr, t.robust_list.load(Ordering::Relaxed))?;
    put_user_u64(len_ptr, ROBUST_LIST_HEAD_SIZE)?;
    Ok(0)
}

pub fn rseq(_: &mut TrapFrame) -> SysResult {
    Err(Errno::ENOSYS)
}

pub fn arch_prctl(f: &mut TrapFrame) -> SysResult {
    let [code, addr, ..] = args(f);
    let t = task::current();
    match code {
        ARCH_SET_FS => {
            if addr >= USER_END {
                return Err(Errno::EPERM);
            }
            t.fs_base.store(addr, Ordering::Relaxed);
            cpu::set_fs_base(addr);
            Ok(0)
        }
        ARCH_GET_FS => {
            put_user_u64(addr, t.fs_base.load(Ordering::Relaxed))?;
            Ok(0)
        }
        ARCH_SET_GS => {
            if addr >= USER_END {
                return Err(Errno::EPERM);
            }
            t.gs_base.store(addr, Ordering::Relaxed);
            cpu::set_user_gs_base(addr);
            Ok(0)
        }
        ARCH_GET_GS => {
            put_user_u64(addr, t.gs_base.load(Ordering::Relaxed))?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

fn vcpu_mask() -> u64 {
    let n = crate::boot::params().vcpu_count;
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

pub fn sched_getaffinity(f: &mut TrapFrame) -> SysResult {
    let [pid, len, mask, ..] = args(f);
    let t = if pid == 0 { task::current_arc() } else { pid::task(pid as u32).ok_or(Errno::ESRCH)? };
    // The kernel's cpumask is 64 bits (MAX_VCPUS); Linux requires the user
    // buffer to hold it and be a multiple of sizeof(long).
    if len < 8 || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let bits = t.affinity.load(Ordering::Relaxed) & vcpu_mask();
    copy_to_user(mask, &bits.to_le_bytes())?;
    Ok(8)
}

pub fn sched_setaffinity(f: &mut TrapFrame) -> SysResult {
    let [pid, len, mask, ..] = args(f);
    let t = if pid == 0 { task::current_arc() } else { pid::task(pid as u32).ok_or(Errno::ESRCH)? };
    if len < 8 {
        return Err(Errno::EINVAL);
    }
    let bits: u64 = read_user::<u64>(mask)? & vcpu_mask();
    if bits == 0 {
        return Err(Errno::EINVAL);
    }
    t.affinity.store(bits, Ordering::SeqCst);
    if bits & (1 << t.cpu.load(Ordering::Relaxed)) == 0 {
        // Move off a vCPU it may no longer run on (the scheduler migrates it).
        sched::resched(&t);
    }
    Ok(0)
}

pub fn getcpu(f: &mut TrapFrame) -> SysResult {
    let [cpu_ptr, node_ptr, ..] = args(f);
    let c = percpu::cpu_index() as u32;
    if cpu_ptr != 0 {
        write_user(cpu_ptr, &c)?;
    }
    if node_ptr != 0 {
        write_user(node_ptr, &0u32)?;
    }
    Ok(0)
}

fn check_rlimit_resource(resource: u64) -> Result<usize, Errno> {
    if resource as usize >= RLIM_NLIMITS {
        return Err(Errno::EINVAL);
    }
    Ok(resource as usize)
}

pub fn getrlimit(f: &mut TrapFrame) -> SysResult {
    let r = check_rlimit_resource(f.rdi)?;
    let lim = task::process().rlimits.lock()[r];
    write_user(f.rsi, &lim)?;
    Ok(0)
}

pub fn setrlimit(f: &mut TrapFrame) -> SysResult {
    let r = check_rlimit_resource(f.rdi)?;
    let new: Rlimit = read_user(f.rsi)?;
    set_limit(task::process(), r, new)
}

fn set_limit(p: &task::Process, r: usize, n: Rlimit) -> SysResult {
    if n.cur > n.max {
        return Err(Errno::EINVAL);
    }
    let mut limits = p.rlimits.lock();
    // Raising a hard limit needs CAP_SYS_RESOURCE; NOFILE may not exceed the
    // sandbox's ceiling (nr_open).
    if r == RLIMIT_NOFILE as usize && n.max > 1 << 20 {
        return Err(Errno::EPERM);
    }
    if n.max > limits[r].max && !p.creds.lock().has(task::cap::SYS_RESOURCE) {
        return Err(Errno::EPERM);
    }
    limits[r] = n;
    Ok(0)
}

pub fn prlimit64(f: &mut TrapFrame) -> SysResult {
    let [pid, resource, new, old, ..] = args(f);
    let p = if pid == 0 { task::process().clone() } else { pid::process(pid as u32).ok_or(Errno::ESRCH)? };
    let r = check_rlimit_resource(resource)?;
    let new_limit: Option<Rlimit> = if new != 0 { Some(read_user(new)?) } else { None };
    let cur = p.rlimits.lock()[r];
    if let Some(n) = new_limit {
        set_limit(&p, r, n)?;
    }
    if old != 0 {
        write_user(old, &cur)?;
    }
    Ok(0)
}

pub fn setpgid(f: &mut TrapFrame) -> SysResult {
    let (pid, pgid) = (f.rdi as i32, f.rsi as i32);
    let me = task::process().clone();
    let pid = if pid == 0 { me.pid as i32 } else { pid };
    let pgid = if pgid == 0 { pid } else { pgid };
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    let target = if pid > 0 { pid::process(pid as u32) } else { None };
    let target = target.filter(|t| !t.exit.lock().reaped).ok_or(Errno::ESRCH)?;
    let my_sid = me.sid.load(Ordering::Relaxed);
    let is_child = target.parent.lock().upgrade().is_some_and(|p| alloc::sync::Arc::ptr_eq(&p, &me));
    if is_child {
        if target.sid.load(Ordering::Relaxed) != my_sid {
            return Err(Errno::EPERM);
        }
        // A child that has executed a new program may no longer be moved.
        if target.did_exec.load(Ordering::Relaxed) {
            return Err(Errno::EACCES);
        }
    } else if !alloc::sync::Arc::ptr_eq(&target, &me) {
        return Err(Errno::ESRCH);
    }
    // A session leader cannot change its group.
    if target.sid.load(Ordering::Relaxed) == target.pid {
        return Err(Errno::EPERM);
    }
    let pgid = pgid as u32;
    if pgid != target.pid
        && !pid::processes()
            .iter()
            .any(|p| p.pgid.load(Ordering::Relaxed) == pgid && p.sid.load(Ordering::Relaxed) == my_sid)
    {
        return Err(Errno::EPERM);
    }
    target.pgid.store(pgid, Ordering::Relaxed);
    Ok(0)
}

pub fn getpgid(f: &mut TrapFrame) -> SysResult {
    let p = if f.rdi == 0 { task::process().clone() } else { pid::process(f.rdi as u32).ok_or(Errno::ESRCH)? };
    Ok(p.pgid.load(Ordering::Relaxed) as u64)
}

pub fn getpgrp(_: &mut TrapFrame) -> SysResult {
    Ok(task::process().pgid.load(Ordering::Relaxed) as u64)
}

pub fn setsid(_: &mut TrapFrame) -> SysResult {
    let me = task::process();
    if pid::processes().iter().any(|p| p.pgid.load(Ordering::Relaxed) == me.pid) {
        return Err(Errno::EPERM);
    }
    me.sid.store(me.pid, Ordering::Relaxed);
    me.pgid.store(me.pid, Ordering::Relaxed);
    Ok(me.pid as u64)
}

pub fn getsid(f: &mut TrapFrame) -> SysResult {
    let p = if f.rdi == 0 { task::process().clone() } else { pid::process(f.rdi as u32).ok_or(Errno::ESRCH)? };
    Ok(p.sid.load(Ordering::Relaxed) as u64)
}

/// prctl options.
mod pr {
    pub const SET_PDEATHSIG: u64 = 1;
    pub const GET_PDEATHSIG: u64 = 2;
    pub const GET_DUMPABLE: u64 = 3;
    pub const SET_DUMPABLE: u64 = 4;
    pub const GET_KEEPCAPS: u64 = 7;
    pub const SET_KEEPCAPS: u64 = 8;
    pub const SET_NAME: u64 = 15;
    pub const GET_NAME: u64 = 16;
    pub const CAPBSET_READ: u64 = 23;
    pub const CAPBSET_DROP: u64 = 24;
    pub const SET_NO_NEW_PRIVS: u64 = 38;
    pub const GET_NO_NEW_PRIVS: u64 = 39;
    pub const SET_CHILD_SUBREAPER: u64 = 36;
    pub const GET_CHILD_SUBREAPER: u64 = 37;
}

pub fn prctl(f: &mut TrapFrame) -> SysResult {
    let [option, arg2, ..] = args(f);
    let t = task::current();
    let p = &t.process;
    match option {
        pr::SET_PDEATHSIG => {
            if arg2 > 64 {
                return Err(Errno::EINVAL);
            }
            t.pdeath_signal.store(arg2 as u32, Ordering::Relaxed);
            Ok(0)
        }
        pr::GET_PDEATHSIG => {
            write_user(arg2, &(t.pdeath_signal.load(Ordering::Relaxed) as i32))?;
            Ok(0)
        }
        pr::GET_DUMPABLE => Ok(p.dumpable.load(Ordering::Relaxed) as u64),
        pr::SET_DUMPABLE => {
            if arg2 > 1 {
                return Err(Errno::EINVAL);
            }
            p.dumpable.store(arg2 == 1, Ordering::Relaxed);
            Ok(0)
        }
        pr::SET_NAME => {
            let mut name = [0u8; 16];
            let mut buf = [0u8; 16];
            let n = match strncpy_from_user(&mut buf, arg2) {
                Ok(n) => n,
                Err(Errno::ENAMETOOLONG) => 15,
                Err(e) => return Err(e),
            };
            let n = n.min(15);
            name[..n].copy_from_slice(&buf[..n]);
            *t.comm.lock() = name;
            Ok(0)
        }
        pr::GET_NAME => {
            let name = *t.comm.lock();
            copy_to_user(arg2, &name)?;
            Ok(0)
        }
        pr::GET_KEEPCAPS => Ok(0),
        pr::SET_KEEPCAPS => Ok(0),
        pr::CAPBSET_READ => {
            if arg2 > task::cap::LAST as u64 {
                return Err(Errno::EINVAL);
            }
            Ok((p.creds.lock().cap_bounding >> arg2) & 1)
        }
        pr::CAPBSET_DROP => {
            let mut c = p.creds.lock();
            if !c.has(task::cap::SETPCAP) {
                return Err(Errno::EPERM);
            }
            if arg2 > task::cap::LAST as u64 {
                return Err(Errno::EINVAL);
            }
            c.cap_bounding &= !(1 << arg2);
            Ok(0)
        }
        pr::SET_NO_NEW_PRIVS => Ok(0),
        pr::GET_NO_NEW_PRIVS => Ok(0),
        pr::SET_CHILD_SUBREAPER | pr::GET_CHILD_SUBREAPER => Err(Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

pub fn times(f: &mut TrapFrame) -> SysResult {
    let t = task::current();
    let p = &t.process;
    let own = task::timer::process_cpu_ns(p);
    let children = p.children_cpu_ns.load(Ordering::Relaxed);
    // Clock ticks of 10 ms (AT_CLKTCK = 100); all time counts as user time.
    let ticks = |ns: u64| ns / 10_000_000;
    if f.rdi != 0 {
        write_user(f.rdi, &[ticks(own), 0, ticks(children), 0])?;
    }
    Ok(ticks(crate::time::uptime_ns()) + 1)
}

pub fn getrusage(f: &mut TrapFrame) -> SysResult {
    let [who, addr, ..] = args(f);
    let t = task::current();
    let p = &t.process;
    let ns = match who as i32 {
        0 => task::timer::process_cpu_ns(p),
        -1 => p.children_cpu_ns.load(Ordering::Relaxed),
        1 => task::timer::thread_cpu_ns(t),
        _ => return Err(Errno::EINVAL),
    };
    write_rusage(addr, ns)?;
    Ok(0)
}

/// Scheduling policies.
mod policy {
    pub const OTHER: u32 = 0;
    pub const FIFO: u32 = 1;
    pub const RR: u32 = 2;
    pub const BATCH: u32 = 3;
    pub const IDLE: u32 = 5;
    /// sched_setscheduler flag: reset to SCHED_OTHER in children.
    pub const RESET_ON_FORK: u32 = 0x4000_0000;
}

fn is_rt(p: u32) -> bool {
    p == policy::FIFO || p == policy::RR
}

/// The thread a scheduling call names (0: the caller).
fn sched_target(pid: u64) -> Result<alloc::sync::Arc<task::Task>, Errno> {
    match pid as i32 {
        0 => Ok(task::current_arc()),
        p if p < 0 => Err(Errno::EINVAL),
        p => pid::task(p as u32).ok_or(Errno::ESRCH),
    }
}

/// Whether the caller may change another task's scheduling (same user or CAP_SYS_NICE).
fn may_reschedule(t: &task::Task) -> bool {
    let me = task::process().creds.lock().clone();
    if me.has(task::cap::SYS_NICE) || core::ptr::eq(&*t.process, &**task::process()) {
        return true;
    }
    let c = t.process.creds.lock();
    me.euid == c.uid || me.euid == c.euid
}

pub fn sched_setscheduler(f: &mut TrapFrame) -> SysResult {
    let [pid, pol, param, ..] = args(f);
    let t = sched_target(pid)?;
    if param == 0 {
        return Err(Errno::EINVAL);
    }
    let prio: i32 = read_user(param)?;
    set_scheduler(&t, (pol as i32) as u32 & !policy::RESET_ON_FORK, prio)
}

fn set_scheduler(t: &task::Task, pol: u32, prio: i32) -> SysResult {
    match pol {
        policy::OTHER | policy::BATCH | policy::IDLE if prio == 0 => {}
        policy::FIFO | policy::RR if (1..=99).contains(&prio) => {}
        _ => return Err(Errno::EINVAL),
    }
    if !may_reschedule(t) {
        return Err(Errno::EPERM);
    }
    // Real-time policies need CAP_SYS_NICE (RLIMIT_RTPRIO is 0 in a sandbox).
    let rtprio = t.process.rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_RTPRIO as usize].cur;
    if is_rt(pol) && (prio as u64) > rtprio && !task::process().creds.lock().has(task::cap::SYS_NICE) {
        return Err(Errno::EPERM);
    }
    t.policy.store(pol, Ordering::Relaxed);
    t.rt_priority.store(prio as u32, Ordering::Relaxed);
    Ok(0)
}

pub fn sched_getscheduler(f: &mut TrapFrame) -> SysResult {
    Ok(sched_target(f.rdi)?.policy.load(Ordering::Relaxed) as u64)
}

pub fn sched_setparam(f: &mut TrapFrame) -> SysResult {
    let [pid, param, ..] = args(f);
    let t = sched_target(pid)?;
    if param == 0 {
        return Err(Errno::EINVAL);
    }
    let prio: i32 = read_user(param)?;
    let pol = t.policy.load(Ordering::Relaxed);
    set_scheduler(&t, pol, prio)
}

pub fn sched_getparam(f: &mut TrapFrame) -> SysResult {
    let [pid, param, ..] = args(f);
    if param == 0 {
        return Err(Errno::EINVAL);
    }
    let t = sched_target(pid)?;
    write_user(param, &(t.rt_priority.load(Ordering::Relaxed) as i32))?;
    Ok(0)
}

pub fn sched_get_priority_max(f: &mut TrapFrame) -> SysResult {
    match f.rdi as u32 {
        policy::FIFO | policy::RR => Ok(99),
        policy::OTHER | policy::BATCH | policy::IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sched_get_priority_min(f: &mut TrapFrame) -> SysResult {
    match f.rdi as u32 {
        policy::FIFO | policy::RR => Ok(1),
        policy::OTHER | policy::BATCH | policy::IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sched_rr_get_interval(f: &mut TrapFrame) -> SysResult {
    let [pid, tp, ..] = args(f);
    let t = sched_target(pid)?;
    let ns = if t.policy.load(Ordering::Relaxed) == policy::FIFO { 0 } else { sched::SLICE_NS };
    write_user(tp, &qlib::linux::types::Timespec::from_ns(ns))?;
    Ok(0)
}

/// The threads a getpriority/setpriority call names.
fn prio_targets(which: u64, who: u64) -> Result<alloc::vec::Vec<alloc::sync::Arc<task::Task>>, Errno> {
    const PRIO_PROCESS: u64 = 0;
    const PRIO_PGRP: u64 = 1;
    const PRIO_USER: u64 = 2;
    let who = who as u32;
    let me = task::process();
    let v: alloc::vec::Vec<_> = match which {
        PRIO_PROCESS => {
            if who == 0 {
                alloc::vec![task::current_arc()]
            } else {
                pid::task(who).into_iter().collect()
            }
        }
        PRIO_PGRP => {
            let g = if who == 0 { me.pgid.load(Ordering::Relaxed) } else { who };
            pid::tasks().into_iter().filter(|t| t.process.pgid.load(Ordering::Relaxed) == g).collect()
        }
        PRIO_USER => {
            let u = if who == 0 { me.creds.lock().uid } else { who };
            pid::tasks().into_iter().filter(|t| t.process.creds.lock().uid == u).collect()
        }
        _ => return Err(Errno::EINVAL),
    };
    if v.is_empty() {
        return Err(Errno::ESRCH);
    }
    Ok(v)
}

pub fn getpriority(f: &mut TrapFrame) -> SysResult {
    // The raw call returns 20 - nice (1..40) so no value looks like an error.
    let best = prio_targets(f.rdi, f.rsi)?.iter().map(|t| t.nice.load(Ordering::Relaxed)).min().unwrap_or(0);
    Ok((20 - best) as u64)
}

pub fn setpriority(f: &mut TrapFrame) -> SysResult {
    let nice = (f.rdx as i32).clamp(-20, 19);
    let can_raise = task::process().creds.lock().has(task::cap::SYS_NICE);
    let nice_limit = task::process().rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_NICE as usize].cur as i32;
    let mut err = None;
    for t in prio_targets(f.rdi, f.rsi)? {
        if !may_reschedule(&t) {
            err = Some(Errno::EPERM);
            continue;
        }
        // Lowering the nice value (raising priority) past RLIMIT_NICE needs CAP_SYS_NICE.
        if nice < t.nice.load(Ordering::Relaxed) && 20 - nice > nice_limit && !can_raise {
            err = Some(Errno::EACCES);
            continue;
        }
        t.nice.store(nice, Ordering::Relaxed);
    }
    err.map_or(Ok(0), Err)
}
