//! The other process of the two-process tests (`tests/two_process.rs`).
//!
//! `shmq-peer <role> <socket-path> [key=value...]` connects to the test's unix
//! socket, receives the shared memory and eventfds (SCM_RIGHTS), watches the
//! socket for the test's death, plays its role with randomized pacing, prints
//! a result line on stdout and exits 0 (or prints the error and exits 1).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use shmq::host::{handover, EventWake, PeerWatch};
use shmq::testkit::{budget, message, mpmc_worker, pace, Fnv, MpmcWorker, SplitMix64};
use shmq::{spsc, stream, Error};

type Msg = [u64; 4];

struct Opts(HashMap<String, String>);

impl Opts {
    fn num(&self, key: &str, default: u64) -> u64 {
        self.0.get(key).map(|v| v.parse().unwrap_or_else(|_| panic!("{key}={v}: not a number"))).unwrap_or(default)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: shmq-peer <role> <socket-path> [key=value...]");
        return ExitCode::from(2);
    }
    let opts = Opts(args[3..].iter().filter_map(|a| a.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect());
    match run(&args[1], &args[2], &opts) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(role: &str, path: &str, o: &Opts) -> Result<String, Error> {
    let sock =
        UnixStream::connect(path).map_err(|e| Error::Os { op: "connect", errno: e.raw_os_error().unwrap_or(0) })?;
    let (mem, mut evs) = handover::recv(&sock)?;
    if evs.len() < 2 {
        return Err(Error::Protocol("expected two eventfds"));
    }
    let watch = PeerWatch::socket(&sock)?;
    let b = evs.pop().unwrap();
    let a = evs.pop().unwrap();
    let seed = o.num("seed", 1);
    let mut rng = SplitMix64::new(seed ^ 0xabcdef);
    match role {
        // a = "to consumer", b = "to producer"
        "spsc-consumer" => {
            let mut rx = spsc::Consumer::<Msg, _>::attach(&mem, 0, EventWake::new(a, b, Some(watch)))?;
            rx.set_poll_budget(budget(&mut rng));
            let mut n = 0u64;
            let mut buf = [[0u64; 4]; 16];
            loop {
                let got = if rng.below(2) == 0 {
                    match rx.pop() {
                        Ok(m) => {
                            buf[0] = m;
                            1
                        }
                        Err(Error::Closed) => break,
                        Err(e) => return Err(e),
                    }
                } else {
                    let want = 1 + rng.below(16) as usize;
                    match rx.pop_into(&mut buf[..want]) {
                        Ok(k) => k,
                        Err(Error::Closed) => break,
                        Err(e) => return Err(e),
                    }
                };
                for m in &buf[..got] {
                    if *m != message(seed, n) {
                        return Err(Error::Corrupt { what: "message out of order or damaged", value: n as u32 });
                    }
                    n += 1;
                }
                pace(&mut rng);
            }
            Ok(format!("received {n}"))
        }
        "spsc-producer" => {
            let mut tx = spsc::Producer::<Msg, _>::attach(&mem, 0, EventWake::new(b, a, Some(watch)))?;
            tx.set_poll_budget(budget(&mut rng));
            let count = o.num("count", 1000);
            let mut n = 0;
            while n < count {
                let k = (1 + rng.below(20)).min(count - n);
                if k == 1 {
                    tx.push(message(seed, n))?;
                } else {
                    let batch: Vec<Msg> = (n..n + k).map(|i| message(seed, i)).collect();
                    tx.push_slice(&batch)?;
                }
                n += k;
                pace(&mut rng);
            }
            tx.close()?;
            Ok(format!("sent {n}"))
        }
        // Writes a half message without publishing it, says so, then waits to be killed.
        "crash-producer" => {
            let tx = spsc::Producer::<Msg, _>::attach(&mem, 0, EventWake::new(b, a, Some(watch)))?;
            mem.write_bytes(shmq::CONTROL_SIZE, &[0xee; 16])?;
            drop(tx);
            println!("ready");
            std::io::stdout().flush().ok();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        // Consumes a few messages, then stops reading and waits to be killed.
        "crash-consumer" => {
            let mut rx = spsc::Consumer::<Msg, _>::attach(&mem, 0, EventWake::new(a, b, Some(watch)))?;
            rx.pop()?;
            println!("ready");
            std::io::stdout().flush().ok();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        // Blocks in pop() (budget 0: sleeps at once) and reports when woken.
        "idle-consumer" => {
            let mut rx = spsc::Consumer::<Msg, _>::attach(&mem, 0, EventWake::new(a, b, Some(watch)))?;
            rx.set_poll_budget(o.num("budget", 0) as u32);
            println!("ready");
            std::io::stdout().flush().ok();
            let m = rx.pop()?;
            let now = shmq::host::monotonic_ns();
            Ok(format!("woken after {} ns", now.saturating_sub(m[0])))
        }
        "stream-reader" => {
            let mut r = stream::Reader::attach(&mem, 0, EventWake::new(a, b, Some(watch)))?;
            r.set_poll_budget(budget(&mut rng));
            let mut buf = vec![0u8; 70_000];
            let mut n = 0u64;
            let mut sum = Fnv::default();
            loop {
                let want = 1 + rng.below(buf.len() as u64) as usize;
                let got = if rng.below(4) == 0 {
                    r.wait_readable()?;
                    let w = r.readable()?;
                    let k = w[0].len().min(want);
                    w[0].read_at(0, &mut buf[..k])?;
                    r.consume(k)?;
                    if k == 0 && !r.wait_readable()? {
                        break;
                    }
                    k
                } else {
                    match r.read(&mut buf[..want])? {
                        0 => break,
                        k => k,
                    }
                };
                for (i, byte) in buf[..got].iter().enumerate() {
                    if *byte != SplitMix64::byte_at(seed, n + i as u64) {
                        return Err(Error::Corrupt { what: "stream byte damaged", value: (n + i as u64) as u32 });
                    }
                }
                sum.update(&buf[..got]);
                n += got as u64;
                pace(&mut rng);
            }
            Ok(format!("read {n} fnv {:016x}", sum.0))
        }
        "stream-writer" => {
            let mut w = stream::Writer::attach(&mem, 0, EventWake::new(b, a, Some(watch)))?;
            w.set_poll_budget(budget(&mut rng));
            let total = o.num("bytes", 1 << 20);
            let mut n = 0u64;
            let mut sum = Fnv::default();
            while n < total {
                let k = (1 + rng.below(70_000)).min(total - n) as usize;
                let chunk: Vec<u8> = (0..k as u64).map(|i| SplitMix64::byte_at(seed, n + i)).collect();
                if rng.below(4) == 0 {
                    // Through the windows.
                    let mut done = 0;
                    while done < k {
                        let win = w.writable()?;
                        let m = win[0].len().min(k - done);
                        win[0].write_at(0, &chunk[done..done + m])?;
                        w.commit(m)?;
                        done += m;
                        if m == 0 {
                            w.wait_writable()?;
                        }
                    }
                } else {
                    w.write_all(&chunk)?;
                }
                sum.update(&chunk);
                n += k as u64;
                pace(&mut rng);
            }
            w.close()?;
            Ok(format!("wrote {n} fnv {:016x}", sum.0))
        }
        // One producer and one consumer thread on the MPMC ring at offset 0; a
        // bitmap of delivered messages at `bitmap`, a delivery counter at `counter`.
        "mpmc-worker" => {
            let w = MpmcWorker {
                id: o.num("id", 0),
                per: o.num("per", 1000),
                total: o.num("total", 1000),
                consumers: o.num("consumers", 1),
                bitmap: o.num("bitmap", 0) as usize,
                counter: o.num("counter", 0) as usize,
                seed,
            };
            let (sent, received) = mpmc_worker(&mem, a, b, watch, &w)?;
            Ok(format!("sent {sent} received {received}"))
        }
        other => Err(Error::Protocol(match other {
            "" => "empty role",
            _ => "unknown role",
        })),
    }
}
