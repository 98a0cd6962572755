// issue: 3
/* Program break and anonymous memory: brk growth, shrink and regrowth (fresh
 * pages read as zero), mmap/munmap/mprotect on anonymous private memory with
 * read/write checks, lazy large mappings, and the error cases that do not
 * need signals (EINVAL, ENOMEM, EBADF). */
#include "guest.h"

static char *xbrk(char *addr) { return (char *)syscall(SYS_brk, addr); }

static int all_zero(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

int main(void) {
  /* brk */
  char *start = xbrk(NULL);
  CHECK(start != NULL && start != (char *)-1, "brk(0)");
  size_t grow = 256 * PAGE;
  char *end = xbrk(start + grow);
  CHECK(end == start + grow, "brk grow by 1 MiB");
  CHECK(all_zero(start, grow), "fresh brk memory must be zero");
  for (size_t i = 0; i < grow; i += PAGE) start[i] = (char)(i / PAGE + 1);
  for (size_t i = 0; i < grow; i += PAGE) CHECK(start[i] == (char)(i / PAGE + 1), "brk memory readback");
  say("brk grow 1 MiB, write, read back: ok\n");
  CHECK(xbrk(start + PAGE) == start + PAGE, "brk shrink");
  CHECK(start[0] == 1, "brk memory below the new break keeps its contents");
  CHECK(xbrk(start + grow) == start + grow, "brk regrow");
  CHECK(all_zero(start + PAGE, grow - PAGE), "memory re-added by brk must be zero");
  say("brk shrink keeps low pages, regrow gives zeroed pages: ok\n");
  char *odd = xbrk(start + 12345);
  CHECK(odd == start + 12345, "unaligned brk");
  start[12344] = 7;
  say("unaligned brk: ok\n");
  char *low = xbrk((char *)0x1000);
  CHECK(low == start + 12345, "brk below the start leaves the break unchanged");
  say("brk below start refused: ok\n");
  CHECK(xbrk(start) == start, "brk back to start");

  /* mmap/munmap/mprotect */
  size_t len = 64 * PAGE;
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED && ((unsigned long)m & 0xfff) == 0, "mmap 64 pages");
  CHECK(all_zero(m, len), "fresh mmap memory must be zero");
  for (size_t i = 0; i < len; i++) m[i] = (char)(i * 7);
  for (size_t i = 0; i < len; i++) CHECK(m[i] == (char)(i * 7), "mmap readback");
  say("mmap 64 pages, zero-filled, write, read back: ok\n");
  SYS(mprotect(m, len, PROT_READ));
  CHECK(m[100] == (char)(100 * 7), "read after mprotect(PROT_READ)");
  SYS(mprotect(m + 8 * PAGE, 8 * PAGE, PROT_READ | PROT_WRITE));
  m[8 * PAGE] = 1;
  CHECK(m[8 * PAGE] == 1, "write to the part made writable again");
  say("mprotect read-only, then part writable again: ok\n");
  SYS(munmap(m + 16 * PAGE, 16 * PAGE)); /* punch a hole */
  CHECK(m[15 * PAGE] == (char)(15 * PAGE * 7), "memory before the hole");
  CHECK(m[32 * PAGE] == (char)(32 * PAGE * 7), "memory after the hole");
  SYS(munmap(m, len)); /* unmapping a range with a hole in it is fine */
  say("munmap a hole, then the whole range: ok\n");

  char *n = mmap(NULL, 4 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(n != MAP_FAILED, "mmap PROT_NONE");
  SYS(mprotect(n, 4 * PAGE, PROT_READ | PROT_WRITE));
  CHECK(all_zero(n, 4 * PAGE), "PROT_NONE memory made accessible is zero");
  n[0] = 1;
  n[4 * PAGE - 1] = 2;
  SYS(munmap(n, 4 * PAGE));
  say("PROT_NONE then mprotect read-write: ok\n");

  /* A large lazy mapping: only the touched pages cost anything. */
  size_t big = 64UL << 20;
  char *b = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(b != MAP_FAILED, "mmap 64 MiB");
  for (size_t off = 0; off < big; off += 8UL << 20) b[off] = 1;
  b[big - 1] = 2;
  CHECK(b[0] == 1 && b[big - 1] == 2 && b[PAGE] == 0, "touch 64 MiB mapping sparsely");
  SYS(munmap(b, big));
  say("64 MiB lazy mapping touched sparsely: ok\n");

  /* Many small mappings. */
  char *maps[32];
  for (int i = 0; i < 32; i++) {
    maps[i] = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(maps[i] != MAP_FAILED, "small mmap %d", i);
    maps[i][0] = (char)i;
  }
  for (int i = 0; i < 32; i++) CHECK(maps[i][0] == (char)i, "small mapping %d", i);
  for (int i = 0; i < 32; i++) SYS(munmap(maps[i], PAGE));
  say("32 one-page mappings: ok\n");

  /* Errors. */
  errno = 0;
  void *r = mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  say("mmap(len 0) = %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  CHECK(r == MAP_FAILED && errno == EINVAL, "mmap length 0");
  errno = 0;
  r = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, -1, 0);
  say("mmap(fd -1 without MAP_ANONYMOUS) = %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  CHECK(r == MAP_FAILED && errno == EBADF, "mmap fd -1");
  errno = 0;
  r = mmap(NULL, PAGE, PROT_READ, MAP_ANONYMOUS, -1, 0);
  say("mmap(neither private nor shared) = %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  CHECK(r == MAP_FAILED && errno == EINVAL, "mmap without sharing type");
  errno = 0;
  r = mmap(NULL, 1UL << 50, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  say("mmap(1 PiB) = %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  CHECK(r == MAP_FAILED && errno == ENOMEM, "mmap larger than the address space");
  char *u = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  SYS(munmap(u, PAGE));
  errno = 0;
  long rr = munmap(u + 1, PAGE);
  say("munmap(unaligned) = %ld %s\n", rr, errname(errno));
  CHECK(rr == -1 && errno == EINVAL, "munmap unaligned");
  errno = 0;
  rr = mprotect(u, PAGE, PROT_READ);
  say("mprotect(unmapped) = %ld %s\n", rr, errname(errno));
  CHECK(rr == -1 && errno == ENOMEM, "mprotect of unmapped memory");
  rr = munmap(u, PAGE);
  say("munmap(already unmapped) = %ld\n", rr);
  CHECK(rr == 0, "munmap of an unmapped range succeeds");

  /* malloc uses both brk and mmap. */
  char *small = malloc(100), *large = malloc(4UL << 20);
  CHECK(small && large, "malloc");
  memset(small, 1, 100);
  memset(large, 2, 4UL << 20);
  free(small);
  free(large);
  say("malloc small and 4 MiB: ok\n");
  return 0;
}
