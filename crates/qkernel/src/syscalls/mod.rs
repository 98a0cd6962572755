//! System call dispatch and the support table.
//!
//! [`TABLE`] below is the single list of implemented system calls: number,
//! name, handler, support level and a note. `docs/syscalls.md` is generated
//! from it (`node scripts/gen-syscalls-doc.mjs`; `npm test` checks it is
//! current). Numbers not in the table return ENOSYS and are logged once per
//! number; they never stop the guest.
//!
//! Handlers live one file per family (`sys_*.rs`) and take the user trap
//! frame: arguments in rdi, rsi, rdx, r10, r8, r9.

pub mod sys_file;
pub mod sys_fs;
pub mod sys_futex;
pub mod sys_identity;
pub mod sys_info;
pub mod sys_mmap;
pub mod sys_poll;
pub mod sys_signal;
pub mod sys_socket;
pub mod sys_test;
pub mod sys_thread;
pub mod sys_time;

use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::percpu;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::layout::USER_END;
use qlib::linux::sysno;
use qlib::linux::Errno;

/// A handler's result: the return value or an error number.
pub type SysResult = Result<u64, Errno>;
/// A system call handler.
pub type Handler = fn(&mut TrapFrame) -> SysResult;

/// How completely a system call is implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Linux semantics.
    Full,
    /// Works for common uses; the note says what is missing.
    Partial,
    /// Deliberately returns ENOSYS (callers have a fallback).
    NoSys,
}

/// Number of table slots (x86-64 numbers 0..=467).
pub const NR_SYSCALLS: usize = 468;

macro_rules! syscall_table {
    ($( $nr:literal $name:ident => $handler:path, $support:ident, $note:literal; )*) => {
        /// (number, name, support, note) of every entry, for documentation.
        pub const ENTRIES: &[(u64, &str, Support, &str)] = &[
            $( ($nr, stringify!($name), Support::$support, $note), )*
        ];

        /// Handlers indexed by number.
        pub static TABLE: [Option<Handler>; NR_SYSCALLS] = {
            let mut t: [Option<Handler>; NR_SYSCALLS] = [None; NR_SYSCALLS];
            $( t[$nr] = Some($handler as Handler); )*
            t
        };
    };
}

// One line per system call: `nr name => handler, Full|Partial|NoSys, "note";`
// (scripts/gen-syscalls-doc.mjs parses these lines).
syscall_table! {
    0 read => sys_file::read, Full, "";
    1 write => sys_file::write, Full, "";
    2 open => sys_fs::open, Full, "";
    3 close => sys_file::close, Full, "";
    4 stat => sys_fs::stat, Full, "";
    5 fstat => sys_file::fstat, Full, "";
    6 lstat => sys_fs::lstat, Full, "";
    7 poll => sys_poll::poll, Full, "";
    8 lseek => sys_file::lseek, Partial, "SEEK_DATA/SEEK_HOLE treat the whole file as data";
    9 mmap => sys_mmap::mmap, Partial, "anonymous mappings (private and shared)";
    10 mprotect => sys_mmap::mprotect, Full, "";
    11 munmap => sys_mmap::munmap, Full, "";
    12 brk => sys_mmap::brk, Full, "";
    13 rt_sigaction => sys_signal::rt_sigaction, Full, "";
    14 rt_sigprocmask => sys_signal::rt_sigprocmask, Full, "";
    15 rt_sigreturn => sys_signal::rt_sigreturn, Partial, "FXSAVE state only (no AVX upper halves) in signal frames";
    16 ioctl => sys_file::ioctl, Partial, "FIONBIO, FIOCLEX, FIONCLEX, FIONREAD; terminal requests on stdio; pipes";
    17 pread64 => sys_file::pread64, Full, "";
    18 pwrite64 => sys_file::pwrite64, Full, "";
    19 readv => sys_file::readv, Full, "";
    20 writev => sys_file::writev, Full, "";
    21 access => sys_fs::access, Full, "";
    22 pipe => sys_file::pipe, Full, "";
    23 select => sys_poll::select, Full, "";
    24 sched_yield => sys_thread::sched_yield, Full, "";
    25 mremap => sys_mmap::mremap, Partial, "MAYMOVE and FIXED; no DONTUNMAP";
    26 msync => sys_mmap::msync, Partial, "anonymous memory only";
    27 mincore => sys_mmap::mincore, Full, "";
    28 madvise => sys_mmap::madvise, Partial, "DONTNEED and FREE drop pages; other advice is accepted as a hint";
    32 dup => sys_file::dup, Full, "";
    33 dup2 => sys_file::dup2, Full, "";
    34 pause => sys_signal::pause, Full, "";
    35 nanosleep => sys_time::nanosleep, Full, "";
    36 getitimer => sys_time::getitimer, Partial, "ITIMER_VIRTUAL and ITIMER_PROF both count all CPU time";
    37 alarm => sys_time::alarm, Full, "";
    38 setitimer => sys_time::setitimer, Partial, "ITIMER_VIRTUAL and ITIMER_PROF both count all CPU time";
    39 getpid => sys_thread::getpid, Full, "";
    40 sendfile => sys_file::sendfile, Partial, "copies through a 64 KiB kernel buffer";
    41 socket => sys_socket::socket, Full, "AF_INET/AF_INET6 TCP and UDP over host sockets; AF_UNIX stream, dgram, seqpacket; AF_NETLINK NETLINK_ROUTE (read-only)";
    42 connect => sys_socket::connect, Full, "";
    43 accept => sys_socket::accept, Full, "";
    44 sendto => sys_socket::sendto, Full, "";
    45 recvfrom => sys_socket::recvfrom, Full, "";
    46 sendmsg => sys_socket::sendmsg, Partial, "SCM_RIGHTS and SCM_CREDENTIALS on AF_UNIX; no IP ancillary data";
    47 recvmsg => sys_socket::recvmsg, Partial, "SCM_RIGHTS and SCM_CREDENTIALS on AF_UNIX; no IP ancillary data, no MSG_ERRQUEUE";
    48 shutdown => sys_socket::shutdown, Full, "";
    49 bind => sys_socket::bind, Full, "";
    50 listen => sys_socket::listen, Full, "";
    51 getsockname => sys_socket::getsockname, Full, "";
    52 getpeername => sys_socket::getpeername, Full, "";
    53 socketpair => sys_socket::socketpair, Full, "AF_UNIX";
    54 setsockopt => sys_socket::setsockopt, Partial, "the host allowlist for AF_INET (docs/hostnet.md); SO_RCVTIMEO/SO_SNDTIMEO, SO_PASSCRED in the guest";
    55 getsockopt => sys_socket::getsockopt, Partial, "as setsockopt; SO_PEERCRED on AF_UNIX";
    56 clone => sys_thread::clone, Partial, "no namespaces, no CLONE_PIDFD";
    57 fork => sys_thread::fork, Full, "";
    58 vfork => sys_thread::vfork, Full, "";
    59 execve => sys_thread::execve, Partial, "static ELF programs until the VFS exists";
    60 exit => sys_thread::exit, Full, "";
    61 wait4 => sys_thread::wait4, Partial, "rusage reports CPU time only";
    62 kill => sys_signal::kill, Full, "";
    63 uname => sys_info::uname, Full, "";
    72 fcntl => sys_file::fcntl, Partial, "record locks are granted without contention tracking; no seals";
    73 flock => sys_file::flock, Partial, "locks are granted without contention tracking";
    74 fsync => sys_file::fsync, Full, "";
    75 fdatasync => sys_file::fsync, Full, "";
    76 truncate => sys_fs::truncate, Full, "";
    77 ftruncate => sys_file::ftruncate, Full, "";
    79 getcwd => sys_fs::getcwd, Full, "";
    80 chdir => sys_fs::chdir, Full, "";
    81 fchdir => sys_fs::fchdir, Full, "";
    82 rename => sys_fs::rename, Full, "";
    83 mkdir => sys_fs::mkdir, Full, "";
    84 rmdir => sys_fs::rmdir, Full, "";
    85 creat => sys_fs::creat, Full, "";
    86 link => sys_fs::link, Full, "";
    87 unlink => sys_fs::unlink, Full, "";
    88 symlink => sys_fs::symlink, Full, "";
    89 readlink => sys_fs::readlink, Full, "";
    90 chmod => sys_fs::chmod, Full, "";
    91 fchmod => sys_fs::fchmod, Full, "";
    92 chown => sys_fs::chown, Full, "";
    93 fchown => sys_fs::fchown, Full, "";
    94 lchown => sys_fs::lchown, Full, "";
    95 umask => sys_fs::umask, Full, "";
    96 gettimeofday => sys_time::gettimeofday, Full, "";
    97 getrlimit => sys_thread::getrlimit, Full, "";
    98 getrusage => sys_thread::getrusage, Partial, "CPU time only";
    99 sysinfo => sys_fs::sysinfo, Full, "";
    100 times => sys_thread::times, Partial, "all CPU time counts as user time";
    102 getuid => sys_identity::getuid, Full, "";
    104 getgid => sys_identity::getgid, Full, "";
    105 setuid => sys_identity::setuid, Full, "";
    106 setgid => sys_identity::setgid, Full, "";
    107 geteuid => sys_identity::geteuid, Full, "";
    108 getegid => sys_identity::getegid, Full, "";
    109 setpgid => sys_thread::setpgid, Full, "";
    110 getppid => sys_thread::getppid, Full, "";
    111 getpgrp => sys_thread::getpgrp, Full, "";
    112 setsid => sys_thread::setsid, Full, "";
    113 setreuid => sys_identity::setreuid, Full, "";
    114 setregid => sys_identity::setregid, Full, "";
    115 getgroups => sys_identity::getgroups, Full, "";
    116 setgroups => sys_identity::setgroups, Full, "";
    117 setresuid => sys_identity::setresuid, Full, "";
    118 getresuid => sys_identity::getresuid, Full, "";
    119 setresgid => sys_identity::setresgid, Full, "";
    120 getresgid => sys_identity::getresgid, Full, "";
    121 getpgid => sys_thread::getpgid, Full, "";
    122 setfsuid => sys_identity::setfsuid, Full, "";
    123 setfsgid => sys_identity::setfsgid, Full, "";
    124 getsid => sys_thread::getsid, Full, "";
    125 capget => sys_identity::capget, Full, "";
    126 capset => sys_identity::capset, Full, "";
    127 rt_sigpending => sys_signal::rt_sigpending, Full, "";
    128 rt_sigtimedwait => sys_signal::rt_sigtimedwait, Full, "";
    129 rt_sigqueueinfo => sys_signal::rt_sigqueueinfo, Full, "";
    130 rt_sigsuspend => sys_signal::rt_sigsuspend, Full, "";
    131 sigaltstack => sys_signal::sigaltstack, Full, "";
    133 mknod => sys_fs::mknod, Partial, "device nodes only where the file system holds them (tmpfs, devfs)";
    137 statfs => sys_fs::statfs, Full, "";
    138 fstatfs => sys_fs::fstatfs, Full, "";
    140 getpriority => sys_thread::getpriority, Full, "";
    141 setpriority => sys_thread::setpriority, Full, "";
    142 sched_setparam => sys_thread::sched_setparam, Partial, "recorded; every task is scheduled round-robin";
    143 sched_getparam => sys_thread::sched_getparam, Full, "";
    144 sched_setscheduler => sys_thread::sched_setscheduler, Partial, "recorded; every task is scheduled round-robin";
    145 sched_getscheduler => sys_thread::sched_getscheduler, Full, "";
    146 sched_get_priority_max => sys_thread::sched_get_priority_max, Full, "";
    147 sched_get_priority_min => sys_thread::sched_get_priority_min, Full, "";
    148 sched_rr_get_interval => sys_thread::sched_rr_get_interval, Full, "";
    157 prctl => sys_thread::prctl, Partial, "names, death signal, dumpable, capability bounding set";
    158 arch_prctl => sys_thread::arch_prctl, Partial, "ARCH_SET/GET_FS/GS";
    160 setrlimit => sys_thread::setrlimit, Full, "";
    161 chroot => sys_fs::chroot, Full, "";
    162 sync => sys_fs::sync, Full, "";
    165 mount => sys_fs::mount, Partial, "tmpfs, proc, sysfs, devtmpfs, bind mounts and remounts; needs CAP_SYS_ADMIN";
    166 umount2 => sys_fs::umount2, Partial, "MNT_DETACH and MNT_FORCE act as a plain unmount";
    170 sethostname => sys_identity::sethostname, Partial, "EPERM: needs CAP_SYS_ADMIN, which a sandbox never grants";
    171 setdomainname => sys_identity::setdomainname, Partial, "EPERM: needs CAP_SYS_ADMIN, which a sandbox never grants";
    186 gettid => sys_thread::gettid, Full, "";
    200 tkill => sys_signal::tkill, Full, "";
    201 time => sys_time::time_, Full, "";
    202 futex => sys_futex::futex, Partial, "priority-inheritance operations return ENOSYS";
    203 sched_setaffinity => sys_thread::sched_setaffinity, Full, "";
    204 sched_getaffinity => sys_thread::sched_getaffinity, Full, "";
    213 epoll_create => sys_poll::epoll_create, Full, "";
    217 getdents64 => sys_file::getdents64, Full, "";
    218 set_tid_address => sys_thread::set_tid_address, Full, "";
    221 fadvise64 => sys_fs::fadvise64, Full, "advice is a hint";
    222 timer_create => sys_time::timer_create, Partial, "SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID";
    223 timer_settime => sys_time::timer_settime, Full, "";
    224 timer_gettime => sys_time::timer_gettime, Full, "";
    225 timer_getoverrun => sys_time::timer_getoverrun, Full, "";
    226 timer_delete => sys_time::timer_delete, Full, "";
    228 clock_gettime => sys_time::clock_gettime, Full, "";
    229 clock_getres => sys_time::clock_getres, Full, "";
    230 clock_nanosleep => sys_time::clock_nanosleep, Full, "";
    231 exit_group => sys_thread::exit_group, Full, "";
    232 epoll_wait => sys_poll::epoll_wait, Full, "";
    233 epoll_ctl => sys_poll::epoll_ctl, Partial, "EPOLLEXCLUSIVE wakes every waiter";
    234 tgkill => sys_signal::tgkill, Full, "";
    247 waitid => sys_thread::waitid, Partial, "rusage reports CPU time only";
    257 openat => sys_fs::openat, Full, "";
    258 mkdirat => sys_fs::mkdirat, Full, "";
    259 mknodat => sys_fs::mknodat, Partial, "device nodes only where the file system holds them (tmpfs, devfs)";
    260 fchownat => sys_fs::fchownat, Full, "";
    262 newfstatat => sys_fs::newfstatat, Full, "";
    263 unlinkat => sys_fs::unlinkat, Full, "";
    264 renameat => sys_fs::renameat, Full, "";
    265 linkat => sys_fs::linkat, Full, "";
    266 symlinkat => sys_fs::symlinkat, Full, "";
    267 readlinkat => sys_fs::readlinkat, Full, "";
    268 fchmodat => sys_fs::fchmodat, Full, "";
    269 faccessat => sys_fs::faccessat, Full, "";
    270 pselect6 => sys_poll::pselect6, Full, "";
    271 ppoll => sys_poll::ppoll, Full, "";
    273 set_robust_list => sys_thread::set_robust_list, Full, "";
    274 get_robust_list => sys_thread::get_robust_list, Full, "";
    275 splice => sys_fs::splice, Partial, "copies through a kernel buffer, at most 64 KiB per call";
    280 utimensat => sys_fs::utimensat, Full, "";
    281 epoll_pwait => sys_poll::epoll_pwait, Full, "";
    282 signalfd => sys_poll::signalfd, Full, "";
    283 timerfd_create => sys_poll::timerfd_create, Full, "";
    284 eventfd => sys_poll::eventfd, Full, "";
    285 fallocate => sys_file::fallocate, Partial, "mode 0 only";
    286 timerfd_settime => sys_poll::timerfd_settime, Partial, "TFD_TIMER_CANCEL_ON_SET is accepted and ignored";
    287 timerfd_gettime => sys_poll::timerfd_gettime, Full, "";
    288 accept4 => sys_socket::accept4, Full, "";
    289 signalfd4 => sys_poll::signalfd4, Full, "";
    290 eventfd2 => sys_poll::eventfd2, Full, "";
    291 epoll_create1 => sys_poll::epoll_create1, Full, "";
    292 dup3 => sys_file::dup3, Full, "";
    293 pipe2 => sys_file::pipe2, Full, "";
    295 preadv => sys_file::preadv, Full, "";
    296 pwritev => sys_file::pwritev, Full, "";
    297 rt_tgsigqueueinfo => sys_signal::rt_tgsigqueueinfo, Full, "";
    299 recvmmsg => sys_socket::recvmmsg, Full, "one host request per message";
    302 prlimit64 => sys_thread::prlimit64, Full, "";
    306 syncfs => sys_fs::syncfs, Full, "";
    307 sendmmsg => sys_socket::sendmmsg, Full, "one host request per message";
    309 getcpu => sys_thread::getcpu, Full, "";
    316 renameat2 => sys_fs::renameat2, Partial, "no RENAME_WHITEOUT";
    318 getrandom => sys_info::getrandom, Full, "";
    322 execveat => sys_thread::execveat, Partial, "absolute or cwd-relative paths until the VFS exists";
    326 copy_file_range => sys_fs::copy_file_range, Partial, "copies through a kernel buffer";
    327 preadv2 => sys_file::preadv2, Partial, "flags ignored";
    328 pwritev2 => sys_file::pwritev2, Partial, "flags ignored";
    332 statx => sys_fs::statx, Partial, "basic fields; no birth time, mount id or attributes";
    334 rseq => sys_thread::rseq, NoSys, "glibc runs without restartable sequences";
    435 clone3 => sys_thread::clone3, Partial, "as clone";
    436 close_range => sys_file::close_range, Partial, "CLOSE_RANGE_UNSHARE is treated as plain close";
    437 openat2 => sys_fs::openat2, Partial, "resolve restrictions (RESOLVE_*) return EINVAL";
    439 faccessat2 => sys_fs::faccessat2, Full, "";
    441 epoll_pwait2 => sys_poll::epoll_pwait2, Full, "";
}

/// Numbers already reported as unimplemented (one log line per number).
static REPORTED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn not_implemented(nr: u64) -> SysResult {
    let (word, bit) = ((nr / 64) as usize, nr % 64);
    let first = match REPORTED.get(word) {
        Some(w) => w.fetch_or(1 << bit, Ordering::Relaxed) & (1 << bit) == 0,
        None => false, // out-of-range numbers are not worth a line each
    };
    if first {
        crate::klog!(
            crate::log::level::WARN,
            "unimplemented syscall ",
            nr,
            " (",
            sysno::name(nr).unwrap_or("unknown"),
            "): returning ENOSYS"
        );
    }
    Err(Errno::ENOSYS)
}

/// Called by the SYSCALL entry with the saved user frame. Returns non-zero
/// when the frame was rewritten and the exit must use IRET.
#[no_mangle]
pub extern "C" fn syscall_dispatch(f: &mut TrapFrame) -> u64 {
    percpu::stats().syscalls += 1;
    // A user program that jumps to the entry without SYSCALL chooses RCX (the
    // return RIP); SYSRET to a non-canonical RIP would fault in the kernel.
    if f.rip >= USER_END {
        crate::task::signal::force_fault(qlib::linux::consts::signal::SIGSEGV, crate::task::signal::code::SI_KERNEL, 0);
        f.rip = 0;
        crate::task::signal::exit_to_user(f);
        return 1;
    }
    let nr = f.rax;
    crate::stats::syscall(nr);
    let res = match TABLE.get(nr as usize) {
        Some(Some(h)) => h(f),
        _ => {
            if nr == sys_test::NR_QUARK_TEST {
                sys_test::quark_test(f)
            } else {
                not_implemented(nr)
            }
        }
    };
    f.rax = match res {
        Ok(v) => v,
        Err(e) => e.to_ret() as u64,
    };
    if crate::boot::params().flags & qlib::boot::flags::STRACE != 0 {
        trace(nr, f);
    }
    crate::task::signal::exit_to_user(f) as u64
}

/// One `--strace` line: `tid name(args) = result`. The arguments are those
/// still in the frame (handlers may have rewritten some, e.g. execve).
#[cold]
fn trace(nr: u64, f: &TrapFrame) {
    use crate::log::Hex;
    let a = args(f);
    let tid = crate::task::current().tid as u64;
    let name = sysno::name(nr).unwrap_or("?");
    let ret = f.rax as i64;
    if (-4095..0).contains(&ret) {
        let e = Errno((-ret) as u16);
        crate::klog!(
            crate::log::level::ERROR,
            "strace ",
            tid,
            " ",
            name,
            "(",
            Hex(a[0]),
            ", ",
            Hex(a[1]),
            ", ",
            Hex(a[2]),
            ", ",
            Hex(a[3]),
            ") = -",
            e.name()
        );
    } else {
        crate::klog!(
            crate::log::level::ERROR,
            "strace ",
            tid,
            " ",
            name,
            "(",
            Hex(a[0]),
            ", ",
            Hex(a[1]),
            ", ",
            Hex(a[2]),
            ", ",
            Hex(a[3]),
            ") = ",
            Hex(f.rax)
        );
    }
}

/// Argument accessors for readability in handlers.
#[inline(always)]
pub fn args(f: &TrapFrame) -> [u64; 6] {
    [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9]
}
