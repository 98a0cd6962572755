//! The trap frame: user (or interrupted kernel) registers saved on the kernel
//! stack by every entry path, in one layout for SYSCALL, exceptions and
//! interrupts.

/// Vector number recorded for a system call.
pub const VECTOR_SYSCALL: u64 = 256;

/// RFLAGS bits a user program may control: CF PF AF ZF SF TF DF OF AC ID.
/// Everything else (IOPL, NT, RF, VM, VIF, VIP) is cleared, and IF and bit 1
/// are set, on every return to user mode — so no path (a forged SYSCALL
/// entry, sigreturn) can hand user mode the I/O privilege level.
pub const USER_FLAGS_MASK: u64 = 0x0024_4dd5;
/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 0x200;

/// Registers saved at kernel entry. Field order is the push order reversed;
/// `entry.rs` hard-codes these offsets (checked below).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Exception/interrupt vector, or [`VECTOR_SYSCALL`].
    pub vector: u64,
    /// Hardware error code; for system calls the original RAX (the number).
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// True when the frame was saved from user mode.
    #[inline(always)]
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(TrapFrame, rax) == 80);
    assert!(offset_of!(TrapFrame, vector) == 120);
    assert!(offset_of!(TrapFrame, rip) == 136);
    assert!(offset_of!(TrapFrame, cs) == 144);
    assert!(offset_of!(TrapFrame, rflags) == 152);
    assert!(offset_of!(TrapFrame, rsp) == 160);
    assert!(core::mem::size_of::<TrapFrame>() == 176);
};
