/* Shared helpers for the guest test programs (the src/NAME.c files).
 *
 * Everything here builds with both gcc (glibc) and musl-gcc. musl-gcc has no
 * Linux UAPI headers (<linux/...>), so the few kernel constants and structs the
 * programs need are defined here from the x86-64 ABI.
 *
 * Output rules (see ../../README.md): print only values that are the same on
 * every run and in the sandbox; check behaviour internally and fail with a
 * message on stderr (exit 1). say() writes straight to fd 1 with write(2), so
 * there is no stdio buffer to duplicate across fork() or lose on _exit().
 */
#ifndef GUEST_H
#define GUEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UNUSED __attribute__((unused))

/* ---- output ------------------------------------------------------------ */

static UNUSED void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(100);
    p += w;
    n -= (size_t)w;
  }
}

static UNUSED __attribute__((format(printf, 1, 2))) void say(const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) _exit(100);
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  write_all(1, buf, (size_t)n);
}

static UNUSED __attribute__((format(printf, 1, 2), noreturn)) void fail(const char *fmt, ...) {
  char buf[4096];
  int n = snprintf(buf, sizeof buf, "FAIL: ");
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  va_end(ap);
  if ((size_t)n >= sizeof buf - 1) n = sizeof buf - 2;
  buf[n++] = '\n';
  write_all(2, buf, (size_t)n);
  _exit(1);
}

/* CHECK(cond, "what was expected", ...) fails with file:line and errno name. */
#define CHECK(cond, ...)                                                                   \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      int e_ = errno;                                                                      \
      char m_[512];                                                                        \
      snprintf(m_, sizeof m_, __VA_ARGS__);                                                \
      fail("%s:%d: %s (check `%s`, errno %s)", __FILE__, __LINE__, m_, #cond, errname(e_)); \
    }                                                                                      \
  } while (0)

/* Evaluate a libc/syscall expression that returns -1 on error; fail if it does. */
#define SYS(expr)                                                                      \
  ({                                                                                   \
    long r_ = (long)(expr);                                                            \
    if (r_ == -1) fail("%s:%d: %s failed: %s", __FILE__, __LINE__, #expr, errname(errno)); \
    r_;                                                                                \
  })

static UNUSED const char *errname(int e) {
  switch (e) {
#define E(x) \
  case x:    \
    return #x;
    E(0)
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
    E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR)
    E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS)
    E(EMLINK) E(EPIPE) E(EDOM) E(ERANGE) E(EDEADLK) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY)
    E(ELOOP) E(ENOTSOCK) E(EOPNOTSUPP) E(ETIMEDOUT) E(EOWNERDEAD) E(ENOTRECOVERABLE)
    E(EOVERFLOW) E(ESTALE) E(EALREADY)
#undef E
  }
  static char buf[32];
  snprintf(buf, sizeof buf, "errno %d", e);
  return buf;
}

static UNUSED const char *signame(int s) {
  static const char *const names[] = {
      "0",       "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",   "SIGTRAP", "SIGABRT", "SIGBUS",
      "SIGFPE",  "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2",  "SIGPIPE", "SIGALRM", "SIGTERM",
      "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG",
      "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS",
  };
  static char buf[32];
  if (s >= 0 && s < 32) return names[s];
  if (s >= SIGRTMIN && s <= SIGRTMAX) {
    snprintf(buf, sizeof buf, "SIGRTMIN+%d", s - SIGRTMIN);
    return buf;
  }
  snprintf(buf, sizeof buf, "signal %d", s);
  return buf;
}

/* Describe a wait status without pids: "exited 3", "killed by SIGTERM", ... */
static UNUSED const char *wstatus_str(int st) {
  static char buf[64];
  if (WIFEXITED(st))
    snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st))
    snprintf(buf, sizeof buf, "killed by %s", signame(WTERMSIG(st)));
  else if (WIFSTOPPED(st))
    snprintf(buf, sizeof buf, "stopped by %s", signame(WSTOPSIG(st)));
  else if (WIFCONTINUED(st))
    snprintf(buf, sizeof buf, "continued");
  else
    snprintf(buf, sizeof buf, "status 0x%x", st);
  return buf;
}

static UNUSED const char *yesno(int b) { return b ? "yes" : "no"; }

/* ---- time -------------------------------------------------------------- */

static UNUSED int64_t now_ns(clockid_t c) {
  struct timespec ts;
  if (clock_gettime(c, &ts) != 0) fail("clock_gettime(%d): %s", (int)c, errname(errno));
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static UNUSED int64_t mono_ns(void) { return now_ns(CLOCK_MONOTONIC); }

/* Sleep with nanosleep, restarting on EINTR. */
static UNUSED void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- deterministic PRNG (xorshift64*) ---------------------------------- */

static UNUSED uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static UNUSED uint64_t rng_next(void) {
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1DULL;
}
static UNUSED uint64_t rng_below(uint64_t n) { return rng_next() % n; }

/* ---- memory ------------------------------------------------------------ */

#define PAGE 4096UL

/* Anonymous MAP_SHARED memory: how the programs talk between processes
 * (there are no pipes or files in the issue 3/4 sandbox). */
static UNUSED void *shared_mem(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("mmap shared: %s", errname(errno));
  return p;
}

/* ---- raw futex (no <linux/futex.h> under musl-gcc) ----------------------- */

#define Q_FUTEX_WAIT 0
#define Q_FUTEX_WAKE 1
#define Q_FUTEX_REQUEUE 3
#define Q_FUTEX_CMP_REQUEUE 4
#define Q_FUTEX_WAKE_OP 5
#define Q_FUTEX_WAIT_BITSET 9
#define Q_FUTEX_WAKE_BITSET 10
#define Q_FUTEX_PRIVATE 128
#define Q_FUTEX_CLOCK_REALTIME 256
#define Q_FUTEX_BITSET_MATCH_ANY 0xffffffffU
#define Q_FUTEX_OP(op, oparg, cmp, cmparg) \
  ((((op) & 0xf) << 28) | (((cmp) & 0xf) << 24) | (((oparg) & 0xfff) << 12) | ((cmparg) & 0xfff))
#define Q_FUTEX_OP_SET 0
#define Q_FUTEX_OP_ADD 1
#define Q_FUTEX_OP_CMP_EQ 0
#define Q_FUTEX_OP_CMP_NE 1
#define Q_FUTEX_OP_CMP_GT 4

static UNUSED long futex(volatile uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts,
                         volatile uint32_t *uaddr2, uint32_t val3) {
  return syscall(SYS_futex, uaddr, op, val, ts, uaddr2, val3);
}

/* Shared (cross-process) wait/wake helpers. */
static UNUSED void futex_wait_while(volatile uint32_t *f, uint32_t v) {
  while (__atomic_load_n(f, __ATOMIC_ACQUIRE) == v) {
    long r = futex(f, Q_FUTEX_WAIT, v, NULL, NULL, 0);
    if (r != 0 && errno != EAGAIN && errno != EINTR) fail("futex wait: %s", errname(errno));
  }
}
static UNUSED void futex_set_wake(volatile uint32_t *f, uint32_t v) {
  __atomic_store_n(f, v, __ATOMIC_RELEASE);
  if (futex(f, Q_FUTEX_WAKE, INT32_MAX, NULL, NULL, 0) < 0) fail("futex wake: %s", errname(errno));
}

/* ---- processes ----------------------------------------------------------- */

static UNUSED pid_t xfork(void) {
  pid_t p = fork();
  if (p < 0) fail("fork: %s", errname(errno));
  return p;
}

/* Wait for a specific child, restarting on EINTR; returns the status. */
static UNUSED int xwait(pid_t pid) {
  int st;
  pid_t r;
  do r = waitpid(pid, &st, __WALL);
  while (r < 0 && errno == EINTR);
  if (r != pid) fail("waitpid(child): %s", errname(errno));
  return st;
}

/* Require that a child exited with status 0 (its own failure message is on stderr). */
static UNUSED void expect_child_ok(pid_t pid, const char *what) {
  int st = xwait(pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("%s: child %s", what, wstatus_str(st));
}

static UNUSED pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static UNUSED int tgkill_(pid_t tgid, pid_t tid, int sig) { return (int)syscall(SYS_tgkill, tgid, tid, sig); }

/* Install a handler (SA_SIGINFO) with the given extra flags. */
static UNUSED void on_signal(int sig, void (*h)(int, siginfo_t *, void *), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = h;
  sa.sa_flags = SA_SIGINFO | flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) != 0) fail("sigaction(%s): %s", signame(sig), errname(errno));
}

static UNUSED void set_handler(int sig, void (*h)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) != 0) fail("sigaction(%s): %s", signame(sig), errname(errno));
}

static UNUSED void block_signal(int sig, int how) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, sig);
  if (sigprocmask(how, &s, NULL) != 0) fail("sigprocmask: %s", errname(errno));
}

#endif
