// The program `npm start` runs in a sandbox: it shows what the guest sees.
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
  struct utsname u;
  uname(&u);
  printf("Hello from a Quark sandbox!\n");
  printf("  kernel:   %s %s (%s), host name %s\n", u.sysname, u.release, u.machine, u.nodename);
  printf("  process:  pid %d, uid %d, running %s\n", getpid(), getuid(), argv[0]);
  printf("  CPUs:     %ld online\n", sysconf(_SC_NPROCESSORS_ONLN));
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < 200; i++) syscall(SYS_getpid);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 200 / 1000;
  printf("  syscalls: %.1f us per getpid round trip through the guest kernel\n", us);
  (void)argc;
  return 0;
}
