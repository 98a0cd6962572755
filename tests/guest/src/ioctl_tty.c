// issue: 3
/* Terminal ioctls on stdout. The harness and the native check both run with
 * stdout a pipe, so both ioctls fail with ENOTTY; if stdout were a terminal
 * they would succeed. Prints only which of the two happened. */
#include <sys/ioctl.h>
#include <termios.h>

#include "guest.h"

static void report(const char *what, int r) {
  if (r == 0)
    say("%s(stdout): ok\n", what);
  else
    say("%s(stdout): %s\n", what, errname(errno));
  CHECK(r == 0 || errno == ENOTTY, "%s must succeed or fail with ENOTTY", what);
}

int main(void) {
  struct termios t;
  struct winsize ws;
  errno = 0;
  report("TCGETS", ioctl(1, TCGETS, &t));
  errno = 0;
  report("TIOCGWINSZ", ioctl(1, TIOCGWINSZ, &ws));
  say("isatty(1) = %d\n", isatty(1));
  errno = 0;
  int r = ioctl(99, TCGETS, &t);
  say("TCGETS(fd 99) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EBADF, "ioctl on a closed fd");
  return 0;
}
