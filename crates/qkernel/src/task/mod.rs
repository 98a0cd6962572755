//! Tasks and processes.
//!
//! A [`Task`] is a schedulable thread with its own kernel stack and FPU
//! state; a [`Process`] (thread group) owns what its threads share: the
//! address space, descriptors, signal handlers, credentials, limits, and its
//! place in the process tree. See README.md in this directory.

pub mod exec;
pub mod exit;
pub mod fd;
pub mod fork;
pub mod futex;
pub mod init;
pub mod pid;
pub mod sched;
pub mod signal;
pub mod timer;
pub mod wait;

use crate::arch::x86_64::fpu::FpuState;
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::percpu;
use crate::mm::frame::{self, Zero};
use crate::mm::Mm;
use crate::sync::SpinLock;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use qlib::layout::{phys_to_virt, PAGE_SIZE};
use qlib::linux::consts::rlimit::*;
use qlib::linux::types::Rlimit;
use signal::{SigHandlers, SigQueue};
use wait::WaitQueue;

/// Kernel stack size: 2^KSTACK_ORDER frames (32 KiB).
pub const KSTACK_ORDER: usize = 3;

/// User and group identity, with capabilities (a bit per CAP_*).
#[derive(Clone, Debug, Default)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    pub cap_bounding: u64,
}

/// Capability numbers used by the kernel.
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_RAW: u32 = 13;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_NICE: u32 = 23;
    pub const SYS_RESOURCE: u32 = 24;
    pub const MKNOD: u32 = 27;
    pub const AUDIT_WRITE: u32 = 29;
    pub const SETFCAP: u32 = 31;
    pub const LAST: u32 = 40;

    /// The OCI runtime spec's default set (what Docker and containerd grant).
    pub const OCI_DEFAULT: u64 = (1 << CHOWN)
        | (1 << DAC_OVERRIDE)
        | (1 << FSETID)
        | (1 << FOWNER)
        | (1 << MKNOD)
        | (1 << NET_RAW)
        | (1 << SETGID)
        | (1 << SETUID)
        | (1 << SETFCAP)
        | (1 << SETPCAP)
        | (1 << NET_BIND_SERVICE)
        | (1 << SYS_CHROOT)
        | (1 << KILL)
        | (1 << AUDIT_WRITE);
}

impl Creds {
    /// Identity of the first process.
    pub fn initial(uid: u32, gid: u32) -> Creds {
        let caps = if uid == 0 { cap::OCI_DEFAULT } else { 0 };
        Creds {
            uid,
            euid: uid,
            suid: uid,
            fsuid: uid,
            gid,
            egid: gid,
            sgid: gid,
            fsgid: gid,
            groups: Vec::new(),
            cap_effective: caps,
            cap_permitted: caps,
            cap_inheritable: 0,
            cap_bounding: cap::OCI_DEFAULT,
        }
    }

    /// True when the effective set holds capability `c`.
    pub fn has(&self, c: u32) -> bool {
        self.cap_effective & (1u64 << c) != 0
    }
}

/// Where a task is in its life.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Running on a vCPU or waiting in a run queue.
    Runnable = 0,
    /// Waiting for an event; signals wake it.
    Sleeping = 1,
    /// Stopped by SIGSTOP/SIGTSTP/...
    Stopped = 2,
    /// Exited; the kernel stack is about to be released.
    Dead = 3,
}

/// How a process ended (as wait4 reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit(code).
    Exited(u8),
    /// Killed by a signal (core dump flag).
    Signaled(u32, bool),
}

impl ExitStatus {
    /// The wait status word.
    pub fn wait_status(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => (c as i32) << 8,
            ExitStatus::Signaled(s, core) => (s as i32) | if core { 0x80 } else { 0 },
        }
    }
}

/// A thread.
pub struct Task {
    pub tid: u32,
    pub process: Arc<Process>,
    /// Guest-physical address of the kernel stack block.
    kstack_pa: u64,
    /// Saved kernel stack pointer while switched out.
    pub(crate) ctx: UnsafeCell<u64>,
    /// User FPU state while switched out.
    pub(crate) fpu: UnsafeCell<FpuState>,
    pub state: AtomicU8,
    /// vCPU whose run queue holds (or last held) the task.
    pub cpu: AtomicU32,
    /// The task's context is live on a vCPU (not yet saved): it must not run
    /// elsewhere until the switch away from it completes.
    pub on_cpu: AtomicBool,
    /// The task is in a run queue (changed only under that queue's lock).
    pub on_rq: AtomicBool,
    /// Allowed vCPUs.
    pub affinity: AtomicU64,
    /// Asked to reschedule before returning to user mode.
    pub need_resched: AtomicBool,
    pub fs_base: AtomicU64,
    pub gs_base: AtomicU64,
    /// set_tid_address / CLONE_CHILD_CLEARTID.
    pub clear_child_tid: AtomicU64,
    /// set_robust_list.
    pub robust_list: AtomicU64,
    /// Signal state of this thread.
    pub sig: SpinLock<signal::TaskSignals>,
    /// A signal may be deliverable (cheap check on the way to user mode).
    pub sig_flag: AtomicBool,
    /// The syscall rewrote the user frame (exec, sigreturn, signal delivery):
    /// return with IRET.
    pub frame_rewritten: AtomicBool,
    /// A timed sleep ran out (set by the timer that woke it).
    pub timed_out: AtomicBool,
    /// The current sleep may be interrupted by signals.
    pub interruptible: AtomicBool,
    /// Nanoseconds of CPU time consumed (user and kernel).
    pub cpu_ns: AtomicU64,
    /// When it last started running (for accounting).
    pub run_start: AtomicU64,
    /// Thread name (prctl PR_SET_NAME, /proc comm).
    pub comm: SpinLock<[u8; 16]>,
    /// vfork: the parent sleeps here until this child execs or exits.
    pub vfork_done: SpinLock<Option<Arc<WaitQueue>>>,
    /// Signal sent to this thread when its parent process dies (PR_SET_PDEATHSIG).
    pub pdeath_signal: AtomicU32,
    /// Nice value (-20..19), scheduling policy and real-time priority, as
    /// set by setpriority/sched_setscheduler: recorded and reported (every
    /// task is scheduled round-robin).
    pub nice: AtomicI32,
    pub policy: AtomicU32,
    pub rt_priority: AtomicU32,
}

// SAFETY: the UnsafeCell fields are touched only by the vCPU running the task
// or by the scheduler while the task is switched out (under its run-queue lock).
unsafe impl Sync for Task {}
// SAFETY: as above.
unsafe impl Send for Task {}

/// A thread group.
pub struct Process {
    pub pid: u32,
    pub parent: SpinLock<Weak<Process>>,
    pub pgid: AtomicU32,
    pub sid: AtomicU32,
    /// The address space (replaced by execve).
    pub mm: SpinLock<Arc<Mm>>,
    pub files: SpinLock<Arc<SpinLock<fd::FdTable>>>,
    pub sighand: SpinLock<Arc<SpinLock<SigHandlers>>>,
    /// Signals sent to the process as a whole.
    pub shared_pending: SpinLock<SigQueue>,
    pub threads: SpinLock<Vec<Arc<Task>>>,
    pub children: SpinLock<Vec<Arc<Process>>>,
    /// Parent's waiters (wait4) sleep on the parent's queue; this process's
    /// own children report here.
    pub child_wait: WaitQueue,
    pub exit: SpinLock<ProcessExit>,
    pub creds: SpinLock<Creds>,
    pub rlimits: SpinLock<[Rlimit; RLIM_NLIMITS]>,
    /// Path of the executable (for /proc/self/exe).
    pub exe: SpinLock<Vec<u8>>,
    /// The executable's open file (writes to it fail with ETXTBSY).
    pub exe_file: SpinLock<Option<Arc<crate::fs::file::File>>>,
    /// Root, working directory and umask (shared with CLONE_FS).
    pub fs: SpinLock<crate::fs::path::FsRef>,
    /// Signal sent to the parent when this process exits (usually SIGCHLD).
    pub exit_signal: AtomicU32,
    /// CPU time of reaped children (for getrusage/times).
    pub children_cpu_ns: AtomicU64,
    /// CPU time of this process's threads that already exited.
    pub dead_threads_cpu_ns: AtomicU64,
    /// Interval timers and POSIX timers.
    pub timers: SpinLock<timer::ProcessTimers>,
    /// PR_SET_DUMPABLE.
    pub dumpable: AtomicBool,
    /// Boot-relative start time.
    pub start_ns: u64,
    /// Exit code set by exit_group for the remaining threads.
    pub group_exit_code: AtomicI32,
    /// The process has executed a program since fork (setpgid: EACCES).
    pub did_exec: AtomicBool,
}

/// The exit state of a process.
#[derive(Default)]
pub struct ProcessExit {
    /// exit_group/fatal signal in progress: threads are dying.
    pub exiting: bool,
    /// All threads are gone; waiting to be reaped.
    pub zombie: bool,
    pub status: Option<ExitStatus>,
    /// Stopped/continued notifications for WUNTRACED/WCONTINUED.
    pub stop_report: Option<u32>,
    pub continue_report: bool,
    /// Reaped by the parent.
    pub reaped: bool,
    /// A thread is in execve and waits for the others to exit.
    pub dethread_by: Option<u32>,
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
        // (every entry from user mode pushes it there); the task owns it.
        unsafe { &mut *(at as *mut TrapFrame) }
    }

    /// The current state.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Runnable,
            1 => State::Sleeping,
            2 => State::Stopped,
            _ => State::Dead,
        }
    }

    /// The FPU area (only the running task or the scheduler touches it).
    #[allow(clippy::mut_from_ref)]
    pub fn fpu(&self) -> &mut FpuState {
        // SAFETY: see the Sync impl: exclusive to the task's vCPU.
        unsafe { &mut *self.fpu.get() }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        frame::free(self.kstack_pa, KSTACK_ORDER);
    }
}

/// Default resource limits of the first process (Docker's defaults: stack
/// 8 MiB, 1 Mi open files, core dumps off).
pub fn default_rlimits() -> [Rlimit; RLIM_NLIMITS] {
    let inf = Rlimit { cur: RLIM_INFINITY, max: RLIM_INFINITY };
    let mut r = [inf; RLIM_NLIMITS];
    let pids = crate::boot::params().pids_limit as u64;
    r[RLIMIT_STACK as usize] = Rlimit { cur: 8 << 20, max: RLIM_INFINITY };
    r[RLIMIT_CORE as usize] = Rlimit { cur: 0, max: RLIM_INFINITY };
    r[RLIMIT_NOFILE as usize] = Rlimit { cur: 1 << 20, max: 1 << 20 };
    r[RLIMIT_MEMLOCK as usize] = Rlimit { cur: 8 << 20, max: 8 << 20 };
    r[RLIMIT_NPROC as usize] = Rlimit { cur: pids, max: pids };
    r[RLIMIT_SIGPENDING as usize] = Rlimit { cur: 1 << 16, max: 1 << 16 };
    r[RLIMIT_MSGQUEUE as usize] = Rlimit { cur: 819_200, max: 819_200 };
    r[RLIMIT_NICE as usize] = Rlimit { cur: 0, max: 0 };
    r[RLIMIT_RTPRIO as usize] = Rlimit { cur: 0, max: 0 };
    r
}

/// Builds a task with a fresh kernel stack.
pub fn new_task(tid: u32, process: Arc<Process>, fpu: FpuState) -> Option<Arc<Task>> {
    let kstack_pa = frame::alloc(KSTACK_ORDER, Zero::No)?;
    Some(Arc::new(Task {
        tid,
        process,
        kstack_pa,
        ctx: UnsafeCell::new(0),
        fpu: UnsafeCell::new(fpu),
        state: AtomicU8::new(State::Runnable as u8),
        cpu: AtomicU32::new(percpu::cpu_index() as u32),
        on_cpu: AtomicBool::new(false),
        on_rq: AtomicBool::new(false),
        affinity: AtomicU64::new(u64::MAX),
        need_resched: AtomicBool::new(false),
        fs_base: AtomicU64::new(0),
        gs_base: AtomicU64::new(0),
        clear_child_tid: AtomicU64::new(0),
        robust_list: AtomicU64::new(0),
        sig: SpinLock::new(signal::TaskSignals::default()),
        sig_flag: AtomicBool::new(false),
        frame_rewritten: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
        interruptible: AtomicBool::new(false),
        cpu_ns: AtomicU64::new(0),
        run_start: AtomicU64::new(0),
        comm: SpinLock::new([0; 16]),
        vfork_done: SpinLock::new(None),
        pdeath_signal: AtomicU32::new(0),
        nice: AtomicI32::new(0),
        policy: AtomicU32::new(0),
        rt_priority: AtomicU32::new(0),
    }))
}

/// The task running on this vCPU.
#[inline(always)]
pub fn current() -> &'static Task {
    let p = percpu::this_cpu().current;
    debug_assert!(p != 0);
    // SAFETY: `current` points at the Task (inside an Arc the scheduler holds)
    // running on this vCPU; it stays alive while it runs.
    unsafe { &*(p as *const Task) }
}

/// The current task as an `Arc` (a new reference).
pub fn current_arc() -> Arc<Task> {
    let p = percpu::this_cpu().current as *const Task;
    // SAFETY: `p` came from Arc::as_ptr of an Arc the scheduler keeps alive;
    // incrementing the count before from_raw yields an owned reference.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// True when a task runs on this vCPU.
pub fn has_current() -> bool {
    percpu::this_cpu().current != 0
}

/// The current process.
#[inline]
pub fn process() -> &'static Arc<Process> {
    &current().process
}

/// The current address space.
pub fn mm() -> Arc<Mm> {
    process().mm.lock().clone()
}

/// The current descriptor table.
pub fn files() -> Arc<SpinLock<fd::FdTable>> {
    process().files.lock().clone()
}

/// Marks whether `t`'s coming sleep may be interrupted by a signal.
pub fn interruptible_sleep(t: &Task, on: bool) {
    // SeqCst: a signal sender sets `sig_flag`, then reads this; the sleeper
    // sets this, then reads `sig_flag` (see `wait::wait_on`).
    t.interruptible.store(on, Ordering::SeqCst);
}

/// Takes the events the host posted (see `qlib::layout::HostEvents`) and
/// acts on them: signals for init are delivered as coming from outside the
/// sandbox (so SIGKILL/SIGSTOP are honoured even by init).
pub fn poll_host_events() {
    crate::net::events::drain();
    // SAFETY: the host-events word lives in guest RAM (direct map); the host
    // only ever ORs bits in, we take them atomically.
    let word = unsafe { &*(qlib::layout::phys_to_virt(qlib::layout::HOST_EVENTS_PA) as *const AtomicU64) };
    if word.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut sigs = word.swap(0, Ordering::AcqRel);
    let Some(init) = pid::process(1) else { return };
    while sigs != 0 {
        let sig = sigs.trailing_zeros() + 1;
        sigs &= sigs - 1;
        signal::send_from_host(&init, sig);
    }
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
