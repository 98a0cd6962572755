// issue: 4
// cpus: 2
/* Raw futex operations: WAIT/WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP, WAIT_BITSET/
 * WAKE_BITSET, private and shared (across processes, and through two mappings
 * of one shared page), timeouts relative and absolute on CLOCK_MONOTONIC and
 * CLOCK_REALTIME, error cases, then a futex mutex and a ping-pong under load.
 *
 * Return values that count woken/requeued waiters are only deterministic when
 * the waiters are known to be queued. gather() makes sure: it requeues waiters
 * from their futex to a parking futex until all n have been moved (each move is
 * counted by the kernel, so the total is exact), and the test then requeues them
 * wherever it wants them. PI futexes are not tested (the sandbox may return
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

/* Move n waiters queued (or about to queue) on `from` to `to`; flags: P or 0. */
static void gather(volatile uint32_t *from, volatile uint32_t *to, int n, int flags) {
  int moved = 0;
  for (int spins = 0; moved < n; spins++) {
    long r = futex(from, Q_FUTEX_CMP_REQUEUE | flags, 0, NR(INT_MAX), to, *from);
    CHECK(r >= 0, "gather requeue");
    moved += (int)r;
    CHECK(spins < 100000, "waiters never queued (%d of %d)", moved, n);
    if (moved < n) sched_yield();
  }
  CHECK(moved == n, "gathered %d, expected %d", moved, n);
}

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
  gather(&f, &park, 1, P);
  long r = futex(&park, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
  finish(&w, "wait/wake");
  say("WAIT/WAKE: woke %ld\n", r);
  CHECK(r == 1, "wake one");
}

static void requeue(void) {
  static uint32_t f1, f2, park;
  struct waiter w[4];
  for (int i = 0; i < 4; i++) start(&w[i], &f1, Q_FUTEX_WAIT | P, 0);
  gather(&f1, &park, 4, P);
  long r = futex(&park, Q_FUTEX_REQUEUE | P, 1, NR(INT_MAX), &f2, 0);
  say("REQUEUE wake 1, requeue rest = %ld\n", r);
  CHECK(r == 4, "requeue count");
  int woken = 0;
  for (int spins = 0; woken != 1; spins++) {
    woken = 0;
    for (int i = 0; i < 4; i++) woken += w[i].woke != 0;
    CHECK(spins < 100000 && woken <= 1, "woken %d", woken);
    if (woken != 1) sched_yield();
  }
  r = futex(&f2, Q_FUTEX_CMP_REQUEUE | P, 0, NR(INT_MAX), &f1, f2);
  say("CMP_REQUEUE the other 3 back = %ld\n", r);
  CHECK(r == 3, "cmp requeue count");
  r = futex(&f1, Q_FUTEX_WAKE | P, 2, NULL, NULL, 0);
  long r2 = futex(&f1, Q_FUTEX_WAKE | P, INT_MAX, NULL, NULL, 0);
  say("WAKE 2 then all = %ld, %ld\n", r, r2);
  CHECK(r == 2 && r2 == 1, "wake counts");
  for (int i = 0; i < 4; i++) finish(&w[i], "requeue");
}

static void wake_op(void) {
  static uint32_t fa, fb, parka, parkb;
  struct waiter a, b;
  start(&a, &fa, Q_FUTEX_WAIT | P, 0);
  start(&b, &fb, Q_FUTEX_WAIT | P, 0);
  gather(&fa, &parka, 1, P);
  gather(&fb, &parkb, 1, P);
  CHECK(futex(&parka, Q_FUTEX_CMP_REQUEUE | P, 0, NR(1), &fa, parka) == 1, "back to fa");
  CHECK(futex(&parkb, Q_FUTEX_CMP_REQUEUE | P, 0, NR(1), &fb, parkb) == 1, "back to fb");
  long r = futex(&fa, Q_FUTEX_WAKE_OP | P, 1, NR(1), &fb, Q_FUTEX_OP(Q_FUTEX_OP_SET, 5, Q_FUTEX_OP_CMP_EQ, 0));
  finish(&a, "wake_op a");
  finish(&b, "wake_op b");
  say("WAKE_OP set 5 if old == 0: woke %ld, fb = %u\n", r, fb);
  CHECK(r == 2 && fb == 5, "wake_op both");

  start(&a, &fa, Q_FUTEX_WAIT | P, 0);
  start(&b, &fb, Q_FUTEX_WAIT | P, 0); /* waits for fb == 5 */
  gather(&fa, &parka, 1, P);
  gather(&fb, &parkb, 1, P);
  CHECK(futex(&parka, Q_FUTEX_CMP_REQUEUE | P, 0, NR(1), &fa, parka) == 1, "back to fa");
  CHECK(futex(&parkb, Q_FUTEX_CMP_REQUEUE | P, 0, NR(1), &fb, parkb) == 1, "back to fb");
  r = futex(&fa, Q_FUTEX_WAKE_OP | P, 1, NR(1), &fb, Q_FUTEX_OP(Q_FUTEX_OP_ADD, 1, Q_FUTEX_OP_CMP_GT, 10));
  finish(&a, "wake_op a2");
  say("WAKE_OP add 1 if old > 10: woke %ld, fb = %u, second waiter still asleep: %s\n", r, fb, yesno(!b.woke));
  CHECK(r == 1 && fb == 6 && !b.woke, "wake_op first only");
  r = futex(&fb, Q_FUTEX_WAKE | P, 1, NULL, NULL, 0);
  finish(&b, "wake_op b2");
  CHECK(r == 1, "wake b");
}

static void bitset(void) {
  static uint32_t f, park;
  struct waiter w1, w2;
  start(&w1, &f, Q_FUTEX_WAIT_BITSET | P, 0x1);
  start(&w2, &f, Q_FUTEX_WAIT_BITSET | P, 0x2);
  gather(&f, &park, 2, P);
  CHECK(futex(&park, Q_FUTEX_CMP_REQUEUE | P, 0, NR(2), &f, park) == 2, "back to f");
  long r = futex(&f, Q_FUTEX_WAKE_BITSET | P, INT_MAX, NULL, NULL, 0x2);
  finish(&w2, "bitset 2");
  say("WAKE_BITSET 0x2: woke %ld, the 0x2 waiter: %s, the 0x1 waiter still asleep: %s\n", r, yesno(w2.woke != 0),
      yesno(!w1.woke));
  CHECK(r == 1 && !w1.woke, "bitset selectivity");
  r = futex(&f, Q_FUTEX_WAKE_BITSET | P, INT_MAX, NULL, NULL, 0x1);
  finish(&w1, "bitset 1");
  say("WAKE_BITSET 0x1: woke %ld\n", r);
  CHECK(r == 1, "bitset 1");
}

static void shared(void) {
  volatile uint32_t *sh = shared_mem(PAGE);
  volatile uint32_t *f = &sh[0], *park = &sh[1], *g = &sh[2], *ready = &sh[3];
  pid_t c = xfork();
  if (c == 0) {
    long r = futex(f, Q_FUTEX_WAIT, 0, NULL, NULL, 0); /* shared */
    _exit(r == 0 ? 0 : 1);
  }
  gather(f, park, 1, 0);
  CHECK(futex(park, Q_FUTEX_CMP_REQUEUE, 0, NR(1), f, *park) == 1, "back to f");
  long r = futex(f, Q_FUTEX_WAKE, 1, NULL, NULL, 0);
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
  gather(&alias[4], &alias[5], 1, 0);
  r = futex(&sh[5], Q_FUTEX_WAKE, 1, NULL, NULL, 0);
  finish(&w, "alias");
  say("shared futex through a second mapping of the page: requeued and woke %ld\n", r);
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
