// issue: 4
// cpus: 2
/* Syscall restart rules when a handler interrupts a blocking call:
 *   - futex WAIT without timeout: restarted with SA_RESTART (returns 0 when
 *     finally woken), EINTR without it;
 *   - nanosleep: always EINTR with the remaining time written back;
 *   - wait4: restarted with SA_RESTART;
 *   - pause and sigsuspend: always EINTR;
 *   - a signal whose disposition is "ignore" never interrupts anything.
 * A helper thread keeps sending SIGUSR1 to the main thread every 2 ms until the
 * main thread says it is past the call, so at least one signal lands while the
 * call is blocked (signals that land before it only run the handler). */
#include <pthread.h>

#include "guest.h"

static volatile int handled;
static volatile uint32_t keep_sending;
static pid_t main_tid;

static void handler(int sig) { handled++; }

static void *pester(void *arg) {
  while (__atomic_load_n(&keep_sending, __ATOMIC_ACQUIRE)) {
    tgkill_(getpid(), main_tid, SIGUSR1);
    sleep_ms(2);
  }
  return NULL;
}

static pthread_t pester_thread;
static void start_pester(void) {
  handled = 0;
  __atomic_store_n(&keep_sending, 1, __ATOMIC_RELEASE);
  CHECK(pthread_create(&pester_thread, NULL, pester, NULL) == 0, "create");
}
static void stop_pester(void) {
  __atomic_store_n(&keep_sending, 0, __ATOMIC_RELEASE);
  pthread_join(pester_thread, NULL);
}

static void install(int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  SYS(sigaction(SIGUSR1, &sa, NULL));
}

/* A thread that wakes the futex after the main thread has been interrupted a few times. */
static uint32_t fw;
static void *waker(void *arg) {
  for (int i = 0; i < 10000 && handled < 5; i++) sleep_ms(1);
  sleep_ms(5);
  __atomic_store_n(&fw, 1, __ATOMIC_RELEASE);
  futex(&fw, Q_FUTEX_WAKE | Q_FUTEX_PRIVATE, 1, NULL, NULL, 0);
  return NULL;
}

static volatile uint32_t *sh;
static void *releaser(void *arg) {
  for (int i = 0; i < 10000 && handled < 5; i++) sleep_ms(1);
  sleep_ms(5);
  futex_set_wake(&sh[0], 1);
  return NULL;
}

int main(void) {
  main_tid = gettid_();

  /* futex WAIT, SA_RESTART: the wait survives the handlers and returns 0 when woken. */
  install(SA_RESTART);
  fw = 0;
  pthread_t w;
  start_pester();
  CHECK(pthread_create(&w, NULL, waker, NULL) == 0, "create");
  long r = futex(&fw, Q_FUTEX_WAIT | Q_FUTEX_PRIVATE, 0, NULL, NULL, 0);
  int e = errno;
  stop_pester();
  pthread_join(w, NULL);
  /* 0 if woken while queued, EAGAIN if the wake came while a handler ran and the restarted
   * wait saw the new value: both mean "restarted", neither is EINTR. */
  say("futex WAIT with SA_RESTART handler: restarted, not EINTR: %s, handlers ran: %s\n",
      yesno(r == 0 || (r == -1 && e == EAGAIN)), yesno(handled >= 5));
  CHECK((r == 0 || (r == -1 && e == EAGAIN)) && handled >= 5, "restarted futex wait: %ld %s", r, errname(e));

  /* futex WAIT without SA_RESTART: EINTR. */
  install(0);
  fw = 0;
  start_pester();
  r = futex(&fw, Q_FUTEX_WAIT | Q_FUTEX_PRIVATE, 0, NULL, NULL, 0);
  e = errno;
  stop_pester();
  say("futex WAIT without SA_RESTART: %ld %s\n", r, errname(e));
  CHECK(r == -1 && e == EINTR, "futex EINTR");

  /* nanosleep: EINTR with the remaining time, even with SA_RESTART. */
  install(SA_RESTART);
  struct timespec req = {5, 0}, rem = {0, 0};
  start_pester();
  int64_t t0 = mono_ns();
  int nr = nanosleep(&req, &rem);
  e = errno;
  int64_t took = mono_ns() - t0;
  stop_pester();
  int64_t remaining = (int64_t)rem.tv_sec * 1000000000LL + rem.tv_nsec;
  say("nanosleep(5 s) interrupted: %d %s, remaining time written and consistent: %s\n", nr, errname(e),
      yesno(remaining > 0 && remaining <= 5100000000LL && remaining + took >= 4900000000LL));
  CHECK(nr == -1 && e == EINTR && remaining > 0 && remaining <= 5100000000LL, "nanosleep EINTR rem %lld took %lld",
        (long long)remaining, (long long)took);

  /* wait4 with SA_RESTART: restarted until the child exits. */
  sh = shared_mem(PAGE);
  pid_t c = xfork();
  if (c == 0) {
    futex_wait_while(&sh[0], 0);
    _exit(6);
  }
  install(SA_RESTART);
  start_pester();
  pthread_t rel;
  CHECK(pthread_create(&rel, NULL, releaser, NULL) == 0, "create");
  int st;
  pid_t wr = waitpid(c, &st, 0);
  e = errno;
  stop_pester();
  pthread_join(rel, NULL);
  say("waitpid with SA_RESTART handler: returned the child: %s, %s, handlers ran: %s\n", yesno(wr == c),
      wr == c ? wstatus_str(st) : errname(e), yesno(handled >= 5));
  CHECK(wr == c && WIFEXITED(st) && WEXITSTATUS(st) == 6, "waitpid restarted");

  /* pause and sigsuspend: always EINTR, even with SA_RESTART. */
  start_pester();
  int pr = pause();
  e = errno;
  stop_pester();
  say("pause: %d %s\n", pr, errname(e));
  CHECK(pr == -1 && e == EINTR, "pause");
  sigset_t empty;
  sigemptyset(&empty);
  start_pester();
  pr = sigsuspend(&empty);
  e = errno;
  stop_pester();
  say("sigsuspend: %d %s\n", pr, errname(e));
  CHECK(pr == -1 && e == EINTR, "sigsuspend");

  /* An ignored signal interrupts nothing: a 50 ms futex wait times out. */
  signal(SIGUSR1, SIG_IGN);
  fw = 0;
  start_pester();
  struct timespec ts = {0, 50 * 1000000L};
  r = futex(&fw, Q_FUTEX_WAIT | Q_FUTEX_PRIVATE, 0, &ts, NULL, 0);
  e = errno;
  stop_pester();
  say("futex WAIT(50 ms) while an ignored signal arrives: %s\n", errname(e));
  CHECK(r == -1 && e == ETIMEDOUT, "ignored signal");

  /* A timed futex wait interrupted by a handler: EINTR regardless of SA_RESTART. */
  install(SA_RESTART);
  fw = 0;
  start_pester();
  ts.tv_sec = 5;
  ts.tv_nsec = 0;
  r = futex(&fw, Q_FUTEX_WAIT | Q_FUTEX_PRIVATE, 0, &ts, NULL, 0);
  e = errno;
  stop_pester();
  say("futex WAIT(5 s) with SA_RESTART handler: %s\n", errname(e));
  CHECK(r == -1 && e == EINTR, "timed futex EINTR");
  return 0;
}
