// issue: 4
// cpus: 2
// timeout: 20
/* Scheduler wake-up races on two vCPUs (a regression test of the scheduler
 * fixes in crates/qkernel/src/task/README.md; self-checking, a lost wake-up
 * shows as a hang).
 *
 * Run by the harness: spinners. Two threads spin in user mode (one per vCPU)
 * until a third, woken from FUTEX_WAIT by one of them, sets a flag. The woken
 * thread must get a vCPU from a spinner that ran alone (no time slice): the
 * wake-up has to interrupt it (without that the kernel hangs here).
 *
 * `sched_race storm` (run by the harness as sched_race_storm, twice): the
 * reproducer of issue 4's lost wake-up (crates/qkernel/src/task/README.md,
 * "Lost wake-up under load"; hung in about half the runs until
 * SpinLock::try_lock stopped releasing locks it failed to take). A token passes round a ring of threads through futexes while a
 * child process forks and reaps grandchildren that exit at once; then
 * short-lived threads are woken (FUTEX_WAKE spam) right as they go to sleep
 * and exit, and are joined (CLONE_CHILD_CLEARTID); then a thread sleeping in
 * FUTEX_WAIT on a word nobody changes is sent SIGUSR1 at varying moments,
 * and the signal must end the wait every time. */
#include <pthread.h>

#include "guest.h"

/* ---- 1. spinners ---------------------------------------------------------- */

#define SPIN_ROUNDS 20

static volatile uint32_t spin_flag;  /* round r is over when it is r */
static volatile uint32_t spin_go;    /* the sleeper is woken for round r */
static volatile uint32_t spin_ready; /* the sleeper is (about to be) asleep in round r */
static volatile uint32_t spin_on;    /* the spinner runs in round r */

static void *spinner(void *arg) {
  uint32_t r = (uint32_t)(uintptr_t)arg;
  __atomic_store_n(&spin_on, r, __ATOMIC_RELEASE);
  while (__atomic_load_n(&spin_flag, __ATOMIC_ACQUIRE) != r) {
  }
  return NULL;
}

static void *woken_setter(void *arg) {
  uint32_t r = (uint32_t)(uintptr_t)arg;
  futex_set_wake(&spin_ready, r);
  futex_wait_while(&spin_go, r - 1);
  __atomic_store_n(&spin_flag, r, __ATOMIC_RELEASE);
  return NULL;
}

/* Each round: a thread sleeps on a futex; a spinner and the main thread then
 * each occupy a vCPU, spinning in user mode; the main thread wakes the
 * sleeper, which alone can end the round. Wherever the sleeper is queued, a
 * spinner that ran alone must make room for it. */
static UNUSED void spinners(void) {
  for (uint32_t r = 1; r <= SPIN_ROUNDS; r++) {
    pthread_t s, w;
    CHECK(pthread_create(&w, NULL, woken_setter, (void *)(uintptr_t)r) == 0, "pthread_create setter");
    futex_wait_while(&spin_ready, r - 1);
    sleep_ms(1); /* the setter is asleep in FUTEX_WAIT by now (if not, it sees spin_go change) */
    CHECK(pthread_create(&s, NULL, spinner, (void *)(uintptr_t)r) == 0, "pthread_create spinner");
    while (__atomic_load_n(&spin_on, __ATOMIC_ACQUIRE) != r) {
    }
    futex_set_wake(&spin_go, r);
    while (__atomic_load_n(&spin_flag, __ATOMIC_ACQUIRE) != r) {
    }
    pthread_join(s, NULL);
    pthread_join(w, NULL);
  }
  say("spinners give the vCPU to a woken thread: yes\n");
}

/* ---- storm (the reproducer)  ------------------------------------------------------------- */

#define RING 4
#define PASSES 800
#define SHORT_LIVED 100
#define FORKS 25

static volatile uint32_t token;      /* whose turn: pass number, owner = pass % RING */
static volatile uint32_t ring_count[RING];
static volatile uint32_t bell;       /* short-lived threads wait here */

static void *ring_member(void *arg) {
  uint32_t me = (uint32_t)(uintptr_t)arg;
  for (;;) {
    uint32_t t = __atomic_load_n(&token, __ATOMIC_ACQUIRE);
    if (t >= PASSES) break;
    if (t % RING != me) {
      futex(&token, (Q_FUTEX_WAIT | Q_FUTEX_PRIVATE), t, NULL, NULL, 0);
      continue;
    }
    ring_count[me]++;
    __atomic_store_n(&token, t + 1, __ATOMIC_RELEASE);
    futex(&token, (Q_FUTEX_WAKE | Q_FUTEX_PRIVATE), INT32_MAX, NULL, NULL, 0);
  }
  return NULL;
}

static volatile uint32_t alive; /* the current short-lived thread has not returned yet */

/* Sleeps on the bell (woken at once, or not sleeping at all), then exits. */
static void *short_lived(void *arg) {
  uint32_t b = __atomic_load_n(&bell, __ATOMIC_ACQUIRE);
  futex(&bell, Q_FUTEX_WAIT | Q_FUTEX_PRIVATE, b, NULL, NULL, 0);
  __atomic_store_n(&alive, 0, __ATOMIC_RELEASE);
  return arg;
}

/* Starts short-lived threads one by one and rings the bell until each is
 * about to exit, so wake-ups hit threads that go to sleep, wake and die. */
static void *churner(void *arg) {
  for (int i = 0; i < SHORT_LIVED; i++) {
    pthread_t t;
    __atomic_store_n(&alive, 1, __ATOMIC_RELEASE);
    CHECK(pthread_create(&t, NULL, short_lived, (void *)(uintptr_t)i) == 0, "pthread_create short-lived");
    while (__atomic_load_n(&alive, __ATOMIC_ACQUIRE)) {
      __atomic_fetch_add(&bell, 1, __ATOMIC_RELEASE);
      futex(&bell, Q_FUTEX_WAKE | Q_FUTEX_PRIVATE, INT32_MAX, NULL, NULL, 0);
    }
    void *ret;
    pthread_join(t, &ret);
    CHECK(ret == (void *)(uintptr_t)i, "short-lived thread %d returned its argument", i);
  }
  return arg;
}

static void storm(void) {
  /* A child process that forks and reaps while the ring runs. */
  volatile uint32_t *sh = shared_mem(PAGE);
  pid_t forker = xfork();
  if (forker == 0) {
    for (int i = 0; i < FORKS; i++) {
      pid_t g = xfork();
      if (g == 0) _exit(i % 7);
      int st = xwait(g);
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == i % 7, "grandchild %d: %s", i, wstatus_str(st));
      sh[0]++;
    }
    _exit(0);
  }
  pthread_t ring[RING];
  for (uintptr_t i = 0; i < RING; i++) CHECK(pthread_create(&ring[i], NULL, ring_member, (void *)i) == 0, "ring");
  for (int i = 0; i < RING; i++) pthread_join(ring[i], NULL);
  expect_child_ok(forker, "forker");
  uint32_t total = 0;
  for (int i = 0; i < RING; i++) {
    CHECK(ring_count[i] == PASSES / RING, "ring member %d passed %u times", i, ring_count[i]);
    total += ring_count[i];
  }
  say("token passes: %u\n", total);
  say("grandchildren reaped: %u\n", sh[0]);
}

/* ---- signals (the reproducer) ------------------------------------------------------------ */

#define SIG_ROUNDS 200

static volatile uint32_t never;       /* nobody changes it */
static volatile uint32_t sig_round;   /* main starts round r by setting r */
static volatile uint32_t sig_ready;   /* the sleeper is about to sleep in round r */
static volatile uint32_t sig_done;    /* the sleeper finished round r */
static volatile uint32_t sig_got;     /* rounds whose signal the handler saw */
static volatile uint32_t eintr_count; /* FUTEX_WAITs that ended with EINTR */

static void on_usr1(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)si;
  (void)uc;
  sig_got++;
}

static void *sig_sleeper(void *arg) {
  for (uint32_t r = 1; r <= SIG_ROUNDS; r++) {
    futex_wait_while(&sig_round, r - 1);
    futex_set_wake(&sig_ready, r);
    while (__atomic_load_n(&sig_got, __ATOMIC_ACQUIRE) < r) {
      long e = futex(&never, (Q_FUTEX_WAIT | Q_FUTEX_PRIVATE), 0, NULL, NULL, 0);
      if (e < 0 && errno == EINTR) eintr_count++;
      else CHECK(e < 0 && errno == EAGAIN, "FUTEX_WAIT on an unchanged word returned %ld (%s)", e, errname(errno));
    }
    futex_set_wake(&sig_done, r);
  }
  return arg;
}

static void signals(void) {
  on_signal(SIGUSR1, on_usr1, 0); /* no SA_RESTART: the wait ends with EINTR */
  pthread_t s;
  CHECK(pthread_create(&s, NULL, sig_sleeper, NULL) == 0, "pthread_create sleeper");
  for (uint32_t r = 1; r <= SIG_ROUNDS; r++) {
    futex_set_wake(&sig_round, r);
    futex_wait_while(&sig_ready, r - 1);
    /* Let the sleeper get somewhere between "about to wait" and asleep. */
    for (uint64_t spin = rng_below(20000); spin > 0; spin--) __asm__ volatile("" ::: "memory");
    CHECK(pthread_kill(s, SIGUSR1) == 0, "pthread_kill");
    futex_wait_while(&sig_done, r - 1);
  }
  pthread_join(s, NULL);
  CHECK(sig_got == SIG_ROUNDS, "handler ran %u times", sig_got);
  CHECK(eintr_count <= SIG_ROUNDS, "%u EINTRs", eintr_count);
  say("signals ended futex waits: %d\n", SIG_ROUNDS);
}

/* One whole storm: the token ring with the forker, the short-lived
 * threads, the signalled sleeper. */
static void storm_all(void) {
  storm();
  churner(NULL);
  say("short-lived threads joined: %d\n", SHORT_LIVED);
  signals();
}

#ifdef SCHED_RACE_STORM
/* sched_race_storm.c: the storm twice, each in a fresh child process (fresh
 * counters), which is what the harness runs. */
int main(void) {
  for (int round = 1; round <= 2; round++) {
    say("storm %d\n", round);
    pid_t p = xfork();
    if (p == 0) {
      storm_all();
      _exit(0);
    }
    expect_child_ok(p, "storm");
  }
  return 0;
}
#else
int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "storm")) {
    /* Once, by hand (sched_race_storm runs it twice in the harness). */
    storm_all();
    return 0;
  }
  spinners();
  return 0;
}
#endif
