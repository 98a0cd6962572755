//! The kernel's random number generator: ChaCha20 (RFC 8439 block function)
//! in fast-key-erasure mode, seeded with 32 bytes of host entropy at boot.
//! Each block's first 32 bytes replace the key, so earlier output cannot be
//! reconstructed from the state.

use crate::sync::SpinLock;

struct Rng {
    key: [u32; 8],
    counter: u64,
}

static RNG: SpinLock<Rng> = SpinLock::new(Rng { key: [0; 8], counter: 0 });

#[inline(always)]
fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

fn block(key: &[u32; 8], counter: u64) -> [u32; 16] {
    let mut s = [0u32; 16];
    s[0] = 0x6170_7865;
    s[1] = 0x3320_646e;
    s[2] = 0x7962_2d32;
    s[3] = 0x6b20_6574;
    s[4..12].copy_from_slice(key);
    s[12] = counter as u32;
    s[13] = (counter >> 32) as u32;
    let init = s;
    for _ in 0..10 {
        quarter(&mut s, 0, 4, 8, 12);
        quarter(&mut s, 1, 5, 9, 13);
        quarter(&mut s, 2, 6, 10, 14);
        quarter(&mut s, 3, 7, 11, 15);
        quarter(&mut s, 0, 5, 10, 15);
        quarter(&mut s, 1, 6, 11, 12);
        quarter(&mut s, 2, 7, 8, 13);
        quarter(&mut s, 3, 4, 9, 14);
    }
    for i in 0..16 {
        s[i] = s[i].wrapping_add(init[i]);
    }
    s
}

/// Seeds the generator (boot vCPU, once).
pub fn init(seed: &[u8; 32]) {
    let mut r = RNG.lock();
    for i in 0..8 {
        r.key[i] = u32::from_le_bytes([seed[4 * i], seed[4 * i + 1], seed[4 * i + 2], seed[4 * i + 3]]);
    }
}

/// Fills `out` with random bytes (32 per ChaCha20 block after key erasure).
pub fn fill(out: &mut [u8]) {
    let mut r = RNG.lock();
    for chunk in out.chunks_mut(32) {
        let b = block(&r.key, r.counter);
        r.counter = r.counter.wrapping_add(1);
        r.key.copy_from_slice(&b[0..8]);
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = (b[8 + i / 4] >> (8 * (i % 4))) as u8;
        }
    }
}

/// A random u64.
pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}
