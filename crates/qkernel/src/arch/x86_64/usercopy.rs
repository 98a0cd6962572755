//! Access to user memory from the kernel.
//!
//! Every access first checks that the whole range lies in the user half, then
//! runs one of the small assembly routines below. Their faulting instructions
//! are listed in the `.ex_table` section: a #PF at one of them that the memory
//! manager cannot resolve (unmapped, wrong permissions) resumes at the
//! routine's fixup, which returns failure. A bad user pointer therefore
//! becomes EFAULT, never a kernel panic.
//!
//! Copies use the 8-byte string forms (`rep movsq`/`rep stosq`) plus a byte
//! tail: on hosts that emulate supervisor code the byte forms are ten times
//! slower (docs/platform.md). Bulk data should not be copied at all: hand the
//! host the frames behind the user buffer instead (see `mm::user_frames`).

use qlib::layout::USER_END;
use qlib::linux::Errno;

core::arch::global_asm!(
    r#"
    .text
    .balign 16
    .globl qk_copy_user
qk_copy_user:
    movq %rdx, %rcx
    shrq $3, %rcx
1:  rep movsq
    movq %rdx, %rcx
    andq $7, %rcx
2:  rep movsb
    xorl %eax, %eax
    ret
3:  movl $1, %eax
    ret

    .balign 16
    .globl qk_zero_user
qk_zero_user:
    movq %rsi, %rdx
    movq %rsi, %rcx
    shrq $3, %rcx
    xorl %eax, %eax
4:  rep stosq
    movq %rdx, %rcx
    andq $7, %rcx
5:  rep stosb
    ret
6:  movl $1, %eax
    ret

    .balign 16
    .globl qk_get_user_u64
qk_get_user_u64:
7:  movq (%rdi), %rax
    movq %rax, (%rsi)
    xorl %eax, %eax
    ret
8:  movl $1, %eax
    ret

    .balign 16
    .globl qk_put_user_u64
qk_put_user_u64:
9:  movq %rsi, (%rdi)
    xorl %eax, %eax
    ret
10: movl $1, %eax
    ret

    .section .ex_table, "a"
    .balign 8
    .quad 1b, 3b
    .quad 2b, 3b
    .quad 4b, 6b
    .quad 5b, 6b
    .quad 7b, 8b
    .quad 9b, 10b
    "#,
    options(att_syntax)
);

extern "C" {
    fn qk_copy_user(dst: *mut u8, src: *const u8, len: usize) -> u64;
    fn qk_zero_user(dst: *mut u8, len: usize) -> u64;
    fn qk_get_user_u64(src: *const u64, out: *mut u64) -> u64;
    fn qk_put_user_u64(dst: *mut u64, v: u64) -> u64;
    static __ex_table_start: [u64; 0];
    static __ex_table_end: [u64; 0];
}

/// Finds the fixup address for a faulting kernel RIP, if it is a user access.
pub fn fixup_for(rip: u64) -> Option<u64> {
    // SAFETY: the linker script brackets .ex_table with these symbols; the
    // table is an array of (fault, fixup) u64 pairs in read-only memory.
    let table = unsafe {
        let start = __ex_table_start.as_ptr();
        let end = __ex_table_end.as_ptr();
        core::slice::from_raw_parts(start, (end as usize - start as usize) / 8)
    };
    table.chunks_exact(2).find(|e| e[0] == rip).map(|e| e[1])
}

/// Checks that `[addr, addr + len)` lies in the user half.
#[inline(always)]
pub fn check_user_range(addr: u64, len: u64) -> Result<(), Errno> {
    match addr.checked_add(len) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Copies `dst.len()` bytes from user address `src`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), Errno> {
    check_user_range(src, dst.len() as u64)?;
    super::percpu::stats().copied_bytes += dst.len() as u64;
    // SAFETY: `dst` is a valid kernel buffer; the source range is in the user
    // half, and faults there are resolved or fixed up (never a panic).
    match unsafe { qk_copy_user(dst.as_mut_ptr(), src as *const u8, dst.len()) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Copies `src` to user address `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Errno> {
    check_user_range(dst, src.len() as u64)?;
    super::percpu::stats().copied_bytes += src.len() as u64;
    // SAFETY: as for copy_from_user, with the roles swapped.
    match unsafe { qk_copy_user(dst as *mut u8, src.as_ptr(), src.len()) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Zeroes `len` bytes at user address `dst`.
pub fn zero_user(dst: u64, len: u64) -> Result<(), Errno> {
    check_user_range(dst, len)?;
    // SAFETY: as for copy_to_user.
    match unsafe { qk_zero_user(dst as *mut u8, len as usize) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Reads a plain-data value from user memory.
pub fn read_user<T: Copy + Default>(src: u64) -> Result<T, Errno> {
    let mut v = T::default();
    // SAFETY: `v` is a valid T; viewing it as bytes to overwrite it is sound
    // for the plain-data (Copy, no invalid bit patterns) types used here.
    let bytes = unsafe { core::slice::from_raw_parts_mut(&mut v as *mut T as *mut u8, core::mem::size_of::<T>()) };
    copy_from_user(bytes, src)?;
    Ok(v)
}

/// Writes a plain-data value to user memory.
pub fn write_user<T: Copy>(dst: u64, v: &T) -> Result<(), Errno> {
    // SAFETY: reading the bytes of a Copy value is sound.
    let bytes = unsafe { core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>()) };
    copy_to_user(dst, bytes)
}

/// Reads one aligned u64 from user memory.
#[inline]
pub fn get_user_u64(src: u64) -> Result<u64, Errno> {
    check_user_range(src, 8)?;
    let mut v = 0u64;
    // SAFETY: range checked; faults are fixed up.
    match unsafe { qk_get_user_u64(src as *const u64, &mut v) } {
        0 => Ok(v),
        _ => Err(Errno::EFAULT),
    }
}

/// Writes one u64 to user memory.
#[inline]
pub fn put_user_u64(dst: u64, v: u64) -> Result<(), Errno> {
    check_user_range(dst, 8)?;
    // SAFETY: range checked; faults are fixed up.
    match unsafe { qk_put_user_u64(dst as *mut u64, v) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Copies a NUL-terminated string of at most `out.len()` bytes (NUL
/// excluded) from user memory; returns its length. Reads whole aligned words,
/// so it never touches a page the string does not reach, and moves a word at
/// a time while the word holds no NUL (found with word arithmetic).
pub fn strncpy_from_user(out: &mut [u8], src: u64) -> Result<usize, Errno> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut n = 0usize;
    let mut addr = src & !7;
    let mut skip = (src & 7) as usize;
    loop {
        let w = get_user_u64(addr)?;
        let has_zero = (w.wrapping_sub(LOW) & !w & HIGH) != 0;
        if skip == 0 && !has_zero && n + 8 <= out.len() {
            out[n..n + 8].copy_from_slice(&w.to_le_bytes());
            n += 8;
        } else {
            for &b in &w.to_le_bytes()[skip..] {
                if b == 0 {
                    return Ok(n);
                }
                if n == out.len() {
                    return Err(Errno::ENAMETOOLONG);
                }
                out[n] = b;
                n += 1;
            }
            skip = 0;
        }
        addr += 8;
    }
}
