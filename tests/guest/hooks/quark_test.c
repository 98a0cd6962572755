// Drives the guest kernel's test-only system call (quark_test, enabled by
// `quark-sandbox --test-hooks`) to plant failures no correct program can
// cause. Usage: quark_test panic|hang|bad-hcall|forbidden|lock-selftest|nop [count]
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define NR_QUARK_TEST 0x51540000L

static long qt(long op) { return syscall(NR_QUARK_TEST, op); }

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s panic|hang|bad-hcall|forbidden|lock-selftest|nop [count]\n", argv[0]);
    return 2;
  }
  const char *op = argv[1];
  long r;
  if (!strcmp(op, "panic")) r = qt(1);
  else if (!strcmp(op, "hang")) r = qt(2);
  else if (!strcmp(op, "bad-hcall")) r = qt(3);
  else if (!strcmp(op, "forbidden")) r = qt(5);
  else if (!strcmp(op, "lock-selftest")) r = qt(8);
  else if (!strcmp(op, "nop")) {
    long n = argc > 2 ? atol(argv[2]) : 1;
    for (long i = 0; i < n; i++) r = qt(4);
  } else {
    fprintf(stderr, "unknown op %s\n", op);
    return 2;
  }
  if (r < 0) printf("%s: %s\n", op, errno == EFAULT ? "EFAULT" : errno == ENOSYS ? "ENOSYS" : strerror(errno));
  else printf("%s: returned %ld\n", op, r);
  return 0;
}
