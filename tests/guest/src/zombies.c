// issue: 4
/* Zombies and re-parenting. The program is pid 1 in the sandbox (and in the
 * native run's pid namespace); if it is not pid 1 it makes itself a child
 * subreaper, so orphans come to it either way and the output is the same.
 *   - an exited child stays a zombie (kill(pid, 0) succeeds) until reaped,
 *     then kill gives ESRCH;
 *   - double fork: the grandchild sees its parent change from the child to
 *     the program when the child exits, and the program reaps it;
 *   - a zombie whose parent exits is re-parented and reaped by the program;
 *   - 20 zombies at once, reaped with waitpid(-1) (statuses sum to 190);
 *   - SIGCHLD set to SIG_IGN, and SA_NOCLDWAIT: children are reaped by the
 *     kernel, wait() ends with ECHILD (and with SA_NOCLDWAIT the handler still
 *     runs). */
#include <sys/prctl.h>

#include "guest.h"

static volatile int sigchld_seen;
static void on_chld(int s) { sigchld_seen++; }

int main(void) {
  pid_t me = getpid();
  if (me != 1) CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "PR_SET_CHILD_SUBREAPER");
  volatile uint32_t *sh = shared_mem(PAGE); /* [0] flag, [1] new ppid, [2] grandchild pid, [3] first ppid */

  /* 1. a zombie until reaped */
  pid_t c = xfork();
  if (c == 0) _exit(4);
  siginfo_t si;
  SYS(waitid(P_PID, c, &si, WEXITED | WNOWAIT));
  int alive = kill(c, 0) == 0;
  int st = xwait(c);
  errno = 0;
  int gone = kill(c, 0) == -1 && errno == ESRCH;
  say("exited child: kill(pid, 0) works while a zombie: %s; %s; ESRCH after reaping: %s\n", yesno(alive),
      wstatus_str(st), yesno(gone));
  CHECK(alive && gone && WEXITSTATUS(st) == 4, "zombie");

  /* 2. double fork */
  c = xfork();
  if (c == 0) {
    pid_t g = fork();
    if (g < 0) _exit(2);
    if (g == 0) {
      pid_t first = getppid();
      sh[3] = (uint32_t)first;
      sh[2] = (uint32_t)getpid();
      futex_set_wake(&sh[0], 1); /* tell the child to exit */
      pid_t now = first;
      for (int i = 0; i < 5000 && now == first; i++) {
        sleep_ms(1);
        now = getppid();
      }
      sh[1] = (uint32_t)now;
      _exit(7);
    }
    futex_wait_while(&sh[0], 0);
    _exit(0);
  }
  expect_child_ok(c, "middle child");
  pid_t g = 0;
  for (int i = 0; i < 5000 && !(g = (pid_t)sh[2]); i++) sleep_ms(1);
  CHECK(g > 0, "grandchild pid");
  st = xwait(g);
  say("double fork: grandchild's first parent was the child: %s, re-parented to the program: %s; program reaped "
      "it: %s\n",
      yesno((pid_t)sh[3] == c), yesno((pid_t)sh[1] == me), wstatus_str(st));
  CHECK((pid_t)sh[3] == c && (pid_t)sh[1] == me && WIFEXITED(st) && WEXITSTATUS(st) == 7, "reparent");

  /* 3. a zombie grandchild whose parent exits */
  sh[2] = 0;
  c = xfork();
  if (c == 0) {
    pid_t z = fork();
    if (z < 0) _exit(2);
    if (z == 0) _exit(9);
    siginfo_t i2;
    if (waitid(P_PID, z, &i2, WEXITED | WNOWAIT) != 0) _exit(3); /* z is a zombie now */
    sh[2] = (uint32_t)z;
    _exit(0);
  }
  expect_child_ok(c, "parent of the zombie");
  pid_t z = (pid_t)sh[2];
  CHECK(z > 0, "zombie pid");
  st = xwait(z);
  say("zombie whose parent exited: reaped by the program: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 9, "orphaned zombie");

  /* 4. twenty zombies */
  for (int i = 0; i < 20; i++) {
    c = xfork();
    if (c == 0) _exit(i);
  }
  int sum = 0, n = 0;
  pid_t r;
  while ((r = waitpid(-1, &st, 0)) > 0) {
    n++;
    sum += WEXITSTATUS(st);
  }
  say("20 children: reaped %d, status sum %d, then %s\n", n, sum, errname(errno));
  CHECK(n == 20 && sum == 190 && errno == ECHILD, "twenty");

  /* 5. SIGCHLD ignored: no zombies */
  signal(SIGCHLD, SIG_IGN);
  for (int i = 0; i < 3; i++) {
    c = xfork();
    if (c == 0) _exit(0);
  }
  errno = 0;
  r = wait(&st);
  say("SIGCHLD = SIG_IGN: wait() returns %d %s\n", (int)r, errname(errno));
  CHECK(r == -1 && errno == ECHILD, "SIG_IGN");
  signal(SIGCHLD, SIG_DFL);

  /* 6. SA_NOCLDWAIT with a handler */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_NOCLDWAIT;
  SYS(sigaction(SIGCHLD, &sa, NULL));
  c = xfork();
  if (c == 0) _exit(0);
  errno = 0;
  do r = wait(&st);
  while (r == -1 && errno == EINTR);
  say("SA_NOCLDWAIT: wait() returns %d %s, SIGCHLD handler ran: %s\n", (int)r, errname(errno), yesno(sigchld_seen >= 1));
  CHECK(r == -1 && errno == ECHILD && sigchld_seen >= 1, "SA_NOCLDWAIT");
  return 0;
}
