// issue: 4
// cpus: 2
/* TLB shootdown (reliability fix 1 of issue 4). A reader thread spins on a page
 * while the main thread, on the other CPU, takes the page away:
 *   mode 0: munmap(page)
 *   mode 1: mprotect(page, PROT_NONE)
 *   mode 2: mprotect(page, PROT_READ) while the reader writes to it
 *   mode 3: munmap of a 16-page range the page is in the middle of
 * and right after the call returns publishes "done". The reader loads "done"
 * before each access; an access that succeeds after it saw "done" used a stale
 * TLB entry: a failure. Once the call returned, the main thread maps and fills
 * fresh memory with another byte so a freed frame reused too early shows up as
 * a wrong value in the reader: also a failure. The reader must fault (SIGSEGV,
 * caught and left with siglongjmp), at the latest within 10 s on a loaded host.
 *
 * The target pages are spaced with PROT_NONE gaps inside a reserved region, so
 * a later mmap never lands at the same virtual address. */
#include <pthread.h>
#include <setjmp.h>

#include "guest.h"

#define ROUNDS 160
#define FILL 0xAA
#define OTHER 0xBB

static char *region; /* reserved: target pages at region + 32*r*PAGE (+ 16-page ranges for mode 3) */
static volatile char *volatile target;
static volatile int round_ready = -1, reader_in = -1, faulted = -1, mode;
static volatile int done_round = -1;
static volatile long reads;
static volatile int stale, wrong_value;
static __thread sigjmp_buf reader_env;
static __thread int in_reader;

/* Spin politely: PAUSE, and give the CPU away now and then in case both threads share one. */
static void relax(int i) {
  __builtin_ia32_pause();
  if (i % 4096 == 4095) sched_yield();
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
  if (!in_reader) fail("SIGSEGV outside the reader at %p", si->si_addr);
  siglongjmp(reader_env, 1);
}

static void *reader(void *arg) {
  in_reader = 1;
  for (volatile int r = 0; r < ROUNDS; r++) {
    for (int i = 0; __atomic_load_n(&round_ready, __ATOMIC_ACQUIRE) < r; i++) relax(i);
    volatile char *p = target;
    int write = mode == 2;
    if (sigsetjmp(reader_env, 1) == 0) {
      __atomic_store_n(&reader_in, r, __ATOMIC_RELEASE);
      for (;;) {
        int d = __atomic_load_n(&done_round, __ATOMIC_ACQUIRE);
        char v;
        if (write) {
          *p = (char)FILL;
          v = (char)FILL;
        } else {
          v = *p;
        }
        reads++;
        if (v != (char)FILL) wrong_value++;
        if (d == r) stale++;
      }
    }
    __atomic_store_n(&faulted, r, __ATOMIC_RELEASE);
  }
  return NULL;
}

int main(void) {
  on_signal(SIGSEGV, on_segv, 0);
  size_t region_len = (size_t)ROUNDS * 32 * PAGE;
  region = mmap(NULL, region_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(region != MAP_FAILED, "reserve");
  pthread_t t;
  CHECK(pthread_create(&t, NULL, reader, NULL) == 0, "create");
  int by_mode[4] = {0, 0, 0, 0};
  for (int r = 0; r < ROUNDS; r++) {
    int m = r % 4;
    char *base = region + (size_t)r * 32 * PAGE;
    char *p;
    if (m == 3) {
      CHECK(mmap(base, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == base,
            "map range");
      for (int i = 0; i < 16; i++) memset(base + i * PAGE, FILL, PAGE);
      p = base + 8 * PAGE;
    } else {
      CHECK(mmap(base, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == base, "map");
      memset(base, FILL, PAGE);
      p = base;
    }
    target = p;
    mode = m;
    __atomic_store_n(&round_ready, r, __ATOMIC_RELEASE);
    /* wait until the reader is spinning on the page */
    for (int i = 0; __atomic_load_n(&reader_in, __ATOMIC_ACQUIRE) < r; i++) relax(i);
    long start = reads;
    for (int i = 0; reads - start < 200; i++) relax(i);
    switch (m) {
    case 0:
      SYS(munmap(p, PAGE));
      break;
    case 1:
      SYS(mprotect(p, PAGE, PROT_NONE));
      break;
    case 2:
      SYS(mprotect(p, PAGE, PROT_READ));
      break;
    case 3:
      SYS(munmap(base, 16 * PAGE));
      break;
    }
    __atomic_store_n(&done_round, r, __ATOMIC_RELEASE);
    /* fresh memory, likely in the frames just freed */
    char *fresh = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(fresh != MAP_FAILED, "fresh");
    memset(fresh, OTHER, 4 * PAGE);
    int64_t t0 = mono_ns();
    for (int i = 0; __atomic_load_n(&faulted, __ATOMIC_ACQUIRE) < r; i++) {
      if (i % 4096 == 4095 && mono_ns() - t0 > 10000000000LL)
        fail("round %d mode %d: the reader never faulted (stale TLB entry)", r, m);
      relax(i);
    }
    SYS(munmap(fresh, 4 * PAGE));
    if (m == 1 || m == 2) SYS(munmap(p, PAGE));
    by_mode[m]++;
  }
  pthread_join(t, NULL);
  say("rounds: munmap %d, mprotect(PROT_NONE) %d, mprotect(PROT_READ) vs writes %d, munmap of a range %d\n",
      by_mode[0], by_mode[1], by_mode[2], by_mode[3]);
  say("reader faulted every round: yes\n");
  say("accesses that succeeded after the call returned (stale TLB): %d\n", stale);
  say("reads of a wrong value (frame reused too early): %d\n", wrong_value);
  CHECK(stale == 0 && wrong_value == 0, "TLB shootdown");
  return 0;
}
