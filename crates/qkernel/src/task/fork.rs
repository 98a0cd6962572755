//! clone, fork and vfork.

use super::wait::WaitQueue;
use super::{current_arc, fd::FdTable, new_task, pid, sched, signal::SigHandlers, Process, ProcessExit};
use crate::arch::x86_64::fpu::FpuState;
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::switch;
use crate::arch::x86_64::usercopy::write_user;
use crate::mm::Mm;
use crate::sync::SpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use qlib::linux::Errno;

/// clone flags.
pub mod flags {
    pub const CSIGNAL: u64 = 0xff;
    pub const CLONE_VM: u64 = 0x100;
    pub const CLONE_FS: u64 = 0x200;
    pub const CLONE_FILES: u64 = 0x400;
    pub const CLONE_SIGHAND: u64 = 0x800;
    pub const CLONE_PIDFD: u64 = 0x1000;
    pub const CLONE_PTRACE: u64 = 0x2000;
    pub const CLONE_VFORK: u64 = 0x4000;
    pub const CLONE_PARENT: u64 = 0x8000;
    pub const CLONE_THREAD: u64 = 0x1_0000;
    pub const CLONE_NEWNS: u64 = 0x2_0000;
    pub const CLONE_SYSVSEM: u64 = 0x4_0000;
    pub const CLONE_SETTLS: u64 = 0x8_0000;
    pub const CLONE_PARENT_SETTID: u64 = 0x10_0000;
    pub const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
    pub const CLONE_DETACHED: u64 = 0x40_0000;
    pub const CLONE_UNTRACED: u64 = 0x80_0000;
    pub const CLONE_CHILD_SETTID: u64 = 0x100_0000;
    pub const CLONE_NEWCGROUP: u64 = 0x200_0000;
    pub const CLONE_NEWUTS: u64 = 0x400_0000;
    pub const CLONE_NEWIPC: u64 = 0x800_0000;
    pub const CLONE_NEWUSER: u64 = 0x1000_0000;
    pub const CLONE_NEWPID: u64 = 0x2000_0000;
    pub const CLONE_NEWNET: u64 = 0x4000_0000;
    pub const CLONE_IO: u64 = 0x8000_0000;
    /// Namespace flags (a sandbox is one set of namespaces).
    pub const NAMESPACES: u64 =
        CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
}

use flags::*;

/// Arguments of clone/clone3.
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub stack: u64,
    pub parent_tid: u64,
    pub child_tid: u64,
    pub tls: u64,
    pub exit_signal: u32,
}

/// Creates a thread or process; returns the child's id to the parent.
pub fn do_clone(a: &CloneArgs, frame: &TrapFrame) -> Result<u32, Errno> {
    let f = a.flags;
    if f & CLONE_THREAD != 0 && f & CLONE_SIGHAND == 0 || f & CLONE_SIGHAND != 0 && f & CLONE_VM == 0 {
        return Err(Errno::EINVAL);
    }
    if f & NAMESPACES != 0 {
        // The sandbox is one set of namespaces; nested ones are not offered.
        return Err(Errno::EPERM);
    }
    if f & CLONE_PIDFD != 0 {
        return Err(Errno::EINVAL);
    }
    let parent = current_arc();
    let pp = parent.process.clone();
    let tid = pid::alloc()?;
    let result = build(a, frame, &parent, &pp, tid);
    if result.is_err() {
        pid::release_task(tid);
    }
    result
}

fn build(
    a: &CloneArgs,
    frame: &TrapFrame,
    parent: &Arc<super::Task>,
    pp: &Arc<Process>,
    tid: u32,
) -> Result<u32, Errno> {
    let f = a.flags;
    let fpu = FpuState::from_current().ok_or(Errno::ENOMEM)?;
    let process = if f & CLONE_THREAD != 0 {
        pp.clone()
    } else {
        let mm = if f & CLONE_VM != 0 {
            pp.mm.lock().clone()
        } else {
            let m = pp.mm.lock().clone();
            let child = m.space.write().fork().ok_or(Errno::ENOMEM);
            // The parent's writable pages became read-only: flush them everywhere.
            m.finish();
            Mm::from_space(child?)
        };
        let files = if f & CLONE_FILES != 0 {
            pp.files.lock().clone()
        } else {
            let t: FdTable = pp.files.lock().lock().clone();
            Arc::new(SpinLock::new(t))
        };
        let sighand = if f & CLONE_SIGHAND != 0 {
            pp.sighand.lock().clone()
        } else {
            let h = pp.sighand.lock().lock().actions;
            Arc::new(SpinLock::new(SigHandlers { actions: h }))
        };
        let real_parent = if f & CLONE_PARENT != 0 { pp.parent.lock().clone() } else { Arc::downgrade(pp) };
        Arc::new(Process {
            pid: tid,
            parent: SpinLock::new(real_parent),
            pgid: AtomicU32::new(pp.pgid.load(Ordering::Relaxed)),
            sid: AtomicU32::new(pp.sid.load(Ordering::Relaxed)),
            mm: SpinLock::new(mm),
            files: SpinLock::new(files),
            sighand: SpinLock::new(sighand),
            shared_pending: SpinLock::new(Default::default()),
            threads: SpinLock::new(Vec::new()),
            children: SpinLock::new(Vec::new()),
            child_wait: WaitQueue::new(),
            exit: SpinLock::new(ProcessExit::default()),
            creds: SpinLock::new(pp.creds.lock().clone()),
            rlimits: SpinLock::new(*pp.rlimits.lock()),
            exe: SpinLock::new(pp.exe.lock().clone()),
            exe_file: SpinLock::new(pp.exe_file.lock().clone()),
            fs: SpinLock::new(if f & CLONE_FS != 0 {
                pp.fs.lock().clone()
            } else {
                crate::fs::vfs::clone_context(&pp.fs.lock())
            }),
            exit_signal: AtomicU32::new(a.exit_signal),
            children_cpu_ns: AtomicU64::new(0),
            dead_threads_cpu_ns: AtomicU64::new(0),
            timers: SpinLock::new(Default::default()),
            dumpable: AtomicBool::new(pp.dumpable.load(Ordering::Relaxed)),
            start_ns: crate::time::uptime_ns(),
            group_exit_code: AtomicI32::new(0),
            did_exec: AtomicBool::new(false),
        })
    };
    let task = new_task(tid, process.clone(), fpu).ok_or(Errno::ENOMEM)?;
    let mut regs = *frame;
    regs.rax = 0;
    if a.stack != 0 {
        regs.rsp = a.stack;
    }
    task.fs_base
        .store(if f & CLONE_SETTLS != 0 { a.tls } else { parent.fs_base.load(Ordering::Relaxed) }, Ordering::Relaxed);
    task.gs_base.store(parent.gs_base.load(Ordering::Relaxed), Ordering::Relaxed);
    task.affinity.store(parent.affinity.load(Ordering::Relaxed), Ordering::Relaxed);
    task.nice.store(parent.nice.load(Ordering::Relaxed), Ordering::Relaxed);
    task.policy.store(parent.policy.load(Ordering::Relaxed), Ordering::Relaxed);
    task.rt_priority.store(parent.rt_priority.load(Ordering::Relaxed), Ordering::Relaxed);
    *task.comm.lock() = *parent.comm.lock();
    {
        let ps = parent.sig.lock();
        let mut cs = task.sig.lock();
        cs.blocked = ps.blocked;
        // A new stack for a thread sharing memory: the parent's alternate
        // stack would be shared; Linux clears it (unless vfork).
        cs.altstack =
            if f & CLONE_VM != 0 && f & CLONE_VFORK == 0 { (0, 0, super::signal::SS_DISABLE) } else { ps.altstack };
    }
    if f & CLONE_CHILD_CLEARTID != 0 {
        task.clear_child_tid.store(a.child_tid, Ordering::Relaxed);
    }
    if f & CLONE_PARENT_SETTID != 0 {
        write_user(a.parent_tid, &tid)?;
    }
    if f & CLONE_CHILD_SETTID != 0 {
        if f & CLONE_VM != 0 {
            write_user(a.child_tid, &tid)?;
        } else {
            let mm = process.mm.lock().clone();
            let r = crate::loader::write_user_pages(&mm, a.child_tid, &tid.to_le_bytes());
            mm.finish();
            r?;
        }
    }
    // SAFETY: the new task's kernel stack is unused; the frame goes at its top.
    let ctx = unsafe { switch::initial_context(task.kstack_top(), &regs) };
    // SAFETY: the task is not running yet; nobody else reads its context.
    unsafe { *task.ctx.get() = ctx };
    pid::register_task(&task);
    process.threads.lock().push(task.clone());
    if f & CLONE_THREAD == 0 {
        pid::register_process(&process);
        pp.children.lock().push(process.clone());
    }
    let vfork = if f & CLONE_VFORK != 0 {
        let q = Arc::new(WaitQueue::new());
        *task.vfork_done.lock() = Some(q.clone());
        Some(q)
    } else {
        None
    };
    let child = task.clone();
    crate::stats::add(crate::stats::Counter::TasksCreated, 1);
    sched::spawn(task);
    if let Some(q) = vfork {
        // The parent sleeps until the child execs or exits.
        q.wait_until(|| child.vfork_done.lock().is_none(), false, None);
    }
    Ok(tid)
}
