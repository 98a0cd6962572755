//! Thread and process system calls.

use super::{args, SysResult};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{copy_to_user, put_user_u64, read_user, write_user};
use crate::task;
use qlib::layout::USER_END;
use qlib::linux::consts::arch_prctl::*;
use qlib::linux::consts::rlimit::{RLIMIT_NOFILE, RLIM_NLIMITS};
use qlib::linux::types::Rlimit;
use qlib::linux::Errno;

pub fn getpid(_: &mut TrapFrame) -> SysResult {
    Ok(task::current().process.pid as u64)
}

pub fn gettid(_: &mut TrapFrame) -> SysResult {
    Ok(task::current().tid as u64)
}

pub fn getppid(_: &mut TrapFrame) -> SysResult {
    Ok(task::current().process.ppid as u64)
}

pub fn exit(f: &mut TrapFrame) -> SysResult {
    // With one thread, exit ends the thread group.
    exit_group(f)
}

pub fn exit_group(f: &mut TrapFrame) -> SysResult {
    task::exit_process(task::ExitStatus::Exited((f.rdi & 0xff) as u8))
}

pub fn sched_yield(_: &mut TrapFrame) -> SysResult {
    Ok(0)
}

pub fn set_tid_address(f: &mut TrapFrame) -> SysResult {
    let t = task::current();
    t.clear_child_tid = f.rdi;
    Ok(t.tid as u64)
}

/// Size of `struct robust_list_head`.
const ROBUST_LIST_HEAD_SIZE: u64 = 24;

pub fn set_robust_list(f: &mut TrapFrame) -> SysResult {
    if f.rsi != ROBUST_LIST_HEAD_SIZE {
        return Err(Errno::EINVAL);
    }
    let t = task::current();
    t.robust_list = f.rdi;
    t.robust_len = f.rsi;
    Ok(0)
}

pub fn get_robust_list(f: &mut TrapFrame) -> SysResult {
    let [pid, head_ptr, len_ptr, ..] = args(f);
    let t = task::current();
    if pid != 0 && pid != t.tid as u64 {
        return Err(Errno::ESRCH);
    }
    put_user_u64(head_ptr, t.robust_list)?;
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
            t.fs_base = addr;
            cpu::set_fs_base(addr);
            Ok(0)
        }
        ARCH_GET_FS => {
            put_user_u64(addr, t.fs_base)?;
            Ok(0)
        }
        ARCH_SET_GS => {
            if addr >= USER_END {
                return Err(Errno::EPERM);
            }
            cpu::set_user_gs_base(addr);
            Ok(0)
        }
        ARCH_GET_GS => {
            // SAFETY: KERNEL_GS_BASE holds the user GS base while in the kernel.
            let v = unsafe { cpu::rdmsr(cpu::MSR_KERNEL_GS_BASE) };
            put_user_u64(addr, v)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn sched_getaffinity(f: &mut TrapFrame) -> SysResult {
    let [pid, len, mask, ..] = args(f);
    let t = task::current();
    if pid != 0 && pid != t.tid as u64 && pid != t.process.pid as u64 {
        return Err(Errno::ESRCH);
    }
    // The kernel's cpumask is 64 bits (MAX_VCPUS); Linux requires the user
    // buffer to hold it and be a multiple of sizeof(long).
    if len < 8 || len % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let n = crate::boot::params().vcpu_count;
    let bits: u64 = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    copy_to_user(mask, &bits.to_le_bytes())?;
    Ok(8)
}

fn check_rlimit_resource(resource: u64) -> Result<usize, Errno> {
    if resource as usize >= RLIM_NLIMITS {
        return Err(Errno::EINVAL);
    }
    Ok(resource as usize)
}

pub fn getrlimit(f: &mut TrapFrame) -> SysResult {
    let r = check_rlimit_resource(f.rdi)?;
    let lim = task::current().process.rlimits.lock()[r];
    write_user(f.rsi, &lim)?;
    Ok(0)
}

pub fn prlimit64(f: &mut TrapFrame) -> SysResult {
    let [pid, resource, new, old, ..] = args(f);
    let t = task::current();
    if pid != 0 && pid != t.process.pid as u64 {
        return Err(Errno::ESRCH);
    }
    let r = check_rlimit_resource(resource)?;
    let new_limit: Option<Rlimit> = if new != 0 { Some(read_user(new)?) } else { None };
    let mut limits = t.process.rlimits.lock();
    let cur = limits[r];
    if let Some(n) = new_limit {
        if n.cur > n.max {
            return Err(Errno::EINVAL);
        }
        // Raising the hard limit needs CAP_SYS_RESOURCE (held by root here);
        // NOFILE may not exceed the sandbox's ceiling (nr_open).
        if r == RLIMIT_NOFILE as usize && n.max > 1 << 20 {
            return Err(Errno::EPERM);
        }
        if n.max > cur.max && t.process.creds.lock().euid != 0 {
            return Err(Errno::EPERM);
        }
    }
    if old != 0 {
        write_user(old, &cur)?;
    }
    if let Some(n) = new_limit {
        limits[r] = n;
    }
    Ok(0)
}
