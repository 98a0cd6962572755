//! Queued host calls, guest side (protocol and layout: `qlib::hostq`; which
//! call takes which path: docs/architecture.md, "Host calls").
//!
//! A task claims an entry of its vCPU's completion table, posts a 64-byte
//! request tagged with it to the vCPU's submission ring and parks (after
//! polling briefly when the answer is expected soon); the host I/O thread
//! executes the request and writes the 32-byte response into the entry; the
//! completion interrupt (sent only while a task of that vCPU advertised that
//! it waits) wakes the task, which reads its own entry.
//!
//! Per-vCPU state, no locks: vCPU `c` is the only producer of submission ring
//! `c` and the only code that claims entries of table `c` (the kernel runs
//! with interrupts disabled, so a vCPU is one thread of execution). A task
//! may migrate while it waits; its completion still lands in the table of
//! the vCPU it submitted from, whose completion interrupt stays armed while
//! any of its entries has a waiting task, and that vCPU's interrupt handler
//! wakes it wherever it is queued.
//!
//! Supervisor instructions are expensive on kvm_pvm hosts (each one is
//! emulated, about 1–2 µs), so the paths here are short: no allocation on the
//! submit/complete path, a poll is one load, and the doorbell (a VM exit)
//! rings only when the host thread sleeps.

use crate::arch::x86_64::{cpu, percpu};
use crate::hcall;
use crate::sync::Once;
use crate::task::{self, sched, State, Task};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use qlib::hcall::{Call, GuestIovec, IO_NONBLOCK};
use qlib::hostq::{self, done_word, op, tag, Sqe, MAX_INFLIGHT};
use qlib::layout::{kernel_va_to_pa, phys_to_virt, port, MAX_VCPUS};
use qlib::linux::Errno;
use shmq::{spsc, Region, Wake};

/// Times a submitting task looks at its completion entry before it parks
/// (one load each) when the answer is expected soon: about the time an
/// awake host thread needs for a short operation. Parking and being woken
/// costs a few hundred emulated instructions (docs/architecture.md).
const POLL_BUDGET: u32 = 16;

/// The guest's side of the submission ring's wakeup protocol: the doorbell.
struct Doorbell;

impl Wake for Doorbell {
    fn wake_peer(&self) -> shmq::Result<()> {
        cpu::vmm_call(port::HOSTQ_DOORBELL, percpu::cpu_index() as u32);
        Ok(())
    }
    fn sleep(&self) -> shmq::Result<()> {
        // Tasks park through the scheduler, never inside shmq.
        Err(shmq::Error::InvalidArgument("hostq: the guest never sleeps inside a ring operation"))
    }
    fn wake_sibling(&self) -> shmq::Result<()> {
        Ok(())
    }
}

/// One vCPU's submission ring.
struct Queue {
    sq: spsc::Producer<'static, Sqe, Doorbell>,
    /// The ring failed (a host bug): no more queued calls from this vCPU.
    broken: bool,
}

struct PerVcpu(UnsafeCell<Option<Queue>>);

// SAFETY: entry `c` is only touched by vCPU `c` with interrupts disabled
// (see the module docs), after boot initialised it.
unsafe impl Sync for PerVcpu {}

/// Guest-private state of one completion table entry.
struct Slot {
    /// Changes with every claim; part of the tag. Written only by the
    /// entry's vCPU.
    generation: AtomicU32,
    /// The task to wake (`Arc::into_raw`), or null. Whoever swaps it out
    /// (the interrupt handler waking the task, or the task itself when it
    /// saw the completion first) owns the reference.
    task: AtomicPtr<Task>,
}

static REGION: Once<Region> = Once::new();
static QUEUES: [PerVcpu; MAX_VCPUS as usize] = [const { PerVcpu(UnsafeCell::new(None)) }; MAX_VCPUS as usize];
static SLOTS: Once<Vec<Slot>> = Once::new();
/// Claimed entries per vCPU (bit `i`: entry `i`). Only vCPU `c` sets bits of
/// `BUSY[c]`; any vCPU clears them (a task frees its entry where it runs).
static BUSY: [AtomicU64; MAX_VCPUS as usize] = [const { AtomicU64::new(0) }; MAX_VCPUS as usize];
static READY: AtomicBool = AtomicBool::new(false);
/// hostfs data requests of at least this many bytes go through the queue
/// (`qlib::hostq::HOSTFS_POLICY_OFFSET`; read once at boot).
static HOSTFS_MIN_QUEUED: AtomicU64 = AtomicU64::new(hostq::HOSTFS_NEVER);
/// When (monotonic ns) a parked task last resumed with its completion;
/// recorded only with test hooks (`quark_test` reads it for the wake-latency
/// test).
static LAST_WAKE_NS: AtomicU64 = AtomicU64::new(0);

/// See [`LAST_WAKE_NS`].
pub fn last_wake_ns() -> u64 {
    LAST_WAKE_NS.load(Ordering::Relaxed)
}

const _: () = assert!(MAX_INFLIGHT == 64, "BUSY holds 64 entries per vCPU");
const _: () = {
    use crate::arch::x86_64::apic;
    let v = hostq::COMPLETION_VECTOR;
    assert!(v > 31 && v != apic::TIMER_VECTOR && v != apic::WAKE_VECTOR && v != apic::SPURIOUS_VECTOR);
    assert!(v != crate::mm::tlb::TLB_VECTOR, "the completion interrupt needs a vector of its own");
};

/// Attaches to the rings the host created (boot vCPU, before tasks run).
pub fn init() {
    let p = crate::boot::params();
    let vcpus = p.vcpu_count;
    if p.hostq_size < hostq::area_size(vcpus) {
        crate::klog!(crate::log::level::WARN, "hostq: no ring area from the host; host calls stay synchronous");
        return;
    }
    // SAFETY: the host reserved this range of guest RAM for the rings (never
    // handed to the frame allocator); the direct map covers it for the
    // kernel's lifetime; shmq reaches it only through atomics and raw copies.
    let region = match unsafe { Region::new(phys_to_virt(p.hostq_pa) as *mut u8, p.hostq_size as usize) } {
        Ok(r) => r,
        Err(_) => return,
    };
    // SAFETY: boot vCPU, once, before any reader.
    unsafe { REGION.init(region) };
    let region = REGION.get();
    let mut slots = Vec::with_capacity((vcpus * MAX_INFLIGHT) as usize);
    for _ in 0..vcpus * MAX_INFLIGHT {
        slots.push(Slot { generation: AtomicU32::new(0), task: AtomicPtr::new(core::ptr::null_mut()) });
    }
    // SAFETY: boot vCPU, once, before any reader.
    unsafe { SLOTS.init(slots) };
    for c in 0..vcpus {
        let Ok(sq) = spsc::Producer::attach(region, hostq::sq_offset(c), Doorbell) else {
            crate::klog!(crate::log::level::ERROR, "hostq: the host's ring for vCPU ", c, " does not attach");
            return;
        };
        // Everything this vCPU will touch in its block must be addressable.
        if region.atomic_u32(hostq::wait_offset(c)).is_err()
            || region.atomic_u32(hostq::completion_offset(c, MAX_INFLIGHT - 1)).is_err()
        {
            return;
        }
        // SAFETY: boot, before the other vCPUs run: nobody else touches the entry.
        unsafe { *QUEUES[c as usize].0.get() = Some(Queue { sq, broken: false }) };
    }
    let policy = region.read_pod::<u64>(hostq::HOSTFS_POLICY_OFFSET).unwrap_or(0);
    HOSTFS_MIN_QUEUED.store(hostq::hostfs_min_queued(policy), Ordering::Relaxed);
    READY.store(true, Ordering::Release);
}

/// True when a hostfs data request of `bytes`, after `done` bytes its
/// system call already moved, should go through the queue (the host's
/// policy, `qlib::hostq::HOSTFS_POLICY_OFFSET`; docs/hostfs.md, "Which
/// path"), and a task can park for it.
pub fn hostfs_queued(done: u64, bytes: u64) -> bool {
    available() && task::has_current() && done.saturating_add(bytes) > HOSTFS_MIN_QUEUED.load(Ordering::Relaxed)
}

/// True once the rings are attached.
pub fn available() -> bool {
    READY.load(Ordering::Acquire)
}

/// This vCPU's queue.
///
/// # Safety
/// `c` must be the current vCPU, interrupts must stay disabled while the
/// reference is used (kernel code always runs so), and it must not be held
/// across `schedule()` or `yield_now()`.
#[allow(clippy::mut_from_ref)]
unsafe fn queue(c: usize) -> Option<&'static mut Queue> {
    // SAFETY: only vCPU `c` calls this for `c`, with interrupts disabled, and
    // never keeps the reference across a point where other code of this vCPU
    // could run: no aliasing.
    unsafe { (*QUEUES[c].0.get()).as_mut() }
}

fn slot(c: usize, i: u32) -> &'static Slot {
    &SLOTS.get()[c * MAX_INFLIGHT as usize + i as usize]
}

/// The `done` word of entry `i` of vCPU `c` (checked at boot to be in the area).
fn done_of(c: usize, i: u32) -> Option<&'static AtomicU32> {
    REGION.get().atomic_u32(hostq::completion_offset(c as u32, i)).ok()
}

/// The completion waiting flag of vCPU `c`.
fn waiting_of(c: usize) -> Option<&'static AtomicU32> {
    REGION.get().atomic_u32(hostq::wait_offset(c as u32)).ok()
}

/// Makes a waiting task runnable.
fn wake_task(t: Arc<Task>) {
    if Arc::as_ptr(&t) as u64 == percpu::this_cpu().current {
        // This vCPU's current task: polling, or halted in place
        // (`sched::schedule_or_halt`) and interrupted by us. Making it
        // runnable is all it needs; no run queue is involved.
        let _ =
            t.state.compare_exchange(State::Sleeping as u8, State::Runnable as u8, Ordering::AcqRel, Ordering::Acquire);
    } else {
        sched::wake(&t);
    }
}

/// Wakes this vCPU's tasks whose completions arrived; returns (woke any,
/// tasks still waiting).
fn scan(c: usize) -> (bool, bool) {
    let mut busy = BUSY[c].load(Ordering::Acquire);
    let (mut woke, mut left) = (false, false);
    while busy != 0 {
        let i = busy.trailing_zeros();
        busy &= busy - 1;
        let s = slot(c, i);
        if s.task.load(Ordering::Acquire).is_null() {
            continue;
        }
        let Some(done) = done_of(c, i) else { continue };
        if done.load(Ordering::Acquire) != done_word(s.generation.load(Ordering::Relaxed)) {
            left = true;
            continue;
        }
        let p = s.task.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: `p` came from Arc::into_raw in `submit`; the swap made
            // this the only owner of that reference.
            wake_task(unsafe { Arc::from_raw(p) });
            woke = true;
        }
    }
    (woke, left)
}

/// The completion interrupt: wakes the tasks whose completions arrived and
/// re-arms the interrupt while others of this vCPU still wait.
pub fn interrupt() {
    if !available() {
        return;
    }
    let c = percpu::cpu_index();
    let Some(waiting) = waiting_of(c) else { return };
    let mut armed = false;
    loop {
        let (woke, left) = scan(c);
        if !left || (armed && !woke) {
            return;
        }
        // Tasks remain: ask for the next interrupt (flag, fence, re-check:
        // the scan above runs once more after the fence).
        waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        armed = true;
    }
}

/// Claims a free entry of this vCPU for the current task and submits; returns the tag.
fn submit(c: usize, opcode: u32, req: &[u64; 8]) -> Option<u32> {
    let busy = BUSY[c].load(Ordering::Relaxed);
    if busy == u64::MAX {
        return None;
    }
    let i = (!busy).trailing_zeros();
    // Only this vCPU sets bits of BUSY[c], so the bit is still clear.
    BUSY[c].fetch_or(1 << i, Ordering::Acquire);
    let s = slot(c, i);
    let g = s.generation.load(Ordering::Relaxed).wrapping_add(1) & 0xffff;
    s.generation.store(g, Ordering::Relaxed);
    s.task.store(Arc::into_raw(task::current_arc()) as *mut Task, Ordering::Release);
    let t = tag::make(c as u32, i, g);
    // SAFETY: this vCPU, interrupts disabled; not held across schedule().
    let pushed = unsafe { queue(c) }
        .is_some_and(|q| !q.broken && matches!(q.sq.try_push(Sqe { tag: t, op: opcode, req: *req }), Ok(true)));
    if !pushed {
        release(c, i);
        return None;
    }
    Some(t)
}

/// Frees entry `i` of vCPU `c` (from any vCPU), dropping a task reference
/// nobody took.
fn release(c: usize, i: u32) {
    let p = slot(c, i).task.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: from Arc::into_raw in `submit`; the swap made us its owner.
        drop(unsafe { Arc::from_raw(p) });
    }
    BUSY[c].fetch_and(!(1 << i), Ordering::Release);
}

/// Asks the host to finish the request `target` at once (a signal came).
fn cancel(target: u32) {
    let c = percpu::cpu_index();
    loop {
        // SAFETY: this vCPU, interrupts disabled; not held across yield_now().
        let Some(q) = (unsafe { queue(c) }) else { return };
        if q.broken {
            return;
        }
        match q.sq.try_push(Sqe { tag: 0, op: op::CANCEL, req: [target as u64, 0, 0, 0, 0, 0, 0, 0] }) {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
        // Full: the host is busy with our earlier submissions.
        sched::yield_now();
    }
}

/// How a queued call ended.
pub struct Completion {
    /// The host's response.
    pub resp: [u64; 4],
    /// A signal interrupted the wait and the request was cancelled (the
    /// response says how far it got).
    pub cancelled: bool,
}

/// How a caller expects the host to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Soon (the host thread is likely awake or the operation is short):
    /// poll the completion entry a few times before parking.
    Soon,
    /// After an outside event (the host already said it would have to
    /// wait): park at once, polling would only burn emulated instructions.
    Later,
}

/// Posts `req` as operation `opcode` and waits for the response; a pending
/// signal cancels the request when `interruptible`. `None` when the queue is
/// unavailable (the caller uses the synchronous call).
pub fn call(opcode: u32, req: &[u64; 8], interruptible: bool, expect: Expect) -> Option<Completion> {
    if !available() || !task::has_current() {
        return None;
    }
    let c = percpu::cpu_index();
    let t = loop {
        if let Some(t) = submit(c, opcode, req) {
            break t;
        }
        // SAFETY: this vCPU, interrupts disabled.
        if unsafe { queue(c) }.is_none_or(|q| q.broken) {
            return None;
        }
        // Every entry busy (or the ring full): let others finish.
        sched::yield_now();
    };
    let i = tag::slot(t);
    let want = done_word(tag::generation(t));
    let (Some(done), Some(waiting)) = (done_of(c, i), waiting_of(c)) else {
        release(c, i);
        return None;
    };
    if expect == Expect::Soon {
        for _ in 0..POLL_BUDGET {
            if done.load(Ordering::Acquire) == want {
                return Some(finish(c, i, false));
            }
            core::hint::spin_loop();
        }
    }
    let me = task::current();
    let mut cancelled = false;
    let mut parked = false;
    loop {
        if done.load(Ordering::Acquire) == want {
            break;
        }
        let may_interrupt = interruptible && !cancelled;
        if may_interrupt && crate::task::signal::has_deliverable(me) {
            cancel(t);
            cancelled = true;
            continue;
        }
        task::interruptible_sleep(me, may_interrupt);
        me.state.store(State::Sleeping as u8, Ordering::SeqCst);
        // Ask vCPU c for the completion interrupt (shmq's sleeper step:
        // flag, SeqCst fence, re-check), wherever this task runs now.
        waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let abort = done.load(Ordering::Acquire) == want || (may_interrupt && crate::task::signal::has_deliverable(me));
        if !abort {
            sched::schedule_or_halt();
            parked = true;
        } else {
            // Undo the sleep unless a waker already did.
            let _ = me.state.compare_exchange(
                State::Sleeping as u8,
                State::Runnable as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        task::interruptible_sleep(me, false);
    }
    if parked && crate::boot::params().flags & qlib::boot::flags::TEST_HOOKS != 0 {
        LAST_WAKE_NS.store(crate::time::monotonic_ns(), Ordering::Relaxed);
    }
    Some(finish(c, i, cancelled))
}

fn finish(c: usize, i: u32, cancelled: bool) -> Completion {
    let at = hostq::completion_offset(c as u32, i) + hostq::RESP_OFFSET;
    // The acquire load of `done` that ended the wait orders this read.
    let resp = REGION.get().read_pod::<[u64; 4]>(at).unwrap_or([Errno::EIO.to_ret() as u64, 0, 0, 0]);
    release(c, i);
    Completion { resp, cancelled }
}

/// Reads or writes a host stdio descriptor into/out of guest frames:
/// first a synchronous non-blocking VMM call (one exit when data or room
/// is there), then, if the host would have to wait, the queue (the task
/// parks, the vCPU stays free). `iovs` holds at most `hcall::MAX_IOVECS`
/// and lives in the kernel heap or image (the host reads the list by its
/// guest-physical address, so it must be physically contiguous).
pub fn stdio(fd: u8, iovs: &[GuestIovec], write: bool) -> Result<u64, Errno> {
    let want: u64 = iovs.iter().map(|v| v.len).sum();
    let n = hcall::put_iovecs(iovs);
    let p = hcall::page();
    p.args[0] = fd as u64;
    p.args[1] = n as u64;
    p.args[2] = IO_NONBLOCK;
    let done = match hcall::call_result(if write { Call::Write } else { Call::Read }) {
        Ok(got) if !write || got >= want => return Ok(got),
        Ok(got) => got,
        Err(Errno::EAGAIN) => 0,
        Err(e) => return Err(e),
    };
    let copy;
    let rest = if done == 0 {
        iovs
    } else {
        copy = skip_bytes(iovs, done);
        &copy[..]
    };
    let req = [fd as u64, rest.len() as u64, kernel_va_to_pa(rest.as_ptr() as u64), 0, 0, 0, 0, 0];
    let opcode = if write { op::STDIO_WRITE } else { op::STDIO_READ };
    let Some(r) = call(opcode, &req, true, Expect::Later) else {
        // No queue: wait in the host on this vCPU, as before.
        let n = hcall::put_iovecs(rest);
        let p = hcall::page();
        p.args[0] = fd as u64;
        p.args[1] = n as u64;
        p.args[2] = 0;
        return hcall::call_result(if write { Call::Write } else { Call::Read }).map(|got| done + got);
    };
    let ret = r.resp[0] as i64;
    match Errno::from_ret(ret) {
        None => Ok(done + ret as u64),
        Some(_) if done > 0 => Ok(done),
        // Interrupted before anything moved: restart or EINTR, as the handler says.
        Some(Errno::EINTR) if r.cancelled => Err(Errno::ERESTARTSYS),
        Some(e) => Err(e),
    }
}

/// `iovs` without its first `skip` bytes (a heap copy: physically
/// contiguous, so the host can read the list by its guest-physical address).
fn skip_bytes(iovs: &[GuestIovec], mut skip: u64) -> Vec<GuestIovec> {
    let mut out = Vec::with_capacity(iovs.len());
    for v in iovs {
        if skip >= v.len {
            skip -= v.len;
            continue;
        }
        out.push(GuestIovec { gpa: v.gpa + skip, len: v.len - skip });
        skip = 0;
    }
    out
}
