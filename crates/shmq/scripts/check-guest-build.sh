#!/usr/bin/env bash
# Builds shmq the way the guest kernel uses it (no `std`, x86-64 without
# SSE/x87, soft-float ABI) inside a tiny no_std static library that
# instantiates every ring type, then checks that the generated code of that
# library and of shmq has no SSE/x87 instruction and no soft-float call.
# Usage: crates/shmq/scripts/check-guest-build.sh [work-dir]
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/shmq-guest-build.XXXXXX)}"
mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "shmq_guest_probe"
version = "0.1.0"
edition = "2021"
[lib]
crate-type = ["staticlib"]
[dependencies]
shmq = { path = "$crate", default-features = false }
[profile.release]
panic = "abort"
[workspace]
TOML
cat > "$work/src/lib.rs" <<'RUST'
#![no_std]
use shmq::{mpmc, slots, spsc, stream, Poll, Region};
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
/// # Safety
/// `base..base + len` is writable shared memory.
#[no_mangle]
pub unsafe extern "C" fn probe(base: *mut u8, len: usize) -> u64 {
    let Ok(r) = (unsafe { Region::new(base, len) }) else { return 0 };
    let mut n = 0u64;
    let _ = spsc::init::<[u64; 8]>(&r, 0, 64);
    if let (Ok(mut tx), Ok(mut rx)) =
        (spsc::Producer::<[u64; 8], _>::attach(&r, 0, Poll), spsc::Consumer::<[u64; 8], _>::attach(&r, 0, Poll))
    {
        let _ = tx.push([1; 8]);
        let _ = tx.try_push_slice(&[[2; 8]; 3]);
        if let Ok(v) = rx.pop() {
            n += v[0];
        }
        let mut out = [[0u64; 8]; 4];
        n += rx.try_pop_into(&mut out).unwrap_or(0) as u64;
    }
    let off = 1 << 16;
    let _ = mpmc::init::<[u32; 5]>(&r, off, 64);
    if let (Ok(p), Ok(c)) =
        (mpmc::Producer::<[u32; 5], _>::attach(&r, off, Poll), mpmc::Consumer::<[u32; 5], _>::attach(&r, off, Poll))
    {
        let _ = p.push([3; 5]);
        if let Ok(v) = c.pop() {
            n += v[0] as u64;
        }
    }
    let off = 3 << 16;
    let _ = slots::init(&r, off, 16, 40);
    if let (Ok(mut tx), Ok(mut rx)) =
        (slots::Producer::attach(&r, off, None, Poll), slots::Consumer::attach(&r, off, Some(40), Poll))
    {
        let _ = tx.try_push(&[5u8; 33]);
        let mut b = [0u8; 40];
        if rx.try_pop_into(&mut b).unwrap_or(false) {
            n += b[0] as u64;
        }
    }
    let off = 1 << 17;
    let _ = stream::init(&r, off, 4096);
    if let (Ok(mut w), Ok(mut rd)) = (stream::Writer::attach(&r, off, Poll), stream::Reader::attach(&r, off, Poll)) {
        let _ = w.write_all(&[7u8; 100]);
        let mut b = [0u8; 64];
        n += rd.read(&mut b).unwrap_or(0) as u64;
        if let Ok(ws) = w.writable() {
            n += ws[0].len() as u64;
        }
    }
    n
}
RUST
cd "$work"
# Its own target directory: never wait on (or disturb) the workspace's.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
RUSTFLAGS="-C target-feature=-sse,-sse2,-x87,+soft-float" cargo build --offline --quiet --release 2>/dev/null \
  || RUSTFLAGS="-C target-feature=-sse,-sse2,-x87,+soft-float" cargo build --offline --release
rm -rf objs && mkdir objs && cd objs && ar x ../target/release/libshmq_guest_probe.a
objects=$(ls | grep -E '^(shmq|shmq_guest_probe)-.*\.o$')
[ -n "$objects" ] || { echo "no shmq objects found in the static library"; exit 1; }
bad=0
for o in $objects; do
  insns=$(objdump -d "$o" | grep -cE '^\s+[0-9a-f]+:' || true)
  float=$(objdump -d "$o" | grep -ciE 'xmm|ymm|zmm|%st\b|\bf(ld|st|stp|add|mul|div)' || true)
  soft=$(nm "$o" | grep -ciE '__(add|sub|mul|div|cmp|eq|lt|gt)[sdt]f[23]|__float|__fix|__extend|__trunc' || true)
  echo "$o: $insns instructions, $float SSE/x87, $soft soft-float calls"
  if [ "$float" != 0 ] || [ "$soft" != 0 ]; then bad=1; fi
done
grep -q probe <(nm $objects) || { echo "the probe function is missing"; exit 1; }
[ "$bad" = 0 ] && echo "ok: no floating point in the guest build of shmq"
exit "$bad"
