// issue: 4
// cpus: 2
/* clone3 either works or returns ENOSYS (glibc then falls back to clone, so
 * pthread_create must work either way). When it works: a fork-like clone3 with
 * exit_signal SIGCHLD gives a waitable child, and a bad struct size is EINVAL.
 * The output is the same on both paths. */
#include <pthread.h>

#include "guest.h"

struct clone_args_v0 {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void *thread_fn(void *arg) { return (void *)((long)arg * 2); }

int main(void) {
  struct clone_args_v0 ca;
  memset(&ca, 0, sizeof ca);
  ca.exit_signal = SIGCHLD;
  long r = syscall(435 /* clone3 */, &ca, sizeof ca);
  if (r == 0) _exit(5);
  if (r > 0) {
    int st = xwait((pid_t)r);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5, "clone3 child: %s", wstatus_str(st));
    errno = 0;
    long b = syscall(435, &ca, 8);
    CHECK(b == -1 && errno == EINVAL, "clone3 with size 8: %ld %s", b, errname(errno));
  } else {
    CHECK(errno == ENOSYS, "clone3 failed with %s (only ENOSYS is acceptable)", errname(errno));
  }
  say("clone3: works (fork-like child waited for, bad size EINVAL) or ENOSYS: yes\n");

  pthread_t t[4];
  long sum = 0;
  for (long i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, thread_fn, (void *)i) == 0, "pthread_create");
  for (int i = 0; i < 4; i++) {
    void *v;
    CHECK(pthread_join(t[i], &v) == 0, "join");
    sum += (long)v;
  }
  say("pthread_create/join of 4 threads: sum of results %ld\n", sum);
  CHECK(sum == 12, "sum");
  return 0;
}
