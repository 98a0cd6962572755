//! The host side of queued host calls (`qlib::hostq`).
//!
//! One host I/O thread ("hostq") serves the submission ring of every vCPU.
//! It routes each request by operation number to a [`Service`] (the
//! [`Dispatcher`]), writes the response into the request's entry of that
//! vCPU's completion table and, only if the vCPU advertised that a task
//! waits (its completion waiting flag), injects the completion interrupt
//! with KVM_SIGNAL_MSI.
//!
//! A service never blocks the thread on a descriptor: it answers
//! [`Step::Wait`] with the descriptor and the poll(2) events it needs, and
//! the thread runs it again when `ppoll` reports them. Meanwhile other
//! requests (and other vCPUs) are served, and no vCPU is held: the guest task
//! that submitted the request is parked, its vCPU runs other tasks or halts.
//!
//! Sleeping: after `SPIN_NS` without work the thread sets every submission
//! ring's waiting flag (shmq's `arm`: flag, SeqCst fence, re-check) and
//! sleeps in `ppoll` on the doorbell eventfd, the stop eventfd and the
//! descriptors its waiting requests need. The guest rings the doorbell (an
//! `out` to `port::HOSTQ_DOORBELL`, turned into an eventfd signal by KVM's
//! ioeventfd, or by the vCPU thread when the host lacks it) only when it
//! finds the flag set, so a busy thread costs the guest no exits.
//!
//! Nothing from the guest is trusted: operation numbers, descriptors and
//! iovec lists are checked, every guest range goes through `GuestMemory`, a
//! corrupt ring stops being served (with a log line), and the number of
//! waiting requests is bounded.

use crate::log::Log;
use crate::memory::GuestMemory;
use crate::sys::{self, Errno, PollFd};
use qlib::hcall::GuestIovec;
use qlib::hostq::{self, op, Sqe};
use shmq::host::EventFd;
use shmq::{spsc, Region};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long the I/O thread keeps polling the rings after its last piece of
/// work before it arms the waiting flags and sleeps. A request submitted
/// within this window costs the guest no doorbell exit (see
/// docs/architecture.md, "Host calls", for the measurement behind it).
pub const SPIN: Duration = Duration::from_micros(0);

/// Creates the submission rings and empty completion tables of `vcpus`
/// vCPUs in the hostq area at `pa` (before boot; the guest attaches).
/// Also writes the hostfs path policy ([`hostfs_policy_from_env`]).
pub fn init_rings(mem: &GuestMemory, pa: u64, vcpus: u32) -> Result<(), String> {
    let size = hostq::area_size(vcpus);
    let region = mem.region(pa, size).map_err(|e| format!("hostq area: {e}"))?;
    region.zero(0, size as usize).map_err(|e| e.to_string())?;
    for i in 0..vcpus {
        spsc::init::<Sqe>(&region, hostq::sq_offset(i), hostq::SQ_SLOTS).map_err(|e| e.to_string())?;
    }
    if vcpus > 0 {
        let policy = hostfs_policy_from_env()?;
        region.write_pod(hostq::HOSTFS_POLICY_OFFSET, &policy).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What a service did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Finished: post this response.
    Done([u64; 4]),
    /// Not finished: run it again once `fd` reports one of `events`
    /// (poll(2) bits; POLLERR/POLLHUP always count).
    Wait { fd: RawFd, events: i16 },
}

/// A host service reachable through the queue.
pub trait Service: Send + Sync {
    /// Runs (or, after a [`Step::Wait`], continues) request `req` of
    /// operation `op`. `progress` is the request's private state between
    /// runs (0 at first; e.g. bytes already transferred). Must not block on
    /// descriptors: return [`Step::Wait`] instead.
    fn run(&self, mem: &GuestMemory, op: u32, req: &[u64; 8], progress: &mut u64) -> Step;

    /// The response of a waiting request the guest cancelled (a signal
    /// interrupted the task): by default what was transferred so far, or
    /// `-EINTR` if nothing.
    fn cancel(&self, _op: u32, _req: &[u64; 8], progress: u64) -> [u64; 4] {
        [if progress > 0 { progress } else { err(Errno::EINTR) }, 0, 0, 0]
    }
}

/// `-errno` as a response word.
fn err(e: Errno) -> u64 {
    e.to_ret() as u64
}

/// Routes operation numbers to services.
#[derive(Default, Clone)]
pub struct Dispatcher {
    services: HashMap<u32, Arc<dyn Service>>,
    /// Operations run by the worker threads instead of the I/O thread.
    offloaded: HashMap<u32, Arc<dyn Service>>,
    /// Worker threads for the offloaded operations.
    workers: usize,
}

impl Dispatcher {
    /// No services.
    pub fn new() -> Dispatcher {
        Dispatcher::default()
    }

    /// The services every sandbox has: no-op and stdio.
    pub fn standard() -> Dispatcher {
        let mut d = Dispatcher::new();
        d.register(op::NOP, Arc::new(Nop));
        let stdio: Arc<dyn Service> = Arc::new(Stdio);
        d.register(op::STDIO_READ, stdio.clone());
        d.register(op::STDIO_WRITE, stdio);
        d
    }

    /// The standard services and the sandbox's file service ([`op::HOSTFS`],
    /// run by [`HOSTFS_WORKERS`] worker threads).
    pub fn sandbox(svc: Arc<crate::services::Services>) -> Dispatcher {
        let mut d = Dispatcher::standard();
        d.register_offloaded(op::HOSTFS, Arc::new(HostFsService(svc)), HOSTFS_WORKERS);
        d
    }

    /// Routes `op` to `service` (replacing any previous one). `op::CANCEL` is
    /// handled by the queue itself and cannot be registered.
    pub fn register(&mut self, op: u32, service: Arc<dyn Service>) {
        if op != op::CANCEL {
            self.offloaded.remove(&op);
            self.services.insert(op, service);
        }
    }

    /// Routes `op` to `service` run by worker threads (at least `workers` of
    /// them): for operations that block the host thread in the kernel (file
    /// I/O, which poll(2) cannot wait for), so they neither stall the I/O
    /// thread's other requests nor each other. Such a service must answer
    /// [`Step::Done`] (a `Wait` is answered EIO) and is not cancellable.
    pub fn register_offloaded(&mut self, op: u32, service: Arc<dyn Service>, workers: usize) {
        if op != op::CANCEL {
            self.services.remove(&op);
            self.offloaded.insert(op, service);
            self.workers = self.workers.max(workers.max(1));
        }
    }

    fn get(&self, op: u32) -> Option<&Arc<dyn Service>> {
        self.services.get(&op)
    }
}

/// Worker threads running hostfs requests. Two vCPUs with eight readers
/// keep this many host reads in flight (docs/hostfs.md, "Which path").
pub const HOSTFS_WORKERS: usize = 4;

/// [`op::HOSTFS`]: the sandbox's file service (the same `HostFs` the vCPU
/// threads call synchronously; its handle table is a mutex held only to look
/// up, insert or remove, and entries are shared, so a close racing a queued
/// read cannot pull the descriptor from under it).
pub struct HostFsService(pub Arc<crate::services::Services>);

impl Service for HostFsService {
    fn run(&self, mem: &GuestMemory, _op: u32, req: &[u64; 8], _progress: &mut u64) -> Step {
        let mut bytes = [0u8; qlib::hostfs::REQUEST_SIZE];
        for (i, w) in req.iter().enumerate() {
            bytes[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        let r = self.0.hostfs.handle(mem, &bytes);
        let mut resp = [0u64; 4];
        for (i, w) in resp.iter_mut().enumerate() {
            *w = u64::from_le_bytes(r[8 * i..8 * i + 8].try_into().unwrap_or_default());
        }
        Step::Done(resp)
    }

    fn cancel(&self, _op: u32, _req: &[u64; 8], _progress: u64) -> [u64; 4] {
        // Never pending (offloaded requests finish in one run).
        [err(Errno::EIO), 0, 0, 0]
    }
}

/// The hostfs path policy the guest reads (`qlib::hostq::HOSTFS_POLICY_OFFSET`):
/// `QUARK_HOSTFS_QUEUE` = `never` (every hostfs request synchronous),
/// `always` (every data request queued), a byte count `L` (data requests
/// past the first `L` bytes of a system call queued), or unset/empty for
/// the measured default.
pub fn hostfs_policy_from_env() -> Result<u64, String> {
    let v = std::env::var("QUARK_HOSTFS_QUEUE").unwrap_or_default();
    match v.as_str() {
        "" | "default" => Ok(hostq::HOSTFS_DEFAULT_MIN_QUEUED),
        "never" => Ok(hostq::HOSTFS_NEVER),
        "always" => Ok(hostq::HOSTFS_ALWAYS),
        n => match n.parse::<u64>() {
            Ok(b) if b > 0 => Ok(b),
            _ => Err(format!(
                "QUARK_HOSTFS_QUEUE={v:?} is not understood: use never, always, default or a byte count above 0"
            )),
        },
    }
}

/// [`op::NOP`].
pub struct Nop;

impl Service for Nop {
    fn run(&self, _: &GuestMemory, _: u32, _: &[u64; 8], _: &mut u64) -> Step {
        Step::Done([0; 4])
    }
}

/// [`op::STDIO_READ`] and [`op::STDIO_WRITE`]: the sandbox's stdio, straight
/// between the host descriptor and the guest frames behind the user buffer.
pub struct Stdio;

/// Reads the guest's iovec list (`count` entries at `gpa`), copied out once.
fn read_iovec_list(mem: &GuestMemory, gpa: u64, count: u64) -> Result<Vec<GuestIovec>, Errno> {
    if count > hostq::MAX_IOVECS {
        return Err(Errno::EINVAL);
    }
    let mut bytes = vec![0u8; count as usize * 16];
    mem.read(gpa, &mut bytes).map_err(|_| Errno::EFAULT)?;
    Ok(bytes
        .chunks_exact(16)
        .map(|c| GuestIovec {
            gpa: u64::from_le_bytes(c[0..8].try_into().unwrap_or_default()),
            len: u64::from_le_bytes(c[8..16].try_into().unwrap_or_default()),
        })
        .collect())
}

/// `iovs` without its first `skip` bytes.
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

impl Service for Stdio {
    fn run(&self, mem: &GuestMemory, op: u32, req: &[u64; 8], progress: &mut u64) -> Step {
        let write = op == op::STDIO_WRITE;
        let fd = req[0];
        if !(if write { fd == 1 || fd == 2 } else { fd == 0 }) {
            return Step::Done([err(Errno::EBADF), 0, 0, 0]);
        }
        let iovs = match read_iovec_list(mem, req[2], req[1]) {
            Ok(v) => v,
            Err(e) => return Step::Done([err(e), 0, 0, 0]),
        };
        let total = iovs.iter().fold(0u64, |t, v| t.saturating_add(v.len));
        let rest = skip_bytes(&iovs, *progress);
        if rest.is_empty() {
            return Step::Done([*progress, 0, 0, 0]);
        }
        let host = match mem.host_iovecs(&rest) {
            Ok(h) => h,
            Err(_) => return Step::Done([err(Errno::EFAULT), 0, 0, 0]),
        };
        let events = if write { sys::POLLOUT } else { sys::POLLIN };
        match transfer(fd as RawFd, &host, write, true) {
            Ok(n) => {
                *progress += n;
                if write && n > 0 && *progress < total {
                    // A blocking write completes only when everything is written.
                    Step::Wait { fd: fd as RawFd, events }
                } else {
                    Step::Done([*progress, 0, 0, 0])
                }
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Step::Wait { fd: fd as RawFd, events },
            Err(_) if *progress > 0 => Step::Done([*progress, 0, 0, 0]),
            Err(e) => Step::Done([err(e), 0, 0, 0]),
        }
    }
}

/// How a host stdio descriptor can be waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file or block device: never "not ready", I/O just takes time.
    File,
    /// A pipe, socket, terminal or other character device: poll(2) tells.
    Pollable,
}

fn stdio_kind(fd: RawFd) -> FdKind {
    static KINDS: OnceLock<[FdKind; 3]> = OnceLock::new();
    let kinds = KINDS.get_or_init(|| {
        [0, 1, 2].map(|fd| match crate::rootfs::fstat(fd) {
            Ok(st) if matches!(st.st_mode & 0o170000, 0o100000 | 0o060000) => FdKind::File,
            _ => FdKind::Pollable,
        })
    });
    kinds.get(fd as usize).copied().unwrap_or(FdKind::Pollable)
}

/// Reads or writes a host stdio descriptor with host iovecs (into/out of
/// guest memory). `nonblock`: fail with EAGAIN instead of waiting for a
/// pipe, socket or terminal (`preadv2`/`pwritev2` with RWF_NOWAIT; where the
/// descriptor does not support it, poll(2) first). A write may be partial.
pub fn transfer(fd: RawFd, iov: &[[u64; 2]], write: bool, nonblock: bool) -> Result<u64, Errno> {
    let blocking = |iov: &[[u64; 2]]| {
        // SAFETY: the iovecs were checked to lie inside guest memory; the
        // kernel tolerates the guest touching them concurrently.
        unsafe {
            if write {
                sys::writev(fd, iov)
            } else {
                sys::readv(fd, iov)
            }
        }
    };
    if !nonblock || stdio_kind(fd) == FdKind::File {
        return blocking(iov);
    }
    // SAFETY: as above.
    let r = unsafe {
        if write {
            sys::writev2(fd, iov, sys::RWF_NOWAIT)
        } else {
            sys::readv2(fd, iov, sys::RWF_NOWAIT)
        }
    };
    match r {
        Err(Errno::EOPNOTSUPP) => {
            let mut p = [PollFd { fd, events: if write { sys::POLLOUT } else { sys::POLLIN }, revents: 0 }];
            match sys::ppoll(&mut p, Some(0)) {
                Ok(0) => Err(Errno::EAGAIN),
                _ => blocking(iov),
            }
        }
        other => other,
    }
}

/// Counters of the I/O thread (read at the end for the log and benchmarks).
#[derive(Default, Debug)]
pub struct Counters {
    /// Requests taken from the submission rings.
    pub requests: AtomicU64,
    /// Requests that had to wait for a descriptor.
    pub waited: AtomicU64,
    /// Completion interrupts injected (the guest had a task waiting).
    pub interrupts: AtomicU64,
    /// Times the thread went to sleep (armed the flags and called ppoll).
    pub sleeps: AtomicU64,
    /// Doorbells received (wake-ups from the guest).
    pub doorbells: AtomicU64,
    /// Requests run by worker threads.
    pub offloaded: AtomicU64,
}

/// The running I/O thread and its workers.
pub struct Handle {
    stop: EventFd,
    thread: Option<std::thread::JoinHandle<()>>,
    work: Arc<WorkQueue>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Its counters.
    pub counters: Arc<Counters>,
}

impl Handle {
    /// Stops the threads and waits for them (also done on drop).
    pub fn stop(self) {}
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.work.stop();
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
    }
}

/// Requests handed from the I/O thread to the workers.
#[derive(Default)]
struct WorkQueue {
    state: std::sync::Mutex<(std::collections::VecDeque<(u32, Sqe)>, bool)>,
    ready: std::sync::Condvar,
}

impl WorkQueue {
    fn push(&self, vcpu: u32, sqe: Sqe) {
        if let Ok(mut s) = self.state.lock() {
            s.0.push_back((vcpu, sqe));
        }
        self.ready.notify_one();
    }

    /// The next request, or None once stopped.
    fn pop(&self) -> Option<(u32, Sqe)> {
        let mut s = self.state.lock().ok()?;
        loop {
            if s.1 {
                return None;
            }
            if let Some(w) = s.0.pop_front() {
                return Some(w);
            }
            s = self.ready.wait(s).ok()?;
        }
    }

    fn stop(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = true;
        }
        self.ready.notify_all();
    }
}

impl AsRef<GuestMemory> for crate::services::Services {
    fn as_ref(&self) -> &GuestMemory {
        &self.mem
    }
}

impl AsRef<GuestMemory> for GuestMemory {
    fn as_ref(&self) -> &GuestMemory {
        self
    }
}

/// Where the rings are and who serves them.
pub struct Setup {
    pub mem: Arc<dyn AsRef<GuestMemory> + Send + Sync>,
    pub area_pa: u64,
    pub vcpus: u32,
    pub dispatcher: Dispatcher,
    pub doorbell: EventFd,
    pub log: Log,
}

/// Starts the I/O thread; returns once it runs (its C-library thread start-up
/// is over, so a seccomp filter installed next covers it quietly).
pub fn start(setup: Setup) -> Result<Handle, String> {
    let stop = EventFd::new().map_err(|e| format!("hostq: {e}"))?;
    let stop_rx = stop.try_clone().map_err(|e| format!("hostq: {e}"))?;
    let counters = Arc::new(Counters::default());
    let work = Arc::new(WorkQueue::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let mut workers = Vec::new();
    for n in 0..setup.dispatcher.workers {
        let (mem, area_pa, vcpus, log) = (setup.mem.clone(), setup.area_pa, setup.vcpus, setup.log.clone());
        let (services, c, w, tx) = (setup.dispatcher.offloaded.clone(), counters.clone(), work.clone(), tx.clone());
        let t = std::thread::Builder::new()
            .name(format!("hostq-w{n}"))
            .stack_size(256 << 10)
            .spawn(move || {
                sys::mask_signals(&crate::events::FORWARDED, true);
                let _ = tx.send(());
                worker(&*mem, area_pa, vcpus, &services, &w, &c, &log);
            })
            .map_err(|e| format!("starting a hostq worker thread: {e}"))?;
        workers.push(t);
        rx.recv().map_err(|_| "a hostq worker thread died at start".to_string())?;
    }
    let c = counters.clone();
    let w = work.clone();
    let thread = std::thread::Builder::new()
        .name("hostq".into())
        .stack_size(256 << 10)
        .spawn(move || {
            // Forwarded signals are for the supervisor, not this thread.
            sys::mask_signals(&crate::events::FORWARDED, true);
            let _ = tx.send(());
            serve(setup, &stop_rx, c, &w);
        })
        .map_err(|e| format!("starting the hostq thread: {e}"))?;
    rx.recv().map_err(|_| "the hostq thread died at start".to_string())?;
    Ok(Handle { stop, thread: Some(thread), work, workers, counters })
}

/// A worker: runs offloaded requests to completion, one at a time, and
/// posts their completions (several workers complete into the same tables:
/// each entry has one request in flight, the waiting flag is swapped
/// atomically, so they need no lock).
fn worker(
    mem: &dyn AsRef<GuestMemory>,
    area_pa: u64,
    vcpus: u32,
    services: &HashMap<u32, Arc<dyn Service>>,
    work: &WorkQueue,
    counters: &Counters,
    log: &Log,
) {
    let mem = mem.as_ref();
    let Ok(region) = mem.region(area_pa, hostq::area_size(vcpus)) else { return };
    while let Some((vcpu, sqe)) = work.pop() {
        counters.offloaded.fetch_add(1, Ordering::Relaxed);
        let resp = match services.get(&sqe.op) {
            Some(s) => match s.run(mem, sqe.op, &sqe.req, &mut 0) {
                Step::Done(r) => r,
                Step::Wait { .. } => [err(Errno::EIO), 0, 0, 0],
            },
            None => [err(Errno::ENOSYS), 0, 0, 0],
        };
        post(&region, vcpus, vcpu, sqe.tag, resp, counters, log);
    }
}

/// Posts a response into the request's completion entry and, if a task
/// of that vCPU waits, interrupts the vCPU (shmq's waker step: publish
/// with release, SeqCst fence, then read and swap the waiting flag).
fn post(region: &Region, vcpus: u32, vcpu: u32, tag: u32, resp: [u64; 4], counters: &Counters, log: &Log) {
    let slot = hostq::tag::slot(tag);
    if vcpu >= vcpus || slot >= hostq::MAX_INFLIGHT {
        return;
    }
    let at = hostq::completion_offset(vcpu, slot);
    let (Ok(()), Ok(done), Ok(waiting)) = (
        region.write_pod(at + hostq::RESP_OFFSET, &resp),
        region.atomic_u32(at),
        region.atomic_u32(hostq::wait_offset(vcpu)),
    ) else {
        return;
    };
    done.store(hostq::done_word(hostq::tag::generation(tag)), Ordering::Release);
    std::sync::atomic::fence(Ordering::SeqCst);
    if waiting.load(Ordering::Relaxed) != 0 && waiting.swap(0, Ordering::Relaxed) != 0 {
        counters.interrupts.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = crate::events::interrupt(vcpu, hostq::COMPLETION_VECTOR as u32) {
            log.vmm("error", &format!("hostq: KVM_SIGNAL_MSI to vCPU {vcpu} failed: {}", e.name()));
        }
    }
}

/// A request waiting for its descriptor.
struct Pending {
    vcpu: u32,
    sqe: Sqe,
    progress: u64,
    fd: RawFd,
    events: i16,
}

struct Queues<'a> {
    mem: &'a GuestMemory,
    region: &'a Region,
    dispatcher: &'a Dispatcher,
    log: &'a Log,
    /// The submission rings. The guest never sleeps on a full ring (it
    /// yields and retries), so freeing slots wakes nobody: `shmq::Poll`.
    sqs: Vec<Option<spsc::Consumer<'a, Sqe, shmq::Poll>>>,
    pending: Vec<Pending>,
    counters: &'a Counters,
    work: &'a WorkQueue,
}

fn serve(setup: Setup, stop: &EventFd, counters: Arc<Counters>, work: &WorkQueue) {
    let mem: &GuestMemory = (*setup.mem).as_ref();
    let region: Region = match mem.region(setup.area_pa, hostq::area_size(setup.vcpus)) {
        Ok(r) => r,
        Err(e) => {
            setup.log.vmm("error", &format!("hostq: {e}; queued host calls are unavailable"));
            return;
        }
    };
    let mut q = Queues {
        mem,
        region: &region,
        dispatcher: &setup.dispatcher,
        log: &setup.log,
        sqs: Vec::new(),
        pending: Vec::new(),
        counters: &counters,
        work,
    };
    for i in 0..setup.vcpus {
        match spsc::Consumer::attach(&region, hostq::sq_offset(i), shmq::Poll) {
            Ok(s) => q.sqs.push(Some(s)),
            Err(e) => {
                setup.log.vmm("error", &format!("hostq: vCPU {i}'s submission ring: {e}"));
                q.sqs.push(None);
            }
        }
    }
    q.run(&setup.doorbell, stop);
}

impl Queues<'_> {
    fn run(&mut self, doorbell: &EventFd, stop: &EventFd) {
        let mut spin_until = Instant::now();
        loop {
            let worked = self.drain_submissions();
            if worked && !self.pending.is_empty() {
                // Busy: still let waiting requests whose descriptors became
                // ready make progress.
                self.poll_pending(Some(0));
            }
            if worked {
                spin_until = Instant::now() + SPIN;
                continue;
            }
            if Instant::now() < spin_until {
                std::hint::spin_loop();
                continue;
            }
            if self.arm() {
                continue;
            }
            self.counters.sleeps.fetch_add(1, Ordering::Relaxed);
            let mut fds = vec![
                PollFd { fd: doorbell.as_fd().as_raw_fd(), events: sys::POLLIN, revents: 0 },
                PollFd { fd: stop.as_fd().as_raw_fd(), events: sys::POLLIN, revents: 0 },
            ];
            fds.extend(self.pending.iter().map(|p| PollFd { fd: p.fd, events: p.events, revents: 0 }));
            match sys::ppoll(&mut fds, None) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    self.log.vmm("error", &format!("hostq: ppoll failed ({}); stopping", e.name()));
                    return;
                }
            }
            if fds[1].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                self.counters.doorbells.fetch_add(1, Ordering::Relaxed);
                let _ = doorbell.take();
            }
            let ready: Vec<bool> = fds[2..].iter().map(|f| f.revents != 0).collect();
            self.retry(&ready);
            spin_until = Instant::now() + SPIN;
        }
    }

    /// Sets the waiting flag of every submission ring; true when something
    /// arrived meanwhile, so the thread must not sleep.
    fn arm(&mut self) -> bool {
        let mut ready = false;
        for (i, sq) in self.sqs.iter_mut().enumerate() {
            if let Some(r) = sq {
                match r.arm() {
                    Ok(true) => ready = true,
                    Ok(false) => {}
                    Err(e) => {
                        self.log.vmm("error", &format!("hostq: vCPU {i}'s submission ring is corrupt: {e}"));
                        *sq = None;
                    }
                }
            }
        }
        ready
    }

    fn drain_submissions(&mut self) -> bool {
        let mut worked = false;
        for i in 0..self.sqs.len() {
            while let Some(sq) = self.sqs[i].as_mut() {
                match sq.try_pop() {
                    Ok(Some(sqe)) => {
                        worked = true;
                        self.counters.requests.fetch_add(1, Ordering::Relaxed);
                        self.submit(i as u32, sqe);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.log.vmm(
                            "error",
                            &format!("hostq: vCPU {i}'s submission ring is corrupt: {e}; no longer serving it"),
                        );
                        self.sqs[i] = None;
                    }
                }
            }
        }
        worked
    }

    fn submit(&mut self, vcpu: u32, sqe: Sqe) {
        if sqe.op == op::CANCEL {
            let target = sqe.req[0] as u32;
            // By tag alone: the task may have moved to another vCPU since it
            // submitted; the completion goes to the ring the request came from.
            if let Some(at) = self.pending.iter().position(|p| p.sqe.tag == target) {
                let p = self.pending.swap_remove(at);
                let resp = match self.dispatcher.get(p.sqe.op) {
                    Some(s) => s.cancel(p.sqe.op, &p.sqe.req, p.progress),
                    None => [err(Errno::EINTR), 0, 0, 0],
                };
                self.complete(p.vcpu, p.sqe.tag, resp);
            }
            return;
        }
        if self.dispatcher.offloaded.contains_key(&sqe.op) {
            self.work.push(vcpu, sqe);
            return;
        }
        // The guest has at most MAX_INFLIGHT requests per vCPU; more waiting
        // ones come from a misbehaving guest and are refused.
        if self.pending.len() >= self.sqs.len() * hostq::MAX_INFLIGHT as usize {
            self.complete(vcpu, sqe.tag, [err(Errno::EAGAIN), 0, 0, 0]);
            return;
        }
        self.step(Pending { vcpu, sqe, progress: 0, fd: -1, events: 0 });
    }

    /// Runs a request once; it completes or waits again.
    fn step(&mut self, mut p: Pending) {
        let Some(service) = self.dispatcher.get(p.sqe.op).cloned() else {
            self.complete(p.vcpu, p.sqe.tag, [err(Errno::ENOSYS), 0, 0, 0]);
            return;
        };
        match service.run(self.mem, p.sqe.op, &p.sqe.req, &mut p.progress) {
            Step::Done(resp) => self.complete(p.vcpu, p.sqe.tag, resp),
            Step::Wait { fd, events } => {
                if p.fd < 0 {
                    self.counters.waited.fetch_add(1, Ordering::Relaxed);
                }
                p.fd = fd;
                p.events = events;
                self.pending.push(p);
            }
        }
    }

    /// Runs again the waiting requests marked ready (indices into `pending`).
    fn retry(&mut self, ready: &[bool]) {
        if !ready.iter().any(|r| *r) {
            return;
        }
        let all = std::mem::take(&mut self.pending);
        for (p, r) in all.into_iter().zip(ready.iter().copied().chain(std::iter::repeat(false))) {
            if r {
                self.step(p);
            } else {
                self.pending.push(p);
            }
        }
    }

    fn poll_pending(&mut self, timeout_ns: Option<u64>) {
        let mut fds: Vec<PollFd> =
            self.pending.iter().map(|p| PollFd { fd: p.fd, events: p.events, revents: 0 }).collect();
        if matches!(sys::ppoll(&mut fds, timeout_ns), Ok(n) if n > 0) {
            let ready: Vec<bool> = fds.iter().map(|f| f.revents != 0).collect();
            self.retry(&ready);
        }
    }

    /// Posts a response (see [`post`]).
    fn complete(&mut self, vcpu: u32, tag: u32, resp: [u64; 4]) {
        post(self.region, self.sqs.len() as u32, vcpu, tag, resp, self.counters, self.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_queue_hands_out_requests_in_order_and_stops_waiting_workers() {
        let q = Arc::new(WorkQueue::default());
        q.push(1, Sqe { tag: 7, op: op::HOSTFS, req: [0; 8] });
        q.push(0, Sqe { tag: 8, op: op::HOSTFS, req: [0; 8] });
        assert_eq!(q.pop().map(|(v, s)| (v, s.tag)), Some((1, 7)));
        assert_eq!(q.pop().map(|(v, s)| (v, s.tag)), Some((0, 8)));
        let waiting = {
            let q = q.clone();
            std::thread::spawn(move || q.pop())
        };
        std::thread::sleep(Duration::from_millis(20));
        q.stop();
        assert!(waiting.join().unwrap().is_none(), "a stopped queue releases its waiting worker");
    }

    #[test]
    fn hostfs_requests_are_offloaded_and_not_served_by_the_io_thread() {
        let mut d = Dispatcher::standard();
        d.register_offloaded(op::HOSTFS, Arc::new(Nop), 3);
        assert!(d.get(op::HOSTFS).is_none());
        assert!(d.offloaded.contains_key(&op::HOSTFS));
        assert_eq!(d.workers, 3);
        d.register(op::HOSTFS, Arc::new(Nop));
        assert!(d.get(op::HOSTFS).is_some() && !d.offloaded.contains_key(&op::HOSTFS));
    }

    #[test]
    fn skip_bytes_walks_across_iovecs() {
        let v = [GuestIovec { gpa: 0x1000, len: 10 }, GuestIovec { gpa: 0x3000, len: 20 }];
        assert_eq!(skip_bytes(&v, 0), v.to_vec());
        assert_eq!(skip_bytes(&v, 10), vec![GuestIovec { gpa: 0x3000, len: 20 }]);
        assert_eq!(skip_bytes(&v, 15), vec![GuestIovec { gpa: 0x3005, len: 15 }]);
        assert!(skip_bytes(&v, 30).is_empty());
    }
}
