// issue: 4
// cpus: 2
/* Raw futex operations: WAIT/WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP, WAIT_BITSET/
 * WAKE_BITSET, private and shared (across processes, and through two mappings
 * of one shared page), timeouts relative and absolute on CLOCK_MONOTONIC and
 * CLOCK_REALTIME, error cases, then a futex mutex and a ping-pong under load.
 *
 * Return values that count woken/requeued waiters are only deterministic when
 * the waiters are known to be queued. settle() makes sure: it requeues waiters
 * from their futex to a parking futex until all n have been moved (the kernel
 * counts each move), then requeues them back. Counted operations then start
 * from the waiters' own futex: Linux allows spurious wakeups, and a waiter woken
 * spuriously re-queues itself on the futex it originally waited on, so it is
 * still counted there. A section whose counts come out wrong anyway (a waiter
 * woken spuriously while parked during settle() is counted twice) is cleaned up
 * and repeated, up to 5 times; a single waiter is simply settled again. PI futexes are not tested (the sandbox may return
 * ENOSYS for them). */
#include <limits.h>
#include <pthread.h>

#include "guest.h"

#define P Q_FUTEX_PRIVATE
#define NR(n) ((const struct timespec *)(long)(n)) /* val2 travels in the timeout slot */

struct waiter {
  volatile uint32_t *f;
  uint32_t val;
  uint32_t bitset;
  int op;
  pthread_t th;
  long result;
  int err;
  volatile int woke;
};

static volatile int wake_seq;

static void *waiter_fn(void *arg) {
  struct waiter *w = arg;
  errno = 0;
  w->result = futex(w->f, w->op, w->val, NULL, NULL, w->bitset);
  w->err = errno;
  __atomic_store_n(&w->woke, __atomic_add_fetch(&wake_seq, 1, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
  return NULL;
}

static void start(struct waiter *w, volatile uint32_t *f, int op, uint32_t bitset) {
  memset(w, 0, sizeof *w);
  w->f = f;
  w->val = *f;
  w->op = op;
  w->bitset = bitset;
  CHECK(pthread_create(&w->th, NULL, waiter_fn, w) == 0, "pthread_create");
}

static void finish(struct waiter *w, const char *what) {
  CHECK(pthread_join(w->th, NULL) == 0, "join");
  CHECK(w->result == 0, "%s: waiter returned %ld %s", what, w->result, errname(w->err));
}

/* Waiting for other threads: yield, then sleep; give up after 10 s (a loaded host is slow). */
static void backoff(int spins, int64_t t0, const char *what) {
  if (spins < 100)
    sched_yield();
  else
    sleep_ms(1);
  CHECK(mono_ns() - t0 < 10000000000LL, "%s", what);
}

/* Make sure n waiters are queued on their futex f (parking them on `park` and back). */
static void settle(volatile uint32_t *f, volatile uint32_t *park, int n, int flags) {
  int moved = 0;
  int64_t t0 = mono_ns();
  for (int spins = 0; moved < n; spins++) {
    long r = futex(f, Q_FUTEX_CMP_REQUEUE | flags, 0, NR(INT_MAX), park, *f);
    CHECK(r >= 0, "settle: requeue to the parking futex");
    moved += (int)r;
    if (moved < n) backoff(spins, t0, "waiters never queued");
  }
  CHECK(futex(park, Q_FUTEX_CMP_REQUEUE | flags, 0, NR(INT_MAX), f, *park) >= 0, "settle: requeue back");
}

/* Wake the single waiter queued on f, re-settling it while it is in transit after a spurious
 * wakeup (then the wake finds nobody). Returns what the successful FUTEX_WAKE returned. */
static long wake_one(volatile uint32_t *f, volatile uint32_t *wake_addr, volatile uint32_t *park, int flags) {
  int64_t t0 = mono_ns();
  for (int spins = 0;; spins++) {
    settle(f, park, 1, flags);
    long r = futex(wake_addr, Q_FUTEX_WAKE | flags, 1, NULL, NULL, 0);
    if (r != 0) return r;
    backoff(spins, t0, "wake_one: the waiter never came back");
  }
}

/* Wake every waiter (on any of the futexes) and join them: the clean-up before a retry. */
static void wake_all(struct waiter *w, int n, volatile uint32_t *const *fs, int nf) {
  for (int i = 0; i < n; i++) {
    for (int spins = 0; !w[i].woke; spins++) {
      for (int j = 0; j < nf; j++) futex(fs[j], Q_FUTEX_WAKE_BITSET | P, INT_MAX, NULL, NULL, Q_FUTEX_BITSET_MATCH_ANY);
      CHECK(spins < 5000, "clean-up: a waiter never woke");
      sleep_ms(1);
    }
    pthread_join(w[i].th, NULL);
  }
}

#define ATTEMPTS 5

static int64_t elapsed_since(int64_t t0) { return mono_ns() - t0; }

static void timeouts(void) {
  static uint32_t f = 7;
  struct timespec rel = {0, 20 * 1000000L};
  int64_t t0 = mono_ns();
  long r = futex(&f, Q_FUTEX_WAIT | P, 7, &rel, NULL, 0);
  int64_t el = elapsed_since(t0);
  say("WAIT relative 20 ms: %s, waited >= 20 ms: %s\n", r == -1 ? errname(errno) : "0", yesno(el >= 20000000));
  CHECK(r == -1 && errno == ETIMEDOUT && el >= 20000000, "relative timeout");

  /* FUTEX_CLOCK_REALTIME is only valid with WAIT_BITSET (and the PI ops) on Linux. */
  r = futex(&f, Q_FUTEX_WAIT | P | Q_FUTEX_CLOCK_REALTIME, 7, &rel, NULL, 0);
  say("WAIT|CLOCK_REALTIME: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == ENOSYS, "FUTEX_WAIT with CLOCK_REALTIME");

  struct timespec abs;
  clock_gettime(CLOCK_MONOTONIC, &abs);
  abs.tv_nsec += 20 * 1000000L;
  if (abs.tv_nsec >= 1000000000L) abs.tv_sec++, abs.tv_nsec -= 1000000000L;
  t0 = mono_ns();
  r = futex(&f, Q_FUTEX_WAIT_BITSET | P, 7, &abs, NULL, Q_FUTEX_BITSET_MATCH_ANY);
  el = elapsed_since(t0);
  say("WAIT_BITSET absolute MONOTONIC +20 ms: %s, waited >= 19 ms: %s\n", r == -1 ? errname(errno) : "0",
      yesno(el >= 19000000));
  CHECK(r == -1 && errno == ETIMEDOUT && el >= 19000000 && mono_ns() >= (int64_t)abs.tv_sec * 1000000000LL + abs.tv_nsec,
        "absolute monotonic timeout");

  clock_gettime(CLOCK_REALTIME, &abs);
  abs.tv_nsec += 20 * 1000000L;
  if (abs.tv_nsec >= 1000000000L) abs.tv_sec++, abs.tv_nsec -= 1000000000L;
  t0 = mono_ns();
  r = futex(&f, Q_FUTEX_WAIT_BITSET | P | Q_FUTEX_CLOCK_REALTIME, 7, &abs, NULL, Q_FUTEX_BITSET_MATCH_ANY);
  el = elapsed_since(t0);
  say("WAIT_BITSET|CLOCK_REALTIME absolute +20 ms: %s, waited >= 19 ms: %s\n", r == -1 ? errname(errno) : "0",
      yesno(el >= 19000000));
  CHECK(r == -1 && errno == ETIMEDOUT && el >= 19000000, "absolute realtime timeout");

  abs.tv_sec -= 10; /* in the past */
  r = futex(&f, Q_FUTEX_WAIT_BITSET | P | Q_FUTEX_CLOCK_REALTIME, 7, &abs, NULL, Q_FUTEX_BITSET_MATCH_ANY);
  say("WAIT_BITSET absolute in the past: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == ETIMEDOUT, "past deadline");
}

static void errors(void) {
  static uint32_t f = 1;
  long r = futex(&f, Q_FUTEX_WAIT | P, 2, NULL, NULL, 0);
  say("WAIT with a changed value: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == EAGAIN, "value mismatch");
  r = futex(&f, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
  say("WAKE with no waiters = %ld\n", r);
  CHECK(r == 0, "wake nobody");
  r = futex((uint32_t *)((char *)&f + 1), Q_FUTEX_WAIT | P, 1, NULL, NULL, 0);
  say("WAIT on an unaligned address: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == EINVAL, "unaligned");
  r = futex(NULL, Q_FUTEX_WAIT | P, 0, NULL, NULL, 0);
  say("WAIT on NULL: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == EFAULT, "NULL futex");
  struct timespec bad = {0, 1000000000L};
  r = futex(&f, Q_FUTEX_WAIT | P, 1, &bad, NULL, 0);
  say("WAIT with tv_nsec = 1e9: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == EINVAL, "bad timespec");
  r = futex(&f, 99 | P, 0, NULL, NULL, 0);
  say("unknown op: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == ENOSYS, "unknown op");
  r = futex(&f, Q_FUTEX_WAKE_BITSET | P, 1, NULL, NULL, 0);
  say("WAKE_BITSET with bitset 0: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == EINVAL, "bitset 0");
  r = futex(&f, Q_FUTEX_CMP_REQUEUE | P, 0, NR(1), &f, 12345);
  say("CMP_REQUEUE with a stale value: %s\n", r == -1 ? errname(errno) : "0");
  CHECK(r == -1 && errno == EAGAIN, "cmp requeue mismatch");
}

static void wait_wake(void) {
  static uint32_t f, park;
  struct waiter w;
  start(&w, &f, Q_FUTEX_WAIT | P, 0);
  long r = wake_one(&f, &f, &park, P);
  finish(&w, "wait/wake");
  say("WAIT/WAKE: woke %ld\n", r);
  CHECK(r == 1, "wake one");
}

static int requeue_once(int last) {
  static uint32_t f1, f2, park;
  volatile uint32_t *const all[] = {&f1, &f2, &park};
  struct waiter w[4];
  for (int i = 0; i < 4; i++) start(&w[i], &f1, Q_FUTEX_WAIT | P, 0);
  settle(&f1, &park, 4, P);
  long r = futex(&f1, Q_FUTEX_REQUEUE | P, 1, NR(INT_MAX), &f2, 0);
  int woken = 0;
  int64_t t0 = mono_ns();
  for (int spins = 0; woken < 1 && mono_ns() - t0 < 5000000000LL; spins++) {
    woken = 0;
    for (int i = 0; i < 4; i++) woken += w[i].woke != 0;
    if (woken < 1) backoff(spins, t0, "requeue: nobody woke");
  }
  sleep_ms(5);
  woken = 0;
  for (int i = 0; i < 4; i++) woken += w[i].woke != 0;
  if (r != 4 || woken != 1) {
    CHECK(!last, "REQUEUE wake 1, requeue rest returned %ld (expected 4), %d woken (expected 1)", r, woken);
    wake_all(w, 4, all, 3);
    return 0;
  }
  /* The three on f2 go back to f1 (any woken spuriously meanwhile are already there). */
  long back = futex(&f2, Q_FUTEX_CMP_REQUEUE | P, 0, NR(INT_MAX), &f1, f2);
  CHECK(back >= 0 && back <= 3, "cmp requeue back: %ld", back);
  long w2 = futex(&f1, Q_FUTEX_WAKE | P, 2, NULL, NULL, 0);
  long wr = futex(&f1, Q_FUTEX_WAKE | P, INT_MAX, NULL, NULL, 0);
  if (w2 != 2 || wr != 1) {
    CHECK(!last, "WAKE 2 then all = %ld, %ld (expected 2, 1)", w2, wr);
    wake_all(w, 4, all, 3);
    return 0;
  }
  for (int i = 0; i < 4; i++) finish(&w[i], "requeue");
  say("REQUEUE wake 1, requeue rest = %ld\n", r);
  say("CMP_REQUEUE the rest back, then WAKE 2 and WAKE all = %ld, %ld\n", w2, wr);
  return 1;
}

static void requeue(void) {
  for (int a = 0; a < ATTEMPTS; a++)
    if (requeue_once(a == ATTEMPTS - 1)) return;
}

static int wake_op_once(int last) {
  static uint32_t fa, fb, parka, parkb;
  volatile uint32_t *const all[] = {&fa, &fb, &parka, &parkb};
  struct waiter w[2];
  fa = fb = 0;
  start(&w[0], &fa, Q_FUTEX_WAIT | P, 0);
  start(&w[1], &fb, Q_FUTEX_WAIT | P, 0);
  settle(&fa, &parka, 1, P);
  settle(&fb, &parkb, 1, P);
  long r = futex(&fa, Q_FUTEX_WAKE_OP | P, 1, NR(1), &fb, Q_FUTEX_OP(Q_FUTEX_OP_SET, 5, Q_FUTEX_OP_CMP_EQ, 0));
  if (r != 2 || fb != 5) {
    CHECK(!last, "WAKE_OP set 5 if old == 0: woke %ld, fb = %u (expected 2, 5)", r, fb);
    wake_all(w, 2, all, 4);
    return 0;
  }
  finish(&w[0], "wake_op a");
  finish(&w[1], "wake_op b");
  long r1 = r;

  start(&w[0], &fa, Q_FUTEX_WAIT | P, 0);
  start(&w[1], &fb, Q_FUTEX_WAIT | P, 0); /* waits for fb == 5 */
  settle(&fa, &parka, 1, P);
  settle(&fb, &parkb, 1, P);
  r = futex(&fa, Q_FUTEX_WAKE_OP | P, 1, NR(1), &fb, Q_FUTEX_OP(Q_FUTEX_OP_ADD, 1, Q_FUTEX_OP_CMP_GT, 10));
  sleep_ms(5);
  int second_asleep = !w[1].woke;
  if (r != 1 || fb != 6 || !second_asleep) {
    CHECK(!last, "WAKE_OP add 1 if old > 10: woke %ld, fb = %u, second asleep %d", r, fb, second_asleep);
    wake_all(w, 2, all, 4);
    return 0;
  }
  finish(&w[0], "wake_op a2");
  /* the second waiter waited for 5 and fb is 6 now: a spurious wakeup ends its wait with EAGAIN */
  futex(&fb, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
  CHECK(pthread_join(w[1].th, NULL) == 0, "join");
  CHECK(w[1].result == 0 || w[1].err == EAGAIN, "second waiter: %s", errname(w[1].err));
  say("WAKE_OP set 5 if old == 0: woke %ld, fb = 5\n", r1);
  say("WAKE_OP add 1 if old > 10: woke %ld, fb = 6, second waiter still asleep: yes\n", r);
  return 1;
}

static void wake_op(void) {
  for (int a = 0; a < ATTEMPTS; a++)
    if (wake_op_once(a == ATTEMPTS - 1)) return;
}

static int bitset_once(int last) {
  static uint32_t f, park;
  volatile uint32_t *const all[] = {&f, &park};
  struct waiter w[2];
  start(&w[0], &f, Q_FUTEX_WAIT_BITSET | P, 0x1);
  start(&w[1], &f, Q_FUTEX_WAIT_BITSET | P, 0x2);
  settle(&f, &park, 2, P);
  long r2 = futex(&f, Q_FUTEX_WAKE_BITSET | P, INT_MAX, NULL, NULL, 0x2);
  sleep_ms(5);
  int sel = w[1].woke && !w[0].woke;
  long r1 = futex(&f, Q_FUTEX_WAKE_BITSET | P, INT_MAX, NULL, NULL, 0x1);
  if (r2 != 1 || r1 != 1 || !sel) {
    CHECK(!last, "WAKE_BITSET 0x2 = %ld, 0x1 = %ld, selective %d", r2, r1, sel);
    wake_all(w, 2, all, 2);
    return 0;
  }
  finish(&w[1], "bitset 2");
  finish(&w[0], "bitset 1");
  say("WAKE_BITSET 0x2: woke %ld, only the 0x2 waiter: %s\n", r2, yesno(sel));
  say("WAKE_BITSET 0x1: woke %ld\n", r1);
  return 1;
}

static void bitset(void) {
  for (int a = 0; a < ATTEMPTS; a++)
    if (bitset_once(a == ATTEMPTS - 1)) return;
}

static void shared(void) {
  volatile uint32_t *sh = shared_mem(PAGE);
  volatile uint32_t *f = &sh[0], *park = &sh[1], *g = &sh[2], *ready = &sh[3];
  pid_t c = xfork();
  if (c == 0) {
    long r = futex(f, Q_FUTEX_WAIT, 0, NULL, NULL, 0); /* shared */
    _exit(r == 0 ? 0 : 1);
  }
  long r = wake_one(f, f, park, 0);
  int st = xwait(c);
  say("shared futex across fork: woke %ld, child %s\n", r, wstatus_str(st));
  CHECK(r == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "shared wake");

  /* A private wake in another process does not reach a private waiter. */
  c = xfork();
  if (c == 0) {
    futex_set_wake(ready, 1);
    struct timespec ts = {0, 100 * 1000000L};
    long rr = futex(g, Q_FUTEX_WAIT | P, 0, &ts, NULL, 0);
    _exit(rr == -1 && errno == ETIMEDOUT ? 0 : 1);
  }
  futex_wait_while(ready, 0);
  r = futex(g, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
  st = xwait(c);
  say("private wake from the parent reaches the child's private wait: %s (woke %ld), child timed out: %s\n",
      yesno(r != 0), r, yesno(WIFEXITED(st) && WEXITSTATUS(st) == 0));
  CHECK(r == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "private isolation");

  /* Two mappings of one shared page: a shared futex is keyed by the page, not the address. */
  volatile uint32_t *alias = mremap((void *)sh, 0, PAGE, MREMAP_MAYMOVE);
  CHECK(alias != MAP_FAILED && alias != sh, "mremap alias");
  sh[4] = 0;
  struct waiter w;
  start(&w, &sh[4], Q_FUTEX_WAIT, 0);
  r = wake_one(&alias[4], &alias[4], &alias[5], 0); /* the waiter waits on sh[4] */
  finish(&w, "alias");
  say("shared futex waited on through one mapping, requeued and woken through another: woke %ld\n", r);
  CHECK(r == 1, "alias wake");
  munmap((void *)alias, PAGE);
  munmap((void *)sh, PAGE);
}

/* A futex mutex (Drepper's "mutex 2") under 4 threads. */
static uint32_t lockword;
static long shared_counter;
static void lock(void) {
  uint32_t c = 0;
  if (__atomic_compare_exchange_n(&lockword, &c, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
  if (c != 2) c = __atomic_exchange_n(&lockword, 2, __ATOMIC_ACQUIRE);
  while (c != 0) {
    futex(&lockword, Q_FUTEX_WAIT | P, 2, NULL, NULL, 0);
    c = __atomic_exchange_n(&lockword, 2, __ATOMIC_ACQUIRE);
  }
}
static void unlock(void) {
  if (__atomic_fetch_sub(&lockword, 1, __ATOMIC_RELEASE) != 1) {
    __atomic_store_n(&lockword, 0, __ATOMIC_RELEASE);
    futex(&lockword, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
  }
}
static void *locker(void *arg) {
  for (int i = 0; i < 300; i++) {
    lock();
    long v = shared_counter;
    if (i % 16 == 0) sched_yield();
    shared_counter = v + 1;
    unlock();
  }
  return NULL;
}

static uint32_t ping, pong;
#define ROUNDS 200
static void *ponger(void *arg) {
  for (uint32_t i = 1; i <= ROUNDS; i++) {
    while (__atomic_load_n(&ping, __ATOMIC_ACQUIRE) < i) futex(&ping, Q_FUTEX_WAIT | P, i - 1, NULL, NULL, 0);
    __atomic_store_n(&pong, i, __ATOMIC_RELEASE);
    futex(&pong, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
  }
  return NULL;
}

int main(void) {
  errors();
  timeouts();
  wait_wake();
  requeue();
  wake_op();
  bitset();
  shared();

  pthread_t t[4];
  for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, locker, NULL) == 0, "create");
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  say("futex mutex, 4 threads x 300: counter %ld\n", shared_counter);
  CHECK(shared_counter == 1200, "mutex counter");

  pthread_t p;
  CHECK(pthread_create(&p, NULL, ponger, NULL) == 0, "create");
  for (uint32_t i = 1; i <= ROUNDS; i++) {
    __atomic_store_n(&ping, i, __ATOMIC_RELEASE);
    futex(&ping, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
    while (__atomic_load_n(&pong, __ATOMIC_ACQUIRE) < i) futex(&pong, Q_FUTEX_WAIT | P, i - 1, NULL, NULL, 0);
  }
  pthread_join(p, NULL);
  say("ping-pong: %u rounds\n", pong);
  CHECK(pong == ROUNDS, "ping-pong");
  return 0;
}
