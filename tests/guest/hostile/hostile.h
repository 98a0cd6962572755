/* Shared checks of the hostile programs (tests/guest/hostile.test.ts).
 *
 * Each program tries to reach or change something outside its root, or to
 * exhaust a resource, and asserts that the attempt fails the way Linux fails
 * it. It prints one "ok ..." line per check that holds and one "FAIL ..."
 * line per check that does not, then "done N checks, M failed", and exits 1
 * if any failed. `fail` is for set-up steps the program cannot go on
 * without: it exits at once. */
#ifndef HOSTILE_H
#define HOSTILE_H
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int checks, failures;

__attribute__((unused)) static void ok(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("ok ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  checks++;
}

/* A check that does not hold: reported, and the program goes on. */
__attribute__((unused)) static void bad(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  checks++;
  failures++;
}

/* A set-up step failed: the program cannot go on. */
__attribute__((unused)) static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  exit(1);
}

/* The call (its result in `r`, < 0 on failure) must fail with one of the
 * errnos listed (0-terminated). */
#define EXPECT_ERR(what, r, ...)                                                          \
  do {                                                                                    \
    long r_ = (long)(r);                                                                  \
    int e_ = errno;                                                                       \
    int want_[] = {__VA_ARGS__, 0};                                                       \
    int hit_ = 0;                                                                         \
    for (int i_ = 0; want_[i_]; i_++) hit_ |= want_[i_] == e_;                             \
    if (r_ >= 0)                                                                          \
      bad("%s: succeeded (%ld), expected an error", what, r_);                            \
    else if (!hit_)                                                                       \
      bad("%s: errno %s, not the expected one", what, strerrorname_np(e_));               \
    else                                                                                  \
      ok("%s: %s", what, strerrorname_np(e_));                                            \
  } while (0)

#define EXPECT(what, cond)                               \
  do {                                                   \
    errno = 0;                                           \
    if (!(cond))                                         \
      bad("%s (errno %s)", what, strerrorname_np(errno)); \
    else                                                 \
      ok("%s", what);                                    \
  } while (0)

/* Reads a whole small file; -1 on error. */
__attribute__((unused)) static ssize_t slurp(const char *path, char *buf, size_t n) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t r = read(fd, buf, n - 1);
  int e = errno;
  close(fd);
  errno = e;
  if (r >= 0) buf[r] = 0;
  return r;
}

__attribute__((unused)) static void done(void) {
  printf("done %d checks, %d failed\n", checks, failures);
  fflush(stdout);
  exit(failures ? 1 : 0);
}
#endif
