//! Kernel context switch: callee-saved registers and the stack pointer.
//! Everything else (user registers) is already in the trap frame at the top
//! of each task's kernel stack.

use super::frame::TrapFrame;

core::arch::global_asm!(
    r#"
    .text
    .balign 16
    .globl qk_switch
qk_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

    /* First instructions of a new task: finish the switch, then enter user
       mode from the trap frame just above. */
    .balign 16
    .globl qk_task_entry
qk_task_entry:
    call {first_run}
    jmp ret_to_user
    "#,
    first_run = sym crate::task::sched::task_first_run,
    options(att_syntax)
);

extern "C" {
    fn qk_switch(save: *mut u64, load: u64);
    fn qk_task_entry();
}

/// Saves the current kernel context into `*save` and resumes the one at `load`.
///
/// # Safety
/// `load` must be a context saved by `switch` or built by [`initial_context`],
/// on a stack nobody else uses; the caller keeps interrupts disabled.
#[inline]
pub unsafe fn switch(save: *mut u64, load: u64) {
    // SAFETY: upheld by the caller.
    unsafe { qk_switch(save, load) }
}

/// Prepares a new task's kernel stack so that switching to it enters user
/// mode with `frame`; returns the context to switch to.
///
/// # Safety
/// `kstack_top` must be the top of a kernel stack the new task owns.
pub unsafe fn initial_context(kstack_top: u64, frame: &TrapFrame) -> u64 {
    let frame_at = kstack_top - core::mem::size_of::<TrapFrame>() as u64;
    // SAFETY: the stack is ours and large enough for a frame plus 7 words.
    unsafe {
        (frame_at as *mut TrapFrame).write(*frame);
        let ctx = frame_at - 7 * 8;
        let words = ctx as *mut u64;
        for i in 0..6 {
            words.add(i).write(0);
        }
        words.add(6).write(qk_task_entry as *const () as u64);
        ctx
    }
}
