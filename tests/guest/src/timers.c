// issue: 4
// timeout: 20
/* Timers and sleeps: alarm (remaining seconds, delivery after >= 1 s),
 * setitimer/getitimer ITIMER_REAL (periodic) and ITIMER_VIRTUAL (user CPU
 * time), POSIX timers with SIGEV_SIGNAL (si_code SI_TIMER, si_value,
 * si_timerid; one-shot, periodic, overruns, TIMER_ABSTIME on CLOCK_REALTIME,
 * SIGEV_NONE counting down, timer_delete), clock_nanosleep relative and
 * absolute on both clocks, times() and getrusage() after CPU work.
 * Takes about 1.5 s. Counts that depend on scheduling (overruns) are only
 * checked to be >= 1. */
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/times.h>

#include "guest.h"

static volatile int alarms, vtalarms;
static void on_alrm(int s) { alarms++; }
static void on_vtalrm(int s) { vtalarms++; }

static int64_t ms_since(int64_t t0) { return (mono_ns() - t0) / 1000000; }

static struct timespec plus_ms(clockid_t c, long ms) {
  struct timespec t;
  clock_gettime(c, &t);
  t.tv_nsec += ms * 1000000L;
  while (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
  return t;
}

int main(void) {
  set_handler(SIGALRM, on_alrm);
  sigset_t empty, alrm;
  sigemptyset(&empty);
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);

  /* alarm */
  alarm(5);
  unsigned left = alarm(0);
  say("alarm(5) then alarm(0) returns %u\n", left);
  CHECK(left == 5, "alarm remaining");
  sigprocmask(SIG_BLOCK, &alrm, NULL);
  int64_t t0 = mono_ns();
  alarms = 0;
  alarm(1);
  while (!alarms) sigsuspend(&empty);
  int64_t el = ms_since(t0);
  say("alarm(1) fired once after >= 1 s: %s\n", yesno(alarms == 1 && el >= 1000 && el < 3000));
  CHECK(alarms == 1 && el >= 1000 && el < 3000, "alarm after %lld ms", (long long)el);

  /* setitimer ITIMER_REAL: 20 ms, then every 10 ms */
  struct itimerval it = {{0, 10000}, {0, 20000}}, cur, old;
  alarms = 0;
  t0 = mono_ns();
  SYS(setitimer(ITIMER_REAL, &it, NULL));
  SYS(getitimer(ITIMER_REAL, &cur));
  say("getitimer: interval %ld us, value in (0, 20 ms]: %s\n", (long)cur.it_interval.tv_usec,
      yesno(cur.it_value.tv_sec == 0 && cur.it_value.tv_usec > 0 && cur.it_value.tv_usec <= 20000));
  CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_usec == 10000, "interval");
  while (alarms < 5) sigsuspend(&empty);
  el = ms_since(t0);
  struct itimerval off = {{0, 0}, {0, 0}};
  SYS(setitimer(ITIMER_REAL, &off, &old));
  SYS(getitimer(ITIMER_REAL, &cur));
  say("ITIMER_REAL 5 expiries after >= 60 ms: %s; setitimer returned the old interval %ld us; disarmed: %s\n",
      yesno(el >= 60), (long)old.it_interval.tv_usec,
      yesno(!cur.it_value.tv_sec && !cur.it_value.tv_usec && !cur.it_interval.tv_usec));
  CHECK(el >= 60 && old.it_interval.tv_usec == 10000 && !cur.it_value.tv_usec, "itimer real");
  sigprocmask(SIG_UNBLOCK, &alrm, NULL);

  /* ITIMER_VIRTUAL: 20 ms of user CPU time */
  set_handler(SIGVTALRM, on_vtalrm);
  struct itimerval vt = {{0, 0}, {0, 20000}};
  SYS(setitimer(ITIMER_VIRTUAL, &vt, NULL));
  t0 = mono_ns();
  volatile unsigned long spin = 0;
  while (!vtalarms && ms_since(t0) < 5000) spin++;
  say("ITIMER_VIRTUAL fired during a busy loop: %s\n", yesno(vtalarms == 1));
  CHECK(vtalarms == 1, "virtual timer");

  /* POSIX timer, SIGEV_SIGNAL */
  int sig = SIGRTMIN;
  sigset_t rt;
  sigemptyset(&rt);
  sigaddset(&rt, sig);
  sigprocmask(SIG_BLOCK, &rt, NULL);
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = sig;
  sev.sigev_value.sival_int = 77;
  timer_t tid;
  SYS(timer_create(CLOCK_MONOTONIC, &sev, &tid));
  struct itimerspec ts = {{0, 0}, {0, 20 * 1000000L}}, got;
  t0 = mono_ns();
  SYS(timer_settime(tid, 0, &ts, NULL));
  siginfo_t si;
  struct timespec wait1 = {2, 0};
  int s = sigtimedwait(&rt, &si, &wait1);
  el = ms_since(t0);
  say("timer_create/settime 20 ms: %s, si_code %s, si_value %d, si_timerid matches: %s, after >= 20 ms: %s\n",
      signame(s), si.si_code == SI_TIMER ? "SI_TIMER" : "other", si.si_value.sival_int,
      yesno(si.si_timerid == (int)(intptr_t)tid), yesno(el >= 20));
  CHECK(s == sig && si.si_code == SI_TIMER && si.si_value.sival_int == 77 && el >= 20, "posix timer");
  SYS(timer_gettime(tid, &got));
  say("timer_gettime after expiry: disarmed: %s\n", yesno(!got.it_value.tv_sec && !got.it_value.tv_nsec));
  CHECK(!got.it_value.tv_sec && !got.it_value.tv_nsec, "disarmed");

  /* periodic 10 ms, three expiries */
  ts.it_value.tv_nsec = 10 * 1000000L;
  ts.it_interval.tv_nsec = 10 * 1000000L;
  SYS(timer_settime(tid, 0, &ts, NULL));
  int n = 0;
  for (int i = 0; i < 3; i++) n += sigtimedwait(&rt, &si, &wait1) == sig;
  SYS(timer_gettime(tid, &got));
  say("periodic 10 ms timer: %d expiries, interval reads back %ld ns\n", n, got.it_interval.tv_nsec);
  CHECK(n == 3 && got.it_interval.tv_nsec == 10 * 1000000L, "periodic");
  /* overrun: leave the signal pending while the timer keeps expiring */
  sleep_ms(60);
  s = sigtimedwait(&rt, &si, &wait1);
  int ov = timer_getoverrun(tid);
  say("overruns while the signal was pending: si_overrun >= 1: %s, timer_getoverrun >= 1: %s\n",
      yesno(si.si_overrun >= 1), yesno(ov >= 1));
  CHECK(s == sig && si.si_overrun >= 1 && ov >= 1, "overrun");
  struct itimerspec zero = {{0, 0}, {0, 0}};
  SYS(timer_settime(tid, 0, &zero, NULL));
  while (sigtimedwait(&rt, &si, &(struct timespec){0, 0}) == sig) {
  }

  /* absolute expiry on CLOCK_REALTIME */
  timer_t rtid;
  sev.sigev_value.sival_int = 78;
  SYS(timer_create(CLOCK_REALTIME, &sev, &rtid));
  struct itimerspec abs = {{0, 0}, plus_ms(CLOCK_REALTIME, 30)};
  t0 = mono_ns();
  SYS(timer_settime(rtid, TIMER_ABSTIME, &abs, NULL));
  s = sigtimedwait(&rt, &si, &wait1);
  el = ms_since(t0);
  say("CLOCK_REALTIME timer with TIMER_ABSTIME +30 ms: value %d, after >= 25 ms: %s\n", si.si_value.sival_int,
      yesno(el >= 25));
  CHECK(s == sig && si.si_value.sival_int == 78 && el >= 25, "abstime");
  SYS(timer_delete(rtid));

  /* SIGEV_NONE: nothing is delivered, the timer just counts down */
  struct sigevent none;
  memset(&none, 0, sizeof none);
  none.sigev_notify = SIGEV_NONE;
  timer_t ntid;
  SYS(timer_create(CLOCK_MONOTONIC, &none, &ntid));
  struct itimerspec half = {{0, 0}, {0, 500 * 1000000L}};
  SYS(timer_settime(ntid, 0, &half, NULL));
  sleep_ms(20);
  SYS(timer_gettime(ntid, &got));
  say("SIGEV_NONE timer counts down: %s\n", yesno(got.it_value.tv_sec == 0 && got.it_value.tv_nsec > 0 &&
                                                 got.it_value.tv_nsec <= 480 * 1000000L));
  CHECK(got.it_value.tv_nsec > 0 && got.it_value.tv_nsec <= 480 * 1000000L, "sigev_none");
  SYS(timer_delete(ntid));
  SYS(timer_delete(tid));
  errno = 0;
  int r = timer_gettime(tid, &got);
  say("timer_gettime after timer_delete: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "deleted");
  errno = 0;
  r = timer_create((clockid_t)12345, &sev, &tid);
  say("timer_create(bad clock): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad clock");
  sigprocmask(SIG_UNBLOCK, &rt, NULL);

  /* clock_nanosleep */
  struct timespec d = {0, 20 * 1000000L};
  t0 = mono_ns();
  r = clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL);
  say("clock_nanosleep(MONOTONIC, 20 ms): %d, slept >= 20 ms: %s\n", r, yesno(ms_since(t0) >= 20));
  CHECK(r == 0 && ms_since(t0) >= 20, "relative");
  struct timespec until = plus_ms(CLOCK_MONOTONIC, 20);
  r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
  say("clock_nanosleep(MONOTONIC, TIMER_ABSTIME +20 ms): %d, woke after the deadline: %s\n", r,
      yesno(mono_ns() >= (int64_t)until.tv_sec * 1000000000LL + until.tv_nsec));
  CHECK(r == 0 && mono_ns() >= (int64_t)until.tv_sec * 1000000000LL + until.tv_nsec, "abs monotonic");
  until = plus_ms(CLOCK_REALTIME, 20);
  r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, NULL);
  say("clock_nanosleep(REALTIME, TIMER_ABSTIME +20 ms): %d, woke after the deadline: %s\n", r,
      yesno(now_ns(CLOCK_REALTIME) >= (int64_t)until.tv_sec * 1000000000LL + until.tv_nsec));
  CHECK(r == 0, "abs realtime");
  until.tv_sec -= 100;
  r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, NULL);
  say("clock_nanosleep to a past deadline: %d\n", r);
  CHECK(r == 0, "past");
  r = clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &d, NULL);
  say("clock_nanosleep(CLOCK_THREAD_CPUTIME_ID): %s\n", errname(r));
  CHECK(r == EINVAL, "thread cputime sleep");

  /* CPU time accounting after the busy loop above (>= 20 ms of user time) */
  struct rusage ru;
  SYS(getrusage(RUSAGE_SELF, &ru));
  long ut_ms = ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000;
  struct tms tm;
  clock_t ticks = times(&tm);
  say("getrusage user time >= 15 ms: %s; times() user ticks >= 1: %s, return value non-zero: %s\n", yesno(ut_ms >= 15),
      yesno(tm.tms_utime >= 1), yesno(ticks != 0 && ticks != (clock_t)-1));
  CHECK(ut_ms >= 15 && tm.tms_utime >= 1, "cpu accounting");
  CHECK(now_ns(CLOCK_PROCESS_CPUTIME_ID) >= 15000000 && now_ns(CLOCK_THREAD_CPUTIME_ID) >= 15000000, "cputime clocks");
  return 0;
}
