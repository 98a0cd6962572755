// issue: 3
// pie: yes
/* Thread-local storage in the main thread: initialized __thread data and
 * zeroed __thread bss have their values, live just below the thread pointer
 * (x86-64 TLS variant II), the thread pointer read from %fs:0 equals
 * arch_prctl(ARCH_GET_FS), and ARCH_SET_GS/ARCH_GET_GS round-trip. */
#include "guest.h"

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004

static __thread int tdata = 42;
static __thread char tbss[64];
static __thread long tarr[4] = {1, 2, 3, 4};

int main(void) {
  say("tdata=%d tarr=%ld,%ld,%ld,%ld\n", tdata, tarr[0], tarr[1], tarr[2], tarr[3]);
  int zero = 1;
  for (int i = 0; i < 64; i++) zero &= tbss[i] == 0;
  say("tbss zeroed: %s\n", yesno(zero));
  CHECK(tdata == 42 && zero && tarr[3] == 4, "initial TLS values");
  tdata++;
  tbss[5] = 'x';
  CHECK(tdata == 43 && tbss[5] == 'x', "TLS writes");

  unsigned long fs = 0, self;
  CHECK(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) == 0, "ARCH_GET_FS");
  __asm__ volatile("mov %%fs:0, %0" : "=r"(self));
  say("%%fs:0 == ARCH_GET_FS: %s\n", yesno(self == fs));
  CHECK(self == fs && fs != 0, "thread pointer self-reference");
  CHECK((unsigned long)__builtin_thread_pointer() == fs, "__builtin_thread_pointer");
  unsigned long a = (unsigned long)&tdata, b = (unsigned long)tbss;
  int below = a < fs && b < fs && fs - a < 65536 && fs - b < 65536;
  say("TLS variables just below the thread pointer: %s\n", yesno(below));
  CHECK(below, "TLS layout");
  /* errno is thread-local too: a failing syscall sets it in this thread's block. */
  errno = 0;
  CHECK(syscall(SYS_arch_prctl, 0x9999, 0) == -1 && errno == EINVAL, "arch_prctl bad code");
  say("arch_prctl(bad code) = EINVAL\n");

  /* GS base round trip (FS stays untouched: libc needs it). */
  static unsigned long gsblock[2] = {0x1122334455667788UL, 0};
  CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)gsblock) == 0, "ARCH_SET_GS");
  unsigned long gs = 0, viags;
  CHECK(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs) == 0, "ARCH_GET_GS");
  __asm__ volatile("mov %%gs:0, %0" : "=r"(viags));
  say("ARCH_SET_GS/ARCH_GET_GS round trip: %s, %%gs:0 reads the block: %s\n", yesno(gs == (unsigned long)gsblock),
      yesno(viags == gsblock[0]));
  CHECK(gs == (unsigned long)gsblock && viags == gsblock[0], "GS base");
  CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, 0UL) == 0, "reset GS");
  /* Setting FS to a non-canonical address is refused. */
  errno = 0;
  long r = syscall(SYS_arch_prctl, ARCH_SET_FS, 0x8000000000000000UL);
  say("ARCH_SET_FS(non-canonical) = %ld %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EPERM, "non-canonical FS");
  CHECK(tdata == 43, "TLS intact");
  return 0;
}
