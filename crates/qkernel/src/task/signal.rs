//! Signals: queues, handlers, delivery with Linux-compatible frames,
//! sigreturn, default actions (terminate, core, stop, continue, ignore),
//! syscall restart rules, and synchronous fault signals.
//!
//! Delivery happens on the way back to user mode ([`exit_to_user`]): the
//! highest-priority deliverable signal (synchronous faults first, then the
//! lowest number) is taken from the thread's or the process's queue and
//! either acted on by default or handed to the handler on a frame built on
//! the user (or alternate) stack: return address (`sa_restorer`), `ucontext`
//! with the saved registers and mask, `siginfo`, and the FXSAVE image.

use super::{pid, sched, timer, ExitStatus, Process, State, Task};
use crate::arch::x86_64::frame::{TrapFrame, USER_FLAGS_MASK, VECTOR_SYSCALL};
use crate::arch::x86_64::usercopy::{copy_from_user, copy_to_user};
use crate::sync::SpinLock;
use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use core::sync::atomic::Ordering;
use qlib::layout::USER_END;
use qlib::linux::consts::signal::*;
use qlib::linux::Errno;

/// A set of signals: bit `n - 1` for signal `n`.
pub type SigSet = u64;

/// The bit of signal `sig`.
#[inline]
pub const fn bit(sig: u32) -> SigSet {
    1u64 << (sig - 1)
}

/// Signals that can be neither caught, blocked nor ignored.
pub const UNBLOCKABLE: SigSet = bit(SIGKILL) | bit(SIGSTOP);
/// Signals raised by faults (delivered before others).
const SYNCHRONOUS: SigSet = bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGTRAP) | bit(SIGFPE) | bit(SIGSYS);

/// `sa_flags` bits.
pub mod sa {
    pub const NOCLDSTOP: u64 = 1;
    pub const NOCLDWAIT: u64 = 2;
    pub const SIGINFO: u64 = 4;
    pub const RESTORER: u64 = 0x0400_0000;
    pub const ONSTACK: u64 = 0x0800_0000;
    pub const RESTART: u64 = 0x1000_0000;
    pub const NODEFER: u64 = 0x4000_0000;
    pub const RESETHAND: u64 = 0x8000_0000;
}

/// `si_code` values.
pub mod code {
    pub const SI_USER: i32 = 0;
    pub const SI_KERNEL: i32 = 0x80;
    pub const SI_QUEUE: i32 = -1;
    pub const SI_TIMER: i32 = -2;
    pub const SI_TKILL: i32 = -6;
    pub const SEGV_MAPERR: i32 = 1;
    pub const SEGV_ACCERR: i32 = 2;
    pub const BUS_ADRALN: i32 = 1;
    pub const BUS_ADRERR: i32 = 2;
    pub const ILL_ILLOPN: i32 = 2;
    pub const FPE_INTDIV: i32 = 1;
    pub const FPE_FLTDIV: i32 = 3;
    pub const FPE_FLTOVF: i32 = 4;
    pub const FPE_FLTUND: i32 = 5;
    pub const FPE_FLTRES: i32 = 6;
    pub const FPE_FLTINV: i32 = 7;
    pub const TRAP_BRKPT: i32 = 1;
    pub const TRAP_TRACE: i32 = 2;
    pub const CLD_EXITED: i32 = 1;
    pub const CLD_KILLED: i32 = 2;
    pub const CLD_DUMPED: i32 = 3;
    pub const CLD_STOPPED: i32 = 5;
    pub const CLD_CONTINUED: i32 = 6;
}

/// Handler values.
pub const SIG_DFL: u64 = 0;
/// See [`SIG_DFL`].
pub const SIG_IGN: u64 = 1;

/// `struct siginfo` (128 bytes); the union part is written by the constructors.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    pub _pad: i32,
    pub fields: [u64; 14],
}

impl SigInfo {
    /// A signal the kernel raises itself (SI_KERNEL).
    pub fn kernel(sig: u32) -> SigInfo {
        SigInfo { signo: sig as i32, errno: 0, code: code::SI_KERNEL, _pad: 0, fields: [0; 14] }
    }

    /// kill/tkill from `pid` with `uid` (SI_USER or SI_TKILL).
    pub fn user(sig: u32, code: i32, pid: u32, uid: u32) -> SigInfo {
        let mut s = SigInfo { signo: sig as i32, errno: 0, code, _pad: 0, fields: [0; 14] };
        s.fields[0] = pid as u64 | ((uid as u64) << 32);
        s
    }

    /// A fault at `addr`.
    pub fn fault(sig: u32, code: i32, addr: u64) -> SigInfo {
        let mut s = SigInfo { signo: sig as i32, errno: 0, code, _pad: 0, fields: [0; 14] };
        s.fields[0] = addr;
        s
    }

    /// SIGCHLD about `pid`.
    pub fn child(code: i32, pid: u32, uid: u32, status: i32) -> SigInfo {
        let mut s = SigInfo { signo: SIGCHLD as i32, errno: 0, code, _pad: 0, fields: [0; 14] };
        s.fields[0] = pid as u64 | ((uid as u64) << 32);
        s.fields[1] = status as u32 as u64;
        s
    }
}

const _: () = assert!(core::mem::size_of::<SigInfo>() == 128);

/// Pending signals with their information.
#[derive(Default)]
pub struct SigQueue {
    pub set: SigSet,
    queue: VecDeque<SigInfo>,
}

impl SigQueue {
    /// Queues a signal. Standard signals are not queued twice; real-time
    /// signals are (up to `limit`).
    pub fn push(&mut self, info: SigInfo, limit: usize) -> bool {
        let sig = info.signo as u32;
        if sig < SIGRTMIN && self.set & bit(sig) != 0 {
            return false;
        }
        if self.queue.len() >= limit {
            return false;
        }
        self.set |= bit(sig);
        self.queue.push_back(info);
        true
    }

    /// Takes the first queued instance of `sig`.
    pub fn take(&mut self, sig: u32) -> Option<SigInfo> {
        let i = self.queue.iter().position(|s| s.signo as u32 == sig)?;
        let info = self.queue.remove(i)?;
        if !self.queue.iter().any(|s| s.signo as u32 == sig) {
            self.set &= !bit(sig);
        }
        Some(info)
    }

    /// Drops all instances of the signals in `set`.
    pub fn discard(&mut self, set: SigSet) {
        self.queue.retain(|s| set & bit(s.signo as u32) == 0);
        self.set &= !set;
    }
}

/// One `struct sigaction` (kernel layout: handler, flags, restorer, mask).
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: SigSet,
}

/// The handlers of a process.
pub struct SigHandlers {
    pub actions: [SigAction; 64],
}

impl Default for SigHandlers {
    fn default() -> Self {
        SigHandlers { actions: [SigAction::default(); 64] }
    }
}

impl SigHandlers {
    /// The action of `sig`.
    pub fn get(&self, sig: u32) -> SigAction {
        self.actions[(sig - 1) as usize]
    }
}

/// Per-thread signal state.
#[derive(Default)]
pub struct TaskSignals {
    pub blocked: SigSet,
    pub pending: SigQueue,
    /// sigaltstack: base, size, flags.
    pub altstack: (u64, u64, u32),
    /// Mask to restore after a sigsuspend/ppoll/pselect handler returns.
    pub saved_mask: Option<SigSet>,
    /// The mask in force while rt_sigtimedwait unblocks the awaited signals
    /// (they still count as blocked: never ignored, never delivered).
    pub real_blocked: SigSet,
}

/// `SS_ONSTACK`, `SS_DISABLE`.
pub const SS_ONSTACK: u32 = 1;
/// See [`SS_ONSTACK`].
pub const SS_DISABLE: u32 = 2;

/// What a signal does by default.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Default_ {
    Terminate,
    Core,
    Stop,
    Continue,
    Ignore,
}

/// The default action of `sig`.
pub fn default_action(sig: u32) -> Default_ {
    match sig {
        SIGCHLD | SIGURG | SIGWINCH => Default_::Ignore,
        SIGCONT => Default_::Continue,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Default_::Stop,
        SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | SIGXCPU | SIGXFSZ | SIGSYS => Default_::Core,
        _ => Default_::Terminate,
    }
}

fn sigpending_limit(p: &Process) -> usize {
    p.rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_SIGPENDING as usize].cur.min(1 << 16) as usize
}

/// True when the action of `sig` in `p` is to ignore it.
fn ignored(p: &Process, sig: u32) -> bool {
    if sig == SIGKILL || sig == SIGSTOP {
        return false;
    }
    let a = p.sighand.lock().lock().get(sig);
    a.handler == SIG_IGN || (a.handler == SIG_DFL && default_action(sig) == Default_::Ignore)
}

/// The sandbox's init ignores signals it has no handler for, except SIGKILL
/// and SIGSTOP from outside the sandbox and faults it raises itself.
/// Blocked signals are queued all the same (Linux's `sig_ignored` looks at
/// the mask first); [`init_drops`] then applies when they are delivered.
fn init_protected(p: &Process, sig: u32, from_host: bool, info: &SigInfo, blocked: bool) -> bool {
    if p.pid != 1 || blocked || info.code == code::SI_KERNEL && SYNCHRONOUS & bit(sig) != 0 {
        return false;
    }
    if from_host && (sig == SIGKILL || sig == SIGSTOP) {
        return false;
    }
    p.sighand.lock().lock().get(sig).handler == SIG_DFL
}

fn signal_side_effects(p: &Arc<Process>, sig: u32) {
    let threads = p.threads.lock().clone();
    if sig == SIGCONT || sig == SIGKILL {
        // SIGCONT (and SIGKILL) discard pending stop signals and resume.
        let stops = bit(SIGSTOP) | bit(SIGTSTP) | bit(SIGTTIN) | bit(SIGTTOU);
        p.shared_pending.lock().discard(stops);
        for t in &threads {
            t.sig.lock().pending.discard(stops);
        }
        let mut resumed = false;
        for t in &threads {
            resumed |= sched::resume_stopped(t);
        }
        if resumed && sig == SIGCONT {
            p.exit.lock().continue_report = true;
            super::exit::notify_parent_stop(p, code::CLD_CONTINUED, SIGCONT);
        }
    } else if default_action(sig) == Default_::Stop && sig != SIGSTOP {
        p.shared_pending.lock().discard(bit(SIGCONT));
    }
}

/// True when `t` blocks `sig` (or awaits it in rt_sigtimedwait).
fn blocks(t: &Task, sig: u32) -> bool {
    let s = t.sig.lock();
    (s.blocked | s.real_blocked) & bit(sig) != 0
}

/// Whether init drops `sig` with the default action when it is delivered
/// (it was queued while blocked): everything but SIGKILL and faults.
fn init_drops(sig: u32, info: &SigInfo) -> bool {
    let fault = SYNCHRONOUS & bit(sig) != 0 && (info.code > 0 || info.code == code::SI_KERNEL);
    sig != SIGKILL && !fault
}

/// Makes `t` notice a newly pending signal: sets its flag and wakes it from
/// an interruptible sleep.
fn signal_wake(t: &Arc<Task>, sig: u32) {
    // SeqCst store then load, against the sleeper's store of
    // `interruptible` then load of `sig_flag` (`wait::wait_on`): one of the
    // two sees the other, so the signal is never missed by a new sleep.
    t.sig_flag.store(true, Ordering::SeqCst);
    if t.interruptible.load(Ordering::SeqCst) || sig == SIGKILL {
        sched::wake(t);
    }
    if sig == SIGKILL {
        sched::resume_stopped(t);
    }
}

/// Sends `sig` to one thread (tkill/tgkill, faults).
pub fn send_to_task(t: &Arc<Task>, sig: u32, info: SigInfo) -> bool {
    send_to_task_from(t, sig, info, false)
}

fn send_to_task_from(t: &Arc<Task>, sig: u32, info: SigInfo, from_host: bool) -> bool {
    let p = &t.process;
    if sig == 0 || sig > NSIG {
        return false;
    }
    if init_protected(p, sig, from_host, &info, blocks(t, sig)) {
        return false;
    }
    signal_side_effects(p, sig);
    if ignored(p, sig) && !blocks(t, sig) {
        return false;
    }
    let limit = sigpending_limit(p);
    if !t.sig.lock().pending.push(info, limit) {
        return false;
    }
    signal_wake(t, sig);
    crate::fs::signalfd::notify();
    true
}

/// Sends `sig` to a process (kill): queued for the process and taken by the
/// first thread that does not block it.
pub fn send_to_process(p: &Arc<Process>, sig: u32, info: SigInfo) -> bool {
    send_to_process_from(p, sig, info, false)
}

/// Sends a signal that comes from outside the sandbox (the host forwarding
/// SIGINT/SIGTERM/... to init).
pub fn send_from_host(p: &Arc<Process>, sig: u32) -> bool {
    send_to_process_from(p, sig, SigInfo::user(sig, code::SI_USER, 0, 0), true)
}

fn send_to_process_from(p: &Arc<Process>, sig: u32, info: SigInfo, from_host: bool) -> bool {
    if sig == 0 || sig > NSIG || p.exit.lock().zombie {
        return false;
    }
    // Blocked signals are never ignored (the handler may change before they
    // are unblocked); the main thread's mask decides, as on Linux.
    let leader_blocks = {
        let threads = p.threads.lock();
        threads.iter().find(|t| t.tid == p.pid).or(threads.first()).is_some_and(|t| blocks(t, sig))
    };
    if init_protected(p, sig, from_host, &info, leader_blocks) {
        return false;
    }
    signal_side_effects(p, sig);
    if ignored(p, sig) && !leader_blocks {
        return false;
    }
    let limit = sigpending_limit(p);
    if !p.shared_pending.lock().push(info, limit) {
        return false;
    }
    crate::fs::signalfd::notify();
    let threads = p.threads.lock().clone();
    // Prefer a thread that does not block it; wake all for fatal signals.
    let fatal = sig == SIGKILL;
    let mut chosen = false;
    for t in &threads {
        if fatal || (!chosen && t.sig.lock().blocked & bit(sig) == 0) {
            signal_wake(t, sig);
            chosen = true;
        }
    }
    if !chosen {
        for t in &threads {
            t.sig_flag.store(true, Ordering::Release);
        }
    }
    true
}

/// Raises a synchronous fault signal in the current thread. Blocked or
/// ignored fault signals revert to the default action, as on Linux.
pub fn force_fault(sig: u32, code: i32, addr: u64) {
    let t = super::current_arc();
    {
        let h = t.process.sighand.lock().clone();
        let mut h = h.lock();
        let mut s = t.sig.lock();
        let a = &mut h.actions[(sig - 1) as usize];
        if s.blocked & bit(sig) != 0 || a.handler == SIG_IGN {
            a.handler = SIG_DFL;
            s.blocked &= !bit(sig);
        }
    }
    let mut s = t.sig.lock();
    s.pending.push(SigInfo::fault(sig, code, addr), usize::MAX);
    drop(s);
    t.sig_flag.store(true, Ordering::Release);
}

/// True when `t` has a signal it would act on now.
pub fn has_deliverable(t: &Task) -> bool {
    if !t.sig_flag.load(Ordering::SeqCst) {
        return false;
    }
    let s = t.sig.lock();
    let pending = s.pending.set | t.process.shared_pending.lock().set;
    if pending & !(s.blocked & !UNBLOCKABLE) != 0 {
        return true;
    }
    drop(s);
    // exit_group, or another thread's execve, ends this thread's waits too.
    let e = t.process.exit.lock();
    e.exiting || e.dethread_by.is_some_and(|tid| tid != t.tid)
}

/// Takes the next signal to deliver: faults first, then the lowest number.
fn dequeue(t: &Task) -> Option<SigInfo> {
    let mut s = t.sig.lock();
    let mut shared = t.process.shared_pending.lock();
    let allowed = !(s.blocked & !UNBLOCKABLE);
    let mine = s.pending.set & allowed;
    let theirs = shared.set & allowed;
    let pick = |set: SigSet| -> Option<u32> {
        if set == 0 {
            return None;
        }
        let sync = set & SYNCHRONOUS;
        let from = if sync != 0 { sync } else { set };
        Some(from.trailing_zeros() + 1)
    };
    let r = if let Some(sig) = pick(mine) {
        s.pending.take(sig)
    } else if let Some(sig) = pick(theirs) {
        shared.take(sig)
    } else {
        None
    };
    if s.pending.set & allowed == 0 && shared.set & allowed == 0 {
        t.sig_flag.store(false, Ordering::Release);
    }
    drop(shared);
    drop(s);
    r.map(|info| taken(&t.process, info))
}

/// Bookkeeping for a signal leaving a queue (delivery or sigtimedwait): a
/// POSIX timer's signal reports the expirations it stood for (si_overrun)
/// and lets the timer queue its next one.
pub fn taken(p: &Process, mut info: SigInfo) -> SigInfo {
    if info.code == code::SI_TIMER {
        let mut timers = p.timers.lock();
        if let Some(Some(pt)) = timers.posix.get_mut(info.fields[0] as u32 as usize) {
            if pt.pending {
                pt.pending = false;
                pt.overrun_last = pt.overrun;
                pt.overrun = 0;
                // si_overrun is the int after si_tid.
                info.fields[0] = (info.fields[0] & 0xffff_ffff) | ((pt.overrun_last as u64) << 32);
            }
        }
    }
    info
}

// Frame layout (x86-64 `struct rt_sigframe`, `ucontext`, `sigcontext`).
const UC_FLAGS: u64 = 0;
const UC_STACK: u64 = 16;
const UC_MCONTEXT: u64 = 40;
const UC_SIGMASK: u64 = 296;
const UC_SIZE: u64 = 304;
const FRAME_UC: u64 = 8;
const FRAME_INFO: u64 = FRAME_UC + UC_SIZE;
const FRAME_SIZE: u64 = FRAME_INFO + 128;
const FPSTATE_SIZE: u64 = 512;
/// uc_flags: UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS.
const UC_FLAGS_VALUE: u64 = 0x6;

fn sigcontext_words(f: &TrapFrame, oldmask: SigSet, cr2: u64, fpstate: u64) -> [u64; 32] {
    let mut w = [0u64; 32];
    let regs = [
        f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15, f.rdi, f.rsi, f.rbp, f.rbx, f.rdx, f.rax, f.rcx, f.rsp,
        f.rip, f.rflags,
    ];
    w[..18].copy_from_slice(&regs);
    // cs, gs, fs, ss (16 bits each).
    w[18] = f.cs | (f.ss << 48);
    w[19] = f.error;
    w[20] = if f.vector < 32 { f.vector } else { 0 };
    w[21] = oldmask;
    w[22] = cr2;
    w[23] = fpstate;
    w
}

/// Builds the handler frame and points the user registers at the handler.
fn setup_frame(t: &Task, f: &mut TrapFrame, sig: u32, info: &SigInfo, action: &SigAction, oldmask: SigSet) -> bool {
    let (ss_sp, ss_size, ss_flags) = t.sig.lock().altstack;
    let on_alt = ss_flags & SS_DISABLE == 0 && ss_size != 0 && f.rsp > ss_sp && f.rsp <= ss_sp + ss_size;
    let mut sp = if action.flags & sa::ONSTACK != 0 && ss_flags & SS_DISABLE == 0 && ss_size != 0 && !on_alt {
        ss_sp + ss_size
    } else {
        // Skip the 128-byte red zone of the interrupted code.
        f.rsp - 128
    };
    sp = (sp - FPSTATE_SIZE) & !63;
    let fpstate = sp;
    sp = ((sp - FRAME_SIZE) & !15) - 8;
    if !(4096..USER_END).contains(&sp) {
        return false;
    }
    // FPU registers of the interrupted code.
    t.fpu().save();
    if copy_to_user(fpstate, t.fpu().legacy()).is_err() {
        return false;
    }
    let mut frame = [0u8; FRAME_SIZE as usize];
    frame[0..8].copy_from_slice(&action.restorer.to_le_bytes());
    let uc = FRAME_UC as usize;
    frame[uc + UC_FLAGS as usize..uc + 8].copy_from_slice(&UC_FLAGS_VALUE.to_le_bytes());
    let st = uc + UC_STACK as usize;
    frame[st..st + 8].copy_from_slice(&ss_sp.to_le_bytes());
    let flags: u32 = if ss_size == 0 || ss_flags & SS_DISABLE != 0 {
        SS_DISABLE
    } else if on_alt {
        SS_ONSTACK
    } else {
        0
    };
    frame[st + 8..st + 12].copy_from_slice(&flags.to_le_bytes());
    frame[st + 16..st + 24].copy_from_slice(&ss_size.to_le_bytes());
    let cr2 = if sig == SIGSEGV || sig == SIGBUS { info.fields[0] } else { 0 };
    let words = sigcontext_words(f, oldmask, cr2, fpstate);
    for (i, w) in words.iter().enumerate() {
        let o = uc + UC_MCONTEXT as usize + 8 * i;
        frame[o..o + 8].copy_from_slice(&w.to_le_bytes());
    }
    let m = uc + UC_SIGMASK as usize;
    frame[m..m + 8].copy_from_slice(&oldmask.to_le_bytes());
    // SAFETY: SigInfo is 128 bytes of plain data.
    let info_bytes: &[u8; 128] = unsafe { &*(info as *const SigInfo as *const [u8; 128]) };
    frame[FRAME_INFO as usize..FRAME_SIZE as usize].copy_from_slice(info_bytes);
    if copy_to_user(sp, &frame).is_err() {
        return false;
    }
    f.rip = action.handler;
    f.rsp = sp;
    f.rdi = sig as u64;
    f.rsi = sp + FRAME_INFO;
    f.rdx = sp + FRAME_UC;
    f.rax = 0;
    // The handler runs with DF clear and no single-stepping, like Linux.
    f.rflags &= !(0x400 | 0x100);
    true
}

/// rt_sigreturn: restores the registers, mask, alternate stack and FPU
/// state saved in the frame at the user stack pointer.
pub fn sigreturn(f: &mut TrapFrame) -> Result<u64, Errno> {
    let t = super::current();
    // The handler's `ret` popped the return address: RSP points at the ucontext.
    let uc = f.rsp.wrapping_sub(8) + FRAME_UC;
    let mut buf = [0u8; UC_SIZE as usize];
    if copy_from_user(&mut buf, uc).is_err() {
        force_fault(SIGSEGV, code::SI_KERNEL, 0);
        return Err(Errno::EFAULT);
    }
    let w = |i: usize| {
        let o = UC_MCONTEXT as usize + 8 * i;
        u64::from_le_bytes(buf[o..o + 8].try_into().expect("8 bytes"))
    };
    let rip = w(16);
    if rip >= USER_END {
        force_fault(SIGSEGV, code::SI_KERNEL, 0);
        return Err(Errno::EFAULT);
    }
    f.r8 = w(0);
    f.r9 = w(1);
    f.r10 = w(2);
    f.r11 = w(3);
    f.r12 = w(4);
    f.r13 = w(5);
    f.r14 = w(6);
    f.r15 = w(7);
    f.rdi = w(8);
    f.rsi = w(9);
    f.rbp = w(10);
    f.rbx = w(11);
    f.rdx = w(12);
    f.rax = w(13);
    f.rcx = w(14);
    f.rsp = w(15);
    f.rip = rip;
    // Only the flags user mode may control (the exit path enforces it too).
    f.rflags = (f.rflags & !USER_FLAGS_MASK) | (w(17) & USER_FLAGS_MASK);
    let fpstate = w(23);
    let mask = u64::from_le_bytes(buf[UC_SIGMASK as usize..UC_SIGMASK as usize + 8].try_into().expect("8 bytes"));
    {
        let mut s = t.sig.lock();
        s.blocked = mask & !UNBLOCKABLE;
        let st = UC_STACK as usize;
        let sp = u64::from_le_bytes(buf[st..st + 8].try_into().expect("8 bytes"));
        let flags = u32::from_le_bytes(buf[st + 8..st + 12].try_into().expect("4 bytes"));
        let size = u64::from_le_bytes(buf[st + 16..st + 24].try_into().expect("8 bytes"));
        // Restore the alternate stack unless we are running on it.
        let on_alt = s.altstack.2 & SS_DISABLE == 0 && f.rsp > s.altstack.0 && f.rsp <= s.altstack.0 + s.altstack.1;
        if !on_alt && flags & SS_DISABLE == 0 && size >= 2048 {
            s.altstack = (sp, size, 0);
        }
    }
    if fpstate != 0 {
        let mut img = [0u8; 512];
        if copy_from_user(&mut img, fpstate).is_ok() {
            t.fpu().set_legacy(&img);
            t.fpu().restore();
        }
    }
    t.sig_flag.store(true, Ordering::Release);
    t.frame_rewritten.store(true, Ordering::Release);
    f.error = u64::MAX; // no syscall restart after sigreturn
    Ok(f.rax)
}

/// Decides what a syscall interrupted by a signal returns, given whether a
/// handler runs and its flags.
fn restart_syscall(f: &mut TrapFrame, handler: Option<&SigAction>) {
    if f.vector != VECTOR_SYSCALL || f.error == u64::MAX {
        return;
    }
    let ret = f.rax as i64;
    let errno = match Errno::from_ret(ret) {
        Some(e) => e,
        None => return,
    };
    let restart = match errno {
        Errno::ERESTARTNOINTR => true,
        Errno::ERESTARTSYS => handler.is_none_or(|a| a.flags & sa::RESTART != 0),
        Errno::ERESTARTNOHAND | Errno::ERESTART_RESTARTBLOCK => handler.is_none(),
        _ => return,
    };
    if restart {
        f.rax = f.error;
        f.rip -= 2;
    } else {
        f.rax = Errno::EINTR.to_ret() as u64;
    }
    // Only once per syscall.
    f.error = u64::MAX;
}

/// Handles one pending signal; returns true when the frame was rewritten.
fn deliver_one(t: &Arc<Task>, f: &mut TrapFrame) -> Option<bool> {
    let info = dequeue(t)?;
    let sig = info.signo as u32;
    let p = &t.process;
    let hand = p.sighand.lock().clone();
    let action = hand.lock().get(sig);
    if action.handler == SIG_IGN || (action.handler == SIG_DFL && default_action(sig) == Default_::Ignore) {
        return Some(false);
    }
    if action.handler == SIG_DFL && p.pid == 1 && init_drops(sig, &info) {
        // The sandbox's init has no default action but for SIGKILL (which
        // reaches it only from outside) and its own faults.
        return Some(false);
    }
    if action.handler == SIG_DFL {
        match default_action(sig) {
            Default_::Ignore | Default_::Continue => return Some(false),
            Default_::Stop => {
                super::exit::group_stop(t, sig);
                return Some(false);
            }
            Default_::Terminate | Default_::Core => {
                let core = default_action(sig) == Default_::Core;
                if core {
                    crate::klog!(
                        crate::log::level::INFO,
                        "pid ",
                        p.pid,
                        ": killed by signal ",
                        sig,
                        " at rip ",
                        crate::log::Hex(f.rip),
                        " (",
                        crate::log::Hex(info.fields[0]),
                        ")"
                    );
                }
                super::exit::exit_group(ExitStatus::Signaled(sig, false));
            }
        }
    }
    restart_syscall(f, Some(&action));
    let oldmask = {
        let mut s = t.sig.lock();
        let old = s.saved_mask.take().unwrap_or(s.blocked);
        let mut add = action.mask;
        if action.flags & sa::NODEFER == 0 {
            add |= bit(sig);
        }
        s.blocked = (s.blocked | add) & !UNBLOCKABLE;
        old
    };
    if action.flags & sa::RESETHAND != 0 {
        hand.lock().actions[(sig - 1) as usize] = SigAction::default();
    }
    if !setup_frame(t, f, sig, &info, &action, oldmask) {
        // The stack is unusable: the process dies of SIGSEGV, as on Linux.
        super::exit::exit_group(ExitStatus::Signaled(SIGSEGV, false));
    }
    t.sig_flag.store(true, Ordering::Release);
    Some(true)
}

/// Work on the way back to user mode: reschedule if asked, deliver signals.
/// Returns true when the frame was rewritten (IRET needed).
pub fn exit_to_user(f: &mut TrapFrame) -> bool {
    {
        // Fast path: nothing to do (exit_group and execve raise `sig_flag`
        // in the threads they end, so the exit checks below need it too).
        let t = super::current();
        if !t.need_resched.load(Ordering::Relaxed) && !t.sig_flag.load(Ordering::Acquire) {
            restart_syscall(f, None);
            return t.frame_rewritten.load(Ordering::Relaxed) && t.frame_rewritten.swap(false, Ordering::AcqRel);
        }
    }
    let t = super::current_arc();
    let mut rewritten = false;
    loop {
        if t.need_resched.load(Ordering::Relaxed) {
            sched::yield_now();
            continue;
        }
        if t.sig_flag.load(Ordering::Acquire) {
            let e = t.process.exit.lock();
            let exiting = e.exiting;
            let dethread = e.dethread_by.is_some_and(|tid| tid != t.tid);
            drop(e);
            if exiting {
                super::exit::exit_thread_in_group();
            }
            if dethread {
                super::exit::exit_thread(0);
            }
        }
        if t.sig_flag.load(Ordering::Acquire) {
            match deliver_one(&t, f) {
                Some(true) => {
                    rewritten = true;
                    // Deliver no further signal into this frame: the next
                    // one is delivered when the handler enters the kernel.
                    break;
                }
                Some(false) => continue,
                None => {}
            }
        }
        break;
    }
    // A syscall interrupted by a signal that ended up ignored restarts.
    restart_syscall(f, None);
    // sigsuspend-style masks return to normal if no handler ran.
    if !rewritten {
        let mut s = t.sig.lock();
        if let Some(m) = s.saved_mask.take() {
            s.blocked = m;
            drop(s);
            t.sig_flag.store(true, Ordering::Release);
        }
    }
    rewritten || t.frame_rewritten.swap(false, Ordering::AcqRel)
}

/// A POSIX timer (timer_create).
pub struct PosixTimer {
    pub clock: u64,
    pub signo: u32,
    pub value: u64,
    /// SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID.
    pub notify: u32,
    pub target_tid: u32,
    pub deadline: u64,
    pub interval: u64,
    /// Expirations since its signal was queued (added to si_overrun).
    pub overrun: u32,
    /// si_overrun of the last signal taken (timer_getoverrun).
    pub overrun_last: u32,
    /// Its signal is queued and not yet taken: further expirations only
    /// count overruns (one queued signal per timer, as on Linux).
    pub pending: bool,
    pub generation: u64,
    pub armed: Option<timer::TimerId>,
}

/// A POSIX timer expired: queue its signal and re-arm it if periodic.
pub fn posix_timer_fired(p: &Arc<Process>, index: usize, generation: u64, now: u64) {
    let (sig, value, notify, tid) = {
        let mut timers = p.timers.lock();
        let Some(Some(pt)) = timers.posix.get_mut(index) else { return };
        if pt.generation != generation {
            return;
        }
        pt.armed = None;
        if pt.interval != 0 {
            let mut next = pt.deadline + pt.interval;
            while next <= now {
                next += pt.interval;
                pt.overrun = pt.overrun.saturating_add(1);
            }
            pt.deadline = next;
            pt.armed = Some(timer::arm(next, timer::Action::Posix(Arc::downgrade(p), index, generation)));
        } else {
            pt.deadline = 0;
        }
        (pt.signo, pt.value, pt.notify, pt.target_tid)
    };
    const SIGEV_NONE: u32 = 1;
    const SIGEV_THREAD_ID: u32 = 4;
    if notify == SIGEV_NONE {
        return;
    }
    {
        let mut timers = p.timers.lock();
        let Some(Some(pt)) = timers.posix.get_mut(index) else { return };
        if pt.pending {
            pt.overrun = pt.overrun.saturating_add(1);
            return;
        }
        pt.pending = true;
    }
    let mut info = SigInfo { signo: sig as i32, errno: 0, code: code::SI_TIMER, _pad: 0, fields: [0; 14] };
    info.fields[0] = index as u64;
    info.fields[1] = value;
    if notify == SIGEV_THREAD_ID {
        if let Some(t) = pid::task(tid) {
            send_to_task(&t, sig, info);
        }
    } else {
        send_to_process(p, sig, info);
    }
}

/// Decodes a user-mode #UD on hosts where INT3 and INT n arrive that way
/// (kvm_pvm compat mode): returns the signal, si_code, si_addr and the RIP
/// the handler should see.
pub fn decode_invalid_opcode(f: &TrapFrame) -> (u32, i32, u64, u64) {
    let mut b = [0u8; 2];
    let got = copy_from_user(&mut b, f.rip).is_ok();
    match (got, b[0]) {
        (true, 0xcc) => (SIGTRAP, code::SI_KERNEL, 0, f.rip + 1),
        (true, 0xcd) => (SIGSEGV, code::SI_KERNEL, 0, f.rip),
        _ => (SIGILL, code::ILL_ILLOPN, f.rip, f.rip),
    }
}

/// Weak reference helper for timers.
pub fn weak(p: &Arc<Process>) -> Weak<Process> {
    Arc::downgrade(p)
}

/// Kills every task of the sandbox but the caller's process (init exiting).
pub fn kill_all_but(keep: u32) {
    for p in pid::processes() {
        if p.pid != keep {
            send_to_process_from(&p, SIGKILL, SigInfo::kernel(SIGKILL), true);
        }
    }
}

/// Lets a stopped task wait until SIGCONT/SIGKILL.
pub fn stop_current() {
    let t = super::current();
    t.state.store(State::Stopped as u8, Ordering::SeqCst);
    if has_deliverable(t) && t.sig.lock().pending.set & bit(SIGKILL) != 0 {
        t.state.store(State::Runnable as u8, Ordering::SeqCst);
        return;
    }
    sched::schedule();
}

/// Spin-lock type used for handler tables (re-exported for fork).
pub type Handlers = Arc<SpinLock<SigHandlers>>;
