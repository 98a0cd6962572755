//! Shared-memory rings for TypeScript: `createRing`/`attachRing` (messages)
//! and `createStream`/`attachStream` (bytes), built on `shmq`.
//!
//! A channel is duplex: one sealed memfd holds two shmq rings, A (creator →
//! attacher) at offset 0 and B (attacher → creator) after it. The creator
//! also makes two eventfds (one each side sleeps on) and a Unix socket pair;
//! it sends the memfd and the eventfds over its end (SCM_RIGHTS, shmq's
//! `handover`) and returns the other end's descriptor to JavaScript, which
//! passes it to the peer process (a child's stdio, for instance) and closes
//! its own copy. `attachRing(fd)` receives the handover on that socket. Each
//! side then keeps its socket end only to learn that the peer died: it hangs
//! up when the peer process exits or is killed.
//!
//! Messages are framed in slots of `4 + slotSize` bytes (a little-endian
//! length, then the bytes). `push`/`pop`/`write`/`read` never block; `wait()`
//! and `waitWritable()` return promises that settle when the ring is ready:
//! the JS thread arms the ring (shmq's waiting flag, fence, re-check) and, if
//! it must wait, a per-channel Rust thread sleeps in `poll` on this side's
//! eventfd and the socket; the peer's next publish signals the eventfd, the
//! thread re-checks every pending wait under the channel's lock and settles
//! the ready ones through a threadsafe function. A pending wait keeps the
//! event loop alive; an idle channel costs no CPU.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use napi::{BufferView, Bytes, CallContext, Deferred, Env, Error, Object, Result, Value};
use shmq::host::{handover, EventFd, EventWake, PeerWatch, SharedMemory};
use shmq::{slots, stream, Region};

use crate::sys;

/// Most slots, stream bytes or slot bytes a ring may have (memfd size stays below 1 GiB per ring).
const MAX_RING_BYTES: u64 = 1 << 29;
/// Largest message (a slot is 4 + slotSize bytes, at most shmq's 64 KiB).
const MAX_SLOT_SIZE: u32 = (1 << 16) - 4;

fn shm_error(e: shmq::Error) -> Error {
    let code = match e {
        shmq::Error::Closed => "ERR_SHMQ_CLOSED",
        shmq::Error::PeerGone => "ERR_SHMQ_PEER_GONE",
        shmq::Error::Corrupt { .. } | shmq::Error::BadHeader { .. } | shmq::Error::BadMagic { .. } => {
            "ERR_SHMQ_CORRUPT"
        }
        shmq::Error::Protocol(_) => "ERR_SHMQ_PROTOCOL",
        _ => "ERR_SHMQ",
    };
    let message = match e {
        shmq::Error::Closed => "the peer closed its end of the ring".to_string(),
        shmq::Error::PeerGone => "the peer process is gone: it exited or was killed without closing the ring (its \
                                  handover socket hung up)"
            .to_string(),
        other => other.to_string(),
    };
    Error::new(message).with_code(code)
}

fn closed_here() -> Error {
    Error::new("this ring was closed with close(); create or attach a new one").with_code("ERR_SHMQ_CLOSED")
}

fn peer_gone() -> Error {
    shm_error(shmq::Error::PeerGone)
}

/// The two ends this side holds.
enum Ends {
    Messages { tx: slots::Producer<'static, EventWake>, rx: slots::Consumer<'static, EventWake>, slot: Vec<u8> },
    Stream { tx: stream::Writer<'static, EventWake>, rx: stream::Reader<'static, EventWake> },
}

/// The rings and the mapping they live in. Field order matters: `ends`
/// borrow `mem`'s region and are dropped first.
struct Open {
    ends: Ends,
    /// Keeps the mapping alive for `ends` (never read otherwise).
    _mem: Arc<SharedMemory>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Readable,
    Writable,
}

impl Open {
    /// Arms the side `want` needs and re-checks: true when ready now.
    fn arm(&mut self, want: Want) -> shmq::Result<bool> {
        match (&mut self.ends, want) {
            (Ends::Messages { rx, .. }, Want::Readable) => rx.arm(),
            (Ends::Messages { tx, .. }, Want::Writable) => tx.arm(),
            (Ends::Stream { rx, .. }, Want::Readable) => rx.arm(),
            (Ends::Stream { tx, .. }, Want::Writable) => tx.arm(),
        }
    }

    /// Ends our producing side and stops consuming (the peer learns both).
    fn shut(&mut self) {
        match &mut self.ends {
            Ends::Messages { tx, rx, .. } => {
                let _ = tx.close();
                let _ = rx.close();
            }
            Ends::Stream { tx, rx } => {
                let _ = tx.close();
                let _ = rx.close();
            }
        }
    }
}

/// Everything the JS thread and the waiter thread share.
struct State {
    open: Option<Open>,
    pending: Vec<(Want, Deferred)>,
    /// The peer's socket hung up.
    gone: bool,
}

/// The per-channel thread that sleeps while waits are pending.
struct Waiter {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

/// One side of a channel (owned by the JS functions of its object).
struct Channel {
    state: Arc<Mutex<State>>,
    /// The eventfd the peer signals us on (a duplicate for the waiter).
    sleep_on: EventFd,
    /// Our socket end: hangs up when the peer dies.
    sock: UnixStream,
    waiter: std::cell::RefCell<Option<Waiter>>,
}

impl Channel {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock (a bug) must not make every later call panic too.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_waiter(&self) -> Result<()> {
        let mut w = self.waiter.borrow_mut();
        if w.as_ref().is_some_and(|w| w.thread.as_ref().is_some_and(|t| !t.is_finished())) {
            return Ok(());
        }
        let stop = EventFd::new().map_err(shm_error)?;
        let ctx = WaiterCtx {
            state: self.state.clone(),
            sleep_on: self.sleep_on.try_clone().map_err(shm_error)?,
            sock: self.sock.try_clone().map_err(|e| Error::from_io(&e, "dup", None))?,
            watch: PeerWatch::socket(&self.sock).map_err(shm_error)?,
            stop: stop.try_clone().map_err(shm_error)?,
        };
        let thread = std::thread::Builder::new()
            .name("quark-shmq-wait".into())
            .spawn(move || ctx.run())
            .map_err(|e| Error::new(format!("cannot start the ring's waiter thread: {e}")))?;
        *w = Some(Waiter { stop, thread: Some(thread) });
        Ok(())
    }

    fn stop_waiter(&self) {
        if let Some(mut w) = self.waiter.borrow_mut().take() {
            let _ = w.stop.notify();
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Closes both directions, settles pending waits, unmaps.
    fn close(&self) {
        self.stop_waiter();
        let mut st = self.lock();
        if let Some(mut open) = st.open.take() {
            open.shut();
        }
        for (_, d) in st.pending.drain(..) {
            d.reject(closed_here());
        }
    }

    fn wait<'c>(&self, cx: &CallContext<'c>, want: Want) -> Result<Value<'c>> {
        let (deferred, promise) = cx.env().promise()?;
        let mut st = self.lock();
        let gone = st.gone;
        let Some(open) = st.open.as_mut() else {
            deferred.reject(closed_here());
            return Ok(promise);
        };
        match open.arm(want) {
            Ok(true) => deferred.resolve(()),
            Ok(false) if gone => deferred.reject(peer_gone()),
            Ok(false) => {
                st.pending.push((want, deferred));
                drop(st);
                self.ensure_waiter()?;
            }
            Err(e) => deferred.reject(shm_error(e)),
        }
        Ok(promise)
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.close();
    }
}

struct WaiterCtx {
    state: Arc<Mutex<State>>,
    sleep_on: EventFd,
    sock: UnixStream,
    watch: PeerWatch,
    stop: EventFd,
}

impl WaiterCtx {
    fn run(self) {
        loop {
            let mut fds = [
                sys::PollFd { fd: self.sleep_on.as_fd().as_raw_fd(), events: sys::POLLIN, revents: 0 },
                sys::PollFd { fd: self.sock.as_raw_fd(), events: sys::POLLIN | sys::POLLRDHUP, revents: 0 },
                sys::PollFd { fd: self.stop.as_fd().as_raw_fd(), events: sys::POLLIN, revents: 0 },
            ];
            if sys::poll(&mut fds, -1).is_err() || fds[2].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                let _ = self.sleep_on.take();
            }
            // A peer that published and then died left work: check the rings first.
            let gone = fds[1].revents != 0 && self.watch.is_gone().unwrap_or(true);
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let State { open, pending, gone: st_gone } = &mut *st;
            let Some(open) = open.as_mut() else { return };
            let mut keep = Vec::new();
            for (want, d) in pending.drain(..) {
                match open.arm(want) {
                    Ok(true) => d.resolve(()),
                    Ok(false) if gone => d.reject(peer_gone()),
                    Ok(false) => keep.push((want, d)),
                    Err(e) => d.reject(shm_error(e)),
                }
            }
            *pending = keep;
            if gone {
                *st_gone = true;
                return;
            }
        }
    }
}

/// Borrows the region of `mem` for as long as the `Arc` lives.
fn region_of(mem: &Arc<SharedMemory>) -> &'static Region {
    let r: *const Region = mem.region();
    // SAFETY: the Region lives inside the Arc's heap allocation, which never
    // moves; every handle made from this reference is stored in an `Open`
    // next to a clone of the Arc and declared before it, so the handles are
    // dropped before that clone, and the mapping outlives them.
    unsafe { &*r }
}

fn ring_a_size(kind: Kind, slots: u32, slot_bytes: usize) -> shmq::Result<usize> {
    match kind {
        Kind::Messages => slots::ring_size(slots, slot_bytes),
        Kind::Stream => stream::ring_size(slots),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Messages,
    Stream,
}

fn align64(n: usize) -> usize {
    (n + 63) & !63
}

/// Builds this side's ends over `mem`: `creator` produces into ring A and consumes ring B.
fn open_ends(mem: &Arc<SharedMemory>, creator: bool, wake: &EventWake) -> shmq::Result<Open> {
    let region = region_of(mem);
    let hdr_kind = region.atomic_u32(shmq::layout::offsets::KIND)?.load(std::sync::atomic::Ordering::Acquire);
    let kind = if hdr_kind == shmq::Kind::Stream as u32 { Kind::Stream } else { Kind::Messages };
    let cap = region.atomic_u32(shmq::layout::offsets::TOTAL_SIZE)?.load(std::sync::atomic::Ordering::Acquire);
    let b = align64(cap as usize);
    let (tx_at, rx_at) = if creator { (0, b) } else { (b, 0) };
    let ends = match kind {
        Kind::Messages => {
            let tx = slots::Producer::attach(region, tx_at, None, wake.try_clone()?)?;
            let rx = slots::Consumer::attach(region, rx_at, None, wake.try_clone()?)?;
            if tx.slot_size() < 4 || rx.slot_size() != tx.slot_size() {
                return Err(shmq::Error::Protocol("the two rings of a channel have different slot sizes"));
            }
            let slot = vec![0u8; rx.slot_size()];
            Ends::Messages { tx, rx, slot }
        }
        Kind::Stream => Ends::Stream {
            tx: stream::Writer::attach(region, tx_at, wake.try_clone()?)?,
            rx: stream::Reader::attach(region, rx_at, wake.try_clone()?)?,
        },
    };
    Ok(Open { ends, _mem: mem.clone() })
}

/// Creator side: memfd, two rings, eventfds, socket pair, handover sent.
fn create(kind: Kind, slots_or_capacity: u32, slot_size: u32) -> shmq::Result<(Channel, OwnedFd)> {
    let slot_bytes = 4 + slot_size as usize;
    let one = ring_a_size(kind, slots_or_capacity, slot_bytes)?;
    let total = align64(one) * 2;
    let mem = Arc::new(SharedMemory::create("quark-ring", total)?);
    let region = region_of(&mem);
    for at in [0, align64(one)] {
        match kind {
            Kind::Messages => slots::init(region, at, slots_or_capacity, slot_bytes)?,
            Kind::Stream => stream::init(region, at, slots_or_capacity)?,
        }
    }
    let (mine_efd, theirs_efd) = (EventFd::new()?, EventFd::new()?);
    let (mine, theirs) =
        UnixStream::pair().map_err(|e| shmq::Error::Os { op: "socketpair", errno: e.raw_os_error().unwrap_or(0) })?;
    handover::send(&mine, &mem, &[&mine_efd, &theirs_efd])?;
    let wake = EventWake::new(mine_efd.try_clone()?, theirs_efd, Some(PeerWatch::socket(&mine)?));
    let open = open_ends(&mem, true, &wake)?;
    let channel = Channel {
        state: Arc::new(Mutex::new(State { open: Some(open), pending: Vec::new(), gone: false })),
        sleep_on: mine_efd,
        sock: mine,
        waiter: std::cell::RefCell::new(None),
    };
    Ok((channel, OwnedFd::from(theirs)))
}

/// Attacher side: receives the handover on `sock`.
fn attach(sock: UnixStream) -> shmq::Result<Channel> {
    let (mem, mut efds) = handover::recv(&sock)?;
    if efds.len() != 2 {
        return Err(shmq::Error::Protocol("a ring handover carries exactly two eventfds"));
    }
    let mine_efd = efds.pop().ok_or(shmq::Error::Protocol("missing eventfd"))?;
    let theirs_efd = efds.pop().ok_or(shmq::Error::Protocol("missing eventfd"))?;
    let mem = Arc::new(mem);
    let wake = EventWake::new(mine_efd.try_clone()?, theirs_efd, Some(PeerWatch::socket(&sock)?));
    let open = open_ends(&mem, false, &wake)?;
    Ok(Channel {
        state: Arc::new(Mutex::new(State { open: Some(open), pending: Vec::new(), gone: false })),
        sleep_on: mine_efd,
        sock,
        waiter: std::cell::RefCell::new(None),
    })
}

fn power_of_two(value: Object<'_>, key: &str, min: u32, max: u32) -> Result<u32> {
    let n: u32 = value.0.get_as(key)?;
    if !n.is_power_of_two() || n < min || n > max {
        return Err(Error::range_error(format!(
            "The value of \"options.{key}\" is out of range. It must be a power of two from {min} to {max}. Received {n}"
        ))
        .with_code("ERR_OUT_OF_RANGE"));
    }
    Ok(n)
}

/// The JS object for one side.
fn channel_object<'c>(env: &'c Env, ch: Channel, handover_fd: Option<RawFd>) -> Result<Value<'c>> {
    let (kind, slots_or_cap, slot_size) = {
        let st = ch.lock();
        match st.open.as_ref().map(|o| &o.ends) {
            Some(Ends::Messages { tx, .. }) => (Kind::Messages, tx.capacity(), tx.slot_size() as u32 - 4),
            Some(Ends::Stream { tx, .. }) => (Kind::Stream, tx.capacity(), 0),
            None => return Err(closed_here()),
        }
    };
    let ch = Rc::new(ch);
    let obj = env.object()?;
    obj.set("kind", if kind == Kind::Messages { "messages" } else { "stream" })?;
    match handover_fd {
        Some(fd) => obj.set("fd", fd)?,
        None => obj.set("fd", napi::Null)?,
    }
    if kind == Kind::Messages {
        obj.set("slots", slots_or_cap)?;
        obj.set("slotSize", slot_size)?;
        let c = ch.clone();
        obj.set_function("push", move |cx| {
            let data: BufferView = cx.arg(0, "data")?;
            let bytes = data.as_slice();
            let mut st = c.lock();
            let Some(Open { ends: Ends::Messages { tx, .. }, .. }) = st.open.as_mut() else {
                return Err(closed_here());
            };
            let max = tx.slot_size() - 4;
            if bytes.len() > max {
                return Err(Error::range_error(format!(
                    "The message is {} bytes long; this ring's slots hold at most {max} (slotSize)",
                    bytes.len()
                ))
                .with_code("ERR_OUT_OF_RANGE"));
            }
            let mut framed = Vec::with_capacity(4 + bytes.len());
            framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            framed.extend_from_slice(bytes);
            let ok = tx.try_push(&framed).map_err(shm_error)?;
            drop(st);
            cx.ret(ok)
        })?;
        let c = ch.clone();
        obj.set_function("pop", move |cx| {
            let mut st = c.lock();
            let Some(Open { ends: Ends::Messages { rx, slot, .. }, .. }) = st.open.as_mut() else {
                return Err(closed_here());
            };
            if !rx.try_pop_into(slot).map_err(shm_error)? {
                drop(st);
                return cx.ret(napi::Null);
            }
            let len = u32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]) as usize;
            if len > slot.len() - 4 {
                return Err(shm_error(shmq::Error::Corrupt {
                    what: "message length beyond its slot",
                    value: len as u32,
                }));
            }
            let msg = slot[4..4 + len].to_vec();
            drop(st);
            cx.ret(Bytes(msg))
        })?;
    } else {
        obj.set("capacity", slots_or_cap)?;
        let c = ch.clone();
        obj.set_function("write", move |cx| {
            let data: BufferView = cx.arg(0, "data")?;
            let mut st = c.lock();
            let Some(Open { ends: Ends::Stream { tx, .. }, .. }) = st.open.as_mut() else {
                return Err(closed_here());
            };
            let n = tx.try_write(data.as_slice()).map_err(shm_error)?;
            drop(st);
            cx.ret(n as u32)
        })?;
        let c = ch.clone();
        obj.set_function("read", move |cx| {
            let max: Option<u32> = cx.arg(0, "max")?;
            let mut st = c.lock();
            let Some(Open { ends: Ends::Stream { rx, .. }, .. }) = st.open.as_mut() else {
                return Err(closed_here());
            };
            let mut buf = vec![0u8; max.unwrap_or(65536).clamp(1, 1 << 24) as usize];
            match rx.try_read(&mut buf).map_err(shm_error)? {
                Some(n) if n > 0 => {
                    buf.truncate(n);
                    drop(st);
                    cx.ret(Bytes(buf))
                }
                _ => {
                    drop(st);
                    cx.ret(napi::Null)
                }
            }
        })?;
    }
    let c = ch.clone();
    obj.set_function("ended", move |cx| {
        let mut st = c.lock();
        let ended = match st.open.as_mut().map(|o| &mut o.ends) {
            Some(Ends::Messages { rx, .. }) => rx.at_eof().map_err(shm_error)?,
            Some(Ends::Stream { rx, .. }) => rx.at_eof().map_err(shm_error)?,
            None => true,
        };
        drop(st);
        cx.ret(ended)
    })?;
    let c = ch.clone();
    obj.set_function("wait", move |cx| c.wait(cx, Want::Readable))?;
    let c = ch.clone();
    obj.set_function("waitWritable", move |cx| c.wait(cx, Want::Writable))?;
    let c = ch.clone();
    obj.set_function("end", move |cx| {
        let mut st = c.lock();
        match st.open.as_mut().map(|o| &mut o.ends) {
            Some(Ends::Messages { tx, .. }) => tx.close().map_err(shm_error)?,
            Some(Ends::Stream { tx, .. }) => tx.close().map_err(shm_error)?,
            None => return Err(closed_here()),
        }
        drop(st);
        cx.ret(())
    })?;
    let c = ch;
    obj.set_function("close", move |cx| {
        c.close();
        cx.ret(())
    })?;
    Ok(obj)
}

fn options<'c>(cx: &CallContext<'c>) -> Result<Object<'c>> {
    cx.arg(0, "options")
}

pub fn create_ring<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let opts = options(cx)?;
    let slots = power_of_two(opts, "slots", 2, 1 << 20)?;
    let slot_size: u32 = opts.0.get_as("slotSize")?;
    if slot_size == 0 || slot_size > MAX_SLOT_SIZE || slots as u64 * (slot_size as u64 + 8) > MAX_RING_BYTES {
        return Err(Error::range_error(format!(
            "The value of \"options.slotSize\" is out of range. It must be >= 1 && <= {MAX_SLOT_SIZE}, and \
             slots * slotSize at most {MAX_RING_BYTES}. Received {slot_size}"
        ))
        .with_code("ERR_OUT_OF_RANGE"));
    }
    let (ch, theirs) = create(Kind::Messages, slots, slot_size).map_err(shm_error)?;
    channel_object(cx.env(), ch, Some(theirs.into_raw_fd()))
}

pub fn create_stream<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let opts = options(cx)?;
    let capacity = power_of_two(opts, "capacity", 64, MAX_RING_BYTES as u32)?;
    let (ch, theirs) = create(Kind::Stream, capacity, 0).map_err(shm_error)?;
    channel_object(cx.env(), ch, Some(theirs.into_raw_fd()))
}

fn attach_any<'c>(cx: &CallContext<'c>, want: Kind) -> Result<Value<'c>> {
    let fd = crate::fd_arg(cx, 0)?;
    // The ring takes the descriptor over: a close-on-exec duplicate stays
    // with the ring, the number JavaScript passed is closed.
    let sock = UnixStream::from(sys::dup_cloexec(fd).map_err(|e| Error::from_io(&e, "fcntl", None))?);
    sys::close(fd).map_err(|e| Error::from_io(&e, "close", None))?;
    let ch = attach(sock).map_err(shm_error)?;
    let is_stream = matches!(ch.lock().open.as_ref().map(|o| &o.ends), Some(Ends::Stream { .. }));
    if is_stream != (want == Kind::Stream) {
        return Err(Error::type_error(if is_stream {
            "the descriptor carries a byte stream: use attachStream"
        } else {
            "the descriptor carries a message ring: use attachRing"
        })
        .with_code("ERR_INVALID_ARG_VALUE"));
    }
    channel_object(cx.env(), ch, None)
}

pub fn attach_ring<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    attach_any(cx, Kind::Messages)
}

pub fn attach_stream<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    attach_any(cx, Kind::Stream)
}
