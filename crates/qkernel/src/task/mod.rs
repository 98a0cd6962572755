//! Tasks and processes.
//!
//! A [`Task`] is a schedulable thread with its own kernel stack; a
//! [`Process`] (thread group) owns the address space, file descriptors,
//! credentials and limits its threads share.

pub mod fd;
pub mod init;
pub mod signal;

use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::percpu;
use crate::mm::addrspace::AddressSpace;
use crate::mm::frame::{self, Zero};
use crate::sync::SpinLock;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::layout::{phys_to_virt, PAGE_SIZE};
use qlib::linux::consts::rlimit::*;
use qlib::linux::types::Rlimit;

/// Kernel stack size: 2^KSTACK_ORDER frames.
pub const KSTACK_ORDER: usize = 3;

/// User and group identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
}

/// A thread group.
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub mm: SpinLock<AddressSpace>,
    pub files: SpinLock<fd::FdTable>,
    pub creds: SpinLock<Creds>,
    pub rlimits: SpinLock<[Rlimit; RLIM_NLIMITS]>,
    /// Path of the running executable as the program named it (for
    /// /proc/self/exe).
    pub exe: SpinLock<Vec<u8>>,
}

/// A thread.
pub struct Task {
    pub tid: u32,
    pub process: Arc<Process>,
    /// Guest-physical address of the kernel stack block.
    pub kstack_pa: u64,
    /// User FS base (TLS).
    pub fs_base: u64,
    /// set_tid_address / CLONE_CHILD_CLEARTID.
    pub clear_child_tid: u64,
    /// set_robust_list head and length.
    pub robust_list: u64,
    pub robust_len: u64,
    /// The syscall rewrote the user frame (exec, sigreturn): return with IRET.
    pub frame_rewritten: bool,
}

impl Task {
    /// Top of this task's kernel stack (16-byte aligned).
    pub fn kstack_top(&self) -> u64 {
        phys_to_virt(self.kstack_pa) + (PAGE_SIZE << KSTACK_ORDER)
    }

    /// The user trap frame at the top of the kernel stack.
    pub fn user_frame(&self) -> &'static mut TrapFrame {
        let at = self.kstack_top() - core::mem::size_of::<TrapFrame>() as u64;
        // SAFETY: the top of the kernel stack holds this task's user frame
        // (every entry from user mode pushes it there); the task owns the stack.
        unsafe { &mut *(at as *mut TrapFrame) }
    }
}

/// Default resource limits of the first process (Docker's defaults: stack
/// 8 MiB, 1 Mi open files, core dumps off).
pub fn default_rlimits() -> [Rlimit; RLIM_NLIMITS] {
    let inf = Rlimit { cur: RLIM_INFINITY, max: RLIM_INFINITY };
    let mut r = [inf; RLIM_NLIMITS];
    r[RLIMIT_STACK as usize] = Rlimit { cur: 8 << 20, max: RLIM_INFINITY };
    r[RLIMIT_CORE as usize] = Rlimit { cur: 0, max: RLIM_INFINITY };
    r[RLIMIT_NOFILE as usize] = Rlimit { cur: 1 << 20, max: 1 << 20 };
    r[RLIMIT_MEMLOCK as usize] = Rlimit { cur: 8 << 20, max: 8 << 20 };
    r[RLIMIT_NPROC as usize] =
        Rlimit { cur: crate::boot::params().pids_limit as u64, max: crate::boot::params().pids_limit as u64 };
    r[RLIMIT_SIGPENDING as usize] = Rlimit { cur: 1 << 16, max: 1 << 16 };
    r[RLIMIT_MSGQUEUE as usize] = Rlimit { cur: 819_200, max: 819_200 };
    r[RLIMIT_NICE as usize] = Rlimit { cur: 0, max: 0 };
    r[RLIMIT_RTPRIO as usize] = Rlimit { cur: 0, max: 0 };
    r
}

/// Creates a task with a fresh kernel stack.
pub fn new_task(tid: u32, process: Arc<Process>) -> Option<Box<Task>> {
    let kstack_pa = frame::alloc(KSTACK_ORDER, Zero::No)?;
    Some(Box::new(Task {
        tid,
        process,
        kstack_pa,
        fs_base: 0,
        clear_child_tid: 0,
        robust_list: 0,
        robust_len: 0,
        frame_rewritten: false,
    }))
}

/// The task running on this vCPU.
#[inline(always)]
pub fn current() -> &'static mut Task {
    let p = percpu::this_cpu().current;
    debug_assert!(p != 0);
    // SAFETY: `current` is set by `set_current` to a leaked Box<Task> that
    // lives while it runs on this vCPU.
    unsafe { &mut *(p as *mut Task) }
}

/// True when a task runs on this vCPU.
pub fn has_current() -> bool {
    percpu::this_cpu().current != 0
}

/// Makes `task` current on this vCPU: its kernel stack and address space.
pub fn set_current(task: Box<Task>) -> &'static mut Task {
    let t = Box::leak(task);
    percpu::this_cpu().current = t as *mut Task as u64;
    percpu::set_kernel_stack(t.kstack_top());
    // SAFETY: the address space's root shares the kernel's upper half.
    unsafe { crate::arch::x86_64::cpu::write_cr3(t.process.mm.lock().root()) };
    crate::arch::x86_64::cpu::set_fs_base(t.fs_base);
    t
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit(code).
    Exited(u8),
    /// Killed by a signal.
    Signaled(u32),
}

/// Ends the current process. The first process's end ends the sandbox.
pub fn exit_process(status: ExitStatus) -> ! {
    if crate::boot::params().flags & qlib::boot::flags::CHECK_ONLY != 0 {
        crate::selftest::report();
        crate::hcall::exit(qlib::hcall::ExitKind::CheckDone, 0)
    }
    let (kind, code) = match status {
        ExitStatus::Exited(c) => (qlib::hcall::ExitKind::Exited, c as u64),
        ExitStatus::Signaled(s) => (qlib::hcall::ExitKind::Signaled, s as u64),
    };
    crate::hcall::exit(kind, code)
}

/// Sleeps for about `ns` nanoseconds (less if an interrupt arrives first):
/// arms the one-shot LAPIC timer and halts the vCPU in the host.
pub fn wait_ns(ns: u64) {
    crate::arch::x86_64::apic::arm_timer_ns(ns.max(1));
    percpu::stats().idle_entries += 1;
    crate::arch::x86_64::cpu::wait_for_interrupt();
}

static HOSTNAME: crate::sync::Once<Vec<u8>> = crate::sync::Once::new();

/// The sandbox's hostname.
pub fn hostname() -> &'static [u8] {
    HOSTNAME.get()
}

/// Sets the hostname (boot vCPU, once).
pub fn set_hostname(name: &[u8]) {
    // SAFETY: called once during boot before any reader (uname) can run.
    unsafe { HOSTNAME.init(name.to_vec()) };
}
