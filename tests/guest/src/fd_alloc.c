// issue: 4
/* Descriptor allocation follows Linux's lowest-free rule across the 64-slot
 * words of the kernel's descriptor bitmap:
 *   - 300 descriptors open in order 3..302;
 *   - holes closed at 5, 63, 64, 127, 200 are refilled lowest first;
 *   - F_DUPFD with a minimum skips used slots and finds the lowest free one at
 *     or above it, also past the end of the table;
 *   - dup2 far past the end grows the table; open then still takes the lowest
 *     hole, and the slots between stay free;
 *   - close_range empties a range; the next opens start at its bottom;
 *   - RLIMIT_NOFILE: allocation past the limit is EMFILE, F_DUPFD at or above
 *     it EINVAL, dup2 to it EBADF; a freed slot below is found again;
 *   - 4000 open/close cycles at the top of 1000 open descriptors (this used
 *     to scan every slot per open). */
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

#include "guest.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static int efd(void) {
  int fd = eventfd(0, 0);
  CHECK(fd >= 0, "eventfd: %s", strerror(errno));
  return fd;
}

int main(void) {
  for (int i = 3; i < 303; i++) CHECK(efd() == i, "open in order at %d", i);
  printf("300 descriptors 3..302\n");

  int holes[] = {200, 64, 5, 127, 63};
  for (int i = 0; i < 5; i++) SYS(close(holes[i]));
  int sorted[] = {5, 63, 64, 127, 200};
  for (int i = 0; i < 5; i++) {
    int fd = efd();
    CHECK(fd == sorted[i], "hole %d refilled, got %d", sorted[i], fd);
  }
  CHECK(efd() == 303, "then the end");
  printf("holes refilled lowest first\n");

  SYS(close(100));
  SYS(close(150));
  int d = fcntl(3, F_DUPFD, 101);
  CHECK(d == 150, "F_DUPFD 101 -> 150, got %d", d);
  d = fcntl(3, F_DUPFD, 50);
  CHECK(d == 100, "F_DUPFD 50 -> 100, got %d", d);
  d = fcntl(3, F_DUPFD_CLOEXEC, 1000);
  CHECK(d == 1000, "F_DUPFD past the end -> 1000, got %d", d);
  CHECK(fcntl(1000, F_GETFD) == FD_CLOEXEC, "cloexec");
  printf("F_DUPFD finds the lowest free at or above its minimum\n");

  CHECK(dup2(3, 700) == 700, "dup2 700");
  CHECK(efd() == 304, "open after dup2 takes the lowest hole");
  CHECK(fcntl(600, F_GETFD) == -1 && errno == EBADF, "slots between stay free");
  printf("dup2 past the end leaves the slots between free\n");

  CHECK(syscall(SYS_close_range, 10, 99, 0) == 0, "close_range");
  for (int i = 10; i < 100; i++) CHECK(fcntl(i, F_GETFD) == -1 && errno == EBADF, "closed %d", i);
  CHECK(efd() == 10 && efd() == 11, "open after close_range starts at its bottom");
  printf("close_range\n");

  struct rlimit rl;
  SYS(getrlimit(RLIMIT_NOFILE, &rl));
  CHECK(rl.rlim_max >= 2048, "hard limit %lu", (unsigned long)rl.rlim_max);
  rl.rlim_cur = 320;
  SYS(setrlimit(RLIMIT_NOFILE, &rl));
  int got = 0;
  for (;;) {
    int fd = eventfd(0, 0);
    if (fd < 0) {
      CHECK(errno == EMFILE, "EMFILE, got %s", strerror(errno));
      break;
    }
    CHECK(fd < 320, "below the limit: %d", fd);
    got++;
  }
  printf("filled to the limit with %d more\n", got);
  CHECK(fcntl(3, F_DUPFD, 320) == -1 && errno == EINVAL, "F_DUPFD at the limit: EINVAL");
  CHECK(dup2(3, 320) == -1 && errno == EBADF, "dup2 at the limit: EBADF");
  SYS(close(42));
  CHECK(efd() == 42, "a freed slot below the limit is found again");
  printf("limits\n");

  rl.rlim_cur = 2048;
  SYS(setrlimit(RLIMIT_NOFILE, &rl));
  while (efd() < 1100) {
  }
  long sum = 0;
  for (int i = 0; i < 4000; i++) {
    int fd = efd();
    sum += fd;
    SYS(close(fd));
  }
  printf("4000 open/close cycles at the top: fd sum %ld\n", sum);
  return 0;
}
