// issue: 3
/* Clocks: CLOCK_MONOTONIC never goes backwards (1000 reads), nanosleep(10 ms)
 * sleeps at least 10 ms, CLOCK_REALTIME and gettimeofday agree and are after
 * 2020. Prints only booleans. */
#include <sys/time.h>

#include "guest.h"

int main(void) {
  int64_t prev = mono_ns(), first = prev;
  int monotonic = 1;
  for (int i = 0; i < 1000; i++) {
    int64_t t = mono_ns();
    if (t < prev) monotonic = 0;
    prev = t;
  }
  say("CLOCK_MONOTONIC non-decreasing over 1000 reads: %s\n", yesno(monotonic));
  CHECK(monotonic, "monotonic clock went backwards");
  CHECK(prev > first || prev == first, "monotonic");

  struct timespec req = {0, 10 * 1000000L}, rem = {0, 0};
  int64_t t0 = mono_ns();
  int r = nanosleep(&req, &rem);
  int64_t slept = mono_ns() - t0;
  say("nanosleep(10 ms) returned %d, slept >= 10 ms: %s\n", r, yesno(slept >= 10000000));
  CHECK(r == 0 && slept >= 10000000, "nanosleep slept %lld ns", (long long)slept);
  CHECK(slept < 5000000000LL, "nanosleep(10 ms) took %lld ns", (long long)slept);

  struct timespec rt;
  SYS(clock_gettime(CLOCK_REALTIME, &rt));
  struct timeval tv;
  SYS(gettimeofday(&tv, NULL));
  int sane = rt.tv_sec > 1577836800 && rt.tv_nsec >= 0 && rt.tv_nsec < 1000000000L;
  say("CLOCK_REALTIME after 2020-01-01: %s\n", yesno(sane));
  CHECK(sane, "realtime %lld", (long long)rt.tv_sec);
  int tv_ok = tv.tv_usec >= 0 && tv.tv_usec < 1000000 && tv.tv_sec >= rt.tv_sec && tv.tv_sec - rt.tv_sec <= 2;
  say("gettimeofday agrees with CLOCK_REALTIME: %s\n", yesno(tv_ok));
  CHECK(tv_ok, "gettimeofday %lld vs %lld", (long long)tv.tv_sec, (long long)rt.tv_sec);
  /* The raw syscall too, not only the vDSO (if any). */
  struct timespec raw;
  CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &raw) == 0, "raw clock_gettime");
  int64_t raw_ns = (int64_t)raw.tv_sec * 1000000000LL + raw.tv_nsec;
  say("raw clock_gettime(MONOTONIC) consistent with libc: %s\n", yesno(raw_ns >= prev));
  CHECK(raw_ns >= prev, "raw monotonic behind libc monotonic");
  errno = 0;
  r = clock_gettime((clockid_t)12345, &raw);
  say("clock_gettime(bad clock) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad clock id");
  req.tv_nsec = 1000000000L;
  errno = 0;
  r = nanosleep(&req, NULL);
  say("nanosleep(tv_nsec = 1e9) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "nanosleep with bad tv_nsec");
  return 0;
}
