// issue: 4
/* prctl basics: the process name (comm) starts as the executable's basename,
 * PR_SET_NAME/PR_GET_NAME round-trip and truncate to 15 bytes, per thread;
 * PR_GET_DUMPABLE is 1 and PR_SET_DUMPABLE toggles it; PR_SET_PDEATHSIG
 * delivers the signal to a grandchild when its parent (the child) exits, and
 * PR_GET_PDEATHSIG reads it back; unknown options give EINVAL. */
#include <pthread.h>
#include <sys/prctl.h>

#include "guest.h"

static char thread_name[32];
static void *thread_fn(void *arg) {
  prctl(PR_SET_NAME, "worker-thread");
  prctl(PR_GET_NAME, thread_name);
  return NULL;
}

int main(void) {
  char name[32];
  memset(name, 0, sizeof name);
  SYS(prctl(PR_GET_NAME, name));
  say("initial name: \"%s\"\n", name);
  CHECK(!strcmp(name, "prctl"), "initial comm is the executable's basename");
  SYS(prctl(PR_SET_NAME, "quark-test"));
  memset(name, 0, sizeof name);
  SYS(prctl(PR_GET_NAME, name));
  say("after PR_SET_NAME(\"quark-test\"): \"%s\"\n", name);
  CHECK(!strcmp(name, "quark-test"), "set name");
  SYS(prctl(PR_SET_NAME, "0123456789abcdefXYZ"));
  memset(name, 0, sizeof name);
  SYS(prctl(PR_GET_NAME, name));
  say("a 19-byte name is truncated to: \"%s\"\n", name);
  CHECK(!strcmp(name, "0123456789abcde"), "truncate");
  pthread_t t;
  CHECK(pthread_create(&t, NULL, thread_fn, NULL) == 0, "create");
  pthread_join(t, NULL);
  memset(name, 0, sizeof name);
  SYS(prctl(PR_GET_NAME, name));
  say("a thread named itself \"%s\"; the main thread is still \"%s\"\n", thread_name, name);
  CHECK(!strcmp(thread_name, "worker-thread") && !strcmp(name, "0123456789abcde"), "per-thread names");

  int d = prctl(PR_GET_DUMPABLE);
  say("PR_GET_DUMPABLE: %d\n", d);
  CHECK(d == 1, "dumpable");
  SYS(prctl(PR_SET_DUMPABLE, 0));
  int d0 = prctl(PR_GET_DUMPABLE);
  SYS(prctl(PR_SET_DUMPABLE, 1));
  say("PR_SET_DUMPABLE 0 then 1 reads back: %d, %d\n", d0, prctl(PR_GET_DUMPABLE));
  CHECK(d0 == 0 && prctl(PR_GET_DUMPABLE) == 1, "set dumpable");
  errno = 0;
  int r = prctl(PR_SET_DUMPABLE, 7);
  say("PR_SET_DUMPABLE 7: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad dumpable");

  /* PR_SET_PDEATHSIG: the grandchild dies of SIGTERM when the child exits. */
  volatile uint32_t *sh = shared_mem(PAGE); /* [0] armed, [1] grandchild pid, [2] PR_GET_PDEATHSIG */
  pid_t c = xfork();
  if (c == 0) {
    pid_t g = fork();
    if (g < 0) _exit(2);
    if (g == 0) {
      if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) _exit(3);
      int s = 0;
      prctl(PR_GET_PDEATHSIG, &s);
      sh[2] = (uint32_t)s;
      sh[1] = (uint32_t)getpid();
      futex_set_wake(&sh[0], 1);
      for (;;) pause();
    }
    futex_wait_while(&sh[0], 0);
    _exit(0); /* the grandchild gets SIGTERM now */
  }
  expect_child_ok(c, "middle child");
  pid_t g = (pid_t)sh[1];
  int st = xwait(g); /* re-parented to us (pid 1) */
  say("PR_GET_PDEATHSIG in the grandchild: %s; when its parent exited it was %s\n", signame((int)sh[2]),
      wstatus_str(st));
  CHECK(sh[2] == SIGTERM && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "pdeathsig");
  errno = 0;
  r = prctl(PR_SET_PDEATHSIG, 99);
  say("PR_SET_PDEATHSIG(99): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad pdeathsig");

  errno = 0;
  r = prctl(99999, 0, 0, 0, 0);
  say("unknown option: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "unknown option");
  return 0;
}
