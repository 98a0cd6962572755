// issue: 4
/* Credentials and capabilities. The program starts as root with the OCI
 * default capability set (in the sandbox by default; natively the runner
 * drops to it): CapEff/CapPrm are printed. As root it may kill another
 * user's process (CAP_KILL), chroot (CAP_SYS_CHROOT) and setgroups/setuid,
 * but not mount or sethostname (no CAP_SYS_ADMIN). After setuid(1000) every
 * capability is gone: killing root's processes, setuid(0), setgid(0) and
 * chroot all fail with EPERM. seteuid(1000) drops the effective set only, and
 * seteuid(0) brings it back. */
#include <grp.h>
#include <sys/mount.h>

#include "guest.h"

struct cap_header {
  uint32_t version;
  int pid;
};
struct cap_data {
  uint32_t effective, permitted, inheritable;
};

static void caps(uint64_t *eff, uint64_t *prm) {
  struct cap_header h = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
  struct cap_data d[2];
  memset(d, 0, sizeof d);
  if (syscall(SYS_capget, &h, d) != 0) fail("capget: %s", errname(errno));
  *eff = d[0].effective | (uint64_t)d[1].effective << 32;
  *prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
}

int main(void) {
  uint64_t eff, prm;
  caps(&eff, &prm);
  say("uid %d gid %d, CapEff 0x%016llx CapPrm 0x%016llx\n", (int)getuid(), (int)getgid(), (unsigned long long)eff,
      (unsigned long long)prm);
  CHECK(getuid() == 0 && getgid() == 0, "must start as root");

  volatile uint32_t *sh = shared_mem(PAGE);
  /* a process of another user, and one of root, both waiting */
  pid_t other = xfork();
  if (other == 0) {
    if (setgid(2000) != 0 || setuid(2000) != 0) _exit(1);
    futex_wait_while(&sh[0], 0);
    _exit(0);
  }
  pid_t rootkid = xfork();
  if (rootkid == 0) {
    futex_wait_while(&sh[0], 0);
    _exit(0);
  }

  /* as root */
  int r = chroot("/");
  say("root: chroot(\"/\") = %d\n", r);
  CHECK(r == 0, "chroot as root");
  errno = 0;
  r = mount("none", "/", "tmpfs", 0, NULL);
  say("root: mount(tmpfs) = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EPERM, "mount without CAP_SYS_ADMIN");
  errno = 0;
  r = sethostname("x", 1);
  say("root: sethostname = %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EPERM, "sethostname without CAP_SYS_ADMIN");
  gid_t groups[2] = {5, 6};
  SYS(setgroups(2, groups));
  gid_t back[8];
  int ng = getgroups(8, back);
  say("root: setgroups({5, 6}) then getgroups: %d groups, %d %d\n", ng, ng > 0 ? (int)back[0] : -1,
      ng > 1 ? (int)back[1] : -1);
  CHECK(ng == 2 && back[0] == 5 && back[1] == 6, "groups");
  SYS(setgroups(0, NULL));

  /* seteuid: effective capabilities follow the effective uid */
  pid_t c = xfork();
  if (c == 0) {
    if (seteuid(1000) != 0) _exit(1);
    uint64_t e1, p1;
    caps(&e1, &p1);
    int dropped = getuid() == 0 && geteuid() == 1000 && e1 == 0 && p1 == prm;
    if (seteuid(0) != 0) _exit(2);
    uint64_t e2, p2;
    caps(&e2, &p2);
    say("seteuid(1000): euid 1000 with no effective capabilities and permitted kept: %s; seteuid(0) restores "
        "them: %s\n",
        yesno(dropped), yesno(e2 == eff));
    _exit(dropped && e2 == eff ? 0 : 3);
  }
  expect_child_ok(c, "seteuid child");

  /* setuid(1000): everything is gone */
  c = xfork();
  if (c == 0) {
    if (setgid(1000) != 0 || setuid(1000) != 0) _exit(1);
    uid_t ru, eu, su;
    getresuid(&ru, &eu, &su);
    uint64_t e, p;
    caps(&e, &p);
    say("after setuid(1000): resuid %d/%d/%d, CapEff 0x%016llx CapPrm 0x%016llx\n", (int)ru, (int)eu, (int)su,
        (unsigned long long)e, (unsigned long long)p);
    errno = 0;
    int k1 = kill(rootkid, SIGTERM);
    say("  kill(root's process) = %d %s\n", k1, errname(errno));
    errno = 0;
    int k2 = kill(1, 0);
    say("  kill(1, 0) = %d %s\n", k2, errname(errno));
    errno = 0;
    int k3 = kill(other, 0);
    say("  kill(another user's process, 0) = %d %s\n", k3, errname(errno));
    errno = 0;
    int s1 = setuid(0);
    say("  setuid(0) = %d %s\n", s1, errname(errno));
    errno = 0;
    int s2 = setgid(0);
    say("  setgid(0) = %d %s\n", s2, errname(errno));
    errno = 0;
    int s3 = chroot("/");
    say("  chroot(\"/\") = %d %s\n", s3, errname(errno));
    int ok = ru == 1000 && eu == 1000 && su == 1000 && e == 0 && p == 0 && k1 == -1 && k2 == -1 && k3 == -1 &&
             s1 == -1 && s2 == -1 && s3 == -1 && kill(getpid(), 0) == 0;
    _exit(ok ? 0 : 4);
  }
  expect_child_ok(c, "setuid child");

  r = kill(other, SIGTERM);
  int st = xwait(other);
  say("root: kill(another user's process, SIGTERM) = %d, it was %s\n", r, wstatus_str(st));
  CHECK(r == 0 && WIFSIGNALED(st), "CAP_KILL");
  futex_set_wake(&sh[0], 1);
  expect_child_ok(rootkid, "root child");
  return 0;
}
