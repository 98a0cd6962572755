// issue: 3
/* Syscall numbers no kernel implements return -ENOSYS, the program keeps
 * running, and a raw SYSCALL preserves every register except rax, rcx, r11. */
#include "guest.h"

static long raw6(long nr, long a1, long a2, long a3, long a4, long a5, long a6, int *preserved) {
  long ret;
  register long r10 __asm__("r10") = a4;
  register long r8 __asm__("r8") = a5;
  register long r9 __asm__("r9") = a6;
  long b1 = a1, b2 = a2, b3 = a3;
  __asm__ volatile("syscall"
                   : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8), "+r"(r9)
                   : "a"(nr)
                   : "rcx", "r11", "memory");
  *preserved = a1 == b1 && a2 == b2 && a3 == b3 && r10 == a4 && r8 == a5 && r9 == a6;
  return ret;
}

int main(void) {
  /* Beyond the x86-64 table (which ends below 512; 512..547 are x32-only numbers). */
  static const long nrs[] = {1000, 4096, 100000, 0x7fffffff, 511};
  for (size_t i = 0; i < sizeof nrs / sizeof nrs[0]; i++) {
    errno = 0;
    long r = syscall(nrs[i], 1, 2, 3, 4, 5, 6);
    say("syscall(%ld) = %ld %s\n", nrs[i], r, errname(errno));
    CHECK(r == -1 && errno == ENOSYS, "syscall %ld must be ENOSYS", nrs[i]);
  }
  /* A negative number as the full 64-bit rax. */
  int preserved;
  long r = raw6(-1L, 0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666, &preserved);
  say("raw syscall(-1) = %ld (-ENOSYS is %d)\n", r, -ENOSYS);
  CHECK(r == -ENOSYS, "syscall -1 must be ENOSYS");
  r = raw6(1000, 0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666, &preserved);
  say("raw syscall(1000) = %ld, argument registers preserved: %s\n", r, yesno(preserved));
  CHECK(r == -ENOSYS && preserved, "registers must survive an ENOSYS syscall");
  /* The kernel keeps working after unknown numbers. */
  CHECK(syscall(SYS_getpid) > 0, "getpid after ENOSYS");
  say("still running\n");
  return 0;
}
