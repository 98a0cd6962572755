//! Queued host calls, guest side (protocol and layout: `qlib::hostq`; which
//! call takes which path: docs/architecture.md, "Host calls").
//!
//! A task posts a 64-byte request to its vCPU's submission ring and parks;
//! the host I/O thread executes it and posts a 32-byte response to that
//! vCPU's completion ring; the completion interrupt (sent only while this
//! vCPU advertised that a task waits) drains the ring and wakes the task.
//!
//! Per-vCPU state, no locks: vCPU `c` is the only producer of submission
//! ring `c` and the only consumer of completion ring `c` (the kernel runs
//! with interrupts disabled, so a vCPU is one thread of execution and the
//! completion interrupt can never nest inside another ring operation).
//! A request occupies one of `MAX_INFLIGHT` slots of its vCPU until the
//! waiting task has read the response; the slot records the task to wake and
//! receives the response. A task may migrate while it waits; its completion
//! still arrives on the vCPU it submitted from, whose completion ring stays
//! armed while any of its requests is in flight.
//!
//! Supervisor instructions are expensive on kvm_pvm hosts (each one is
//! emulated, about 1 µs), so the paths here are short: no allocation on the
//! submit/complete path, one ring operation each, and the doorbell (a VM
//! exit) only when the host thread sleeps.

use crate::arch::x86_64::{cpu, percpu};
use crate::hcall;
use crate::sync::Once;
use crate::task::{self, sched, State, Task};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use qlib::hcall::{Call, GuestIovec, IO_NONBLOCK};
use qlib::hostq::{self, op, tag, Cqe, Sqe, MAX_INFLIGHT};
use qlib::layout::{kernel_va_to_pa, phys_to_virt, port, MAX_VCPUS};
use qlib::linux::Errno;
use shmq::{spsc, Region, Wake};

/// Times a submitting task looks at the completion ring before it parks. A
/// host thread that is awake answers a Nop in a few microseconds; parking
/// and being woken costs hundreds of emulated instructions (see the
/// measurements in docs/architecture.md).
const POLL_BUDGET: u32 = 8;

/// The guest's side of the wakeup protocol: the doorbell.
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

/// One vCPU's rings.
struct Queue {
    sq: spsc::Producer<'static, Sqe, Doorbell>,
    cq: spsc::Consumer<'static, Cqe, Doorbell>,
    /// Requests submitted from this vCPU and not completed yet.
    inflight: u32,
    /// A ring failed (a host bug): no more queued calls from this vCPU.
    broken: bool,
}

struct PerVcpu(UnsafeCell<Option<Queue>>);

// SAFETY: entry `c` is only touched by vCPU `c` with interrupts disabled
// (see the module docs), after boot initialised it.
unsafe impl Sync for PerVcpu {}

/// An in-flight request.
struct Slot {
    /// Changes with every use; part of the tag.
    generation: AtomicU32,
    /// The response is there.
    done: AtomicBool,
    resp: [AtomicU64; 4],
    /// The task to wake. Written by the submitter and taken by the completer,
    /// both on the slot's vCPU with interrupts disabled.
    task: UnsafeCell<Option<Arc<Task>>>,
}

// SAFETY: `task` follows the rule above; everything else is atomic.
unsafe impl Sync for Slot {}

static REGION: Once<Region> = Once::new();
static QUEUES: [PerVcpu; MAX_VCPUS as usize] = [const { PerVcpu(UnsafeCell::new(None)) }; MAX_VCPUS as usize];
static SLOTS: Once<Vec<Slot>> = Once::new();
/// Busy slots per vCPU (bit `i`: slot `i`). Only vCPU `c` sets bits of
/// `BUSY[c]`; any vCPU clears them (a task frees its slot where it runs).
static BUSY: [AtomicU64; MAX_VCPUS as usize] = [const { AtomicU64::new(0) }; MAX_VCPUS as usize];
static READY: AtomicBool = AtomicBool::new(false);

const _: () = assert!(MAX_INFLIGHT == 64, "BUSY holds 64 slots per vCPU");
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
        slots.push(Slot {
            generation: AtomicU32::new(0),
            done: AtomicBool::new(true),
            resp: [const { AtomicU64::new(0) }; 4],
            task: UnsafeCell::new(None),
        });
    }
    // SAFETY: boot vCPU, once, before any reader.
    unsafe { SLOTS.init(slots) };
    for c in 0..vcpus {
        let sq = spsc::Producer::attach(region, hostq::sq_offset(c), Doorbell);
        let cq = spsc::Consumer::attach(region, hostq::cq_offset(c), Doorbell);
        let (Ok(sq), Ok(cq)) = (sq, cq) else {
            crate::klog!(crate::log::level::ERROR, "hostq: the host's rings for vCPU ", c, " do not attach");
            return;
        };
        // SAFETY: boot, before the other vCPUs run: nobody else touches the entry.
        unsafe { *QUEUES[c as usize].0.get() = Some(Queue { sq, cq, inflight: 0, broken: false }) };
    }
    READY.store(true, Ordering::Release);
}

/// True once the rings are attached.
pub fn available() -> bool {
    READY.load(Ordering::Acquire)
}

/// This vCPU's queue.
///
/// # Safety
/// Interrupts must stay disabled while the reference is used (kernel code
/// always runs so), and it must not be held across `schedule()`.
#[allow(clippy::mut_from_ref)]
unsafe fn queue(c: usize) -> Option<&'static mut Queue> {
    // SAFETY: only vCPU `c` calls this for `c` (callers pass cpu_index()),
    // with interrupts disabled, and never keeps the reference across a
    // point where the interrupt handler could run: no aliasing.
    unsafe { (*QUEUES[c].0.get()).as_mut() }
}

fn slot(c: usize, i: u32) -> &'static Slot {
    &SLOTS.get()[c * MAX_INFLIGHT as usize + i as usize]
}

/// Takes every completion of this vCPU's ring, wakes the tasks, and re-arms
/// the completion interrupt while requests remain in flight. Called by the
/// completion interrupt and by submitters before they park.
pub fn drain() {
    drain_ring(true)
}

/// `arm`: leave the completion interrupt armed while requests remain in
/// flight. A submitter that only polls does not arm (an interrupt for a
/// completion it takes itself would be wasted work); the flag then stays as
/// the last arming left it, which is armed whenever another task waits: only
/// the host clears it, and then it also sends the interrupt whose handler
/// re-arms.
fn drain_ring(arm: bool) {
    if !available() {
        return;
    }
    let c = percpu::cpu_index();
    // SAFETY: `c` is this vCPU; interrupts are disabled here.
    if let Some(q) = unsafe { queue(c) } {
        take_completions(c, q, arm);
    }
}

fn take_completions(c: usize, q: &mut Queue, arm: bool) {
    if q.broken {
        return;
    }
    loop {
        // Nothing more is due once every request completed (a stale or
        // bogus extra entry can wait for the next drain).
        while q.inflight > 0 {
            match q.cq.try_pop() {
                Ok(Some(cqe)) => complete(c, q, &cqe),
                Ok(None) => break,
                Err(_) => {
                    q.broken = true;
                    crate::klog!(crate::log::level::ERROR, "hostq: vCPU ", c, "'s completion ring is corrupt");
                    return;
                }
            }
        }
        if q.inflight == 0 || !arm {
            return;
        }
        // Requests remain: ask for the interrupt (flag, fence, re-check).
        match q.cq.arm() {
            Ok(false) => return,
            Ok(true) => continue,
            Err(_) => {
                q.broken = true;
                return;
            }
        }
    }
}

fn complete(c: usize, q: &mut Queue, cqe: &Cqe) {
    let (v, i, g) = (tag::vcpu(cqe.tag), tag::slot(cqe.tag), tag::generation(cqe.tag));
    if v as usize != c || i >= MAX_INFLIGHT {
        return;
    }
    let s = slot(c, i);
    // A slot that is free or already completed has `done` set (it is
    // cleared only when the slot is claimed, with a new generation).
    if s.generation.load(Ordering::Relaxed) & 0xffff != g || s.done.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: this vCPU, interrupts disabled: the submitter (same vCPU) is
    // not running this code concurrently (see `Slot::task`).
    let task = unsafe { (*s.task.get()).take() };
    for (d, v) in s.resp.iter().zip(cqe.resp) {
        d.store(v, Ordering::Relaxed);
    }
    // Release: the response is visible to whoever sees `done`.
    s.done.store(true, Ordering::Release);
    q.inflight = q.inflight.saturating_sub(1);
    if let Some(t) = task {
        if Arc::as_ptr(&t) as u64 == percpu::this_cpu().current {
            // The waiter is this vCPU's current task: polling, or halted in
            // place (`sched::schedule_or_halt`) and interrupted by us. Making
            // it runnable is all it needs; no run queue is involved.
            let _ = t.state.compare_exchange(
                State::Sleeping as u8,
                State::Runnable as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        } else {
            sched::wake(&t);
        }
    }
}

/// Claims a free slot of this vCPU for the current task; returns its tag.
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
    s.done.store(false, Ordering::Relaxed);
    // SAFETY: the slot was free (no completer will look at it until the
    // request is published below); this vCPU, interrupts disabled.
    unsafe { *s.task.get() = Some(task::current_arc()) };
    let t = tag::make(c as u32, i, g);
    // SAFETY: this vCPU, interrupts disabled; not held across schedule().
    let q = unsafe { queue(c) }?;
    let pushed = !q.broken && matches!(q.sq.try_push(Sqe { tag: t, op: opcode, req: *req }), Ok(true));
    if !pushed {
        // SAFETY: as above; the request was never published.
        unsafe { *s.task.get() = None };
        BUSY[c].fetch_and(!(1 << i), Ordering::Release);
        return None;
    }
    q.inflight += 1;
    Some(t)
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
    /// poll the completion ring a few times before parking.
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
        // Every slot busy (or the ring full): let completions arrive.
        drain();
        sched::yield_now();
    };
    let s = slot(c, tag::slot(t));
    // SAFETY: this vCPU, interrupts disabled; not held across schedule().
    if let (Some(q), Expect::Soon) = (unsafe { queue(c) }, expect) {
        for _ in 0..POLL_BUDGET {
            if q.cq.peek_nonempty() {
                take_completions(c, q, false);
            }
            if s.done.load(Ordering::Acquire) {
                return Some(finish(c, s, t, false));
            }
            core::hint::spin_loop();
        }
    }
    let me = task::current();
    let mut cancelled = false;
    loop {
        if s.done.load(Ordering::Acquire) {
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
        // Takes what arrived and arms this vCPU's completion interrupt.
        drain();
        let abort = s.done.load(Ordering::Acquire) || (may_interrupt && crate::task::signal::has_deliverable(me));
        if !abort {
            sched::schedule_or_halt();
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
    Some(finish(c, s, t, cancelled))
}

fn finish(c: usize, s: &Slot, t: u32, cancelled: bool) -> Completion {
    let resp = [0, 1, 2, 3].map(|i| s.resp[i].load(Ordering::Relaxed));
    BUSY[c].fetch_and(!(1 << tag::slot(t)), Ordering::Release);
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
