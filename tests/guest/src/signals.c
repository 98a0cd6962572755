// issue: 4
/* Signal handlers and masks: SA_SIGINFO siginfo contents for kill, sigqueue and
 * tgkill, masks while a handler runs (sa_mask, the signal itself), pending and
 * coalescing of standard signals, queueing and ordering of real-time signals,
 * delivery order, ignored and blocked signals, SA_RESETHAND, SA_NODEFER,
 * sigtimedwait/sigwaitinfo, sigsuspend, thread- vs process-directed signals,
 * and the error cases of sigaction, sigprocmask and kill. */
#include <pthread.h>

#include "guest.h"

static volatile int count, depth, max_depth;
static volatile int last_signo, last_code, last_pid, last_uid, last_value;
static volatile int in_handler_blocked_self, in_handler_blocked_usr2;
static volatile int order[16], norder;
static volatile pid_t handler_tid;

static void record(int sig, siginfo_t *si, void *uc) {
  count++;
  depth++;
  if (depth > max_depth) max_depth = depth;
  last_signo = si->si_signo;
  last_code = si->si_code;
  last_pid = si->si_pid;
  last_uid = (int)si->si_uid;
  last_value = si->si_value.sival_int;
  if (norder < 16) order[norder++] = sig;
  handler_tid = gettid_();
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  in_handler_blocked_self = sigismember(&cur, sig);
  in_handler_blocked_usr2 = sigismember(&cur, SIGUSR2);
  depth--;
}

static volatile int reraised;
static void reraise(int sig, siginfo_t *si, void *uc) {
  count++;
  depth++;
  if (depth > max_depth) max_depth = depth;
  if (!reraised) {
    reraised = 1;
    kill(getpid(), sig);
  }
  depth--;
}

static const char *code_name(int c) {
  switch (c) {
  case SI_USER:
    return "SI_USER";
  case SI_QUEUE:
    return "SI_QUEUE";
  case SI_TKILL:
    return "SI_TKILL";
  case SI_KERNEL:
    return "SI_KERNEL";
  case SI_TIMER:
    return "SI_TIMER";
  default: {
    static char b[16];
    snprintf(b, sizeof b, "%d", c);
    return b;
  }
  }
}

static void reset(void) { count = depth = max_depth = norder = 0; }

static void *sleeper(void *arg) {
  volatile uint32_t *stop = arg;
  futex_wait_while(stop, 0);
  return NULL;
}

int main(void) {
  pid_t me = getpid();
  uid_t uid = getuid();

  /* 1. kill, sigqueue, tgkill: siginfo */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = record;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGUSR2);
  SYS(sigaction(SIGUSR1, &sa, NULL));
  reset();
  SYS(kill(me, SIGUSR1));
  say("kill(self, SIGUSR1): handled before kill returned: %s, si_signo %s, si_code %s, si_pid is self: %s, si_uid "
      "%d\n",
      yesno(count == 1), signame(last_signo), code_name(last_code), yesno(last_pid == me), last_uid);
  CHECK(count == 1 && last_signo == SIGUSR1 && last_code == SI_USER && last_pid == me && last_uid == (int)uid, "kill");
  say("in the handler: SIGUSR1 blocked %s, SIGUSR2 (sa_mask) blocked %s\n", yesno(in_handler_blocked_self),
      yesno(in_handler_blocked_usr2));
  CHECK(in_handler_blocked_self && in_handler_blocked_usr2, "handler mask");
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  say("after the handler: SIGUSR1 blocked %s, SIGUSR2 blocked %s\n", yesno(sigismember(&cur, SIGUSR1)),
      yesno(sigismember(&cur, SIGUSR2)));
  CHECK(!sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGUSR2), "mask restored");

  SYS(sigaction(SIGUSR2, &sa, NULL));
  reset();
  union sigval v = {.sival_int = 42};
  SYS(sigqueue(me, SIGUSR2, v));
  say("sigqueue(self, SIGUSR2, 42): si_code %s, si_value %d\n", code_name(last_code), last_value);
  CHECK(count == 1 && last_code == SI_QUEUE && last_value == 42, "sigqueue");
  reset();
  SYS(tgkill_(me, gettid_(), SIGUSR1));
  say("tgkill(self): si_code %s\n", code_name(last_code));
  CHECK(count == 1 && last_code == SI_TKILL, "tgkill");
  reset();
  SYS(syscall(SYS_tkill, gettid_(), SIGUSR1));
  say("tkill(self): si_code %s\n", code_name(last_code));
  CHECK(count == 1 && last_code == SI_TKILL, "tkill");
  /* rt_sigqueueinfo to oneself with a caller-chosen negative si_code */
  siginfo_t qi;
  memset(&qi, 0, sizeof qi);
  qi.si_signo = SIGUSR1;
  qi.si_code = SI_QUEUE;
  qi.si_value.sival_int = 5;
  qi.si_pid = me;
  qi.si_uid = uid;
  reset();
  SYS(syscall(SYS_rt_sigqueueinfo, me, SIGUSR1, &qi));
  say("rt_sigqueueinfo(self, SI_QUEUE, 5): si_code %s, si_value %d\n", code_name(last_code), last_value);
  CHECK(count == 1 && last_code == SI_QUEUE && last_value == 5, "rt_sigqueueinfo");

  /* 2. blocked standard signals coalesce */
  block_signal(SIGUSR1, SIG_BLOCK);
  reset();
  for (int i = 0; i < 3; i++) SYS(kill(me, SIGUSR1));
  sigset_t pend;
  sigpending(&pend);
  say("3x SIGUSR1 while blocked: delivered %d, pending %s\n", count, yesno(sigismember(&pend, SIGUSR1)));
  CHECK(count == 0 && sigismember(&pend, SIGUSR1), "blocked");
  block_signal(SIGUSR1, SIG_UNBLOCK);
  say("after unblocking: delivered %d time(s)\n", count);
  CHECK(count == 1, "coalesced");

  /* 3. real-time signals queue, in order, with their values */
  int rt = SIGRTMIN + 1;
  SYS(sigaction(rt, &sa, NULL));
  block_signal(rt, SIG_BLOCK);
  reset();
  int values[3];
  for (int i = 0; i < 3; i++) {
    v.sival_int = 100 + i;
    SYS(sigqueue(me, rt, v));
  }
  block_signal(rt, SIG_UNBLOCK);
  say("3x SIGRTMIN+1 while blocked, then unblocked: delivered %d time(s), last value %d\n", count, last_value);
  CHECK(count == 3 && last_value == 102, "rt queue");
  (void)values;

  /* 4. several pending at once: all delivered on unblock, each once. (The order is not
   *    checked: Linux stacks the frames of all deliverable signals before returning to
   *    user mode, so the last one set up runs first; POSIX leaves the order open.) */
  sigset_t three;
  sigemptyset(&three);
  sigaddset(&three, SIGUSR1);
  sigaddset(&three, SIGUSR2);
  sigaddset(&three, rt);
  sigprocmask(SIG_BLOCK, &three, NULL);
  reset();
  SYS(kill(me, rt));
  SYS(kill(me, SIGUSR2));
  SYS(kill(me, SIGUSR1));
  sigprocmask(SIG_UNBLOCK, &three, NULL);
  int seen_usr1 = 0, seen_usr2 = 0, seen_rt = 0;
  for (int i = 0; i < norder; i++) {
    seen_usr1 += order[i] == SIGUSR1;
    seen_usr2 += order[i] == SIGUSR2;
    seen_rt += order[i] == rt;
  }
  say("pending SIGRTMIN+1, SIGUSR2, SIGUSR1, then unblocked: delivered %d, each once: %s\n", norder,
      yesno(seen_usr1 == 1 && seen_usr2 == 1 && seen_rt == 1));
  CHECK(norder == 3 && seen_usr1 == 1 && seen_usr2 == 1 && seen_rt == 1, "three deliveries");

  /* 5. ignored signals are discarded; blocked+ignored ones stay pending */
  SYS(signal(SIGUSR1, SIG_IGN) == SIG_ERR ? -1 : 0);
  reset();
  SYS(kill(me, SIGUSR1));
  sigpending(&pend);
  say("ignored SIGUSR1: pending %s\n", yesno(sigismember(&pend, SIGUSR1)));
  CHECK(!sigismember(&pend, SIGUSR1), "ignored");
  block_signal(SIGUSR1, SIG_BLOCK);
  SYS(kill(me, SIGUSR1));
  sigpending(&pend);
  say("ignored and blocked SIGUSR1: pending %s\n", yesno(sigismember(&pend, SIGUSR1)));
  SYS(sigaction(SIGUSR1, &sa, NULL)); /* a handler again: the pending one is delivered on unblock */
  reset();
  block_signal(SIGUSR1, SIG_UNBLOCK);
  say("handler installed, unblocked: delivered %d\n", count);

  /* 6. SA_RESETHAND */
  struct sigaction one = sa;
  one.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&one.sa_mask);
  SYS(sigaction(SIGUSR2, &one, NULL));
  reset();
  SYS(kill(me, SIGUSR2));
  struct sigaction now;
  SYS(sigaction(SIGUSR2, NULL, &now));
  say("SA_RESETHAND: handled %d, disposition afterwards is SIG_DFL: %s, signal blocked inside: %s\n", count,
      yesno(now.sa_handler == SIG_DFL), yesno(in_handler_blocked_self));
  CHECK(count == 1 && now.sa_handler == SIG_DFL, "resethand");

  /* 7. SA_NODEFER vs default: re-raising inside the handler */
  struct sigaction re;
  memset(&re, 0, sizeof re);
  re.sa_sigaction = reraise;
  re.sa_flags = SA_SIGINFO | SA_NODEFER;
  SYS(sigaction(SIGUSR2, &re, NULL));
  reset();
  reraised = 0;
  SYS(kill(me, SIGUSR2));
  say("SA_NODEFER, re-raised inside the handler: handled %d, nesting depth %d\n", count, max_depth);
  CHECK(count == 2 && max_depth == 2, "nodefer");
  re.sa_flags = SA_SIGINFO;
  SYS(sigaction(SIGUSR2, &re, NULL));
  reset();
  reraised = 0;
  SYS(kill(me, SIGUSR2));
  say("without SA_NODEFER: handled %d, nesting depth %d\n", count, max_depth);
  CHECK(count == 2 && max_depth == 1, "defer");
  SYS(sigaction(SIGUSR2, &sa, NULL));

  /* 8. sigtimedwait / sigwaitinfo */
  block_signal(SIGUSR1, SIG_BLOCK);
  SYS(kill(me, SIGUSR1));
  sigset_t w;
  sigemptyset(&w);
  sigaddset(&w, SIGUSR1);
  siginfo_t si;
  struct timespec ts = {1, 0};
  int got = sigtimedwait(&w, &si, &ts);
  say("sigtimedwait with SIGUSR1 pending: %s, si_code %s\n", signame(got), code_name(si.si_code));
  CHECK(got == SIGUSR1 && si.si_code == SI_USER, "sigtimedwait");
  ts.tv_sec = 0;
  ts.tv_nsec = 10 * 1000000L;
  int64_t t0 = mono_ns();
  got = sigtimedwait(&w, &si, &ts);
  say("sigtimedwait with nothing pending (10 ms): %d %s, waited >= 10 ms: %s\n", got, errname(errno),
      yesno(mono_ns() - t0 >= 10000000));
  CHECK(got == -1 && errno == EAGAIN, "sigtimedwait timeout");
  block_signal(rt, SIG_BLOCK);
  v.sival_int = 7;
  SYS(sigqueue(me, rt, v));
  sigemptyset(&w);
  sigaddset(&w, rt);
  got = sigwaitinfo(&w, &si);
  say("sigwaitinfo: %s value %d\n", signame(got), si.si_value.sival_int);
  CHECK(got == rt && si.si_value.sival_int == 7, "sigwaitinfo");
  block_signal(rt, SIG_UNBLOCK);

  /* 9. sigsuspend: a child signals us while SIGUSR1 is blocked */
  reset();
  pid_t c = xfork();
  if (c == 0) {
    kill(getppid(), SIGUSR1);
    _exit(0);
  }
  sigset_t empty;
  sigemptyset(&empty);
  int sr = sigsuspend(&empty);
  int e = errno;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  say("sigsuspend: %d %s, handler ran %d, SIGUSR1 blocked again afterwards: %s, sender was the child: %s\n", sr,
      errname(e), count, yesno(sigismember(&cur, SIGUSR1)), yesno(last_pid == c));
  CHECK(sr == -1 && e == EINTR && count == 1 && sigismember(&cur, SIGUSR1) && last_pid == c, "sigsuspend");
  expect_child_ok(c, "sigsuspend child");
  block_signal(SIGUSR1, SIG_UNBLOCK);

  /* 10. a process-directed signal goes to a thread that does not block it;
   *     a thread-directed one waits for its thread. */
  static volatile uint32_t stop;
  pthread_t t;
  CHECK(pthread_create(&t, NULL, sleeper, (void *)&stop) == 0, "create"); /* SIGUSR2 unblocked there */
  block_signal(SIGUSR2, SIG_BLOCK);
  reset();
  handler_tid = 0;
  SYS(kill(me, SIGUSR2));
  for (int i = 0; i < 10000 && count == 0; i++) {
    if (i < 100)
      sched_yield();
    else
      sleep_ms(1);
  }
  say("kill(process) with SIGUSR2 blocked in main: handled by the other thread: %s\n",
      yesno(count == 1 && handler_tid != gettid_() && handler_tid != 0));
  CHECK(count == 1 && handler_tid != gettid_(), "process-directed delivery");
  reset();
  SYS(tgkill_(me, gettid_(), SIGUSR2));
  for (int i = 0; i < 100; i++) sched_yield();
  sigpending(&pend);
  say("tgkill(main) while main blocks it: delivered %d, pending in main %s\n", count,
      yesno(sigismember(&pend, SIGUSR2)));
  CHECK(count == 0 && sigismember(&pend, SIGUSR2), "thread-directed pending");
  block_signal(SIGUSR2, SIG_UNBLOCK);
  say("unblocked in main: delivered %d, in main: %s\n", count, yesno(handler_tid == gettid_()));
  CHECK(count == 1 && handler_tid == gettid_(), "thread-directed delivery");
  futex_set_wake(&stop, 1);
  pthread_join(t, NULL);

  /* 11. errors */
  errno = 0;
  int r = sigaction(SIGKILL, &sa, NULL);
  say("sigaction(SIGKILL) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "SIGKILL");
  errno = 0;
  r = sigaction(SIGSTOP, &sa, NULL);
  say("sigaction(SIGSTOP) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "SIGSTOP");
  errno = 0;
  r = (int)syscall(SYS_rt_sigaction, 65, NULL, NULL, 8);
  say("rt_sigaction(65) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "signal 65");
  errno = 0;
  r = (int)syscall(SYS_rt_sigaction, SIGUSR1, NULL, NULL, 4);
  say("rt_sigaction with sigsetsize 4 = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "sigsetsize");
  errno = 0;
  r = (int)syscall(SYS_rt_sigprocmask, 7, &cur, NULL, 8);
  say("rt_sigprocmask(how 7) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad how");
  sigset_t all;
  sigfillset(&all);
  SYS(sigprocmask(SIG_SETMASK, &all, &cur));
  sigset_t got_mask;
  SYS(sigprocmask(SIG_SETMASK, &cur, &got_mask));
  say("blocking everything leaves SIGKILL and SIGSTOP unblocked: %s\n",
      yesno(!sigismember(&got_mask, SIGKILL) && !sigismember(&got_mask, SIGSTOP) && sigismember(&got_mask, SIGTERM)));
  CHECK(!sigismember(&got_mask, SIGKILL) && !sigismember(&got_mask, SIGSTOP), "unblockable");
  errno = 0;
  r = kill(me, 65);
  say("kill(self, 65) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "kill bad signal");
  r = kill(me, 0);
  say("kill(self, 0) = %d\n", r);
  CHECK(r == 0, "kill 0");
  errno = 0;
  r = kill(99999, 0);
  say("kill(no such pid, 0) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ESRCH, "ESRCH");
  errno = 0;
  r = tgkill_(me, 99999, SIGUSR1);
  say("tgkill(self, no such tid) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ESRCH, "tgkill ESRCH");
  return 0;
}
