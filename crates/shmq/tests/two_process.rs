//! Stress tests across processes: this test process and `shmq-peer` children
//! share a memfd handed over with SCM_RIGHTS on a unix socket, with eventfd
//! wakeups and randomized pacing on both sides.

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmq::host::{handover, EventFd, EventWake, PeerWatch, SharedMemory};
use shmq::testkit::{budget, message, mpmc_worker, pace, Fnv, MpmcWorker, SplitMix64};
use shmq::{mpmc, spsc, stream, Error};

type Msg = [u64; 4];

struct Peer {
    child: Child,
    sock: UnixStream,
    out: BufReader<ChildStdout>,
}

impl Peer {
    /// Spawns `shmq-peer role`, hands it `mem` and the eventfds.
    fn spawn(role: &str, opts: &[String], mem: &SharedMemory, events: &[&EventFd]) -> Peer {
        static N: AtomicU64 = AtomicU64::new(0);
        let path: PathBuf = std::env::temp_dir().join(format!(
            "shmq-test-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmq-peer"))
            .arg(role)
            .arg(&path)
            .args(opts)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn shmq-peer");
        listener.set_nonblocking(true).unwrap();
        let t = Instant::now();
        let sock = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if t.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("shmq-peer did not connect: {e}"),
            }
        };
        let _ = std::fs::remove_file(&path);
        sock.set_nonblocking(false).unwrap();
        handover::send(&sock, mem, events).unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Peer { child, sock, out }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    /// Waits for the result line, hangs up and checks for a zero exit status.
    fn finish(mut self) -> String {
        let l = self.line();
        // The peer waits for the hang-up before it exits.
        drop(self.sock);
        let status = self.child.wait().unwrap();
        assert!(status.success() && !l.starts_with("error"), "peer failed ({status}): {l}");
        l
    }
}

fn opts(kv: &[(&str, u64)]) -> Vec<String> {
    kv.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Fails the test run loudly instead of hanging it (a lost wakeup or a
/// deadlock would otherwise block forever).
fn watchdog(test: &'static str) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("{test}: still running after 120 s: a lost wakeup or a deadlock; aborting");
        std::process::abort();
    });
}

fn pair() -> (EventFd, EventFd) {
    (EventFd::new().unwrap(), EventFd::new().unwrap())
}

/// SPSC, this process producing, the peer consuming and checking order.
fn spsc_to_peer(seed: u64, cap: u32, first: u32, count: u64) {
    let mem = SharedMemory::create("shmq-spsc", spsc::ring_size::<Msg>(cap).unwrap()).unwrap();
    spsc::init_at::<Msg>(&mem, 0, cap, first).unwrap();
    let (to_consumer, to_producer) = pair();
    let peer = Peer::spawn("spsc-consumer", &opts(&[("seed", seed)]), &mem, &[&to_consumer, &to_producer]);
    let watch = PeerWatch::socket(&peer.sock).unwrap();
    let mut tx =
        spsc::Producer::<Msg, _>::attach(&mem, 0, EventWake::new(to_producer, to_consumer, Some(watch))).unwrap();
    let mut rng = SplitMix64::new(seed);
    tx.set_poll_budget(budget(&mut rng));
    let mut n = 0;
    while n < count {
        let k = (1 + rng.below(2 * cap as u64)).min(count - n);
        let batch: Vec<Msg> = (n..n + k).map(|i| message(seed, i)).collect();
        if k == 1 {
            tx.push(batch[0]).unwrap();
        } else {
            tx.push_slice(&batch).unwrap();
        }
        n += k;
        pace(&mut rng);
    }
    tx.close().unwrap();
    assert_eq!(peer.finish(), format!("received {count}"));
}

/// SPSC, the peer producing, this process consuming and checking order.
fn spsc_from_peer(seed: u64, cap: u32, first: u32, count: u64) {
    let mem = SharedMemory::create("shmq-spsc", spsc::ring_size::<Msg>(cap).unwrap()).unwrap();
    spsc::init_at::<Msg>(&mem, 0, cap, first).unwrap();
    let (to_consumer, to_producer) = pair();
    let peer =
        Peer::spawn("spsc-producer", &opts(&[("seed", seed), ("count", count)]), &mem, &[&to_consumer, &to_producer]);
    let watch = PeerWatch::socket(&peer.sock).unwrap();
    let mut rx =
        spsc::Consumer::<Msg, _>::attach(&mem, 0, EventWake::new(to_consumer, to_producer, Some(watch))).unwrap();
    let mut rng = SplitMix64::new(seed);
    rx.set_poll_budget(budget(&mut rng));
    let mut n = 0;
    let mut buf = [[0u64; 4]; 32];
    loop {
        let want = 1 + rng.below(32) as usize;
        match rx.pop_into(&mut buf[..want]) {
            Ok(k) => {
                for m in &buf[..k] {
                    assert_eq!(*m, message(seed, n), "message {n}");
                    n += 1;
                }
            }
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
        pace(&mut rng);
    }
    assert_eq!(n, count);
    assert_eq!(peer.finish(), format!("sent {count}"));
}

#[test]
fn spsc_two_processes_deliver_every_message_once_in_order() {
    watchdog("spsc_two_processes");
    let t = Instant::now();
    // Tiny rings force full/empty edges (and a wakeup every few messages);
    // first indices near u32::MAX force counter wraparound.
    for (seed, cap, first, count) in
        [(1, 2, 0, 20_000), (2, 8, u32::MAX - 100, 60_000), (3, 64, u32::MAX - 5_000, 60_000), (4, 4, 7, 20_000)]
    {
        spsc_to_peer(seed, cap, first, count);
        spsc_from_peer(seed + 100, cap, first, count);
    }
    eprintln!("spsc: {:?}", t.elapsed());
}

#[test]
fn mpmc_three_processes_deliver_every_message_exactly_once() {
    watchdog("mpmc_three_processes");
    let t = Instant::now();
    for (seed, cap) in [(77, 2), (78, 8), (79, 128)] {
        mpmc_three_processes(seed, cap);
    }
    eprintln!("mpmc: {:?}", t.elapsed());
}

fn mpmc_three_processes(seed: u64, cap: u32) {
    const PROCS: u64 = 3; // this process and two peers, each one producer and one consumer
    const PER: u64 = 30_000;
    let ring = mpmc::ring_size::<[u64; 2]>(cap).unwrap().next_multiple_of(64);
    let bitmap = ring;
    let counter = bitmap + ((PROCS * PER / 8) as usize).next_multiple_of(64);
    let mem = SharedMemory::create("shmq-mpmc", counter + 64).unwrap();
    mpmc::init_at::<[u64; 2]>(&mem, 0, cap, u32::MAX - 1000).unwrap();
    let (data, space) = pair();
    let worker = |id: u64| MpmcWorker { id, per: PER, total: PROCS * PER, consumers: PROCS, bitmap, counter, seed };
    let mut peers = Vec::new();
    for id in 1..PROCS {
        let w = worker(id);
        let o = opts(&[
            ("id", w.id),
            ("per", w.per),
            ("total", w.total),
            ("consumers", w.consumers),
            ("bitmap", w.bitmap as u64),
            ("counter", w.counter as u64),
            ("seed", w.seed),
        ]);
        peers.push(Peer::spawn("mpmc-worker", &o, &mem, &[&data, &space]));
    }
    let watch = PeerWatch::pid(peers[0].child.id()).unwrap();
    let (sent, received) = mpmc_worker(&mem, data, space, watch, &worker(0)).unwrap();
    assert_eq!(sent, PER);
    let mut total_received = received;
    for p in peers {
        let l = p.finish();
        let r: u64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(l, format!("sent {PER} received {r}"));
        total_received += r;
    }
    assert_eq!(total_received, PROCS * PER);
    assert_eq!(mem.atomic_u64(counter).unwrap().load(Ordering::Relaxed), PROCS * PER);
    for bit in 0..PROCS * PER {
        let w = mem.atomic_u32(bitmap + (bit / 32) as usize * 4).unwrap().load(Ordering::Relaxed);
        assert!(w & (1 << (bit % 32)) != 0, "message {bit} never delivered");
    }
}

#[test]
fn byte_stream_two_processes_keep_every_byte() {
    watchdog("byte_stream_two_processes");
    let t = Instant::now();
    for (seed, cap, first) in [(5, 4096, 0), (6, 1 << 16, u32::MAX - 70_000), (7, 64, 3)] {
        let bytes: u64 = if cap == 64 { 300_000 } else { 8 << 20 };
        // Peer writes, this process reads (copies and windows, random sizes).
        let mem = SharedMemory::create("shmq-stream", stream::ring_size(cap).unwrap()).unwrap();
        stream::init_at(&mem, 0, cap, first).unwrap();
        let (to_reader, to_writer) = pair();
        let peer =
            Peer::spawn("stream-writer", &opts(&[("seed", seed), ("bytes", bytes)]), &mem, &[&to_reader, &to_writer]);
        let watch = PeerWatch::socket(&peer.sock).unwrap();
        let mut r = stream::Reader::attach(&mem, 0, EventWake::new(to_reader, to_writer, Some(watch))).unwrap();
        let mut rng = SplitMix64::new(seed);
        r.set_poll_budget(budget(&mut rng));
        let mut buf = vec![0u8; 100_000];
        let (mut n, mut sum) = (0u64, Fnv::default());
        loop {
            let want = 1 + rng.below(buf.len() as u64) as usize;
            let got = r.read(&mut buf[..want]).unwrap();
            if got == 0 {
                break;
            }
            for (i, b) in buf[..got].iter().enumerate() {
                assert_eq!(*b, SplitMix64::byte_at(seed, n + i as u64), "byte {}", n + i as u64);
            }
            sum.update(&buf[..got]);
            n += got as u64;
            pace(&mut rng);
        }
        assert_eq!(peer.finish(), format!("wrote {bytes} fnv {:016x}", sum.0));

        // This process writes, the peer reads.
        let mem = SharedMemory::create("shmq-stream", stream::ring_size(cap).unwrap()).unwrap();
        stream::init_at(&mem, 0, cap, first).unwrap();
        let (to_reader, to_writer) = pair();
        let peer = Peer::spawn("stream-reader", &opts(&[("seed", seed + 1)]), &mem, &[&to_reader, &to_writer]);
        let watch = PeerWatch::socket(&peer.sock).unwrap();
        let mut w = stream::Writer::attach(&mem, 0, EventWake::new(to_writer, to_reader, Some(watch))).unwrap();
        w.set_poll_budget(budget(&mut rng));
        let (mut n, mut sum) = (0u64, Fnv::default());
        while n < bytes {
            let k = (1 + rng.below(100_000)).min(bytes - n) as usize;
            let chunk: Vec<u8> = (0..k as u64).map(|i| SplitMix64::byte_at(seed + 1, n + i)).collect();
            w.write_all(&chunk).unwrap();
            sum.update(&chunk);
            n += k as u64;
            pace(&mut rng);
        }
        w.close().unwrap();
        assert_eq!(peer.finish(), format!("read {bytes} fnv {:016x}", sum.0));
    }
    eprintln!("stream: {:?}", t.elapsed());
}

/// Runs `blocked` (an operation that waits for the peer) in a thread, kills
/// the peer with SIGKILL 200 ms later and returns how long the operation took
/// to fail with `PeerGone` after the kill.
fn kill_and_time(peer: &mut Peer, blocked: impl FnOnce() -> Result<(), Error> + Send) -> Duration {
    std::thread::scope(|s| {
        let waiter = s.spawn(move || {
            let r = blocked();
            (r, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(200));
        let killed_at = Instant::now();
        peer.child.kill().expect("SIGKILL the peer");
        let (r, done) = waiter.join().unwrap();
        assert_eq!(r, Err(Error::PeerGone), "the survivor must get PeerGone");
        let _ = peer.child.wait();
        done.duration_since(killed_at)
    })
}

#[test]
fn crashed_producer_is_detected_within_a_second() {
    watchdog("crashed_producer_is_detected_within_a_second");
    for by_pidfd in [false, true] {
        let mem = SharedMemory::create("shmq-crash", spsc::ring_size::<Msg>(8).unwrap()).unwrap();
        spsc::init::<Msg>(&mem, 0, 8).unwrap();
        let (to_consumer, to_producer) = pair();
        let mut peer = Peer::spawn("crash-producer", &[], &mem, &[&to_consumer, &to_producer]);
        assert_eq!(peer.line(), "ready", "the peer wrote half a message");
        let watch =
            if by_pidfd { PeerWatch::pid(peer.child.id()).unwrap() } else { PeerWatch::socket(&peer.sock).unwrap() };
        let mut rx =
            spsc::Consumer::<Msg, _>::attach(&mem, 0, EventWake::new(to_consumer, to_producer, Some(watch))).unwrap();
        let took = kill_and_time(&mut peer, || rx.pop().map(|_| ()));
        eprintln!("crashed producer ({}) detected {took:?} after SIGKILL", if by_pidfd { "pidfd" } else { "socket" });
        assert!(took < Duration::from_secs(1), "detected after {took:?}");
        assert!(rx.is_empty().unwrap(), "the half-written message was never published");
    }
}

#[test]
fn crashed_consumer_is_detected_by_a_blocked_producer() {
    watchdog("crashed_consumer_is_detected_by_a_blocked_producer");
    let mem = SharedMemory::create("shmq-crash", spsc::ring_size::<Msg>(4).unwrap()).unwrap();
    spsc::init::<Msg>(&mem, 0, 4).unwrap();
    let (to_consumer, to_producer) = pair();
    let mut peer = Peer::spawn("crash-consumer", &[], &mem, &[&to_consumer, &to_producer]);
    let watch = PeerWatch::socket(&peer.sock).unwrap();
    let mut tx =
        spsc::Producer::<Msg, _>::attach(&mem, 0, EventWake::new(to_producer, to_consumer, Some(watch))).unwrap();
    tx.push([0; 4]).unwrap();
    assert_eq!(peer.line(), "ready");
    for i in 0..4 {
        tx.push([i; 4]).unwrap();
    }
    let took = kill_and_time(&mut peer, || tx.push([9; 4]));
    eprintln!("crashed consumer detected {took:?} after SIGKILL");
    assert!(took < Duration::from_secs(1), "detected after {took:?}");
}

/// utime + stime of a process in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn idle_consumer_sleeps_without_cpu_and_wakes_on_the_first_message() {
    watchdog("idle_consumer_sleeps_without_cpu_and_wakes_on_the_first_message");
    let mem = SharedMemory::create("shmq-idle", spsc::ring_size::<Msg>(8).unwrap()).unwrap();
    spsc::init::<Msg>(&mem, 0, 8).unwrap();
    let (to_consumer, to_producer) = pair();
    let mut peer = Peer::spawn("idle-consumer", &opts(&[("budget", 1024)]), &mem, &[&to_consumer, &to_producer]);
    assert_eq!(peer.line(), "ready");
    std::thread::sleep(Duration::from_millis(100));
    let pid = peer.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks(pid) - before;
    assert!(used <= 2, "the idle consumer used {used} ticks (10 ms each) of CPU in 1 s: it is spinning");
    let watch = PeerWatch::socket(&peer.sock).unwrap();
    let mut tx =
        spsc::Producer::<Msg, _>::attach(&mem, 0, EventWake::new(to_producer, to_consumer, Some(watch))).unwrap();
    tx.push([shmq::host::monotonic_ns(), 0, 0, 0]).unwrap();
    let line = peer.finish();
    let ns: u64 = line.strip_prefix("woken after ").and_then(|s| s.strip_suffix(" ns")).unwrap().parse().unwrap();
    eprintln!("sleeping consumer woken {} µs after the push", ns / 1000);
    assert!(ns < 50_000_000, "woken only after {ns} ns");
}
