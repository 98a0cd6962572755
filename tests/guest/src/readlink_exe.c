// issue: 3
// native-proc: yes
/* readlink("/proc/self/exe") names the program's path inside the container
 * root (the sandbox answers it without a /proc in the root filesystem; the
 * native run mounts a procfs in its chroot, see native-proc). */
#include "guest.h"

int main(void) {
  char buf[4096];
  memset(buf, 'X', sizeof buf);
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf);
  CHECK(n > 0 && n < (ssize_t)sizeof buf, "readlink /proc/self/exe");
  CHECK(buf[n] == 'X', "readlink must not NUL-terminate");
  buf[n] = 0;
  say("readlink(/proc/self/exe) = \"%s\"\n", buf);
  const char *suffix = "/readlink_exe";
  size_t sl = strlen(suffix);
  say("ends in /readlink_exe: %s\n", yesno((size_t)n >= sl && !strcmp(buf + n - sl, suffix)));
  /* A short buffer truncates silently and returns its size. */
  char small[5];
  ssize_t m = readlink("/proc/self/exe", small, sizeof small);
  say("readlink into 5 bytes = %zd, prefix matches: %s\n", m, yesno(m == 5 && !memcmp(small, buf, 5)));
  CHECK(m == 5 && !memcmp(small, buf, 5), "truncated readlink");
  return 0;
}
