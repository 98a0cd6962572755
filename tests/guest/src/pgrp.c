// issue: 4
/* Process groups and sessions: setpgid from both sides (as shells do),
 * getpgid, kill(-pgid) reaching exactly the group, killpg of a vanished group,
 * setsid (new session and group; EPERM for a group leader and the second
 * time), setpgid across sessions (EPERM), after the child's execve (EACCES),
 * on a missing pid (ESRCH), with a negative pgid (EINVAL), and kill(-1) from
 * the program (pid 1 in the sandbox) reaching every other process but itself.
 * Relations are printed, never pid numbers. */
#include "guest.h"

static volatile uint32_t *sh; /* [0]: never set; children wait on it forever */

static pid_t waiter_in_group(pid_t pgid) {
  pid_t c = xfork();
  if (c == 0) {
    if (setpgid(0, pgid) != 0) _exit(2);
    futex_wait_while(&sh[0], 0);
    _exit(0);
  }
  /* The parent does it too, so the membership holds when this returns. */
  if (setpgid(c, pgid ? pgid : c) != 0 && errno != EACCES) fail("setpgid(child): %s", errname(errno));
  return c;
}

int main(int argc, char **argv, char **envp) {
  if (argc >= 2 && !strcmp(argv[1], "hold")) {
    for (;;) pause();
  }
  sh = shared_mem(PAGE);
  pid_t me = getpid();
  say("getpgid(0) == getpgrp(): %s\n", yesno(getpgid(0) == getpgrp()));
  CHECK(getpgid(0) == getpgrp(), "getpgid(0)");

  /* A group of three. */
  pid_t a = waiter_in_group(0);
  pid_t b = waiter_in_group(a);
  pid_t c = waiter_in_group(a);
  say("new group led by the first child: getpgid(first) == first: %s; others in it: %s; parent outside: %s\n",
      yesno(getpgid(a) == a), yesno(getpgid(b) == a && getpgid(c) == a), yesno(getpgrp() != a));
  CHECK(getpgid(a) == a && getpgid(b) == a && getpgid(c) == a && getpgrp() != a, "group");
  SYS(kill(-a, SIGTERM));
  int killed = 0;
  pid_t ids[3] = {a, b, c};
  for (int i = 0; i < 3; i++) {
    int st = xwait(ids[i]);
    killed += WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM;
  }
  say("kill(-pgid, SIGTERM): %d of 3 members killed by SIGTERM, sender unaffected\n", killed);
  CHECK(killed == 3, "group kill");
  errno = 0;
  int r = killpg(a, SIGTERM);
  say("killpg of the now empty group: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ESRCH, "empty group");

  /* setsid in a child that is not a group leader. */
  pid_t d = xfork();
  if (d == 0) {
    pid_t mypid = getpid();
    pid_t sid = setsid();
    int ok = sid == mypid && getsid(0) == mypid && getpgrp() == mypid;
    int again = setsid() == -1 && errno == EPERM;
    int cross = setpgid(0, getpgid(getppid())) == -1 && errno == EPERM;
    if (!ok || !again || !cross) fprintf(stderr, "setsid child: ok %d again %d cross %d\n", ok, again, cross);
    _exit(ok && again && cross ? 0 : 1);
  }
  expect_child_ok(d, "setsid child");
  say("setsid in a child: new session and group led by it, second setsid EPERM, setpgid into the old session "
      "EPERM: yes\n");
  pid_t e = xfork();
  if (e == 0) {
    setpgid(0, 0);
    _exit(setsid() == -1 && errno == EPERM ? 0 : 1);
  }
  expect_child_ok(e, "group leader setsid");
  say("setsid by a group leader: EPERM\n");

  /* setpgid errors */
  pid_t f = waiter_in_group(0);
  errno = 0;
  r = setpgid(f, 999999);
  say("setpgid(child, no such group): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EPERM, "no such group");
  errno = 0;
  r = setpgid(999999, 0);
  say("setpgid(no such pid): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ESRCH, "no such pid");
  errno = 0;
  r = setpgid(f, -1);
  say("setpgid(child, -1): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "negative pgid");
  SYS(kill(f, SIGKILL));
  xwait(f);

  /* After the child's execve the parent may no longer move it. */
  pid_t g = xfork();
  if (g == 0) {
    char *xargv[] = {argv[0], "hold", NULL};
    execve(argv[0], xargv, envp);
    _exit(99);
  }
  int tries = 0;
  while ((r = setpgid(g, g)) == 0 && tries++ < 5000) sleep_ms(1);
  say("setpgid(child) after the child's execve: %s\n", r == 0 ? "still allowed" : errname(errno));
  CHECK(r == -1 && errno == EACCES, "after exec");
  SYS(kill(g, SIGKILL));
  xwait(g);

  /* kill(-1) reaches every process except the caller. */
  pid_t h1 = waiter_in_group(0), h2 = waiter_in_group(h1);
  pid_t h3 = xfork();
  if (h3 == 0) {
    futex_wait_while(&sh[0], 0);
    _exit(0);
  }
  SYS(kill(-1, SIGUSR1));
  int hit = 0;
  pid_t hs[3] = {h1, h2, h3};
  for (int i = 0; i < 3; i++) {
    int st = xwait(hs[i]);
    hit += WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR1;
  }
  say("kill(-1, SIGUSR1): %d of 3 other processes killed, caller unaffected\n", hit);
  CHECK(hit == 3 && getpid() == me, "kill -1");
  return 0;
}
