// issue: 4
/* The container's entry process is pid 1 (natively: pid 1 of its own pid
 * namespace, set up by the runner), with no visible parent, and leads its
 * session and process group. Signals it has no handler for are ignored when
 * they come from inside the container, SIGKILL and SIGSTOP included (only the
 * outside may kill init); with a handler they are delivered. (A fault it does
 * not handle still kills it: see segv.c.) */
#include "guest.h"

static volatile int handled;
static void on_usr1(int s) { handled++; }

int main(void) {
  say("getpid() == 1: %s, getppid() == 0: %s\n", yesno(getpid() == 1), yesno(getppid() == 0));
  CHECK(getpid() == 1 && getppid() == 0, "must run as pid 1");
  say("session and process group leader: %s\n", yesno(getsid(0) == 1 && getpgrp() == 1));
  CHECK(getsid(0) == 1 && getpgrp() == 1, "session leader");

  static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGALRM, SIGSTOP, SIGKILL};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    int r = kill(1, sigs[i]);
    say("kill(1, %s) from itself without a handler: returned %d, still running\n", signame(sigs[i]), r);
    CHECK(r == 0, "kill");
  }
  SYS(raise(SIGTERM));
  say("raise(SIGTERM): still running\n");

  pid_t c = xfork();
  if (c == 0) {
    int ok = kill(1, SIGTERM) == 0 && kill(1, SIGKILL) == 0 && kill(1, SIGSTOP) == 0;
    _exit(ok ? 0 : 1);
  }
  expect_child_ok(c, "child signalling init");
  sleep_ms(20);
  say("SIGTERM, SIGKILL, SIGSTOP from a child: ignored, still running\n");

  set_handler(SIGUSR1, on_usr1);
  SYS(kill(1, SIGUSR1));
  c = xfork();
  if (c == 0) _exit(kill(1, SIGUSR1) == 0 ? 0 : 1);
  expect_child_ok(c, "child sending SIGUSR1");
  for (int i = 0; i < 5000 && handled < 2; i++) sleep_ms(1);
  say("with a handler installed: SIGUSR1 from itself and from a child delivered: %d\n", handled);
  CHECK(handled == 2, "handled");
  return 0;
}
