// issue: 4
/* fork, vfork, execve, execveat and the wait family. The program re-executes
 * itself (argv[0], which is /fork_exec_wait in the sandbox and in the native
 * chroot) in helper modes chosen by argv[1]:
 *   chain N    print "chain level N", run "chain N-1" as a child, exit with
 *              its status + 1 (so a chain of 5 exits 5)
 *   show ...   print its argv and environment, exit 3
 *   exit N     exit with status N
 *   sleep      block forever (until killed)
 * Covers: exit statuses, death by signal, WNOHANG on a running child, waitid
 * (WEXITED, WNOWAIT, P_PID, P_ALL), wait4 with rusage, ECHILD, exec failing
 * with ENOENT (the process continues), execve from a multithreaded process,
 * vfork + _exit and vfork + execve. posix_spawn is in spawn.c. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>

#include "guest.h"

static char *self;

static int run_child_mode(char *const argv[], char *const envp[]) {
  pid_t c = xfork();
  if (c == 0) {
    execve(self, argv, envp);
    fail("execve %s: %s", self, errname(errno));
  }
  return xwait(c);
}

static void *forever(void *arg) {
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv, char **envp) {
  self = argv[0];
  CHECK(self && self[0] == '/', "argv[0] must be an absolute path to this program, got %s", self ? self : "(null)");
  if (argc >= 3 && !strcmp(argv[1], "chain")) {
    int n = atoi(argv[2]);
    say("chain level %d\n", n);
    if (n == 0) return 0;
    char num[16];
    snprintf(num, sizeof num, "%d", n - 1);
    char *cargv[] = {self, "chain", num, NULL};
    int st = run_child_mode(cargv, envp);
    CHECK(WIFEXITED(st), "chain child %s", wstatus_str(st));
    return WEXITSTATUS(st) + 1;
  }
  if (argc >= 2 && !strcmp(argv[1], "show")) {
    for (int i = 1; i < argc; i++) say("  argv[%d]=%s\n", i, argv[i]);
    for (char **e = envp; *e; e++) say("  env %s\n", *e);
    return 3;
  }
  if (argc >= 3 && !strcmp(argv[1], "exit")) return atoi(argv[2]);
  if (argc >= 2 && !strcmp(argv[1], "sleep")) {
    for (;;) pause();
  }
  if (argc >= 2 && !strcmp(argv[1], "threaded-exec")) {
    /* Several threads; the main thread execs: the other threads must vanish. */
    pthread_t t[3];
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&t[i], NULL, forever, NULL) == 0, "create");
    char *cargv[] = {self, "exit", "9", NULL};
    execve(self, cargv, envp);
    fail("execve from a threaded process: %s", errname(errno));
  }
  CHECK(argc == 1, "unknown mode %s", argv[1]);

  /* 1. exit status */
  pid_t c = xfork();
  if (c == 0) _exit(7);
  int st = xwait(c);
  say("fork, child _exit(7): %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "exit 7");

  /* 2. exec chain */
  char *chain[] = {self, "chain", "4", NULL};
  st = run_child_mode(chain, envp);
  say("exec chain of 4: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4, "chain");

  /* 3. argv and environment across execve */
  char *sargv[] = {self, "show", "a b", "", "c", NULL};
  char *senv[] = {"ONE=1", "TWO=two words", "EMPTY=", NULL};
  st = run_child_mode(sargv, senv);
  say("exec with argv/env: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "show");

  /* 4. WNOHANG on a running child, then kill it */
  volatile uint32_t *sh = shared_mem(PAGE);
  c = xfork();
  if (c == 0) {
    futex_wait_while(&sh[0], 0);
    _exit(5);
  }
  int st2 = -1;
  pid_t r = waitpid(c, &st2, WNOHANG);
  say("WNOHANG on a running child = %d\n", (int)r);
  CHECK(r == 0, "WNOHANG");
  futex_set_wake(&sh[0], 1);
  st = xwait(c);
  say("released child: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5, "exit 5");

  /* 5. death by signal (in an exec'd image) */
  char *sl[] = {self, "sleep", NULL};
  c = xfork();
  if (c == 0) {
    execve(self, sl, envp);
    _exit(99);
  }
  SYS(kill(c, SIGTERM));
  st = xwait(c);
  say("SIGTERM to a sleeping child: %s\n", wstatus_str(st));
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "killed");

  /* 6. waitid: WNOWAIT leaves the zombie, then WEXITED reaps it */
  c = xfork();
  if (c == 0) _exit(11);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  SYS(waitid(P_PID, c, &si, WEXITED | WNOWAIT));
  say("waitid WNOWAIT: code %s status %d pid matches %s\n", si.si_code == CLD_EXITED ? "CLD_EXITED" : "other",
      si.si_status, yesno(si.si_pid == c));
  CHECK(si.si_code == CLD_EXITED && si.si_status == 11 && si.si_pid == c && si.si_signo == SIGCHLD, "waitid nowait");
  memset(&si, 0, sizeof si);
  SYS(waitid(P_ALL, 0, &si, WEXITED));
  say("waitid P_ALL: status %d pid matches %s\n", si.si_status, yesno(si.si_pid == c));
  CHECK(si.si_status == 11 && si.si_pid == c, "waitid reap");
  memset(&si, 0, sizeof si);
  errno = 0;
  int wr = waitid(P_ALL, 0, &si, WEXITED | WNOHANG);
  say("waitid with no children: %d %s\n", wr, errname(errno));
  CHECK(wr == -1 && errno == ECHILD, "waitid ECHILD");

  /* 7. waitid WNOHANG with a running child: si_pid 0 */
  sh[1] = 0;
  c = xfork();
  if (c == 0) {
    futex_wait_while(&sh[1], 0);
    _exit(0);
  }
  memset(&si, 0xff, sizeof si);
  si.si_pid = 12345;
  SYS(waitid(P_PID, c, &si, WEXITED | WNOHANG));
  say("waitid WNOHANG on a running child: si_pid %d\n", si.si_pid);
  CHECK(si.si_pid == 0, "waitid WNOHANG si_pid");
  futex_set_wake(&sh[1], 1);
  expect_child_ok(c, "waitid child");

  /* 8. wait4 with rusage, and ECHILD */
  c = xfork();
  if (c == 0) _exit(0);
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  r = wait4(c, &st, 0, &ru);
  say("wait4 with rusage: pid matches %s, %s\n", yesno(r == c), wstatus_str(st));
  CHECK(r == c && WIFEXITED(st) && ru.ru_utime.tv_usec >= 0 && ru.ru_utime.tv_usec < 1000000, "wait4");
  errno = 0;
  r = waitpid(-1, &st, 0);
  say("waitpid(-1) with no children: %d %s\n", (int)r, errname(errno));
  CHECK(r == -1 && errno == ECHILD, "ECHILD");

  /* 9. exec failure returns to the caller */
  char *nargv[] = {"/does/not/exist", NULL};
  errno = 0;
  int er = execve("/does/not/exist", nargv, envp);
  say("execve of a missing file: %d %s\n", er, errname(errno));
  CHECK(er == -1 && errno == ENOENT, "execve ENOENT");

  /* 10. execve from a multithreaded process */
  char *targv[] = {self, "threaded-exec", NULL};
  st = run_child_mode(targv, envp);
  say("execve from a process with 4 threads: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 9, "threaded exec");

  /* 11. execveat(AT_FDCWD, path) */
  c = xfork();
  if (c == 0) {
    char *xargv[] = {self, "exit", "12", NULL};
    syscall(SYS_execveat, AT_FDCWD, self, xargv, envp, 0);
    _exit(98);
  }
  st = xwait(c);
  say("execveat(AT_FDCWD): %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 12, "execveat");

  /* 12. vfork: the parent sleeps until the child _exits or execs; memory is shared */
  static volatile int vflag;
  vflag = 0;
  c = vfork();
  if (c == 0) {
    vflag = 1;
    _exit(13);
  }
  CHECK(c > 0, "vfork");
  st = xwait(c);
  say("vfork + _exit(13): %s, child's write visible: %s\n", wstatus_str(st), yesno(vflag == 1));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 13 && vflag == 1, "vfork");
  c = vfork();
  if (c == 0) {
    char *xargv[] = {self, "exit", "14", NULL};
    execve(self, xargv, envp);
    _exit(97);
  }
  st = xwait(c);
  say("vfork + execve: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 14, "vfork exec");

  /* 13. many children, reaped in any order */
  int sum = 0;
  for (int i = 0; i < 10; i++) {
    c = xfork();
    if (c == 0) _exit(i);
  }
  for (int i = 0; i < 10; i++) {
    r = wait(&st);
    CHECK(r > 0 && WIFEXITED(st), "wait");
    sum += WEXITSTATUS(st);
  }
  say("10 children reaped, status sum %d\n", sum);
  CHECK(sum == 45, "sum");
  return 0;
}
