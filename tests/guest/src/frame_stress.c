// issue: 4
// cpus: 2
/* Frame allocator stress (reliability fix 2 of issue 4): two threads and a
 * forked child allocate, fill and free memory concurrently on two CPUs, so
 * frames move between CPUs' caches all the time. Every freshly mapped page
 * must read as zero in every byte (a frame handed out without zeroing, or
 * while still mapped elsewhere, shows up as non-zero bytes); every page keeps
 * what its owner wrote until unmapped. MADV_FREE'd pages read back either as
 * they were or as zero, and writing to them works. */
#include <pthread.h>

#include "guest.h"

#define ITER 40
#define PAGES 64

static int check_zero(const char *p, size_t n) {
  const uint64_t *q = (const uint64_t *)p;
  for (size_t i = 0; i < n / 8; i++)
    if (q[i]) return 0;
  return 1;
}

/* Returns the number of bad pages. */
static int churn(int id) {
  int bad = 0;
  for (int it = 0; it < ITER; it++) {
    size_t len = (size_t)(PAGES - (it % 8) * 4) * PAGE;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    for (size_t off = 0; off < len; off += PAGE) {
      m[off + 8] = 0; /* fault it in with a write, then check the whole page */
      if (!check_zero(m + off, PAGE)) bad++;
      memset(m + off, (char)(id * 64 + it + 1), PAGE);
    }
    for (size_t off = 0; off < len; off += PAGE)
      if (m[off] != (char)(id * 64 + it + 1) || m[off + PAGE - 1] != (char)(id * 64 + it + 1)) bad++;
    if (it % 5 == 4) {
      /* MADV_FREE: contents may be dropped (zero) or kept; writes work */
      if (madvise(m, len, MADV_FREE) != 0) return -1;
      for (size_t off = 0; off < len; off += PAGE) {
        char v = m[off + 10];
        if (v != 0 && v != (char)(id * 64 + it + 1)) bad++;
        m[off + 10] = 1;
        if (m[off + 10] != 1) bad++;
      }
    }
    if (munmap(m, len) != 0) return -1;
  }
  return bad;
}

static void *thread_main(void *arg) { return (void *)(long)churn((int)(long)arg); }

int main(void) {
  pid_t c = xfork();
  if (c == 0) {
    int bad = churn(3);
    if (bad) fprintf(stderr, "child: %d bad pages\n", bad);
    _exit(bad == 0 ? 0 : 1);
  }
  pthread_t t[2];
  for (long i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, thread_main, (void *)(i + 1)) == 0, "create");
  long bad = 0;
  for (int i = 0; i < 2; i++) {
    void *r;
    pthread_join(t[i], &r);
    CHECK((long)r >= 0, "thread %d: mmap/munmap failed", i);
    bad += (long)r;
  }
  expect_child_ok(c, "child churn");
  say("2 threads and a child process, %d rounds each of up to %d pages: fresh pages all zero and contents kept: %s\n",
      ITER, PAGES, yesno(bad == 0));
  CHECK(bad == 0, "%ld bad pages", bad);
  return 0;
}
