// issue: 4
// cpus: 2
/* What happens when threads and processes exit:
 *   - a thread holding a robust mutex exits: the next locker gets EOWNERDEAD,
 *     makes it consistent and can use it again (the kernel walks the robust
 *     list at exit); the same across processes with a process-shared robust
 *     mutex in shared memory;
 *   - exit() in a non-main thread ends the whole process with that status
 *     while the main thread is blocked;
 *   - the main thread calling pthread_exit leaves the process running until
 *     the last thread ends: status 0 if it returns, its status if it calls
 *     exit(). */
#include <pthread.h>

#include "guest.h"

static pthread_mutex_t *mu;

static void *lock_and_die(void *arg) {
  CHECK(pthread_mutex_lock(mu) == 0, "lock");
  return NULL; /* exits holding it */
}

static void robust_init(pthread_mutex_t *m, int pshared) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (pshared) pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  CHECK(pthread_mutex_init(m, &a) == 0, "mutex init");
}

static void *exit7(void *arg) {
  sleep_ms(10);
  exit(7);
}
static void *late_exit3(void *arg) {
  sleep_ms(20);
  exit(3);
}
static void *late_return(void *arg) {
  sleep_ms(20);
  return NULL;
}

int main(int argc, char **argv, char **envp) {
  if (argc >= 2 && (!strcmp(argv[1], "pexit-exit3") || !strcmp(argv[1], "pexit-return"))) {
    pthread_t x;
    if (pthread_create(&x, NULL, argv[1][6] == 'e' ? late_exit3 : late_return, NULL) != 0) _exit(1);
    pthread_exit(NULL);
  }
  /* robust mutex, threads */
  static pthread_mutex_t m1;
  mu = &m1;
  robust_init(mu, 0);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, lock_and_die, NULL) == 0, "create");
  pthread_join(t, NULL);
  int r = pthread_mutex_lock(mu);
  say("robust mutex whose owner thread exited: lock returns %s\n", errname(r));
  CHECK(r == EOWNERDEAD, "EOWNERDEAD");
  CHECK(pthread_mutex_consistent(mu) == 0 && pthread_mutex_unlock(mu) == 0, "consistent");
  r = pthread_mutex_lock(mu);
  say("after pthread_mutex_consistent and unlock: lock returns %s\n", errname(r));
  CHECK(r == 0 && pthread_mutex_unlock(mu) == 0, "relock");

  /* robust mutex, processes */
  mu = shared_mem(PAGE);
  robust_init(mu, 1);
  pid_t c = xfork();
  if (c == 0) {
    if (pthread_mutex_lock(mu) != 0) _exit(1);
    _exit(0); /* exits holding it */
  }
  expect_child_ok(c, "locker");
  r = pthread_mutex_lock(mu);
  say("process-shared robust mutex whose owner process exited: lock returns %s\n", errname(r));
  CHECK(r == EOWNERDEAD, "EOWNERDEAD shared");
  CHECK(pthread_mutex_consistent(mu) == 0 && pthread_mutex_unlock(mu) == 0, "consistent shared");

  /* exit() from a non-main thread */
  c = xfork();
  if (c == 0) {
    pthread_t x;
    if (pthread_create(&x, NULL, exit7, NULL) != 0) _exit(1);
    for (;;) pause();
  }
  say("exit(7) in a second thread while main is blocked: %s\n", wstatus_str(xwait(c)));

  /* main thread pthread_exit, last thread exits. In a freshly exec'd image: musl 1.2.3
   * deadlocks when the main thread of a fork child calls pthread_exit (its fork does not
   * re-register the thread-list lock with set_tid_address), a libc bug, not the kernel's. */
  char *modes[] = {"pexit-exit3", "pexit-return"};
  const char *what[] = {"calls exit(3)", "returns"};
  for (int i = 0; i < 2; i++) {
    c = xfork();
    if (c == 0) {
      char *xargv[] = {argv[0], modes[i], NULL};
      execve(argv[0], xargv, envp);
      _exit(99);
    }
    say("main thread pthread_exit, last thread %s: %s\n", what[i], wstatus_str(xwait(c)));
  }
  return 0;
}
