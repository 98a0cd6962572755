// issue: 3
/* Bad user pointers passed to the kernel give -1/EFAULT, never a crash:
 * kernel addresses, unmapped memory, non-canonical addresses, NULL, and
 * read-only memory as a syscall's output buffer. Raw syscalls are used so no
 * libc (or vDSO) code touches the pointers in user mode. */
#include "guest.h"

static void expect_efault(const char *what, long r) {
  int e = errno;
  say("%s = %ld %s\n", what, r, r == -1 ? errname(e) : "");
  CHECK(r == -1 && e == EFAULT, "%s must fail with EFAULT", what);
}

int main(void) {
  void *kernel = (void *)0xffffffff81000000UL;
  char *m = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED, "mmap");
  SYS(munmap(m + PAGE, PAGE)); /* m+PAGE is now a known hole */
  void *unmapped = m + PAGE;
  void *noncanon = (void *)0x0000800000000000UL;
  void *lastuser = (void *)0x00007ffffffff000UL;

  expect_efault("write(1, kernel_address, 16)", syscall(SYS_write, 1, kernel, 16));
  expect_efault("write(1, unmapped, 16)", syscall(SYS_write, 1, unmapped, 16));
  expect_efault("write(1, non_canonical, 16)", syscall(SYS_write, 1, noncanon, 16));
  expect_efault("write(1, NULL, 16)", syscall(SYS_write, 1, NULL, 16));
  expect_efault("write(1, top_user_page, 16)", syscall(SYS_write, 1, lastuser, 16));
  expect_efault("clock_gettime(MONOTONIC, kernel_address)", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, kernel));
  expect_efault("clock_gettime(MONOTONIC, unmapped)", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, unmapped));
  expect_efault("uname(kernel_address)", syscall(SYS_uname, kernel));
  expect_efault("uname(non_canonical)", syscall(SYS_uname, noncanon));
  expect_efault("getrandom(unmapped, 16, 0)", syscall(SYS_getrandom, unmapped, 16, 0));
  expect_efault("gettimeofday(kernel_address, NULL)", syscall(SYS_gettimeofday, kernel, NULL));
  /* A buffer that wraps around the top of the address space. */
  expect_efault("write(1, -8, 16)", syscall(SYS_write, 1, (void *)-8L, 16));

  /* Output buffers in read-only memory. */
  SYS(mprotect(m, PAGE, PROT_READ));
  expect_efault("clock_gettime(MONOTONIC, read_only)", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, m));
  expect_efault("uname(read_only)", syscall(SYS_uname, m));
  expect_efault("getrandom(read_only, 16, 0)", syscall(SYS_getrandom, m, 16, 0));
  /* ...but reading from read-only memory is fine: a zero-length write and a real one. */
  long r = syscall(SYS_write, 1, m, 0);
  say("write(1, read_only, 0) = %ld\n", r);
  CHECK(r == 0, "zero-length write");
  /* The process is intact after all of it. */
  say("done\n");
  return 0;
}
