// issue: 3
/* uname: sysname and machine (the rest differs between hosts and sandboxes and
 * is only checked to be non-empty and NUL-terminated). */
#include <sys/utsname.h>

#include "guest.h"

int main(void) {
  struct utsname u;
  memset(&u, 0xff, sizeof u);
  SYS(uname(&u));
  say("sysname=%s\n", u.sysname);
  say("machine=%s\n", u.machine);
  CHECK(memchr(u.release, 0, sizeof u.release) && u.release[0], "release");
  CHECK(memchr(u.version, 0, sizeof u.version) && u.version[0], "version");
  CHECK(memchr(u.nodename, 0, sizeof u.nodename), "nodename terminated");
  CHECK(memchr(u.domainname, 0, sizeof u.domainname), "domainname terminated");
  /* glibc and musl parse the release number at startup in places; it must look like x.y. */
  CHECK(u.release[0] >= '1' && u.release[0] <= '9' && strchr(u.release, '.'), "release looks like x.y: %s", u.release);
  say("release looks like a Linux version: yes\n");
  return 0;
}
