// issue: 4
// cpus: 2
/* POSIX threads with 8 threads: mutex-protected counter, condition-variable
 * producer/consumer queue, barrier rounds, reader-writer lock invariants,
 * per-thread TLS and thread-specific data, pthread_once, join return values,
 * a detached thread. Prints deterministic totals only.
 *
 * Sized for the sandbox (a contended futex operation costs ~1 ms there):
 * about 2,000 lock operations in all. */
#include <pthread.h>

#include "guest.h"

#define NT 8
#define INCS 200
#define ITEMS 400
#define ROUNDS 20
#define RW_OPS 60

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qnotempty = PTHREAD_COND_INITIALIZER, qnotfull = PTHREAD_COND_INITIALIZER;
static int queue[16], qhead, qtail, qlen, produced_done;
static long consumed_sum, consumed_count;

static pthread_barrier_t barrier;
static int round_marks[ROUNDS][NT];
static int barrier_violations;

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static long rw_a, rw_b; /* invariant under the lock: rw_a == rw_b */
static int rw_violations;
static long rw_reads;

static __thread int my_index = -1;
static pthread_key_t key;
static int key_destructor_runs;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_runs;

static void once_fn(void) { __atomic_add_fetch(&once_runs, 1, __ATOMIC_SEQ_CST); }
static void key_destructor(void *p) { __atomic_add_fetch(&key_destructor_runs, 1, __ATOMIC_SEQ_CST); }

static void *worker(void *arg) {
  int idx = (int)(long)arg;
  my_index = idx;
  pthread_setspecific(key, (void *)(long)(idx + 100));
  pthread_once(&once, once_fn);

  /* mutex */
  for (int i = 0; i < INCS; i++) {
    pthread_mutex_lock(&mu);
    counter++;
    pthread_mutex_unlock(&mu);
  }

  /* barrier: every thread marks round r before anyone checks round r */
  for (int r = 0; r < ROUNDS; r++) {
    round_marks[r][idx] = 1;
    pthread_barrier_wait(&barrier);
    for (int j = 0; j < NT; j++)
      if (!round_marks[r][j]) __atomic_add_fetch(&barrier_violations, 1, __ATOMIC_SEQ_CST);
    pthread_barrier_wait(&barrier);
  }

  /* rwlock: writers keep rw_a == rw_b; readers check it */
  for (int i = 0; i < RW_OPS; i++) {
    if (i % 4 == idx % 4) {
      pthread_rwlock_wrlock(&rw);
      rw_a++;
      sched_yield();
      rw_b++;
      pthread_rwlock_unlock(&rw);
    } else {
      pthread_rwlock_rdlock(&rw);
      if (rw_a != rw_b) __atomic_add_fetch(&rw_violations, 1, __ATOMIC_SEQ_CST);
      __atomic_add_fetch(&rw_reads, 1, __ATOMIC_SEQ_CST);
      pthread_rwlock_unlock(&rw);
    }
  }

  /* condition variables: threads 0-3 produce, 4-7 consume */
  if (idx < NT / 2) {
    for (int i = 0; i < ITEMS / (NT / 2); i++) {
      pthread_mutex_lock(&qmu);
      while (qlen == 16) pthread_cond_wait(&qnotfull, &qmu);
      queue[qtail] = idx * 1000 + i;
      qtail = (qtail + 1) % 16;
      qlen++;
      pthread_cond_signal(&qnotempty);
      pthread_mutex_unlock(&qmu);
    }
    pthread_mutex_lock(&qmu);
    produced_done++;
    pthread_cond_broadcast(&qnotempty);
    pthread_mutex_unlock(&qmu);
  } else {
    for (;;) {
      pthread_mutex_lock(&qmu);
      while (qlen == 0 && produced_done < NT / 2) pthread_cond_wait(&qnotempty, &qmu);
      if (qlen == 0) {
        pthread_mutex_unlock(&qmu);
        break;
      }
      int v = queue[qhead];
      qhead = (qhead + 1) % 16;
      qlen--;
      consumed_sum += v;
      consumed_count++;
      pthread_cond_signal(&qnotfull);
      pthread_mutex_unlock(&qmu);
    }
  }

  CHECK(my_index == idx, "TLS changed under the thread");
  CHECK(pthread_getspecific(key) == (void *)(long)(idx + 100), "thread-specific data");
  return (void *)(long)(idx * idx);
}

static volatile int detached_ran;
static void *detached(void *arg) {
  __atomic_store_n(&detached_ran, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static pid_t ids_tid, ids_pid;
static void *ids_fn(void *arg) {
  ids_tid = gettid_();
  ids_pid = getpid();
  return NULL;
}

int main(void) {
  CHECK(pthread_key_create(&key, key_destructor) == 0, "key");
  CHECK(pthread_barrier_init(&barrier, NULL, NT) == 0, "barrier");
  pthread_t t[NT];
  for (long i = 0; i < NT; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0, "pthread_create %ld", i);
  long ret_sum = 0;
  for (int i = 0; i < NT; i++) {
    void *ret;
    CHECK(pthread_join(t[i], &ret) == 0, "join");
    ret_sum += (long)ret;
  }
  long expect_sum = 0;
  for (int p = 0; p < NT / 2; p++)
    for (int i = 0; i < ITEMS / (NT / 2); i++) expect_sum += p * 1000 + i;
  say("threads: %d\n", NT);
  say("mutex counter: %ld (expected %d)\n", counter, NT * INCS);
  say("condvar queue: consumed %ld items, sum %s\n", consumed_count, consumed_sum == expect_sum ? "correct" : "WRONG");
  say("barrier rounds: %d, violations: %d\n", ROUNDS, barrier_violations);
  say("rwlock: writes %ld, reads %ld, violations %d\n", rw_a, rw_reads, rw_violations);
  say("join values sum: %ld\n", ret_sum);
  say("pthread_once ran %d time(s), key destructors ran %d time(s)\n", once_runs, key_destructor_runs);
  CHECK(counter == NT * INCS && consumed_count == ITEMS && consumed_sum == expect_sum, "totals");
  CHECK(barrier_violations == 0 && rw_violations == 0 && rw_a == rw_b, "invariants");
  CHECK(once_runs == 1 && key_destructor_runs == NT, "once/key");

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t d;
  CHECK(pthread_create(&d, &attr, detached, NULL) == 0, "detached create");
  for (int i = 0; i < 5000 && !__atomic_load_n(&detached_ran, __ATOMIC_SEQ_CST); i++) sleep_ms(1);
  say("detached thread ran: %s\n", yesno(detached_ran));
  CHECK(detached_ran, "detached thread never ran");
  CHECK(my_index == -1, "main thread TLS");

  /* Thread ids: distinct from the pid, same process id. */
  pthread_t e;
  CHECK(pthread_create(&e, NULL, ids_fn, NULL) == 0, "ids thread");
  CHECK(pthread_join(e, NULL) == 0, "ids join");
  say("thread: getpid same as main: %s, gettid differs from it: %s\n", yesno(ids_pid == getpid()),
      yesno(ids_tid != getpid() && ids_tid > 0));
  CHECK(ids_pid == getpid() && ids_tid != getpid() && ids_tid > 0, "thread ids");
  return 0;
}
