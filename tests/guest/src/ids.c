// issue: 3
/* Identity syscalls: uid/gid values (root in both runs), and relations
 * between pid, tid and ppid (never the numbers themselves). */
#include "guest.h"

int main(void) {
  say("uid=%d euid=%d gid=%d egid=%d\n", (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
  pid_t pid = getpid(), tid = gettid_(), ppid = getppid();
  say("pid > 0: %s\n", yesno(pid > 0));
  say("gettid == getpid in a single-threaded process: %s\n", yesno(tid == pid));
  say("getppid >= 0 and != pid: %s\n", yesno(ppid >= 0 && ppid != pid));
  CHECK(pid > 0 && tid == pid && ppid >= 0 && ppid != pid, "pid relations");
  /* The raw syscalls agree with libc (which may cache). */
  CHECK(syscall(SYS_getpid) == pid && syscall(SYS_getppid) == ppid, "raw getpid/getppid");
  CHECK(syscall(SYS_getuid) == getuid() && syscall(SYS_geteuid) == geteuid(), "raw getuid/geteuid");
  CHECK(syscall(SYS_getgid) == getgid() && syscall(SYS_getegid) == getegid(), "raw getgid/getegid");
  uid_t r, e, s;
  SYS(getresuid(&r, &e, &s));
  say("getresuid=%d,%d,%d\n", (int)r, (int)e, (int)s);
  gid_t gr, ge, gs;
  SYS(getresgid(&gr, &ge, &gs));
  say("getresgid=%d,%d,%d\n", (int)gr, (int)ge, (int)gs);
  return 0;
}
