// issue: 4
// cpus: 2
/* Address-space lock (reliability fix 3 of issue 4): page faults and user-memory
 * copies run concurrently with each other and with a thread that keeps changing
 * the address space, without losing writes, corrupting memory, deadlocking or
 * starving the writer.
 *   1. Racing first touches: 4 threads write their own byte into every page of
 *      the same fresh 256-page region at once; every page must end up with all
 *      4 bytes (two faults on one page must not install two frames).
 *   2. Faulters and a mapper: 3 threads fault their own regions in (and
 *      getrandom() into them: kernel copies to user memory that faults), check
 *      contents, drop them with MADV_DONTNEED and check they read back as zero,
 *      while a 4th thread mmaps, touches, mprotects and munmaps other memory;
 *      the mapper finishes its operations (no writer starvation). */
#include <pthread.h>
#include <sys/random.h>

#include "guest.h"

#define RACE_PAGES 256
#define RACERS 4
#define RACE_ROUNDS 4
#define FAULTERS 3
#define FPAGES 96
#define FITER 6
#define MAPPER_OPS 150

static char *race_region;
static pthread_barrier_t race_barrier;

static void *racer(void *arg) {
  int id = (int)(long)arg;
  for (int r = 0; r < RACE_ROUNDS; r++) {
    pthread_barrier_wait(&race_barrier); /* region ready */
    char *p = race_region;
    /* start at different pages so the threads collide all over the region */
    for (int i = 0; i < RACE_PAGES; i++) {
      int pg = (i + id * (RACE_PAGES / RACERS)) % RACE_PAGES;
      p[pg * PAGE + id] = (char)(id + 1 + r);
    }
    pthread_barrier_wait(&race_barrier); /* all written */
    pthread_barrier_wait(&race_barrier); /* checked and unmapped */
  }
  return NULL;
}

static volatile int mapper_done;
static volatile int faulter_errors;

static void *faulter(void *arg) {
  int id = (int)(long)arg;
  char *m = mmap(NULL, FPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED, "faulter mmap");
  for (int it = 0; it < FITER; it++) {
    char v = (char)(id * 16 + it + 1);
    for (int i = 0; i < FPAGES; i++) m[i * PAGE + 100] = v;
    /* the kernel writes into half of it (faulting the pages it copies to) */
    size_t half = FPAGES / 2 * PAGE;
    CHECK(madvise(m, half, MADV_DONTNEED) == 0, "dontneed half");
    ssize_t got = 0;
    while (got < (ssize_t)half) {
      ssize_t n = getrandom(m + got, half - got, 0);
      CHECK(n > 0, "getrandom");
      got += n;
    }
    for (int i = FPAGES / 2; i < FPAGES; i++)
      if (m[i * PAGE + 100] != v) __atomic_add_fetch(&faulter_errors, 1, __ATOMIC_SEQ_CST);
    CHECK(madvise(m, FPAGES * PAGE, MADV_DONTNEED) == 0, "dontneed");
    for (int i = 0; i < FPAGES; i += 7)
      if (m[i * PAGE + 100] != 0) __atomic_add_fetch(&faulter_errors, 1, __ATOMIC_SEQ_CST);
  }
  munmap(m, FPAGES * PAGE);
  return NULL;
}

static void *mapper(void *arg) {
  for (int i = 0; i < MAPPER_OPS; i++) {
    char *p = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mapper mmap");
    p[3 * PAGE] = 1;
    CHECK(mprotect(p, 8 * PAGE, PROT_READ) == 0, "mapper mprotect");
    CHECK(p[3 * PAGE] == 1 && p[0] == 0, "mapper contents");
    char *big = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(big != MAP_FAILED, "mapper big");
    CHECK(munmap(big, 1 << 20) == 0 && munmap(p, 8 * PAGE) == 0, "mapper munmap");
  }
  __atomic_store_n(&mapper_done, 1, __ATOMIC_RELEASE);
  return NULL;
}

int main(void) {
  /* 1. racing first touches */
  pthread_barrier_init(&race_barrier, NULL, RACERS + 1);
  pthread_t rt[RACERS];
  for (long i = 0; i < RACERS; i++) CHECK(pthread_create(&rt[i], NULL, racer, (void *)i) == 0, "create");
  int lost = 0;
  for (int r = 0; r < RACE_ROUNDS; r++) {
    race_region = mmap(NULL, RACE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(race_region != MAP_FAILED, "race mmap");
    pthread_barrier_wait(&race_barrier);
    pthread_barrier_wait(&race_barrier);
    for (int pg = 0; pg < RACE_PAGES; pg++)
      for (int id = 0; id < RACERS; id++)
        if (race_region[pg * PAGE + id] != (char)(id + 1 + r)) lost++;
    SYS(munmap(race_region, RACE_PAGES * PAGE));
    pthread_barrier_wait(&race_barrier);
  }
  for (int i = 0; i < RACERS; i++) pthread_join(rt[i], NULL);
  say("racing first touches: %d threads x %d pages x %d rounds, lost writes: %d\n", RACERS, RACE_PAGES, RACE_ROUNDS,
      lost);
  CHECK(lost == 0, "lost writes");

  /* 2. faulters and a mapper */
  pthread_t ft[FAULTERS], mt;
  int64_t t0 = mono_ns();
  CHECK(pthread_create(&mt, NULL, mapper, NULL) == 0, "create mapper");
  for (long i = 0; i < FAULTERS; i++) CHECK(pthread_create(&ft[i], NULL, faulter, (void *)i) == 0, "create");
  for (int i = 0; i < FAULTERS; i++) pthread_join(ft[i], NULL);
  pthread_join(mt, NULL);
  int64_t ms = (mono_ns() - t0) / 1000000;
  say("faulters: %d threads x %d rounds x %d pages with getrandom and MADV_DONTNEED, wrong contents: %d\n", FAULTERS,
      FITER, FPAGES, faulter_errors);
  say("mapper: %d x (mmap, touch, mprotect, mmap 1 MiB, munmap x2) completed: %s\n", MAPPER_OPS, yesno(mapper_done));
  CHECK(faulter_errors == 0 && mapper_done, "faulters/mapper");
  CHECK(ms < 15000, "took %lld ms", (long long)ms);
  return 0;
}
