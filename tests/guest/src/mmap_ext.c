// issue: 4
/* Memory-management calls beyond issue 3: MAP_FIXED replacing a mapping,
 * MAP_FIXED_NOREPLACE (EEXIST on overlap, exact address when free), address
 * hints, MAP_GROWSDOWN growing on a touch below it, MAP_POPULATE (resident at
 * once), MAP_NORESERVE, mremap (grow in place, MREMAP_MAYMOVE keeping the
 * contents, MREMAP_FIXED, shrink), madvise (DONTNEED zeroes private anonymous
 * memory, WILLNEED and FREE accepted), mincore, msync, splitting a mapping with
 * munmap/mprotect in the middle, and executing code written to an anonymous
 * mapping after mprotect(PROT_EXEC). */
#include "guest.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static char *map(void *addr, size_t len, int prot, int flags) {
  return mmap(addr, len, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void resident(const char *what, char *p, size_t pages, const char *expect) {
  unsigned char vec[64];
  CHECK(pages <= sizeof vec, "too many pages");
  SYS(mincore(p, pages * PAGE, vec));
  char got[65];
  for (size_t i = 0; i < pages; i++) got[i] = (char)('0' + (vec[i] & 1));
  got[pages] = 0;
  say("mincore %s: %s\n", what, got);
  CHECK(!strcmp(got, expect), "%s: mincore %s, expected %s", what, got, expect);
}

int main(void) {
  const int RW = PROT_READ | PROT_WRITE;

  /* a reserved window to place fixed mappings in */
  char *win = map(NULL, 64 * PAGE, PROT_NONE, MAP_NORESERVE);
  CHECK(win != MAP_FAILED, "reserve");

  /* MAP_FIXED replaces */
  char *a = map(win, 4 * PAGE, RW, MAP_FIXED);
  CHECK(a == win, "MAP_FIXED address");
  memset(a, 'x', 4 * PAGE);
  char *a2 = map(win + PAGE, PAGE, RW, MAP_FIXED);
  say("MAP_FIXED over a mapping: same address %s, new page zero %s, neighbours kept %s\n", yesno(a2 == win + PAGE),
      yesno(a2[0] == 0 && a2[PAGE - 1] == 0), yesno(a[0] == 'x' && a[2 * PAGE] == 'x'));
  CHECK(a2 == win + PAGE && a2[0] == 0 && a[0] == 'x' && a[2 * PAGE] == 'x', "MAP_FIXED");

  /* MAP_FIXED_NOREPLACE */
  errno = 0;
  char *n = map(win + 2 * PAGE, PAGE, RW, MAP_FIXED_NOREPLACE);
  say("MAP_FIXED_NOREPLACE over a mapping: %s\n", n == MAP_FAILED ? errname(errno) : "mapped");
  CHECK(n == MAP_FAILED && errno == EEXIST, "noreplace overlap");
  SYS(munmap(win + 8 * PAGE, 4 * PAGE));
  n = map(win + 8 * PAGE, 4 * PAGE, RW, MAP_FIXED_NOREPLACE);
  say("MAP_FIXED_NOREPLACE on free space: exact address %s\n", yesno(n == win + 8 * PAGE));
  CHECK(n == win + 8 * PAGE, "noreplace free");

  /* a hint at a free address is honoured */
  SYS(munmap(win + 20 * PAGE, 4 * PAGE));
  char *h = map(win + 20 * PAGE, 4 * PAGE, RW, 0);
  say("hint at a free address honoured: %s\n", yesno(h == win + 20 * PAGE));
  CHECK(h == win + 20 * PAGE, "hint");

  /* mincore, MADV_DONTNEED, WILLNEED, FREE */
  char *m = map(NULL, 8 * PAGE, RW, 0);
  CHECK(m != MAP_FAILED, "mmap");
  for (int i = 0; i < 8; i++) m[i * PAGE] = (char)(i + 1);
  resident("after touching 8 pages", m, 8, "11111111");
  SYS(madvise(m + 2 * PAGE, 3 * PAGE, MADV_DONTNEED));
  resident("after MADV_DONTNEED of pages 2-4", m, 8, "11000111");
  say("MADV_DONTNEED pages read back zero: %s, others kept: %s\n",
      yesno(m[2 * PAGE] == 0 && m[3 * PAGE] == 0 && m[4 * PAGE] == 0), yesno(m[PAGE] == 2 && m[5 * PAGE] == 6));
  CHECK(m[2 * PAGE] == 0 && m[4 * PAGE] == 0 && m[PAGE] == 2 && m[5 * PAGE] == 6, "dontneed");
  SYS(madvise(m, 8 * PAGE, MADV_WILLNEED));
  SYS(madvise(m, 8 * PAGE, MADV_FREE));
  m[0] = 9;
  CHECK(m[0] == 9, "write after MADV_FREE");
  say("MADV_WILLNEED and MADV_FREE accepted, memory usable afterwards: yes\n");
  errno = 0;
  int r = madvise(m + 1, PAGE, MADV_DONTNEED);
  say("madvise(unaligned): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "madvise unaligned");
  unsigned char vec[2];
  errno = 0;
  r = mincore(win + 30 * PAGE, PAGE, vec); /* PROT_NONE reservation: mapped, not resident */
  say("mincore of a PROT_NONE reservation: %d, resident %d\n", r, r == 0 ? vec[0] & 1 : -1);
  SYS(munmap(win + 40 * PAGE, PAGE));
  errno = 0;
  r = mincore(win + 40 * PAGE, PAGE, vec);
  say("mincore of an unmapped page: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ENOMEM, "mincore unmapped");

  /* MAP_POPULATE */
  char *pop = map(NULL, 16 * PAGE, RW, MAP_POPULATE);
  CHECK(pop != MAP_FAILED, "populate");
  resident("of MAP_POPULATE memory before any access", pop, 16, "1111111111111111");

  /* msync */
  SYS(msync(m, 8 * PAGE, MS_SYNC));
  errno = 0;
  r = msync(m + 1, PAGE, MS_SYNC);
  say("msync: ok; unaligned: %d %s", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "msync unaligned");
  errno = 0;
  r = msync(win + 40 * PAGE, PAGE, MS_SYNC);
  say("; unmapped: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ENOMEM, "msync unmapped");

  /* MAP_GROWSDOWN: a touch just below the mapping extends it. Leave a large gap below. */
  char *hole = map(NULL, 4096 * PAGE, PROT_NONE, MAP_NORESERVE);
  CHECK(hole != MAP_FAILED, "hole");
  SYS(munmap(hole, 4096 * PAGE));
  char *gd = map(hole + 4080 * PAGE, 16 * PAGE, RW, MAP_FIXED | MAP_GROWSDOWN);
  CHECK(gd == hole + 4080 * PAGE, "growsdown map");
  gd[0] = 1;
  gd[-(long)PAGE] = 2; /* grows the mapping by one page */
  gd[-(long)(2 * PAGE) + 5] = 3;
  say("MAP_GROWSDOWN: touching two pages below the start works: %s\n",
      yesno(gd[-(long)PAGE] == 2 && gd[-(long)(2 * PAGE) + 5] == 3));
  resident("of the grown stack (2 new pages + the first)", gd - 2 * PAGE, 3, "111");
  SYS(munmap(gd - 2 * PAGE, 18 * PAGE));

  /* MAP_NORESERVE: a large mapping, touched sparsely */
  char *big = map(NULL, 1UL << 30, RW, MAP_NORESERVE);
  CHECK(big != MAP_FAILED, "noreserve");
  big[0] = 1;
  big[(1UL << 30) - 1] = 2;
  say("MAP_NORESERVE 1 GiB, touched at both ends: ok\n");
  SYS(munmap(big, 1UL << 30));

  /* mremap */
  char *g = map(win + 48 * PAGE, 2 * PAGE, RW, MAP_FIXED);
  CHECK(g == win + 48 * PAGE, "remap base");
  SYS(munmap(win + 50 * PAGE, 4 * PAGE)); /* room to grow in place */
  memset(g, 'g', 2 * PAGE);
  char *g2 = mremap(g, 2 * PAGE, 4 * PAGE, 0);
  say("mremap grow in place: same address %s, contents kept %s, new part zero %s\n", yesno(g2 == g),
      yesno(g2 != MAP_FAILED && g2[PAGE] == 'g'), yesno(g2 != MAP_FAILED && g2[3 * PAGE] == 0));
  CHECK(g2 == g && g2[PAGE] == 'g' && g2[3 * PAGE] == 0, "grow in place");
  errno = 0;
  char *g3 = mremap(g2, 4 * PAGE, 64 * PAGE, 0); /* no room: needs MAYMOVE */
  say("mremap grow without room and without MREMAP_MAYMOVE: %s\n", g3 == MAP_FAILED ? errname(errno) : "moved");
  CHECK(g3 == MAP_FAILED && errno == ENOMEM, "no room");
  g3 = mremap(g2, 4 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
  say("mremap MREMAP_MAYMOVE to 64 pages: moved %s, contents kept %s\n", yesno(g3 != g2 && g3 != MAP_FAILED),
      yesno(g3 != MAP_FAILED && g3[0] == 'g' && g3[PAGE + 7] == 'g' && g3[63 * PAGE] == 0));
  CHECK(g3 != MAP_FAILED && g3[0] == 'g' && g3[PAGE + 7] == 'g', "maymove");
  unsigned char v1;
  errno = 0;
  say("old range unmapped after the move: %s\n", yesno(mincore(g2, PAGE, &v1) == -1 && errno == ENOMEM));
  SYS(munmap(win + 56 * PAGE, 4 * PAGE));
  char *g4 = mremap(g3, 64 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, win + 56 * PAGE);
  say("mremap MREMAP_FIXED (shrinking to 4 pages): at the target %s, contents kept %s\n", yesno(g4 == win + 56 * PAGE),
      yesno(g4 != MAP_FAILED && g4[PAGE] == 'g'));
  CHECK(g4 == win + 56 * PAGE && g4[PAGE] == 'g', "fixed");
  char *g5 = mremap(g4, 4 * PAGE, PAGE, 0);
  say("mremap shrink: same address %s\n", yesno(g5 == g4));
  CHECK(g5 == g4, "shrink");
  errno = 0;
  r = mincore(g4 + PAGE, PAGE, vec);
  CHECK(r == -1 && errno == ENOMEM, "shrunk tail unmapped");

  /* split a mapping: mprotect and munmap in the middle */
  char *s = map(NULL, 9 * PAGE, RW, 0);
  memset(s, 's', 9 * PAGE);
  SYS(mprotect(s + 3 * PAGE, 3 * PAGE, PROT_READ));
  SYS(munmap(s + 4 * PAGE, PAGE));
  s[0] = 'a';
  s[8 * PAGE] = 'b';
  say("mapping split by mprotect and munmap in the middle: ends writable %s, middle readable %s\n",
      yesno(s[0] == 'a' && s[8 * PAGE] == 'b'), yesno(s[3 * PAGE] == 's' && s[5 * PAGE] == 's'));
  errno = 0;
  r = mincore(s + 4 * PAGE, PAGE, vec);
  CHECK(r == -1 && errno == ENOMEM, "hole");
  SYS(munmap(s, 9 * PAGE));

  /* code in anonymous memory: mov $42, %eax; ret */
  unsigned char *code = (unsigned char *)map(NULL, PAGE, RW, 0);
  static const unsigned char insn[] = {0xb8, 42, 0, 0, 0, 0xc3};
  memcpy(code, insn, sizeof insn);
  SYS(mprotect(code, PAGE, PROT_READ | PROT_EXEC));
  int (*fn)(void) = (int (*)(void))(void *)code;
  int v = fn();
  say("code written to anonymous memory, then mprotect(PROT_EXEC), returns %d\n", v);
  CHECK(v == 42, "jit");
  return 0;
}
