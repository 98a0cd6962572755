// Times N no-op host calls made from the guest kernel through the test-only
// quark_test system call (quark-sandbox --test-hooks): `sync` = the
// synchronous VMM call (an `out` that stops the vCPU until the VMM answers),
// `queue` = the queued host call (submission ring, host I/O thread,
// completion ring; see docs/architecture.md "Host calls"). Prints the mean
// round trip in nanoseconds, including the system call that carries it.
// Usage: hostq N sync|queue
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NR_QUARK_TEST 0x51540000L
#define OP_NOP_HCALL 4
#define OP_NOP_HOSTQ 6

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000;
  long op = argc > 2 && !strcmp(argv[2], "queue") ? OP_NOP_HOSTQ : OP_NOP_HCALL;
  if (syscall(NR_QUARK_TEST, op) < 0) {
    perror("quark_test (run with --test-hooks)");
    return 1;
  }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < n; i++) syscall(NR_QUARK_TEST, op);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
  printf("%.1f\n", n ? ns / n : 0.0);
  return 0;
}
