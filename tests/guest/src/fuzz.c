// issue: 3
// timeout: 20
/* A syscall fuzzer: 10,000 syscalls with random numbers (0..463, plus about 10%
 * beyond the table) and random arguments from a fixed-seed PRNG. The goal is
 * "the kernel survives": no guest panic, no host error, the program reaches the
 * end and prints "fuzz done N". Results are not printed (they legitimately
 * differ between kernels, e.g. ENOSYS vs a real error).
 *
 * Arguments are drawn from: small integers, random bit masks, -1, page
 * multiples, boundary values, raw random 64-bit values, and pointers from a
 * pool: a scratch buffer with PROT_NONE guard pages on both sides (so a syscall
 * writing too far gets EFAULT instead of corrupting the program), a read-only
 * page, read-only path strings, NULL, an unmapped page, a kernel address and a
 * non-canonical address. Small integers used as the first argument are >= 3 so
 * fd-taking syscalls never touch stdin/stdout/stderr.
 *
 * Deny-list (documented per entry below): calls that would end or stop the
 * program (exit, kill, signals, rt_sigreturn, seccomp, prctl, setrlimit on
 * CPU/FSIZE, uretprobe), replace its memory or TLS (munmap, mprotect, mremap,
 * madvise, brk, MAP_FIXED, arch_prctl, shmat, process_vm_writev, mseal), block
 * forever or for long (pause, sleeps, waits, poll/select/epoll, futex, SysV and
 * POSIX message queues, reading pipes/eventfds/timerfds/signalfds/inotify the
 * program itself could create, flock and OFD/lease fcntl against itself),
 * create processes (fork, vfork, clone, execve), redirect stdout (dup2, dup3,
 * splice, sendfile), reach the host's network or kernel state natively (socket,
 * socketpair, keys, perf, bpf, io_uring, module and kexec calls, unshare,
 * setns, syslog), or only cost host time (sync, syncfs, mlock*, fallocate).
 * Natively the program runs as root with the OCI default capabilities in a
 * chroot of its own, so the allowed calls cannot harm the host either.
 * Build with -DFUZZ_SEED=N to try another seed (30 seeds pass natively).
 */
#include "guest.h"

#define NCALLS 10000
#define TABLE_MAX 463

static const unsigned short deny[] = {
    7,   /* poll: blocks with an infinite timeout */
    10,  /* mprotect: could remove access to the program's own memory */
    11,  /* munmap: could unmap the program's text or stack */
    12,  /* brk: could shrink the heap under malloc */
    13,  /* rt_sigaction: could install garbage handlers */
    15,  /* rt_sigreturn: would load a garbage context */
    22,  /* pipe: reading an empty pipe blocks forever */
    23,  /* select */
    25,  /* mremap */
    28,  /* madvise: DONTNEED on our own data would zero it */
    29, 30, 31, /* shmget, shmat (SHM_REMAP replaces memory), shmctl */
    33,  /* dup2: could replace stdout */
    34,  /* pause */
    35,  /* nanosleep */
    37, 38, /* alarm, setitimer: SIGALRM would kill */
    40,  /* sendfile: in_fd could be stdin and block */
    41,  /* socket: native network access */
    53,  /* socketpair: reads block */
    56, 57, 58, 59, 60, /* clone, fork, vfork, execve, exit */
    62,  /* kill */
    64, 65, 66, 67, 68, 69, 70, 71, /* SysV semaphores and message queues: blocking, leak host IPC objects */
    73,  /* flock: a second open file description of the same file deadlocks with the first */
    101, /* ptrace */
    103, /* syslog: READ blocks */
    128, 129, 130, /* rt_sigtimedwait, rt_sigqueueinfo, rt_sigsuspend */
    133, /* mknod: a FIFO would block on open */
    135, /* personality */
    141, /* setpriority: slows the run down */
    144, /* sched_setscheduler */
    149, 151, /* mlock, mlockall: populate (costly in the sandbox) */
    157, /* prctl: PR_SET_SECCOMP, PR_SET_MM, ... */
    158, /* arch_prctl: replacing FS breaks TLS */
    160, /* setrlimit: RLIMIT_CPU/FSIZE/NOFILE would kill or cripple */
    162, /* sync: host I/O natively */
    169, /* reboot */
    175, 176, /* init_module, delete_module */
    200, /* tkill */
    202, /* futex */
    206, 207, 208, 209, 210, /* io_setup..io_cancel: io_getevents blocks */
    216, /* remap_file_pages */
    218, /* set_tid_address: the kernel would write at exit to a random address */
    220, /* semtimedop */
    222, 223, 224, 225, 226, /* timer_*: signals would kill */
    230, /* clock_nanosleep */
    231, /* exit_group */
    232, /* epoll_wait */
    234, /* tgkill */
    240, 241, 242, 243, 244, 245, /* POSIX message queues: blocking */
    246, /* kexec_load */
    248, 249, 250, /* add_key, request_key, keyctl: host keyrings natively */
    253, /* inotify_init: reads block */
    259, /* mknodat */
    270, 271, /* pselect6, ppoll */
    272, /* unshare */
    273, /* set_robust_list */
    275, 276, 278, /* splice, tee, vmsplice: could write to stdout or block */
    281, /* epoll_pwait */
    282, 283, 284, /* signalfd, timerfd_create, eventfd: reads block */
    285, /* fallocate: real disk blocks natively */
    289, 290, /* signalfd4, eventfd2 */
    292, 293, 294, /* dup3, pipe2, inotify_init1 */
    297, /* rt_tgsigqueueinfo */
    298, /* perf_event_open */
    300, /* fanotify_init */
    302, /* prlimit64 (setrlimit) */
    306, /* syncfs */
    308, /* setns */
    310, 311, /* process_vm_readv/writev: could write the program's own memory */
    313, /* finit_module */
    314, /* sched_setattr */
    317, /* seccomp */
    320, /* kexec_file_load */
    321, /* bpf */
    322, /* execveat */
    323, /* userfaultfd: reads block */
    325, /* mlock2 */
    326, /* copy_file_range */
    329, /* pkey_mprotect */
    333, /* io_pgetevents */
    334, /* rseq: libc owns the registration */
    335, 336, /* uretprobe, uprobe: SIGILL outside a probe trampoline */
    424, /* pidfd_send_signal */
    425, 426, 427, /* io_uring */
    435, /* clone3 */
    440, /* process_madvise */
    441, /* epoll_pwait2 */
    446, /* landlock_restrict_self */
    448, /* process_mrelease */
    449, /* futex_waitv */
    453, /* map_shadow_stack */
    454, 455, 456, /* futex_wake, futex_wait, futex_requeue */
    460, /* lsm_set_self_attr */
    462, /* mseal */
};

static unsigned char denied[1024];
static char *scratch;       /* 16 pages, guard page on each side */
static char *readonly_page; /* PROT_READ */
static char *unmapped_page;

static const char *const paths[] = {"x", "./y", "/", ".", "", "/nonexistent/z", "x/../x"};

static uint64_t pointer_arg(void) {
  switch (rng_below(10)) {
  case 0:
  case 1:
  case 2:
    return (uint64_t)(scratch + rng_below(16 * PAGE));
  case 3:
    return (uint64_t)scratch;
  case 4:
    return (uint64_t)paths[rng_below(sizeof paths / sizeof paths[0])];
  case 5:
    return (uint64_t)(readonly_page + rng_below(PAGE));
  case 6:
    return 0;
  case 7:
    return (uint64_t)(unmapped_page + rng_below(PAGE));
  case 8:
    return 0xffffffff81000000ULL + rng_below(1 << 20);
  default:
    return 0x0000800000000000ULL + rng_below(1 << 20);
  }
}

static uint64_t random_arg(void) {
  static const uint64_t edges[] = {0x7fffffff, 0x80000000, 0xffffffff, 0x7fffffffffffffffULL,
                                   0x8000000000000000ULL, 1ULL << 32, 4095, 4097};
  switch (rng_below(8)) {
  case 0:
  case 1:
    return rng_below(65);
  case 2:
    return rng_next() & ((1ULL << rng_below(33)) - 1); /* flag-like bit masks */
  case 3:
    return (uint64_t)-1;
  case 4:
    return PAGE * (1 + rng_below(64));
  case 5:
    return edges[rng_below(sizeof edges / sizeof edges[0])];
  case 6:
    return pointer_arg();
  default:
    return rng_next();
  }
}

int main(void) {
  for (size_t i = 0; i < sizeof deny / sizeof deny[0]; i++) denied[deny[i]] = 1;

  char *region = mmap(NULL, 18 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(region != MAP_FAILED, "mmap scratch");
  scratch = region + PAGE;
  SYS(mprotect(scratch, 16 * PAGE, PROT_READ | PROT_WRITE));
  readonly_page = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(readonly_page != MAP_FAILED, "mmap read-only");
  unmapped_page = readonly_page + PAGE;
  SYS(munmap(unmapped_page, PAGE));

  /* Signals the allowed calls could still raise (SIGIO via fcntl F_SETOWN/F_NOTIFY,
   * SIGPIPE, SIGXFSZ, ...) are ignored. rt_sigaction is denied to the fuzzer, so
   * this stays. A kernel without signals may refuse: then none are generated. */
  static const int ignore[] = {SIGIO, SIGPIPE, SIGXFSZ, SIGXCPU, SIGALRM, SIGVTALRM, SIGPROF, SIGURG,
                               SIGHUP, SIGTTIN, SIGTTOU, SIGTSTP, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};
  for (size_t i = 0; i < sizeof ignore / sizeof ignore[0]; i++) signal(ignore[i], SIG_IGN);

#ifndef FUZZ_SEED
#define FUZZ_SEED 0x5eed5eed12345678ULL
#endif
  rng_state = FUZZ_SEED;
  int done = 0;
  while (done < NCALLS) {
    long nr = rng_below(10) == 0 ? TABLE_MAX + 1 + (long)rng_below(1024 - TABLE_MAX - 1) : (long)rng_below(TABLE_MAX + 1);
    if (denied[nr]) continue;
    uint64_t a[6];
    for (int i = 0; i < 6; i++) a[i] = random_arg();
    if (a[0] < 3) a[0] += 3; /* fd-taking calls never get stdin, stdout or stderr */
    if (nr == 9) { /* mmap: never MAP_FIXED(_NOREPLACE), MAP_POPULATE or MAP_LOCKED */
      a[0] &= ~0xfffULL;
      a[3] &= ~(0x10ULL | 0x100000ULL | 0x8000ULL | 0x2000ULL);
    }
    if (nr == 72) { /* fcntl: no F_SETLKW (7), F_OFD_SETLKW (38) or F_SETLEASE (1024) against ourselves */
      if (a[1] == 7 || a[1] == 38 || a[1] == 1024) a[1] = 3;
    }
    syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    done++;
  }
  /* Still alive and able to talk. */
  say("fuzz done %d\n", done);
  return 0;
}
