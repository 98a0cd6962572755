// issue: 4
/* Default signal actions and SIGCHLD, observed from the parent:
 * terminate (SIGTERM, SIGUSR1, SIGHUP, SIGALRM, SIGPIPE, SIGKILL), core-as-
 * terminate (SIGQUIT, SIGABRT via abort(), SIGSEGV from a fault even when
 * blocked or ignored), stop and continue (SIGSTOP/SIGCONT with WUNTRACED and
 * WCONTINUED), ignore (SIGCHLD, SIGURG, SIGWINCH). Each event's SIGCHLD is
 * collected with sigtimedwait (SIGCHLD blocked) and its si_code/si_status
 * printed. SA_NOCLDSTOP suppresses stop notifications. Across fork, pending
 * signals are not inherited; across execve, handlers reset to SIG_DFL while
 * SIG_IGN and the blocked mask survive (helper mode "check-exec").
 * Children set PR_SET_DUMPABLE 0 so no core file is written natively. */
#include <sys/prctl.h>

#include "guest.h"

static const char *cld(int code) {
  switch (code) {
  case CLD_EXITED:
    return "CLD_EXITED";
  case CLD_KILLED:
    return "CLD_KILLED";
  case CLD_DUMPED:
    return "CLD_DUMPED";
  case CLD_STOPPED:
    return "CLD_STOPPED";
  case CLD_CONTINUED:
    return "CLD_CONTINUED";
  default:
    return "other";
  }
}

/* Wait up to 5 s for one SIGCHLD and print its code and status. */
static void expect_sigchld(pid_t pid, int code, int status) {
  sigset_t w;
  sigemptyset(&w);
  sigaddset(&w, SIGCHLD);
  siginfo_t si;
  struct timespec ts = {5, 0};
  int s = sigtimedwait(&w, &si, &ts);
  CHECK(s == SIGCHLD, "no SIGCHLD");
  const char *st = si.si_code == CLD_EXITED ? "" : signame(si.si_status);
  char num[16];
  if (si.si_code == CLD_EXITED) {
    snprintf(num, sizeof num, "%d", si.si_status);
    st = num;
  }
  say("  SIGCHLD %s status %s, from the child: %s\n", cld(si.si_code), st, yesno(si.si_pid == pid));
  CHECK(si.si_code == code && si.si_status == status && si.si_pid == pid, "SIGCHLD contents");
}

static void no_sigchld(void) {
  sigset_t w;
  sigemptyset(&w);
  sigaddset(&w, SIGCHLD);
  struct timespec ts = {0, 50 * 1000000L};
  siginfo_t si;
  int s = sigtimedwait(&w, &si, &ts);
  say("  no SIGCHLD: %s\n", yesno(s == -1 && errno == EAGAIN));
  CHECK(s == -1 && errno == EAGAIN, "unexpected SIGCHLD");
}

static void null_write(void) {
  volatile int *p;
  __asm__ volatile("" : "=r"(p) : "0"(0L));
  *p = 1;
}

static volatile uint32_t *release; /* shared page: lets a continued child exit */

static pid_t child_that(int how) {
  pid_t c = xfork();
  if (c != 0) return c;
  prctl(PR_SET_DUMPABLE, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  switch (how) {
  case 0:
    _exit(3);
  case 1: /* wait to be killed */
    for (;;) pause();
  case 2:
    abort();
  case 3: { /* fault with SIGSEGV blocked */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGSEGV);
    sigprocmask(SIG_BLOCK, &s, NULL);
    null_write();
    _exit(1);
  }
  case 4: /* fault with SIGSEGV ignored */
    signal(SIGSEGV, SIG_IGN);
    null_write();
    _exit(1);
  case 5: /* default-ignored signals */
    kill(getpid(), SIGCHLD);
    kill(getpid(), SIGURG);
    kill(getpid(), SIGWINCH);
    _exit(0);
  case 6: /* stop myself; once continued, exit when the parent says so */
    raise(SIGSTOP);
    futex_wait_while(release, 0);
    _exit(0);
  }
  _exit(2);
}

int main(int argc, char **argv, char **envp) {
  if (argc >= 2 && !strcmp(argv[1], "check-exec")) {
    struct sigaction a1, a2;
    sigaction(SIGUSR1, NULL, &a1);
    sigaction(SIGUSR2, NULL, &a2);
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    int ok = a1.sa_handler == SIG_IGN && a2.sa_handler == SIG_DFL && sigismember(&m, SIGTERM);
    if (!ok) fprintf(stderr, "after exec: usr1 ign %d usr2 dfl %d term blocked %d\n", a1.sa_handler == SIG_IGN,
                     a2.sa_handler == SIG_DFL, sigismember(&m, SIGTERM));
    _exit(ok ? 0 : 1);
  }
  block_signal(SIGCHLD, SIG_BLOCK);
  release = shared_mem(PAGE);

  say("child exits 3:\n");
  pid_t c = child_that(0);
  expect_sigchld(c, CLD_EXITED, 3);
  say("  wait: %s\n", wstatus_str(xwait(c)));

  static const int terminators[] = {SIGTERM, SIGUSR1, SIGHUP, SIGALRM, SIGPIPE, SIGKILL, SIGQUIT};
  for (size_t i = 0; i < sizeof terminators / sizeof terminators[0]; i++) {
    int sig = terminators[i];
    say("%s to a child:\n", signame(sig));
    c = child_that(1);
    SYS(kill(c, sig));
    expect_sigchld(c, CLD_KILLED, sig);
    int st = xwait(c);
    say("  wait: %s\n", wstatus_str(st));
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == sig, "terminated");
  }

  say("child calls abort():\n");
  c = child_that(2);
  expect_sigchld(c, CLD_KILLED, SIGABRT);
  say("  wait: %s\n", wstatus_str(xwait(c)));

  say("child faults with SIGSEGV blocked:\n");
  c = child_that(3);
  expect_sigchld(c, CLD_KILLED, SIGSEGV);
  say("  wait: %s\n", wstatus_str(xwait(c)));

  say("child faults with SIGSEGV ignored:\n");
  c = child_that(4);
  expect_sigchld(c, CLD_KILLED, SIGSEGV);
  say("  wait: %s\n", wstatus_str(xwait(c)));

  say("child sends itself SIGCHLD, SIGURG, SIGWINCH:\n");
  c = child_that(5);
  expect_sigchld(c, CLD_EXITED, 0);
  say("  wait: %s\n", wstatus_str(xwait(c)));

  say("child stops itself, parent continues it:\n");
  c = child_that(6);
  expect_sigchld(c, CLD_STOPPED, SIGSTOP);
  int st;
  SYS(waitpid(c, &st, WUNTRACED));
  say("  wait WUNTRACED: %s\n", wstatus_str(st));
  CHECK(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP, "stopped");
  SYS(kill(c, SIGCONT));
  expect_sigchld(c, CLD_CONTINUED, SIGCONT);
  SYS(waitpid(c, &st, WCONTINUED));
  say("  wait WCONTINUED: %s\n", wstatus_str(st));
  CHECK(WIFCONTINUED(st), "continued");
  futex_set_wake(release, 1);
  expect_sigchld(c, CLD_EXITED, 0);
  say("  wait: %s\n", wstatus_str(xwait(c)));

  say("SA_NOCLDSTOP, child stops itself, then SIGKILL:\n");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sa.sa_flags = SA_NOCLDSTOP;
  SYS(sigaction(SIGCHLD, &sa, NULL));
  c = child_that(6);
  SYS(waitpid(c, &st, WUNTRACED));
  say("  wait WUNTRACED: %s\n", wstatus_str(st));
  no_sigchld();
  SYS(kill(c, SIGKILL));
  expect_sigchld(c, CLD_KILLED, SIGKILL);
  say("  wait: %s\n", wstatus_str(xwait(c)));
  sa.sa_flags = 0;
  SYS(sigaction(SIGCHLD, &sa, NULL));

  /* Pending signals are not inherited by a fork child. */
  block_signal(SIGUSR1, SIG_BLOCK);
  SYS(kill(getpid(), SIGUSR1));
  c = xfork();
  if (c == 0) {
    sigset_t p;
    sigpending(&p);
    _exit(sigismember(&p, SIGUSR1) ? 1 : 0);
  }
  expect_sigchld(c, CLD_EXITED, 0);
  st = xwait(c);
  say("fork child sees the parent's pending SIGUSR1: %s\n", yesno(!(WIFEXITED(st) && WEXITSTATUS(st) == 0)));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pending inherited");
  sigset_t w;
  sigemptyset(&w);
  sigaddset(&w, SIGUSR1);
  CHECK(sigwaitinfo(&w, NULL) == SIGUSR1, "parent keeps its pending signal");
  block_signal(SIGUSR1, SIG_UNBLOCK);

  /* Dispositions and mask across execve. */
  c = xfork();
  if (c == 0) {
    signal(SIGUSR1, SIG_IGN);
    set_handler(SIGUSR2, (void (*)(int))abort);
    block_signal(SIGTERM, SIG_BLOCK);
    char *xargv[] = {argv[0], "check-exec", NULL};
    execve(argv[0], xargv, envp);
    _exit(99);
  }
  expect_sigchld(c, CLD_EXITED, 0);
  st = xwait(c);
  say("after execve: SIG_IGN kept, handler reset to SIG_DFL, mask kept: %s\n",
      yesno(WIFEXITED(st) && WEXITSTATUS(st) == 0));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec dispositions");
  return 0;
}
