//! memcpy/memmove/memset/memcmp/bcmp for the compiler. The host target's
//! compiler_builtins provides none of them, and the byte-wise string
//! instructions are ten times slower than the 8-byte forms on hosts that
//! emulate supervisor code, so copies use `rep movsq`/`rep stosq` plus a byte
//! tail.

use core::arch::asm;

/// Copies `n` bytes forward.
///
/// # Safety
/// `dst` and `src` valid for `n` bytes; they may overlap only if `dst <= src`.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: upheld by the caller; DF is clear in the kernel (SFMASK and
    // interrupt gates clear it, nothing sets it).
    unsafe {
        asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) n & 7,
            inout("rcx") n >> 3 => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
    dst
}

/// Copies `n` bytes between possibly overlapping buffers.
///
/// # Safety
/// `dst` and `src` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is correct when dst is below src or disjoint.
        return unsafe { memcpy(dst, src, n) };
    }
    // Overlapping with dst above src: copy backwards, tail bytes first.
    // SAFETY: upheld by the caller; STD/CLD bracket the backward copy.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "lea rsi, [rsi - 7]",
            "lea rdi, [rdi - 7]",
            "mov rcx, {words}",
            "rep movsq",
            "cld",
            words = in(reg) n >> 3,
            inout("rcx") n & 7 => _,
            inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack)
        );
    }
    dst
}

/// Fills `n` bytes with `c`.
///
/// # Safety
/// `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let v = (c as u8 as u64) * 0x0101_0101_0101_0101;
    // SAFETY: upheld by the caller; DF is clear.
    unsafe {
        asm!(
            "rep stosq",
            "mov rcx, {tail}",
            "rep stosb",
            tail = in(reg) n & 7,
            inout("rcx") n >> 3 => _,
            inout("rdi") dst => _,
            in("rax") v,
            options(nostack, preserves_flags)
        );
    }
    dst
}

/// Compares `n` bytes.
///
/// # Safety
/// `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both are valid for n bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// Compares `n` bytes for equality (0 = equal).
///
/// # Safety
/// `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// Unwinding is never used (panic = "abort"), but the precompiled `core`
/// references these symbols.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::arch::x86_64::cpu::halt_forever()
}

/// See [`_Unwind_Resume`].
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
