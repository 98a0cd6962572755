// issue: 3
/* getrandom fills buffers with bytes that differ between calls and are not
 * all zero; flags and sizes behave as on Linux. */
#include <sys/random.h>

#include "guest.h"

static int nonzero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 1;
  return 0;
}

int main(void) {
  unsigned char a[32], b[32];
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  ssize_t ra = getrandom(a, sizeof a, 0), rb = getrandom(b, sizeof b, 0);
  say("getrandom(32) twice = %zd, %zd\n", ra, rb);
  CHECK(ra == 32 && rb == 32, "getrandom 32");
  say("buffers non-zero: %s, distinct: %s\n", yesno(nonzero(a, 32) && nonzero(b, 32)), yesno(memcmp(a, b, 32) != 0));
  CHECK(nonzero(a, 32) && nonzero(b, 32) && memcmp(a, b, 32), "random bytes");
  static unsigned char big[4096];
  ssize_t r = getrandom(big, sizeof big, GRND_NONBLOCK);
  say("getrandom(4096, GRND_NONBLOCK) = %zd\n", r);
  CHECK(r == 4096, "getrandom 4096");
  /* Not just the first bytes: every 256-byte block has something non-zero. */
  int blocks = 1;
  for (int i = 0; i < 16; i++) blocks &= nonzero(big + i * 256, 256);
  say("every 256-byte block non-zero: %s\n", yesno(blocks));
  CHECK(blocks, "partially filled buffer");
  r = getrandom(a, 0, 0);
  say("getrandom(0) = %zd\n", r);
  CHECK(r == 0, "getrandom 0 bytes");
  errno = 0;
  r = getrandom(a, 16, 0x100);
  say("getrandom(flags 0x100) = %zd %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "unknown flags");
  /* A large request may return fewer bytes than asked, never more, never 0. */
  unsigned char *huge = malloc(1 << 20);
  CHECK(huge, "malloc");
  r = getrandom(huge, 1 << 20, 0);
  say("getrandom(1 MiB) returned between 1 and 1 MiB: %s\n", yesno(r > 0 && r <= (1 << 20)));
  CHECK(r > 0 && r <= (1 << 20), "getrandom 1 MiB = %zd", r);
  free(huge);
  return 0;
}
