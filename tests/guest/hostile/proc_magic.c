/* /proc/self/root, /proc/self/cwd, /proc/<pid>/root and /proc/self/fd/N
 * tricks: magic links lead to objects inside the sandbox, and `..` from
 * there stops at the root. argv[1]: the host path of the outside directory. */
#include "hostile.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static void never_secret(const char *what, const char *path) {
  char buf[256];
  ssize_t n = slurp(path, buf, sizeof buf);
  if (n >= 0 && strstr(buf, "HOST-SECRET")) {
    bad("%s: read the host's secret", what);
    return;
  }
  EXPECT_ERR(what, n, ENOENT);
}

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "/nonexistent";
  char buf[4096], path[4096];

  ssize_t n = readlink("/proc/self/root", buf, sizeof buf - 1);
  EXPECT("readlink /proc/self/root is /", n == 1 && buf[0] == '/');
  EXPECT("/proc/self/root/marker is the root's", slurp("/proc/self/root/marker", buf, sizeof buf) > 0 &&
                                                    strstr(buf, "ROOT-MARKER"));
  never_secret("/proc/self/root/../../outside/secret", "/proc/self/root/../../outside/secret");
  snprintf(path, sizeof path, "/proc/self/root%s/secret", host);
  never_secret("/proc/self/root + host path of the secret", path);
  snprintf(path, sizeof path, "/proc/self/root/../../../..%s/secret", host);
  never_secret("/proc/self/root/../../.. + host path", path);
  never_secret("/proc/1/root/../outside/secret", "/proc/1/root/../outside/secret");
  never_secret("/proc/thread-self/root/../outside/secret", "/proc/thread-self/root/../outside/secret");

  if (mkdir("/tmp/w", 0755) != 0 || chdir("/tmp/w") != 0) fail("chdir /tmp/w");
  n = readlink("/proc/self/cwd", buf, sizeof buf - 1);
  EXPECT("readlink /proc/self/cwd is /tmp/w", n == 6 && memcmp(buf, "/tmp/w", 6) == 0);
  never_secret("/proc/self/cwd/../../../../outside/secret", "/proc/self/cwd/../../../../outside/secret");

  /* A directory descriptor named through /proc/self/fd. */
  int dfd = open("/tmp", O_RDONLY | O_DIRECTORY);
  snprintf(path, sizeof path, "/proc/self/fd/%d/../../../outside/secret", dfd);
  never_secret("/proc/self/fd/N/../../../outside/secret", path);
  snprintf(path, sizeof path, "/proc/self/fd/%d", dfd);
  n = readlink(path, buf, sizeof buf - 1);
  EXPECT("readlink /proc/self/fd/N of /tmp is /tmp", n == 4 && memcmp(buf, "/tmp", 4) == 0);

  /* A child in a chroot jail: its /proc/<pid>/root leads to the jail; `..`
   * from there climbs to our root and no further. */
  if (mkdir("/tmp/jail", 0755) != 0) fail("mkdir /tmp/jail");
  int jm = open("/tmp/jail/jail-marker", O_WRONLY | O_CREAT, 0644);
  if (jm < 0 || write(jm, "JAIL\n", 5) != 5) fail("jail marker");
  close(jm);
  int pfd[2];
  if (pipe(pfd) != 0) fail("pipe");
  pid_t child = fork();
  if (child == 0) {
    close(pfd[0]);
    if (chroot("/tmp/jail") != 0 || chdir("/") != 0) _exit(2);
    if (write(pfd[1], "x", 1) != 1) _exit(3);
    pause();
    _exit(0);
  }
  close(pfd[1]);
  char c;
  EXPECT("the child chrooted into /tmp/jail", read(pfd[0], &c, 1) == 1);
  snprintf(path, sizeof path, "/proc/%d/root/../../marker", (int)child);
  EXPECT("/proc/<child>/root/../../marker is our root's", slurp(path, buf, sizeof buf) > 0 && strstr(buf, "ROOT-MARKER"));
  snprintf(path, sizeof path, "/proc/%d/root/../../../../outside/secret", (int)child);
  never_secret("/proc/<child>/root/../../../../outside/secret", path);
  snprintf(path, sizeof path, "/proc/%d/root/jail-marker", (int)child);
  EXPECT("/proc/<jailed child>/root leads into the jail", slurp(path, buf, sizeof buf) > 0 && strstr(buf, "JAIL"));
  /* Linux shows the jail's path as seen from the reader's root. */
  snprintf(path, sizeof path, "/proc/%d/root", (int)child);
  n = readlink(path, buf, sizeof buf - 1);
  if (n >= 0) buf[n] = 0;
  if (n != 9 || memcmp(buf, "/tmp/jail", 9) != 0)
    bad("readlink /proc/<jailed child>/root: \"%s\", Linux: \"/tmp/jail\"", n >= 0 ? buf : strerrorname_np(errno));
  else
    ok("readlink /proc/<jailed child>/root is /tmp/jail");
  snprintf(path, sizeof path, "/proc/%d/cwd", (int)child);
  n = readlink(path, buf, sizeof buf - 1);
  if (n >= 0) buf[n] = 0;
  if (n != 9 || memcmp(buf, "/tmp/jail", 9) != 0)
    bad("readlink /proc/<jailed child>/cwd: \"%s\", Linux: \"/tmp/jail\"", n >= 0 ? buf : strerrorname_np(errno));
  else
    ok("readlink /proc/<jailed child>/cwd is /tmp/jail");
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);

  /* Writing the running program through /proc/self/exe (the runc
   * CVE-2019-5736 vector) is refused like Linux: ETXTBSY. */
  EXPECT_ERR("open /proc/self/exe for writing", open("/proc/self/exe", O_WRONLY), ETXTBSY);
  done();
}
