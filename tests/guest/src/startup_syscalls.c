// issue: 3
/* The syscalls libc start-up and threads libraries use, called directly:
 * set_tid_address returns the tid, set_robust_list accepts a list head,
 * rseq is either supported or ENOSYS (libc copes with both), prlimit64 reads
 * limits, sched_getaffinity reports the sandbox's CPUs (1 by default). */
#include <sched.h>
#include <sys/resource.h>

#include "guest.h"

int main(void) {
  static int clear_me;
  long tid = syscall(SYS_set_tid_address, &clear_me);
  say("set_tid_address returns the tid: %s\n", yesno(tid == gettid_()));
  CHECK(tid == gettid_(), "set_tid_address");
  static struct {
    void *next;
    long off;
    void *pending;
  } head = {&head, 0, NULL};
  long r = syscall(SYS_set_robust_list, &head, sizeof head);
  say("set_robust_list = %ld\n", r);
  CHECK(r == 0, "set_robust_list");
  errno = 0;
  r = syscall(SYS_set_robust_list, &head, 7);
  say("set_robust_list(bad size) = %ld %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "set_robust_list bad size");
  /* rseq: libc may have registered already (EBUSY/EINVAL), or the kernel lacks it (ENOSYS). */
  static char rseq_area[64] __attribute__((aligned(32)));
  errno = 0;
  r = syscall(334 /* rseq */, rseq_area, 32, 0, 0x53053053);
  CHECK(r == 0 || errno == ENOSYS || errno == EBUSY || errno == EINVAL, "rseq: %s", errname(errno));
  say("rseq: supported or ENOSYS\n");

  struct rlimit rl;
  CHECK(syscall(SYS_prlimit64, 0, RLIMIT_STACK, NULL, &rl) == 0, "prlimit64 get");
  say("prlimit64(RLIMIT_STACK) cur <= max: %s\n", yesno(rl.rlim_cur <= rl.rlim_max));
  CHECK(rl.rlim_cur <= rl.rlim_max && rl.rlim_cur >= 65536, "stack limit");
  CHECK(syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) == 0, "prlimit64 NOFILE");
  CHECK(rl.rlim_cur >= 3, "NOFILE");
  errno = 0;
  r = syscall(SYS_prlimit64, 0, 999, NULL, &rl);
  say("prlimit64(bad resource) = %ld %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad resource");

  cpu_set_t set;
  CPU_ZERO(&set);
  long bytes = syscall(SYS_sched_getaffinity, 0, sizeof set, &set);
  CHECK(bytes > 0 && bytes <= (long)sizeof set && bytes % 8 == 0, "sched_getaffinity returned %ld", bytes);
  say("sched_getaffinity: %d CPU(s)\n", CPU_COUNT(&set));
  CHECK(CPU_ISSET(0, &set), "CPU 0 in the affinity mask");
  errno = 0;
  r = syscall(SYS_sched_getaffinity, 0, 1, &set);
  say("sched_getaffinity(1-byte mask) = %ld %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "too small mask");
  return 0;
}
