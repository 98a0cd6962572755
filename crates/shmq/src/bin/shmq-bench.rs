//! shmq-bench: shmq rings between two host processes pinned to different
//! CPUs, against a pipe and a unix stream socket measured in the same run.
//!
//! Usage: `cargo run --release -p shmq --bin shmq-bench -- [--quick]`
//!
//! Prints one JSON line per figure (see bench/README.md):
//! `{"name":..,"value":..,"unit":..,"baseline":..,"baseline_name":..,"ratio":..}`
//! with `ratio = value / baseline` (above 1 is better for rates, below 1 for latencies).
//!
//! Modes: `spin` = the receiving side polls forever (shmq poll budget
//! `u32::MAX`, non-blocking fds read in a loop); `sleep` = it sleeps whenever
//! it finds nothing (shmq poll budget 0 and an eventfd wakeup, blocking
//! fds), so every message that finds it asleep must wake it.
//!
//! The other process is this binary re-executed with `--child`; it receives
//! the memfd, the eventfds and the baseline fds over a unix socket (SCM_RIGHTS).

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmq::host::{handover, monotonic_ns, pin_to_cpu, pipe, EventFd, EventWake, SharedMemory};
use shmq::{spsc, stream, Error, Region, Wake};

/// Slots of each message ring.
const CAP: u32 = 4096;
/// Offset of the second ring (replies).
const RING_B: usize = 1 << 20;
/// Offset of the acknowledgement word (one-way latency pacing).
const ACK: usize = 2 << 20;
/// Size of the shared region: two rings, the ack word, or a 1 MiB stream.
const MEM: usize = 3 << 20;
const STREAM_CAP: u32 = 1 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return match child(&args[2]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let quick = args.iter().any(|a| a == "--quick");
    match run(quick) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmq-bench: {e}");
            ExitCode::from(1)
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn emit(name: &str, value: f64, unit: &str, baseline: f64, baseline_name: &str) {
    println!(
        "{{\"name\":\"{name}\",\"value\":{},\"unit\":\"{unit}\",\"baseline\":{},\"baseline_name\":\"{baseline_name}\",\"ratio\":{}}}",
        round(value),
        round(baseline),
        round(value / baseline)
    );
}

fn round(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return 0.0;
    }
    let digits = 4 - v.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits.max(0));
    (v * f).round() / f
}

fn run(quick: bool) -> Res<()> {
    if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        return Err("needs two CPUs (the two processes are pinned to CPUs 0 and 1)".into());
    }
    pin_to_cpu(0)?;
    let q = |full: u64, fast: u64| if quick { fast } else { full };

    // Message throughput, 8-byte messages, one message per call (and per syscall for the baselines).
    for (mode, shmq_n, base_n) in [
        ("spin", q(20_000_000, 2_000_000), q(1_000_000, 100_000)),
        ("sleep", q(5_000_000, 500_000), q(500_000, 100_000)),
    ] {
        let ours = throughput("shmq", mode, 1, shmq_n)?;
        let unix = throughput("unix", mode, 1, base_n)?;
        let pipe = throughput("pipe", mode, 1, base_n)?;
        emit(&format!("shmq.spsc.msgs_per_s.{mode}"), ours, "msg/s", unix, &format!("unix_stream.{mode}"));
        emit(&format!("shmq.spsc.msgs_per_s.{mode}"), ours, "msg/s", pipe, &format!("pipe.{mode}"));
    }
    // Batches of 64 messages per call (per syscall for the baselines).
    let ours = throughput("shmq", "spin", 64, q(50_000_000, 5_000_000))?;
    let unix = throughput("unix", "spin", 64, q(20_000_000, 2_000_000))?;
    emit("shmq.spsc.msgs_per_s.spin.batch64", ours, "msg/s", unix, "unix_stream.spin.batch64");

    // One-way latency: a timestamped message, acknowledged before the next;
    // in sleep mode 200 µs apart so that the receiver is asleep each time.
    let mut wake_p50 = 0.0;
    for (mode, n, gap) in [("spin", q(20_000, 3_000), 0), ("sleep", q(2_000, 300), 200)] {
        let ours = one_way("shmq", mode, n, gap)?;
        let unix = one_way("unix", mode, n, gap)?;
        let pipe = one_way("pipe", mode, n, gap)?;
        for (i, pct) in ["p50", "p99"].iter().enumerate() {
            let name = format!("shmq.spsc.one_way_ns.{pct}.{mode}");
            emit(&name, ours[i], "ns", unix[i], &format!("unix_stream.{mode}"));
            emit(&name, ours[i], "ns", pipe[i], &format!("pipe.{mode}"));
        }
        if mode == "sleep" {
            wake_p50 = ours[0];
        }
    }

    // Round trip: ping, pong.
    for (mode, n, gap) in [("spin", q(50_000, 5_000), 0), ("sleep", q(2_000, 300), 200)] {
        let ours = round_trip("shmq", mode, n, gap)?;
        let unix = round_trip("unix", mode, n, gap)?;
        let pipe = round_trip("pipe", mode, n, gap)?;
        for (i, pct) in ["p50", "p99"].iter().enumerate() {
            let name = format!("shmq.spsc.round_trip_ns.{pct}.{mode}");
            emit(&name, ours[i], "ns", unix[i], &format!("unix_stream.{mode}"));
            emit(&name, ours[i], "ns", pipe[i], &format!("pipe.{mode}"));
        }
    }

    // Byte stream vs a unix stream socket, same chunk sizes on both.
    for (chunk, ours_mb, base_mb) in
        [(64, q(64, 8), q(16, 4)), (4096, q(1024, 128), q(512, 64)), (65536, q(2048, 256), q(1024, 128))]
    {
        let ours = stream_rate("shmq", chunk, ours_mb << 20)?;
        let unix = stream_rate("unix", chunk, base_mb << 20)?;
        emit(&format!("shmq.stream.mb_per_s.chunk{chunk}"), ours, "MB/s", unix, "unix_stream");
    }

    // Poll budget: the default budget's polling time against the cost of a
    // sleep + eventfd wakeup (the one-way latency to a sleeping receiver).
    let poll_ns = poll_cost()?;
    let budget_us = poll_ns * shmq::DEFAULT_POLL_BUDGET as f64 / 1000.0;
    emit("shmq.wake.poll_ns", poll_ns, "ns", wake_p50, "eventfd_wake_one_way_p50");
    emit("shmq.wake.default_poll_budget_us", budget_us, "us", wake_p50 / 1000.0, "eventfd_wake_one_way_p50");
    Ok(())
}

/// Everything one scenario's child needs.
struct Kit {
    mem: SharedMemory,
    ev: Vec<EventFd>,
    pipe_w: File,
    pipe2_r: File,
    sock: UnixStream,
    child: Child,
    _ctl: UnixStream,
    out: BufReader<ChildStdout>,
}

impl Kit {
    /// Spawns the child for `spec`, with fresh rings (or a stream) and baseline fds.
    fn new(spec: &str, nonblocking: bool, with_stream: bool) -> Res<Kit> {
        let mem = SharedMemory::create("shmq-bench", MEM)?;
        if with_stream {
            stream::init(&mem, 0, STREAM_CAP)?;
        } else {
            spsc::init::<u64>(&mem, 0, CAP)?;
            spsc::init::<u64>(&mem, RING_B, CAP)?;
        }
        let ev = (0..4).map(|_| EventFd::new()).collect::<Result<Vec<_>, _>>()?;
        let (p1r, p1w) = pipe(nonblocking)?;
        let (p2r, p2w) = pipe(nonblocking)?;
        let (sock, child_sock) = UnixStream::pair()?;
        sock.set_nonblocking(nonblocking)?;
        child_sock.set_nonblocking(nonblocking)?;

        let path = std::env::temp_dir().join(format!("shmq-bench-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let mut child =
            Command::new(std::env::current_exe()?).arg("--child").arg(&path).stdout(Stdio::piped()).spawn()?;
        let (ctl, _) = listener.accept()?;
        let _ = std::fs::remove_file(&path);
        handover::send(&ctl, &mem, &ev.iter().collect::<Vec<_>>())?;
        use std::os::fd::AsFd;
        handover::send_fds(&ctl, spec.as_bytes(), &[p1r.as_fd(), p2w.as_fd(), child_sock.as_fd()])?;
        let out = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
        Ok(Kit { mem, ev, pipe_w: File::from(p1w), pipe2_r: File::from(p2r), sock, child, _ctl: ctl, out })
    }

    /// The child's result line.
    fn result(mut self) -> Res<String> {
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        let status = self.child.wait()?;
        if !status.success() || line.starts_with("error") {
            return Err(format!("child failed ({status}): {line}").into());
        }
        Ok(line.trim().to_string())
    }

    fn ev(&self, i: usize) -> Res<EventFd> {
        Ok(self.ev[i].try_clone()?)
    }
}

fn budget(mode: &str) -> u32 {
    if mode == "spin" {
        u32::MAX
    } else {
        0
    }
}

fn write_all_spin(w: &mut impl Write, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_exact_spin(r: &mut impl Read, mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Messages per second from this process to the child.
fn throughput(transport: &str, mode: &str, batch: usize, count: u64) -> Res<f64> {
    let spin = mode == "spin";
    let mut kit = Kit::new(&format!("tp {transport} {mode} {batch} {count}"), spin, false)?;
    let start = monotonic_ns();
    match transport {
        "shmq" => {
            let wake = EventWake::new(kit.ev(1)?, kit.ev(0)?, None);
            let mut tx = spsc::Producer::<u64, _>::attach(&kit.mem, 0, wake)?;
            tx.set_poll_budget(budget(mode));
            if batch == 1 {
                for i in 0..count {
                    tx.push(i)?;
                }
            } else {
                let mut buf = vec![0u64; batch];
                let mut i = 0;
                while i < count {
                    let k = (batch as u64).min(count - i) as usize;
                    for (j, b) in buf[..k].iter_mut().enumerate() {
                        *b = i + j as u64;
                    }
                    tx.push_slice(&buf[..k])?;
                    i += k as u64;
                }
            }
        }
        _ => {
            let mut buf = vec![0u8; 8 * batch];
            let mut i = 0;
            while i < count {
                let k = (batch as u64).min(count - i) as usize;
                for j in 0..k {
                    buf[8 * j..8 * j + 8].copy_from_slice(&(i + j as u64).to_le_bytes());
                }
                if transport == "pipe" {
                    write_all_spin(&mut kit.pipe_w, &buf[..8 * k])?;
                } else {
                    write_all_spin(&mut kit.sock, &buf[..8 * k])?;
                }
                i += k as u64;
            }
        }
    }
    let line = kit.result()?;
    let end: u64 = line.strip_prefix("end ").ok_or("bad child output")?.parse()?;
    Ok(count as f64 * 1e9 / (end - start) as f64)
}

fn percentiles(mut v: Vec<u64>) -> [f64; 2] {
    v.sort_unstable();
    let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)] as f64;
    [at(50), at(99)]
}

/// One-way latency percentiles (ns), measured by the child from our timestamps.
fn one_way(transport: &str, mode: &str, count: u64, gap_us: u64) -> Res<[f64; 2]> {
    let spin = mode == "spin";
    let mut kit = Kit::new(&format!("lat {transport} {mode} {count}"), spin, false)?;
    let ack: &AtomicU64 = kit.mem.atomic_u64(ACK)?;
    let mut tx = if transport == "shmq" {
        let wake = EventWake::new(kit.ev(1)?, kit.ev(0)?, None);
        Some(spsc::Producer::<u64, _>::attach(&kit.mem, 0, wake)?)
    } else {
        None
    };
    for i in 0..count {
        let ts = monotonic_ns();
        match (&mut tx, transport) {
            (Some(tx), _) => tx.push(ts)?,
            (None, "pipe") => write_all_spin(&mut kit.pipe_w, &ts.to_le_bytes())?,
            (None, _) => write_all_spin(&mut kit.sock, &ts.to_le_bytes())?,
        }
        let t = Instant::now();
        while ack.load(Ordering::Acquire) <= i {
            std::hint::spin_loop();
            if t.elapsed() > Duration::from_secs(10) {
                return Err("the child stopped acknowledging".into());
            }
        }
        if gap_us > 0 {
            std::thread::sleep(Duration::from_micros(gap_us));
        }
    }
    drop(tx);
    let line = kit.result()?;
    let v: Vec<f64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    Ok([v[0], v[1]])
}

/// Round-trip percentiles (ns): ping to the child, pong back.
fn round_trip(transport: &str, mode: &str, count: u64, gap_us: u64) -> Res<[f64; 2]> {
    let spin = mode == "spin";
    let mut kit = Kit::new(&format!("rtt {transport} {mode} {count}"), spin, false)?;
    let mut samples = Vec::with_capacity(count as usize);
    if transport == "shmq" {
        let mut tx = spsc::Producer::<u64, _>::attach(&kit.mem, 0, EventWake::new(kit.ev(1)?, kit.ev(0)?, None))?;
        let mut rx = spsc::Consumer::<u64, _>::attach(&kit.mem, RING_B, EventWake::new(kit.ev(2)?, kit.ev(3)?, None))?;
        rx.set_poll_budget(budget(mode));
        for i in 0..count {
            let t = monotonic_ns();
            tx.push(i)?;
            let r = rx.pop()?;
            samples.push(monotonic_ns() - t);
            if r != i {
                return Err("wrong pong".into());
            }
            if gap_us > 0 {
                std::thread::sleep(Duration::from_micros(gap_us));
            }
        }
    } else {
        let mut buf = [0u8; 8];
        for i in 0..count {
            let t = monotonic_ns();
            if transport == "pipe" {
                write_all_spin(&mut kit.pipe_w, &i.to_le_bytes())?;
                read_exact_spin(&mut kit.pipe2_r, &mut buf)?;
            } else {
                write_all_spin(&mut kit.sock, &i.to_le_bytes())?;
                read_exact_spin(&mut kit.sock, &mut buf)?;
            }
            samples.push(monotonic_ns() - t);
            if gap_us > 0 {
                std::thread::sleep(Duration::from_micros(gap_us));
            }
        }
    }
    kit.result()?;
    Ok(percentiles(samples))
}

/// MB/s (10^6 bytes) streamed to the child in `chunk`-byte writes.
fn stream_rate(transport: &str, chunk: usize, total: u64) -> Res<f64> {
    let mut kit = Kit::new(&format!("stream {transport} {chunk} {total}"), false, true)?;
    let data: Vec<u8> = (0..chunk).map(|i| i as u8).collect();
    let start = monotonic_ns();
    let mut sent = 0;
    if transport == "shmq" {
        let mut w = stream::Writer::attach(&kit.mem, 0, EventWake::new(kit.ev(1)?, kit.ev(0)?, None))?;
        while sent < total {
            w.write_all(&data)?;
            sent += chunk as u64;
        }
        w.close()?;
    } else {
        while sent < total {
            kit.sock.write_all(&data)?;
            sent += chunk as u64;
        }
        kit.sock.shutdown(std::net::Shutdown::Write)?;
    }
    let line = kit.result()?;
    let end: u64 = line.strip_prefix("end ").ok_or("bad child output")?.parse()?;
    Ok(sent as f64 / 1e6 / ((end - start) as f64 / 1e9))
}

/// Gives up at once instead of sleeping: times the poll phase alone.
struct GiveUp;
impl Wake for GiveUp {
    fn wake_peer(&self) -> shmq::Result<()> {
        Ok(())
    }
    fn sleep(&self) -> shmq::Result<()> {
        Err(Error::Closed)
    }
    fn wake_sibling(&self) -> shmq::Result<()> {
        Ok(())
    }
}

/// Nanoseconds per poll of an empty ring (one acquire load of the tail and a `pause`).
fn poll_cost() -> Res<f64> {
    let mem = SharedMemory::create("shmq-bench-poll", MEM)?;
    spsc::init::<u64>(&mem, 0, CAP)?;
    let mut rx = spsc::Consumer::<u64, _>::attach(&mem, 0, GiveUp)?;
    let polls = 1u32 << 22;
    rx.set_poll_budget(polls);
    let t = Instant::now();
    let r = rx.wait_available();
    let ns = t.elapsed().as_nanos() as f64;
    if r != Err(Error::Closed) {
        return Err("poll phase did not run".into());
    }
    Ok(ns / polls as f64)
}

// ---------------------------------------------------------------- child side

fn child(path: &str) -> Res<()> {
    pin_to_cpu(1)?;
    let ctl = UnixStream::connect(path)?;
    let (mem, ev) = handover::recv(&ctl)?;
    let (spec, fds) = handover::recv_fds(&ctl, 256, 3)?;
    let spec = String::from_utf8(spec)?;
    let mut fds = fds.into_iter();
    let mut take = || -> Res<OwnedFd> { Ok(fds.next().ok_or("missing fd")?) };
    let mut pipe_r = File::from(take()?);
    let mut pipe2_w = File::from(take()?);
    let mut sock = UnixStream::from(take()?);
    let ev = |i: usize| -> Res<EventFd> { Ok(ev[i].try_clone()?) };
    let region: &Region = &mem;
    let words: Vec<&str> = spec.split_whitespace().collect();
    let (kind, transport, mode) = (words[0], words[1], words[2]);
    match kind {
        "tp" => {
            let batch: usize = words[3].parse()?;
            let count: u64 = words[4].parse()?;
            if transport == "shmq" {
                let mut rx = spsc::Consumer::<u64, _>::attach(region, 0, EventWake::new(ev(0)?, ev(1)?, None))?;
                rx.set_poll_budget(budget(mode));
                let mut buf = vec![0u64; batch];
                let mut n = 0;
                while n < count {
                    if batch == 1 {
                        let v = rx.pop()?;
                        if v != n {
                            return Err("message out of order".into());
                        }
                        n += 1;
                    } else {
                        n += rx.pop_into(&mut buf)? as u64;
                    }
                }
            } else {
                let mut buf = vec![0u8; 8 * batch];
                let mut bytes = 0;
                while bytes < 8 * count {
                    let r = if transport == "pipe" { pipe_r.read(&mut buf) } else { sock.read(&mut buf) };
                    match r {
                        Ok(0) => return Err("early end of file".into()),
                        Ok(k) => bytes += k as u64,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            println!("end {}", monotonic_ns());
        }
        "lat" => {
            let count: u64 = words[3].parse()?;
            let ack = region.atomic_u64(ACK)?;
            let mut samples = Vec::with_capacity(count as usize);
            let mut rx = if transport == "shmq" {
                let mut rx = spsc::Consumer::<u64, _>::attach(region, 0, EventWake::new(ev(0)?, ev(1)?, None))?;
                rx.set_poll_budget(budget(mode));
                Some(rx)
            } else {
                None
            };
            let mut buf = [0u8; 8];
            for i in 0..count {
                let ts = match &mut rx {
                    Some(rx) => rx.pop()?,
                    None => {
                        if transport == "pipe" {
                            read_exact_spin(&mut pipe_r, &mut buf)?;
                        } else {
                            read_exact_spin(&mut sock, &mut buf)?;
                        }
                        u64::from_le_bytes(buf)
                    }
                };
                samples.push(monotonic_ns().saturating_sub(ts));
                ack.store(i + 1, Ordering::Release);
            }
            let [p50, p99] = percentiles(samples);
            println!("lat {p50} {p99}");
        }
        "rtt" => {
            let count: u64 = words[3].parse()?;
            if transport == "shmq" {
                let mut rx = spsc::Consumer::<u64, _>::attach(region, 0, EventWake::new(ev(0)?, ev(1)?, None))?;
                let mut tx = spsc::Producer::<u64, _>::attach(region, RING_B, EventWake::new(ev(3)?, ev(2)?, None))?;
                rx.set_poll_budget(budget(mode));
                for _ in 0..count {
                    let v = rx.pop()?;
                    tx.push(v)?;
                }
            } else {
                let mut buf = [0u8; 8];
                for _ in 0..count {
                    if transport == "pipe" {
                        read_exact_spin(&mut pipe_r, &mut buf)?;
                        write_all_spin(&mut pipe2_w, &buf)?;
                    } else {
                        read_exact_spin(&mut sock, &mut buf)?;
                        write_all_spin(&mut sock, &buf)?;
                    }
                }
            }
            println!("done");
        }
        "stream" => {
            let total: u64 = words[3].parse()?;
            let mut buf = vec![0u8; 65536];
            let mut got = 0u64;
            if transport == "shmq" {
                let mut r = stream::Reader::attach(region, 0, EventWake::new(ev(0)?, ev(1)?, None))?;
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
            } else {
                loop {
                    let n = sock.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
            }
            if got != total {
                return Err(format!("received {got} of {total} bytes").into());
            }
            println!("end {}", monotonic_ns());
        }
        _ => return Err(format!("unknown scenario {spec}").into()),
    }
    Ok(())
}
