//! The VMM's seccomp filter: a classic-BPF allowlist installed (on all
//! threads at once) before the first guest instruction runs. Anything not
//! listed kills the whole process (`SECCOMP_RET_KILL_PROCESS`).
//!
//! The list covers exactly what a running sandbox needs: KVM_RUN and a few
//! read-only vCPU ioctls, terminal ioctls on the stdio descriptors only,
//! stdio/log I/O, reads beneath the container root (openat2 on the root
//! descriptor), memory management without PROT_EXEC, futexes, timers and
//! thread kicks. No process creation, no sockets, no new executable memory.

use crate::kvm::ioctl as kvm;
use crate::sys::nr;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
pub const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const PROT_EXEC: u32 = 4;

// Classic BPF opcodes.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
/// Low 32 bits of AT_FDCWD (-100).
const AT_FDCWD_LO: u32 = (-100i32) as u32;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

#[derive(Clone, Copy)]
enum Target {
    Next,
    Allow,
    Kill,
    Label(usize),
}

enum Op {
    Load(u32),
    Jump {
        code: u16,
        k: u32,
        t: Target,
        f: Target,
    },
    Ret(u32),
    Label(usize),
    /// A ready instruction (a spliced fragment with internal jumps).
    Raw(Insn),
}

/// A tiny assembler resolving symbolic jump targets.
struct Asm {
    ops: Vec<Op>,
}

impl Asm {
    fn resolve(self) -> Vec<Insn> {
        // Positions of labels and of the shared ALLOW/KILL returns.
        let mut pos = Vec::new();
        let mut labels = std::collections::BTreeMap::new();
        let mut n = 0usize;
        for op in &self.ops {
            match op {
                Op::Label(l) => {
                    labels.insert(*l, n);
                }
                _ => {
                    pos.push(n);
                    n += 1;
                }
            }
        }
        let allow_at = n;
        let kill_at = n + 1;
        let mut out = Vec::with_capacity(n + 2);
        let mut i = 0usize;
        for op in &self.ops {
            let here = match op {
                Op::Label(_) => continue,
                _ => {
                    let h = pos[i];
                    i += 1;
                    h
                }
            };
            let rel = |t: &Target| -> u8 {
                let dest = match t {
                    Target::Next => here + 1,
                    Target::Allow => allow_at,
                    Target::Kill => kill_at,
                    Target::Label(l) => labels[l],
                };
                let d = dest - here - 1;
                assert!(d < 256, "seccomp program too long for a BPF jump");
                d as u8
            };
            out.push(match op {
                Op::Load(off) => Insn { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: *off },
                Op::Jump { code, k, t, f } => Insn { code: *code, jt: rel(t), jf: rel(f), k: *k },
                Op::Ret(v) => Insn { code: BPF_RET_K, jt: 0, jf: 0, k: *v },
                Op::Raw(i) => *i,
                Op::Label(_) => unreachable!(),
            });
        }
        out.push(Insn { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW });
        out.push(Insn { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS });
        out
    }
}

/// System calls allowed with any arguments.
pub const ALLOWED: &[u64] = &[
    nr::READ,
    nr::WRITE,
    nr::READV,
    nr::WRITEV,
    nr::PREADV,
    nr::PREAD64,
    nr::CLOSE,
    nr::FSTAT,
    nr::MUNMAP,
    nr::MREMAP,
    nr::MADVISE,
    nr::BRK,
    nr::FUTEX,
    nr::RT_SIGRETURN,
    nr::RT_SIGPROCMASK,
    nr::SIGALTSTACK,
    nr::TGKILL,
    nr::GETPID,
    nr::GETTID,
    nr::CLOCK_GETTIME,
    nr::CLOCK_NANOSLEEP,
    nr::NANOSLEEP,
    nr::SCHED_YIELD,
    nr::EXIT,
    nr::EXIT_GROUP,
    nr::FALLOCATE,
    nr::GETRANDOM,
    nr::RESTART_SYSCALL,
    // The hostq I/O thread: waiting for stdio and its eventfds, non-blocking
    // stdio transfers (RWF_NOWAIT).
    nr::PPOLL,
    nr::PREADV2,
    nr::PWRITEV2,
];

/// KVM ioctls a running sandbox makes (vCPU runs and reads; an interrupt
/// to vCPU 0 when the host posts events).
pub const KVM_IOCTLS: &[u64] =
    &[kvm::KVM_RUN, kvm::KVM_GET_REGS, kvm::KVM_GET_SREGS, kvm::KVM_GET_MP_STATE, kvm::KVM_SIGNAL_MSI];

/// Builds the filter.
pub fn build() -> Vec<Insn> {
    use Target::*;
    // Local ALLOW/KILL returns right after the plain allow-list: the
    // fragments below make the shared ones at the end too far for an 8-bit
    // jump.
    const EARLY_KILL: usize = 10;
    const EARLY_ALLOW: usize = 11;
    const REST: usize = 12;
    let mut ops = vec![
        Op::Load(OFF_ARCH),
        Op::Jump { code: BPF_JMP_JEQ_K, k: AUDIT_ARCH_X86_64, t: Next, f: Label(EARLY_KILL) },
        Op::Load(OFF_NR),
        Op::Jump { code: BPF_JMP_JGE_K, k: X32_SYSCALL_BIT, t: Label(EARLY_KILL), f: Next },
    ];
    for (i, &n) in ALLOWED.iter().enumerate() {
        let f = if i + 1 == ALLOWED.len() { Label(REST) } else { Next };
        ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: n as u32, t: Label(EARLY_ALLOW), f });
    }
    ops.push(Op::Label(EARLY_KILL));
    ops.push(Op::Ret(SECCOMP_RET_KILL_PROCESS));
    ops.push(Op::Label(EARLY_ALLOW));
    ops.push(Op::Ret(SECCOMP_RET_ALLOW));
    ops.push(Op::Label(REST));
    // The file service's calls with their argument rules (docs/hostfs.md),
    // after the calls allowed with any arguments so its rules only narrow
    // calls the base list does not allow; falls through with the number
    // loaded. It allows openat2 on any descriptor (handles): the resolve
    // flags the service sets and the empty root confine it.
    const IOCTL: usize = 1;
    const MMAP: usize = 2;
    const OPENAT2: usize = 3;
    const CLONE3: usize = 4;
    // The socket service's calls (docs/hostnet.md): its own argument rules,
    // falling through with the number reloaded (so its ioctl requests are
    // judged before the ioctl branch below).
    ops.extend(crate::hostnet::seccomp::fragment().into_iter().map(Op::Raw));
    ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: nr::OPENAT2 as u32, t: Label(OPENAT2), f: Next });
    ops.extend(crate::hostfs::seccomp::fragment().into_iter().map(Op::Raw));
    ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: nr::IOCTL as u32, t: Label(IOCTL), f: Next });
    ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: nr::MMAP as u32, t: Label(MMAP), f: Next });
    ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: nr::MPROTECT as u32, t: Label(MMAP), f: Next });
    ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: nr::CLONE3 as u32, t: Label(CLONE3), f: Kill });

    // ioctl: KVM vCPU requests on any descriptor; terminal requests on 0..=2.
    ops.push(Op::Label(IOCTL));
    ops.push(Op::Load(off_arg_lo(1)));
    for &r in KVM_IOCTLS {
        ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: r as u32, t: Allow, f: Next });
    }
    ops.push(Op::Load(off_arg_lo(0)));
    ops.push(Op::Jump { code: BPF_JMP_JGT_K, k: 2, t: Kill, f: Next });
    ops.push(Op::Load(off_arg_lo(1)));
    for &r in &qlib::hcall::TTY_IOCTL_ALLOWLIST {
        ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: r as u32, t: Allow, f: Next });
    }
    ops.push(Op::Ret(SECCOMP_RET_KILL_PROCESS));

    // mmap/mprotect: never executable.
    ops.push(Op::Label(MMAP));
    ops.push(Op::Load(off_arg_lo(2)));
    ops.push(Op::Jump { code: BPF_JMP_JSET_K, k: PROT_EXEC, t: Kill, f: Allow });

    // openat2: relative to a descriptor (the root or a file-service handle),
    // never to the VMM's working directory.
    ops.push(Op::Label(OPENAT2));
    ops.push(Op::Load(off_arg_lo(0)));
    ops.push(Op::Jump { code: BPF_JMP_JEQ_K, k: AT_FDCWD_LO, t: Kill, f: Allow });

    // clone3: ENOSYS, so nothing (e.g. a library) can start a thread or
    // process; glibc would fall back to clone, which is killed.
    ops.push(Op::Label(CLONE3));
    ops.push(Op::Ret(SECCOMP_RET_ERRNO | 38));
    Asm { ops }.resolve()
}

/// Runs a filter over a system call (for tests): returns the action.
pub fn evaluate(prog: &[Insn], nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            BPF_LD_W_ABS => {
                let o = ins.k as usize;
                acc = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
            }
            BPF_JMP_JEQ_K | BPF_JMP_JGE_K | BPF_JMP_JGT_K | BPF_JMP_JSET_K => {
                let taken = match ins.code {
                    BPF_JMP_JEQ_K => acc == ins.k,
                    BPF_JMP_JGE_K => acc >= ins.k,
                    BPF_JMP_JGT_K => acc > ins.k,
                    _ => acc & ins.k != 0,
                };
                pc += if taken { ins.jt } else { ins.jf } as usize;
            }
            BPF_RET_K => return ins.k,
            other => panic!("unexpected BPF opcode {other:#x}"),
        }
    }
}

/// Installs `prog` on every thread of the process (SECCOMP_FILTER_FLAG_TSYNC).
/// The caller must have set no_new_privs.
pub fn install(prog: &[Insn]) -> Result<(), crate::sys::Errno> {
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const Insn,
    }
    let f = Fprog { len: prog.len() as u16, filter: prog.as_ptr() };
    // SAFETY: `f` points at a valid BPF program that outlives the call (the
    // kernel copies it).
    let r = unsafe {
        crate::sys::syscall3(nr::SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &f as *const Fprog as u64)
    }?;
    if r != 0 {
        // TSYNC returns the id of a thread that could not be synchronised.
        return Err(crate::sys::Errno::EAGAIN);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qlib::linux::consts::ioctl as tty;

    const ROOT: i32 = 7;

    fn run(nr: u64, args: [u64; 6]) -> u32 {
        evaluate(&build(), nr as u32, args)
    }

    #[test]
    fn allows_what_a_sandbox_needs() {
        for &n in ALLOWED {
            assert_eq!(run(n, [0; 6]), SECCOMP_RET_ALLOW, "syscall {n}");
        }
        assert_eq!(run(nr::IOCTL, [9, kvm::KVM_RUN, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(nr::IOCTL, [1, tty::TCGETS, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(nr::MMAP, [0, 4096, 3, 0x22, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(nr::OPENAT2, [ROOT as u64, 0, 0, 24, 0, 0]), SECCOMP_RET_ALLOW);
        // Host sockets of the network service (docs/hostnet.md).
        assert_eq!(run(nr::SOCKET, [2, 1, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(nr::IOCTL, [700, 0x541b, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(nr::EPOLL_WAIT, [9, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    }

    #[test]
    fn refuses_everything_else() {
        for n in [nr::SOCKET, nr::EXECVE, nr::FORK, nr::CLONE, nr::OPENAT, nr::OPEN, nr::PTRACE, nr::MOUNT, nr::KILL] {
            assert_eq!(run(n, [0; 6]), SECCOMP_RET_KILL_PROCESS, "syscall {n}");
        }
        // No terminal injection, and no terminal ioctls on other descriptors.
        assert_eq!(run(nr::IOCTL, [0, tty::TIOCSTI, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(nr::IOCTL, [5, tty::TCGETS, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        // No VM-level ioctls (new memory slots, new vCPUs).
        assert_eq!(run(nr::IOCTL, [4, kvm::KVM_SET_USER_MEMORY_REGION, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(nr::IOCTL, [4, kvm::KVM_CREATE_VCPU, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        // No executable memory.
        assert_eq!(run(nr::MMAP, [0, 4096, 7, 0x22, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(nr::MPROTECT, [0x1000, 4096, 5, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        // openat2 never relative to the VMM's working directory.
        assert_eq!(run(nr::OPENAT2, [(-100i64) as u64, 0, 0, 24, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        // The test hook's forbidden call, and sockets the service never makes.
        assert_eq!(run(nr::SOCKETPAIR, [1, 1, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(nr::SOCKET, [17, 3, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        // clone3 reports ENOSYS; x32 and foreign architectures die.
        assert_eq!(run(nr::CLONE3, [0; 6]), SECCOMP_RET_ERRNO | 38);
        assert_eq!(run(nr::READ | X32_SYSCALL_BIT as u64, [0; 6]), SECCOMP_RET_KILL_PROCESS);
    }
}
