// issue: 4
/* Resource limits: getrlimit/setrlimit/prlimit64 round trips, soft above hard
 * (EINVAL), raising the hard limit without CAP_SYS_RESOURCE (EPERM: it is not
 * in the OCI default set), prlimit64 on a child process and on a missing pid,
 * and the effect of RLIMIT_AS (mmap ENOMEM) and RLIMIT_DATA (brk refuses to
 * grow, private writable mmap ENOMEM). Starting values differ between hosts
 * and sandboxes and are never printed; only the values set here are. */
#include <sys/resource.h>

#include "guest.h"

static struct rlimit get(int res) {
  struct rlimit r;
  if (getrlimit(res, &r) != 0) fail("getrlimit(%d): %s", res, errname(errno));
  return r;
}

int main(void) {
  /* round trip */
  struct rlimit nofile = get(RLIMIT_NOFILE);
  CHECK(nofile.rlim_max >= 64, "NOFILE hard limit below 64");
  struct rlimit want = {32, 64};
  SYS(setrlimit(RLIMIT_NOFILE, &want));
  struct rlimit got = get(RLIMIT_NOFILE);
  say("setrlimit(NOFILE, 32/64) then getrlimit: %lu/%lu\n", (unsigned long)got.rlim_cur, (unsigned long)got.rlim_max);
  CHECK(got.rlim_cur == 32 && got.rlim_max == 64, "round trip");
  struct rlimit bad = {65, 64};
  errno = 0;
  int r = setrlimit(RLIMIT_NOFILE, &bad);
  say("soft above hard: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "soft > hard");
  struct rlimit up = {64, 128};
  errno = 0;
  r = setrlimit(RLIMIT_NOFILE, &up);
  say("raising the hard limit without CAP_SYS_RESOURCE: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EPERM, "raise hard");
  struct rlimit back = {64, 64};
  SYS(setrlimit(RLIMIT_NOFILE, &back));

  /* prlimit64: set and get old in one call */
  struct rlimit nw = {16, 64}, old;
  SYS(prlimit(0, RLIMIT_NOFILE, &nw, &old));
  say("prlimit(0, NOFILE, 16/64) returned the old value %lu/%lu\n", (unsigned long)old.rlim_cur,
      (unsigned long)old.rlim_max);
  CHECK(old.rlim_cur == 64 && old.rlim_max == 64, "prlimit old");
  errno = 0;
  r = (int)syscall(SYS_getrlimit, 99, &got);
  say("getrlimit(99): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad resource");

  /* prlimit64 on another process */
  volatile uint32_t *sh = shared_mem(PAGE);
  pid_t c = xfork();
  if (c == 0) {
    futex_wait_while(&sh[0], 0);
    struct rlimit mine;
    getrlimit(RLIMIT_NOFILE, &mine);
    _exit((int)mine.rlim_cur);
  }
  struct rlimit childlim = {24, 64};
  SYS(prlimit(c, RLIMIT_NOFILE, &childlim, NULL));
  SYS(prlimit(c, RLIMIT_NOFILE, NULL, &got));
  futex_set_wake(&sh[0], 1);
  int st = xwait(c);
  say("prlimit on a child: read back %lu, the child sees %d\n", (unsigned long)got.rlim_cur, WEXITSTATUS(st));
  CHECK(got.rlim_cur == 24 && WEXITSTATUS(st) == 24, "child prlimit");
  errno = 0;
  r = prlimit(99999, RLIMIT_NOFILE, NULL, &got);
  say("prlimit on a missing pid: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ESRCH, "missing pid");

  /* RLIMIT_AS */
  struct rlimit as = get(RLIMIT_AS);
  CHECK(as.rlim_cur == RLIM_INFINITY || as.rlim_cur >= (1UL << 30), "AS limit already below 1 GiB");
  struct rlimit as1 = {1UL << 30, as.rlim_max};
  SYS(setrlimit(RLIMIT_AS, &as1));
  errno = 0;
  void *p = mmap(NULL, 2UL << 30, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  say("RLIMIT_AS 1 GiB: mmap 2 GiB: %s", p == MAP_FAILED ? errname(errno) : "mapped");
  CHECK(p == MAP_FAILED && errno == ENOMEM, "AS limit");
  p = mmap(NULL, 16UL << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  say(", mmap 16 MiB: %s\n", p == MAP_FAILED ? errname(errno) : "ok");
  CHECK(p != MAP_FAILED, "small mmap under AS limit");
  munmap(p, 16UL << 20);
  SYS(setrlimit(RLIMIT_AS, &as));

  /* RLIMIT_DATA */
  struct rlimit data = get(RLIMIT_DATA);
  struct rlimit d16 = {16UL << 20, data.rlim_max};
  char *brk0 = (char *)syscall(SYS_brk, 0);
  SYS(setrlimit(RLIMIT_DATA, &d16));
  char *brk1 = (char *)syscall(SYS_brk, brk0 + (64UL << 20));
  say("RLIMIT_DATA 16 MiB: brk +64 MiB refused: %s", yesno(brk1 == brk0));
  CHECK(brk1 == brk0, "brk over DATA");
  errno = 0;
  p = mmap(NULL, 64UL << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  say(", private writable mmap 64 MiB: %s", p == MAP_FAILED ? errname(errno) : "mapped");
  CHECK(p == MAP_FAILED && errno == ENOMEM, "mmap over DATA");
  p = mmap(NULL, 64UL << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  say(", read-only mmap 64 MiB: %s\n", p == MAP_FAILED ? errname(errno) : "ok");
  CHECK(p != MAP_FAILED, "read-only mapping is not data");
  munmap(p, 64UL << 20);
  SYS(setrlimit(RLIMIT_DATA, &data));
  char *brk2 = (char *)syscall(SYS_brk, brk0 + (1UL << 20));
  CHECK(brk2 == brk0 + (1UL << 20), "brk after restoring the limit");
  syscall(SYS_brk, brk0);
  return 0;
}
