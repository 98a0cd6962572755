// issue: 4
// pids-limit: 32
// timeout: 20
/* A fork bomb against the task limit (`--pids-limit 32` in the sandbox; a pids
 * cgroup with pids.max 32 natively). Phase 1: fork children that wait, until
 * fork fails: it must fail with EAGAIN after at least 8 and fewer than 32
 * children. Phase 2: a recursive bomb (every process forks two children, six
 * levels deep, all staying alive until every process is done forking), which
 * must hit the limit. Afterwards every process is reaped, the program
 * is alive and fork works again. The number of processes is not printed (it
 * depends on how the limit counts). */
#include "guest.h"

#define MAX_FLAT 10000

/* [0] phase-1 release, [1] EAGAIN count in phase 2, [2] other fork errors, [3] processes created
 * in phase 2, [4] processes done forking, [5] phase-2 release */
static volatile uint32_t *sh;

/* Every process forks two children (down to depth 0), then waits until every process in the
 * tree is done forking, so all of them are alive at once and the limit must be hit. */
static void node(int depth) {
  pid_t kids[2];
  int n = 0;
  for (int i = 0; depth > 0 && i < 2; i++) {
    pid_t c = fork();
    if (c == 0) {
      node(depth - 1);
      _exit(0);
    }
    if (c < 0) {
      __atomic_add_fetch(errno == EAGAIN ? &sh[1] : &sh[2], 1, __ATOMIC_SEQ_CST);
      continue;
    }
    __atomic_add_fetch(&sh[3], 1, __ATOMIC_SEQ_CST);
    kids[n++] = c;
  }
  __atomic_add_fetch(&sh[4], 1, __ATOMIC_SEQ_CST);
  futex_wait_while(&sh[5], 0);
  for (int i = 0; i < n; i++) {
    int st;
    while (waitpid(kids[i], &st, 0) < 0 && errno == EINTR) {
    }
  }
}

static void release_when_done(void) {
  for (int i = 0; i < 20000; i++) {
    if (__atomic_load_n(&sh[4], __ATOMIC_SEQ_CST) == __atomic_load_n(&sh[3], __ATOMIC_SEQ_CST) + 1) break;
    sleep_ms(1);
  }
  futex_set_wake(&sh[5], 1);
}

int main(void) {
  sh = shared_mem(PAGE);
  static pid_t kids[MAX_FLAT];
  int n = 0, err = 0;
  for (; n < MAX_FLAT; n++) {
    pid_t c = fork();
    if (c == 0) {
      futex_wait_while(&sh[0], 0);
      _exit(0);
    }
    if (c < 0) {
      err = errno;
      break;
    }
    kids[n] = c;
  }
  say("phase 1: fork until it fails: %s, after at least 8 and fewer than 32 children: %s\n", errname(err),
      yesno(n >= 8 && n < 32));
  CHECK(err == EAGAIN && n >= 8 && n < 32, "flat bomb: %d children, %s", n, errname(err));
  futex_set_wake(&sh[0], 1);
  int reaped = 0;
  for (int i = 0; i < n; i++) {
    int st = xwait(kids[i]);
    reaped += WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  say("phase 1: all children released and reaped: %s\n", yesno(reaped == n));
  CHECK(reaped == n, "reaped %d of %d", reaped, n);

  /* phase 2: this process is the root of the tree; a watcher process releases the tree
   * once every process in it is done forking. */
  if (xfork() == 0) {
    release_when_done();
    _exit(0);
  }
  node(6);
  while (waitpid(-1, NULL, 0) > 0) {
  }
  say("phase 2: recursive bomb hit the limit (EAGAIN): %s, other fork errors: %u\n", yesno(sh[1] > 0), sh[2]);
  CHECK(sh[1] > 0 && sh[2] == 0, "recursive bomb: %u EAGAIN, %u other", sh[1], sh[2]);
  errno = 0;
  pid_t r = waitpid(-1, NULL, WNOHANG);
  say("no children left: %s\n", yesno(r == -1 && errno == ECHILD));
  CHECK(r == -1 && errno == ECHILD, "leftover children");
  pid_t c = xfork();
  if (c == 0) _exit(0);
  expect_child_ok(c, "fork after the bomb");
  say("fork works again: yes\n");
  return 0;
}
