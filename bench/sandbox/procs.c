// Issue 4 micro-benchmarks (processes, threads, memory). Usage: procs MODE N [THREADS]
// Runs N operations of MODE and prints the mean wall time per operation in
// nanoseconds. N = 0 runs the set-up only (the harness subtracts that run's
// counters to get supervisor instructions and VM exits per operation).
//   fork    fork + child _exit(0) + waitpid
//   thread  pthread_create + pthread_join (thread returns at once)
//   fault   first touch of a fresh anonymous page (N pages of one mmap, in
//           order: the kernel may map neighbours ahead, fault-around)
//   sparse  first touch of every 32nd page of a fresh mapping (each touch a
//           page fault of its own)
//   futex   futex ping-pong between two threads: one round trip = two
//           FUTEX_WAKEs and two FUTEX_WAITs (run with 2 CPUs)
//   yield   sched_yield ping-pong: two threads pinned to CPU 0 take turns
//           (one op = one switch from one thread to the other)
//   frames  page-frame allocation and free: THREADS processes (default 1;
//           processes, not threads, so they share no address space and no
//           TLB shootdowns) each map 64 pages, touch them and unmap them,
//           N/64 times; prints the time per page over all processes
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static long n;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void futex(volatile uint32_t *f, int op, uint32_t v) { syscall(SYS_futex, f, op, v, NULL, NULL, 0); }

static void *nothing(void *arg) { return arg; }

static volatile uint32_t ping, pong;
static void *ponger(void *arg) {
  for (uint32_t i = 1; i <= (uint32_t)n; i++) {
    while (__atomic_load_n(&ping, __ATOMIC_ACQUIRE) < i) futex(&ping, FUTEX_WAIT_PRIVATE, i - 1);
    __atomic_store_n(&pong, i, __ATOMIC_RELEASE);
    futex(&pong, FUTEX_WAKE_PRIVATE, 1);
  }
  return arg;
}

static volatile uint32_t turn, yield_ready;
static volatile int64_t yield_t0, yield_end[2];
static void pin0(void) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(0, &s);
  if (sched_setaffinity(0, sizeof s, &s)) die("sched_setaffinity");
}
static void *yielder(void *arg) {
  uint32_t me = (uint32_t)(uintptr_t)arg;
  pin0();
  // Timed from when both threads run on CPU 0 (thread creation is not part
  // of the figure) to when the later one is done.
  __atomic_fetch_add(&yield_ready, 1, __ATOMIC_ACQ_REL);
  while (__atomic_load_n(&yield_ready, __ATOMIC_ACQUIRE) < 2) sched_yield();
  if (me == 0) yield_t0 = now_ns();
  // Each thread waits for its turn, passes it on, and yields: every yield
  // switches to the other thread, which is the only other runnable task.
  for (long i = 0; i < n / 2; i++) {
    while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != me) sched_yield();
    __atomic_store_n(&turn, 1 - me, __ATOMIC_RELEASE);
  }
  yield_end[me] = now_ns();
  return arg;
}

static long frame_rounds;
static void *framer(void *arg) {
  for (long r = 0; r < frame_rounds; r++) {
    char *p = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    for (int i = 0; i < 64; i++) p[i * PAGE] = 1;
    munmap(p, 64 * PAGE);
  }
  return arg;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: procs fork|thread|fault|sparse|futex|yield|frames N [THREADS]\n");
    return 2;
  }
  const char *mode = argv[1];
  n = atol(argv[2]);
  int threads = argc > 3 ? atoi(argv[3]) : 1;
  int64_t t0 = 0, t1 = 0;
  if (!strcmp(mode, "fork")) {
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      pid_t c = fork();
      if (c < 0) die("fork");
      if (c == 0) _exit(0);
      int st;
      if (waitpid(c, &st, 0) != c) die("waitpid");
    }
    t1 = now_ns();
  } else if (!strcmp(mode, "thread")) {
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      pthread_t t;
      if (pthread_create(&t, NULL, nothing, NULL)) die("pthread_create");
      pthread_join(t, NULL);
    }
    t1 = now_ns();
  } else if (!strcmp(mode, "fault")) {
    char *p = mmap(NULL, (n ? n : 1) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    t0 = now_ns();
    for (long i = 0; i < n; i++) p[i * PAGE] = 1;
    t1 = now_ns();
  } else if (!strcmp(mode, "sparse")) {
    char *p = mmap(NULL, (n ? n : 1) * 32 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) die("mmap");
    t0 = now_ns();
    for (long i = 0; i < n; i++) p[i * 32 * PAGE] = 1;
    t1 = now_ns();
  } else if (!strcmp(mode, "futex")) {
    pthread_t t;
    if (pthread_create(&t, NULL, ponger, NULL)) die("pthread_create");
    t0 = now_ns();
    for (uint32_t i = 1; i <= (uint32_t)n; i++) {
      __atomic_store_n(&ping, i, __ATOMIC_RELEASE);
      futex(&ping, FUTEX_WAKE_PRIVATE, 1);
      while (__atomic_load_n(&pong, __ATOMIC_ACQUIRE) < i) futex(&pong, FUTEX_WAIT_PRIVATE, i - 1);
    }
    t1 = now_ns();
    pthread_join(t, NULL);
  } else if (!strcmp(mode, "yield")) {
    pthread_t a, b;
    if (pthread_create(&a, NULL, yielder, (void *)0) || pthread_create(&b, NULL, yielder, (void *)1))
      die("pthread_create");
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    t0 = yield_t0;
    t1 = yield_end[0] > yield_end[1] ? yield_end[0] : yield_end[1];
  } else if (!strcmp(mode, "frames")) {
    frame_rounds = n / 64;
    pid_t kids[64];
    if (threads < 1 || threads > 64) die("threads");
    // Shared: [0] start flag, [1 + i] when process i finished (ns). Timed
    // from the start flag (after every fork) to the last process done.
    volatile int64_t *sh = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die("mmap");
    for (int i = 1; i < threads; i++) {
      kids[i] = fork();
      if (kids[i] < 0) die("fork");
      if (kids[i] == 0) {
        while (!__atomic_load_n(&sh[0], __ATOMIC_ACQUIRE)) sched_yield();
        framer(NULL);
        sh[1 + i] = now_ns();
        _exit(0);
      }
    }
    t0 = now_ns();
    __atomic_store_n(&sh[0], 1, __ATOMIC_RELEASE);
    framer(NULL);
    t1 = now_ns();
    for (int i = 1; i < threads; i++) {
      waitpid(kids[i], NULL, 0);
      if (sh[1 + i] > t1) t1 = sh[1 + i];
    }
    // Time per page allocated and freed, over all processes together.
    printf("%.1f\n", n ? (double)(t1 - t0) / ((double)frame_rounds * 64 * threads) : 0.0);
    return 0;
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  printf("%.1f\n", n ? (double)(t1 - t0) / (double)n : 0.0);
  return 0;
}
