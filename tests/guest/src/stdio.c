// issue: 3
// stdin: first line\nsecond line\nno newline at end
// compare: stdout+stderr
/* The stdio fds: read stdin to EOF (in small reads), write and writev to
 * stdout (with empty iovecs), write to stderr, and errors for fds that are
 * not open. */
#include <sys/uio.h>

#include "guest.h"

int main(void) {
  char buf[256];
  size_t total = 0;
  int reads = 0;
  for (;;) {
    ssize_t n = read(0, buf + total, 7); /* small reads: several calls */
    if (n < 0 && errno == EINTR) continue;
    CHECK(n >= 0, "read stdin");
    if (n == 0) break;
    total += (size_t)n;
    reads++;
    CHECK(total < sizeof buf - 8, "stdin too long");
  }
  buf[total] = 0;
  say("read %zu bytes from stdin in more than one read: %s\n", total, yesno(reads > 1));
  int lines = 0;
  for (size_t i = 0; i < total; i++) lines += buf[i] == '\n';
  say("lines=%d last=\"%s\"\n", lines, strrchr(buf, '\n') ? strrchr(buf, '\n') + 1 : buf);
  ssize_t z = read(0, buf, sizeof buf);
  say("read at EOF = %zd\n", z);
  CHECK(z == 0, "read after EOF");

  struct iovec iov[4] = {
      {(void *)"writev: ", 8}, {(void *)"", 0}, {(void *)"three ", 6}, {(void *)"parts\n", 6}};
  ssize_t w = writev(1, iov, 4);
  CHECK(w == 20, "writev returned %zd", w);
  say("writev returned %zd\n", w);
  w = write(1, "", 0);
  say("write of 0 bytes = %zd\n", w);
  const char *msg = "to stderr\n";
  w = write(2, msg, strlen(msg));
  CHECK(w == (ssize_t)strlen(msg), "write stderr");
  errno = 0;
  w = write(77, "x", 1);
  say("write(77) = %zd %s\n", w, errname(errno));
  CHECK(w == -1 && errno == EBADF, "write to a closed fd");
  errno = 0;
  w = read(77, buf, 1);
  say("read(77) = %zd %s\n", w, errname(errno));
  CHECK(w == -1 && errno == EBADF, "read from a closed fd");
  /* stdio buffering through libc: printf goes out at exit. */
  printf("printf line 1\n");
  printf("printf line %d\n", 2);
  fprintf(stderr, "fprintf to stderr\n");
  return 0;
}
