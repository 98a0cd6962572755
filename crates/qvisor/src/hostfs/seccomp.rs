//! What the file service adds to the VMM's seccomp allowlist
//! (confine/seccomp.rs): the host system calls it makes while the guest
//! runs, with argument constraints where a register argument can express
//! one (flags that forbid following symlinks or `AT_EMPTY_PATH` links, no
//! device nodes, no whiteouts).
//!
//! Paths and `struct open_how` are behind pointers, which seccomp cannot
//! read: path confinement comes from `openat2`'s resolve flags and the
//! fd-relative calls (service.rs), and from the VMM's filesystem view (an
//! empty read-only root after `pivot_root`, with the container root reachable
//! only through its descriptor).
//!
//! [`SECCOMP_SYSCALLS`] lists every call; [`SECCOMP_RULES`] adds the
//! constraints; [`fragment`] compiles the rules to classic BPF that composes
//! with an existing filter; [`standalone_filter`] builds a complete filter
//! the tests install to prove the service runs under it.

use crate::confine::seccomp::{Insn, SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS};
use crate::sys::nr;
use qlib::linux::consts::mode::{S_IFIFO, S_IFMT, S_IFREG, S_IFSOCK};

const F_GETFD: u32 = 1;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
const AT_REMOVEDIR: u32 = 0x200;
const AT_EMPTY_PATH: u32 = 0x1000;

/// One argument check: `(low 32 bits of argument arg) & mask` equals one
/// of `one_of` (every constrained argument is an `int`/`unsigned int` or a
/// mode in the kernel, which ignores the high bits).
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub arg: u8,
    pub mask: u32,
    pub one_of: &'static [u32],
}

/// A system call the service makes, allowed when all its checks hold (no
/// checks: any arguments). A call whose checks fail kills the process.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub nr: u64,
    pub name: &'static str,
    pub checks: &'static [Check],
}

const fn is(arg: u8, one_of: &'static [u32]) -> Check {
    Check { arg, mask: u32::MAX, one_of }
}

const ANY: &[Check] = &[];
const NOFOLLOW_OR_EMPTY: &[u32] = &[AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW];
const EMPTY_NOFOLLOW: &[u32] = &[AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW];
const NOFOLLOW: &[u32] = &[AT_SYMLINK_NOFOLLOW];

/// The rules, one per system call.
pub const SECCOMP_RULES: &[Rule] = &[
    Rule { nr: nr::OPENAT2, name: "openat2", checks: ANY },
    Rule { nr: nr::CLOSE, name: "close", checks: ANY },
    // Closing an `OwnedFd` in a build with debug assertions first checks
    // the descriptor with fcntl(fd, F_GETFD) (std's IO-safety check).
    Rule { nr: nr::FCNTL, name: "fcntl", checks: &[is(1, &[F_GETFD])] },
    Rule { nr: nr::FSTAT, name: "fstat", checks: ANY },
    Rule { nr: nr::NEWFSTATAT, name: "newfstatat", checks: &[is(3, NOFOLLOW)] },
    Rule { nr: nr::STATX, name: "statx", checks: &[is(2, EMPTY_NOFOLLOW)] },
    Rule { nr: nr::FSTATFS, name: "fstatfs", checks: ANY },
    Rule { nr: nr::GETDENTS64, name: "getdents64", checks: ANY },
    Rule { nr: nr::READLINKAT, name: "readlinkat", checks: ANY },
    Rule { nr: nr::PREADV, name: "preadv", checks: ANY },
    Rule { nr: nr::PWRITEV, name: "pwritev", checks: ANY },
    Rule { nr: nr::READV, name: "readv", checks: ANY },
    Rule { nr: nr::WRITEV, name: "writev", checks: ANY },
    Rule { nr: nr::LSEEK, name: "lseek", checks: ANY },
    Rule { nr: nr::FSYNC, name: "fsync", checks: ANY },
    Rule { nr: nr::FDATASYNC, name: "fdatasync", checks: ANY },
    Rule { nr: nr::FTRUNCATE, name: "ftruncate", checks: ANY },
    Rule { nr: nr::FALLOCATE, name: "fallocate", checks: ANY },
    Rule { nr: nr::MKDIRAT, name: "mkdirat", checks: ANY },
    Rule {
        nr: nr::MKNODAT,
        name: "mknodat",
        checks: &[Check { arg: 2, mask: S_IFMT, one_of: &[0, S_IFREG, S_IFIFO, S_IFSOCK] }],
    },
    Rule { nr: nr::UNLINKAT, name: "unlinkat", checks: &[is(2, &[0, AT_REMOVEDIR])] },
    Rule { nr: nr::RENAMEAT2, name: "renameat2", checks: &[is(4, &[0, 1, 2])] },
    Rule { nr: nr::LINKAT, name: "linkat", checks: &[is(4, &[0])] },
    Rule { nr: nr::SYMLINKAT, name: "symlinkat", checks: ANY },
    Rule { nr: nr::FCHMOD, name: "fchmod", checks: ANY },
    Rule { nr: nr::FCHMODAT2, name: "fchmodat2", checks: &[is(3, NOFOLLOW_OR_EMPTY)] },
    Rule { nr: nr::FCHOWNAT, name: "fchownat", checks: &[is(4, NOFOLLOW_OR_EMPTY)] },
    Rule { nr: nr::UTIMENSAT, name: "utimensat", checks: &[is(3, NOFOLLOW_OR_EMPTY)] },
    Rule { nr: nr::FGETXATTR, name: "fgetxattr", checks: ANY },
    Rule { nr: nr::FSETXATTR, name: "fsetxattr", checks: ANY },
    Rule { nr: nr::FLISTXATTR, name: "flistxattr", checks: ANY },
    Rule { nr: nr::FREMOVEXATTR, name: "fremovexattr", checks: ANY },
    Rule { nr: nr::GETXATTRAT, name: "getxattrat", checks: &[is(2, NOFOLLOW)] },
    Rule { nr: nr::SETXATTRAT, name: "setxattrat", checks: &[is(2, NOFOLLOW)] },
    Rule { nr: nr::LISTXATTRAT, name: "listxattrat", checks: &[is(2, NOFOLLOW)] },
    Rule { nr: nr::REMOVEXATTRAT, name: "removexattrat", checks: &[is(2, NOFOLLOW)] },
];

/// Every system call the service makes after start-up (the numbers of
/// [`SECCOMP_RULES`], in the same order). Several are in the base allowlist
/// already (close, fstat, preadv, readv, writev, fallocate).
pub const SECCOMP_SYSCALLS: &[u64] = &{
    let mut v = [0u64; SECCOMP_RULES.len()];
    let mut i = 0;
    while i < v.len() {
        v[i] = SECCOMP_RULES[i].nr;
        i += 1;
    }
    v
};

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const PROT_EXEC: u32 = 4;

const fn arg_lo(i: u8) -> u32 {
    16 + 8 * i as u32
}

fn ins(code: u16, jt: usize, jf: usize, k: u32) -> Insn {
    let j = |d: usize| u8::try_from(d).expect("BPF jump too long");
    Insn { code, jt: j(jt), jf: j(jf), k }
}

/// The body of one rule: its checks, then RET ALLOW; a failed check jumps
/// to a RET KILL at the end.
fn body(checks: &[Check]) -> Vec<Insn> {
    if checks.is_empty() {
        return vec![ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)];
    }
    let size: usize = checks.iter().map(|c| 1 + usize::from(c.mask != u32::MAX) + c.one_of.len()).sum::<usize>() + 2;
    let kill = size - 1;
    let mut out = Vec::with_capacity(size);
    for c in checks {
        out.push(ins(BPF_LD_W_ABS, 0, 0, arg_lo(c.arg)));
        if c.mask != u32::MAX {
            out.push(ins(BPF_ALU_AND_K, 0, 0, c.mask));
        }
        let k = c.one_of.len();
        for (j, &v) in c.one_of.iter().enumerate() {
            let here = out.len();
            // Match: to the first instruction after this check's list.
            let t = k - 1 - j;
            // No match: the next value, or KILL after the last one.
            let f = if j + 1 < k { 0 } else { kill - here - 1 };
            out.push(ins(BPF_JMP_JEQ_K, t, f, v));
        }
    }
    out.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    out.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS));
    debug_assert_eq!(out.len(), size);
    out
}

/// Classic BPF for [`SECCOMP_RULES`]: loads the system call number, returns
/// ALLOW (or KILL when the arguments break a rule) for the calls listed, and
/// otherwise falls through to the next instruction with the number in the
/// accumulator, so it can be spliced into a filter right after the number is
/// loaded (before the filter's final KILL).
pub fn fragment() -> Vec<Insn> {
    let mut out = vec![ins(BPF_LD_W_ABS, 0, 0, 0)];
    for r in SECCOMP_RULES {
        let b = body(r.checks);
        out.push(ins(BPF_JMP_JEQ_K, 0, b.len(), r.nr as u32));
        out.extend(b);
    }
    out
}

/// A complete filter: architecture and x32 checks, the calls in `base` with
/// any arguments, mmap/mprotect without PROT_EXEC, then [`fragment`];
/// anything else kills the process. The tests install it (with `base` =
/// `confine::seccomp::ALLOWED`) to prove the service runs under it.
pub fn standalone_filter(base: &[u64]) -> Vec<Insn> {
    let mut p = vec![
        ins(BPF_LD_W_ABS, 0, 0, 4),
        ins(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        ins(BPF_LD_W_ABS, 0, 0, 0),
        ins(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
    ];
    for &n in base {
        p.push(ins(BPF_JMP_JEQ_K, 0, 1, n as u32));
        p.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    }
    for n in [nr::MMAP, nr::MPROTECT] {
        // nr == n: kill with PROT_EXEC, else allow; otherwise skip the four
        // instructions (the number stays loaded).
        p.push(ins(BPF_JMP_JEQ_K, 0, 4, n as u32));
        p.push(ins(BPF_LD_W_ABS, 0, 0, arg_lo(2)));
        p.push(ins(BPF_JMP_JSET_K, 1, 0, PROT_EXEC));
        p.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
        p.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS));
    }
    p.extend(fragment());
    p.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS));
    p
}

/// Runs a filter over a system call in user space (for tests): returns the
/// action. Supports the instructions this module and confine/seccomp.rs
/// emit.
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
        let i = prog[pc];
        pc += 1;
        match i.code {
            BPF_LD_W_ABS => {
                let o = i.k as usize;
                acc = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
            }
            BPF_ALU_AND_K => acc &= i.k,
            BPF_JMP_JEQ_K | BPF_JMP_JGE_K | BPF_JMP_JSET_K | 0x25 => {
                let taken = match i.code {
                    BPF_JMP_JEQ_K => acc == i.k,
                    BPF_JMP_JGE_K => acc >= i.k,
                    BPF_JMP_JSET_K => acc & i.k != 0,
                    _ => acc > i.k,
                };
                pc += if taken { i.jt } else { i.jf } as usize;
            }
            BPF_RET_K => return i.k,
            other => panic!("unexpected BPF opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: u32 = SECCOMP_RET_ALLOW;
    const KILL: u32 = SECCOMP_RET_KILL_PROCESS;

    fn run(n: u64, args: [u64; 6]) -> u32 {
        evaluate(&standalone_filter(&[nr::EXIT_GROUP]), n as u32, args)
    }

    #[test]
    fn every_rule_allows_its_intended_use() {
        for r in SECCOMP_RULES {
            let mut args = [0u64; 6];
            for c in r.checks {
                args[c.arg as usize] = c.one_of[c.one_of.len() - 1] as u64;
            }
            assert_eq!(run(r.nr, args), ALLOW, "{}", r.name);
        }
        assert_eq!(SECCOMP_SYSCALLS.len(), SECCOMP_RULES.len());
        assert!(SECCOMP_SYSCALLS.contains(&nr::OPENAT2));
    }

    #[test]
    fn constraints_hold() {
        // Devices are never created; FIFOs, sockets and files are.
        assert_eq!(run(nr::MKNODAT, [3, 0, 0o010644, 0, 0, 0]), ALLOW);
        assert_eq!(run(nr::MKNODAT, [3, 0, 0o140755, 0, 0, 0]), ALLOW);
        assert_eq!(run(nr::MKNODAT, [3, 0, 0o100600, 0, 0, 0]), ALLOW);
        assert_eq!(run(nr::MKNODAT, [3, 0, 0o020666, 0x103, 0, 0]), KILL);
        assert_eq!(run(nr::MKNODAT, [3, 0, 0o060666, 0x700, 0, 0]), KILL);
        // No AT_EMPTY_PATH / AT_SYMLINK_FOLLOW links.
        assert_eq!(run(nr::LINKAT, [3, 0, 4, 0, 0x1000, 0]), KILL);
        assert_eq!(run(nr::LINKAT, [3, 0, 4, 0, 0x400, 0]), KILL);
        // No following stat, chmod, chown, utimes.
        assert_eq!(run(nr::NEWFSTATAT, [3, 0, 0, 0, 0, 0]), KILL);
        assert_eq!(run(nr::FCHOWNAT, [3, 0, 0, 0, 0, 0]), KILL);
        assert_eq!(run(nr::FCHMODAT2, [3, 0, 0o644, 0, 0, 0]), KILL);
        assert_eq!(run(nr::UTIMENSAT, [3, 0, 0, 0, 0, 0]), KILL);
        assert_eq!(run(nr::UTIMENSAT, [3, 0, 0, AT_SYMLINK_NOFOLLOW as u64, 0, 0]), ALLOW);
        // fcntl only reads descriptor flags.
        assert_eq!(run(nr::FCNTL, [3, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(nr::FCNTL, [3, 2, 0, 0, 0, 0]), KILL);
        assert_eq!(run(nr::FCNTL, [3, 0, 0, 0, 0, 0]), KILL, "no F_DUPFD");
        // No whiteouts.
        assert_eq!(run(nr::RENAMEAT2, [3, 0, 4, 0, 4, 0]), KILL);
        assert_eq!(run(nr::RENAMEAT2, [3, 0, 4, 0, 2, 0]), ALLOW);
        // The high half of a constrained argument is ignored, like the kernel does.
        assert_eq!(run(nr::UNLINKAT, [3, 0, (1 << 32) | 0x200, 0, 0, 0]), ALLOW);
        // Calls outside the rules fall through to the filter's KILL.
        for n in [nr::OPENAT, nr::OPEN, nr::MKNOD, nr::LINK, nr::CHMOD, nr::SETXATTR, nr::LSETXATTR, nr::SOCKET] {
            assert_eq!(run(n, [0; 6]), KILL, "syscall {n}");
        }
        assert_eq!(run(nr::EXIT_GROUP, [0; 6]), ALLOW);
        assert_eq!(run(nr::MMAP, [0, 4096, 7, 0x22, 0, 0]), KILL);
        assert_eq!(run(nr::MMAP, [0, 4096, 3, 0x22, 0, 0]), ALLOW);
    }

    #[test]
    fn the_fragment_falls_through_with_the_number_loaded() {
        let mut p = fragment();
        // After the fragment: allow only syscall 999 (the number must still
        // be in the accumulator), kill the rest.
        p.push(ins(BPF_JMP_JEQ_K, 0, 1, 999));
        p.push(ins(BPF_RET_K, 0, 0, ALLOW));
        p.push(ins(BPF_RET_K, 0, 0, KILL));
        assert_eq!(evaluate(&p, 999, [0; 6]), ALLOW);
        assert_eq!(evaluate(&p, 998, [0; 6]), KILL);
        assert_eq!(evaluate(&p, nr::GETDENTS64 as u32, [0; 6]), ALLOW);
    }
}
