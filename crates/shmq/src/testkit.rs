//! Deterministic helpers shared by the tests, the test peer and the benchmark
//! (not part of the ring API).

/// SplitMix64: a tiny, fast, seedable generator (no external crates here).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        Self::mix(self.0)
    }

    /// Uniform-enough value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Byte number `index` of the pseudo-random stream named `seed` (random access).
    pub fn byte_at(seed: u64, index: u64) -> u8 {
        (Self::mix(seed ^ (index >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> ((index & 7) * 8)) as u8
    }
}

/// FNV-1a, for checksumming streamed bytes.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The SPSC test message number `seq` of the run named `seed` (checkable by the receiver).
pub fn message(seed: u64, seq: u64) -> [u64; 4] {
    [seq, !seq, seed, seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed]
}

/// Random pacing for stress tests: sometimes yield, sometimes sleep up to 200 µs.
#[cfg(feature = "std")]
pub fn pace(rng: &mut SplitMix64) {
    match rng.below(64) {
        0 => std::thread::sleep(std::time::Duration::from_micros(rng.below(200))),
        1..=4 => std::thread::yield_now(),
        _ => {}
    }
}

/// A random poll budget: sleep at once, poll briefly, or the default.
pub fn budget(rng: &mut SplitMix64) -> u32 {
    [0, 16, crate::DEFAULT_POLL_BUDGET][rng.below(3) as usize]
}

/// One process's part of the multi-process MPMC test: a producer thread and a
/// consumer thread on the MPMC ring of `[u64; 2]` at offset 0.
#[cfg(feature = "std")]
#[derive(Debug, Clone)]
pub struct MpmcWorker {
    /// Producer id (messages are `[id, k]` for k in 0..per).
    pub id: u64,
    pub per: u64,
    /// Messages of all producers together.
    pub total: u64,
    /// Consumer threads of all processes together.
    pub consumers: u64,
    /// Offset of a zeroed bitmap of `total` bits (one per message).
    pub bitmap: usize,
    /// Offset of a zeroed u64 count of delivered messages.
    pub counter: usize,
    pub seed: u64,
}

/// Runs an [`MpmcWorker`]: returns (sent, received). The consumer marks each
/// message in the shared bitmap (a second delivery is an error) and checks that
/// one producer's messages arrive in order; whoever delivers the last message
/// sends a stop message to every other consumer.
#[cfg(feature = "std")]
pub fn mpmc_worker(
    mem: &crate::Region,
    data: crate::host::EventFd,
    space: crate::host::EventFd,
    watch: crate::host::PeerWatch,
    w: &MpmcWorker,
) -> crate::Result<(u64, u64)> {
    use crate::host::EventWake;
    use crate::{mpmc, Error};
    use std::sync::atomic::Ordering;
    const STOP: u64 = u64::MAX;
    let prod_wake = EventWake::new(space.try_clone()?, data.try_clone()?, Some(watch.try_clone()?));
    let stop_wake = prod_wake.try_clone()?;
    let cons_wake = EventWake::new(data, space, Some(watch));
    std::thread::scope(|s| {
        let producer = s.spawn(move || -> crate::Result<u64> {
            let mut p = mpmc::Producer::<[u64; 2], _>::attach(mem, 0, prod_wake)?;
            let mut rng = SplitMix64::new(w.seed ^ w.id ^ 0x5151);
            p.set_poll_budget(budget(&mut rng));
            for k in 0..w.per {
                p.push([w.id, k])?;
                pace(&mut rng);
            }
            Ok(w.per)
        });
        let consumed = (|| -> crate::Result<u64> {
            let mut con = mpmc::Consumer::<[u64; 2], _>::attach(mem, 0, cons_wake)?;
            let mut rng = SplitMix64::new(w.seed ^ w.id ^ 0xc0c0);
            con.set_poll_budget(budget(&mut rng));
            let counter = mem.atomic_u64(w.counter)?;
            let mut n = 0;
            let mut last = std::collections::HashMap::new();
            loop {
                let [id, k] = con.pop()?;
                if id == STOP {
                    return Ok(n);
                }
                if k >= w.per || id.saturating_mul(w.per) >= w.total {
                    return Err(Error::Corrupt { what: "message number out of range", value: k as u32 });
                }
                if let Some(prev) = last.insert(id, k) {
                    if prev >= k {
                        return Err(Error::Corrupt { what: "one producer's messages out of order", value: k as u32 });
                    }
                }
                let bit = id * w.per + k;
                let word = mem.atomic_u32(w.bitmap + (bit / 32) as usize * 4)?;
                if word.fetch_or(1 << (bit % 32), Ordering::Relaxed) & (1 << (bit % 32)) != 0 {
                    return Err(Error::Corrupt { what: "message delivered twice", value: bit as u32 });
                }
                n += 1;
                if counter.fetch_add(1, Ordering::AcqRel) + 1 == w.total {
                    let p = mpmc::Producer::<[u64; 2], _>::attach(mem, 0, stop_wake)?;
                    for _ in 1..w.consumers {
                        p.push([STOP, 0])?;
                    }
                    return Ok(n);
                }
                pace(&mut rng);
            }
        })();
        let sent = producer.join().map_err(|_| Error::Protocol("producer thread panicked"))?;
        Ok((sent?, consumed?))
    })
}
