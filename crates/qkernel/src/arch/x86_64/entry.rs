//! Entry and exit paths: boot, SYSCALL, exceptions and interrupts, returns to
//! user mode, and the kernel header the host reads.
//!
//! All of it is assembly: these paths are the most executed supervisor code,
//! and on hosts that emulate supervisor mode every instruction costs about a
//! microsecond. Instruction counts per path are documented beside each one.
//!
//! # The compat-mode SYSCALL redirect
//! On `kvm_pvm` compat-mode hosts a user SYSCALL loads RIP=LSTAR, RCX, R11 and
//! masks RFLAGS but leaves the vCPU at CPL3; the first fetch from the
//! supervisor-only entry page then raises #PF (error 0x15) with RIP == LSTAR,
//! delivered on TSS.RSP0. `vector_14` recognises exactly that (RIP ==
//! `syscall_entry` and CS from user mode), restores the user RSP that SYSCALL
//! left and continues at the normal SYSCALL entry, which then sees the state a
//! real SYSCALL leaves on VMX/SVM. On VMX/SVM hosts SYSCALL enters CPL0
//! directly and this check never matches (3 instructions per #PF, dead code).
//! A user program that jumps to LSTAR without SYSCALL only gets a system call
//! with RCX/R11 of its choosing; the syscall path validates RIP and the exit
//! path sanitises RFLAGS for exactly that reason.

use super::frame::USER_FLAGS_MASK;
use super::percpu::{PCPU_KSTACK, PCPU_STATS, PCPU_USER_RSP, STAT_SYSCALLS, STAT_SYSCALLS_VIA_PF, STAT_USER_RETURNS};
use qlib::boot::{ABI_VERSION, KERNEL_MAGIC};
use qlib::layout::selector::{USER_CS, USER_DS};

// Trap frame offsets (see frame.rs; asserted there).
// r15 0, r14 8, r13 16, r12 24, rbp 32, rbx 40, r11 48, r10 56, r9 64, r8 72,
// rax 80, rcx 88, rdx 96, rsi 104, rdi 112, vector 120, error 128, rip 136,
// cs 144, rflags 152, rsp 160, ss 168.

core::arch::global_asm!(
    // ---------------------------------------------------------------- header
    r#"
    .section .qk_header, "a"
    .balign 8
    .quad {magic}
    .long {abi}
    .long (1 << 2) | (1 << 8) | (1 << 18)       /* IST1: NMI, #DF, #MC */
    .quad _start
    .quad syscall_entry
    .quad qk_vector_table
    "#,
    // ------------------------------------------------------------------ boot
    // Every vCPU starts here: RDI = vCPU index, RSI = BootParams (direct map),
    // RSP = top of its boot stack, GS base = its per-CPU area.
    r#"
    .section .text.entry, "ax"
    .globl _start
_start:
    xorl %ebp, %ebp
    call {kmain}
    ud2
    "#,
    // --------------------------------------------------------------- syscall
    // Entry: 7 pushes of the hardware-like frame + 15 GPRs. The frame has the
    // same layout as an exception frame (vector 256 = syscall, error = nr).
    r#"
    .text
    .balign 64
    .globl syscall_entry
syscall_entry:
    swapgs
syscall_entry_after_swapgs:
    movq %rsp, %gs:{user_rsp}
    movq %gs:{kstack}, %rsp
    pushq ${user_ds}
    pushq %gs:{user_rsp}
    pushq %r11
    pushq ${user_cs}
    pushq %rcx
    pushq %rax
    pushq $256
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rax
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    call {syscall_dispatch}
    /* RAX != 0: the frame was rewritten (exec, signal, sigreturn): IRET. */
    testq %rax, %rax
    jnz ret_to_user
    /* SYSRET fast path. syscall_dispatch guarantees frame.rip < USER_END. */
    movq %gs:{stats}, %rax
    incq {stat_returns}(%rax)
    movq 152(%rsp), %r11
    andq ${flags_mask}, %r11
    orq $0x202, %r11
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    addq $8, %rsp
    popq %r10
    popq %r9
    popq %r8
    popq %rax
    addq $8, %rsp
    popq %rdx
    popq %rsi
    popq %rdi
    movq 16(%rsp), %rcx
    movq 40(%rsp), %rsp
    swapgs
    sysretq
    "#,
    // ------------------------------------------------- exceptions/interrupts
    // Common path: GS swap when coming from user mode, 15 GPRs, Rust handler.
    r#"
    .balign 16
trap_common:
    testb $3, 24(%rsp)
    jz 1f
    swapgs
1:  pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rax
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    call {trap_dispatch}
    testb $3, 144(%rsp)
    jz ret_to_kernel
    /* fall through */

    /* Return to user mode with IRET from a frame at RSP. */
    .globl ret_to_user
ret_to_user:
    andq ${flags_mask}, 152(%rsp)
    orq $0x202, 152(%rsp)
    movq %gs:{stats}, %rax
    incq {stat_returns}(%rax)
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rax
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    addq $16, %rsp
    swapgs
    iretq

ret_to_kernel:
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rax
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    addq $16, %rsp
    iretq
    "#,
    // ------------------------------------------------ #PF and the redirect
    // 3 instructions on an ordinary #PF; 5 more for a redirected SYSCALL.
    r#"
    .balign 16
vector_14:
    cmpq $syscall_entry, 8(%rsp)
    je 2f
1:  pushq $14
    jmp trap_common
2:  testb $3, 16(%rsp)
    jz 1b
    movq 32(%rsp), %rsp
    swapgs
    movq %rax, %gs:{user_rsp}
    movq %gs:{stats}, %rax
    incq {stat_via_pf}(%rax)
    movq %gs:{user_rsp}, %rax
    jmp syscall_entry_after_swapgs
    "#,
    magic = const KERNEL_MAGIC,
    abi = const ABI_VERSION,
    kmain = sym crate::kmain,
    user_rsp = const PCPU_USER_RSP,
    kstack = const PCPU_KSTACK,
    stats = const PCPU_STATS,
    user_ds = const USER_DS as u64,
    user_cs = const USER_CS as u64,
    flags_mask = const USER_FLAGS_MASK,
    syscall_dispatch = sym crate::syscalls::syscall_dispatch,
    trap_dispatch = sym super::trap::trap_dispatch,
    stat_returns = const STAT_USER_RETURNS,
    stat_via_pf = const STAT_SYSCALLS_VIA_PF,
    options(att_syntax),
);

// Per-vector stubs and the table of their addresses the host builds the IDT
// from (generated by build.rs). Vectors 8, 10-14, 17, 21, 29, 30 push an
// error code; the others push a zero so every frame has the same layout.
core::arch::global_asm!(include_str!(concat!(env!("OUT_DIR"), "/vectors.s")), options(att_syntax));

// The stats pointer points at this vCPU's VcpuStats; make sure the offsets the
// assembly uses are the struct's.
const _: () = {
    assert!(STAT_USER_RETURNS == core::mem::offset_of!(qlib::stats::VcpuStats, user_returns));
    assert!(STAT_SYSCALLS_VIA_PF == core::mem::offset_of!(qlib::stats::VcpuStats, syscalls_via_pf));
    assert!(STAT_SYSCALLS == core::mem::offset_of!(qlib::stats::VcpuStats, syscalls));
};
