/* Symbolic-link escapes: links planted in the root on the host (absolute
 * host paths, relative chains of ..) and links the program makes must
 * resolve inside the root, as Linux resolves them inside a process's root.
 * argv[1]: the host path of the directory beside the root holding the secret. */
#include "hostile.h"

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
  char buf[4096], target[4096];

  /* Planted by the test on the host. */
  never_secret("open /evil_abs (-> host path of the secret)", "/evil_abs");
  never_secret("open /evil_rel (-> ../outside/secret)", "/evil_rel");
  never_secret("open /evil_dir/secret (-> ../../../../outside)", "/evil_dir/secret");
  never_secret("open /evil_hostdir/secret (-> host path of outside)", "/evil_hostdir/secret");
  EXPECT_ERR("create through /evil_dir", open("/evil_dir/created", O_WRONLY | O_CREAT, 0644), ENOENT);
  EXPECT_ERR("create through /evil_hostdir", open("/evil_hostdir/created", O_WRONLY | O_CREAT, 0644), ENOENT);
  EXPECT_ERR("create through a dangling /evil_new (-> ../outside/new)", open("/evil_new", O_WRONLY | O_CREAT, 0644),
             ENOENT);
  EXPECT_ERR("mkdir through /evil_dir", mkdir("/evil_dir/d", 0755), ENOENT);
  EXPECT_ERR("chmod through /evil_abs", chmod("/evil_abs", 0777), ENOENT);
  EXPECT_ERR("truncate through /evil_abs", truncate("/evil_abs", 0), ENOENT);
  ssize_t n = readlink("/evil_abs", buf, sizeof buf - 1);
  EXPECT("readlink /evil_abs gives the link text", n > 0);
  EXPECT_ERR("opendir /evil_hostdir", open("/evil_hostdir", O_RDONLY | O_DIRECTORY), ENOENT);

  /* Made by the program. */
  if (mkdir("/tmp/s", 0755) != 0) fail("mkdir /tmp/s");
  snprintf(target, sizeof target, "%s/secret", host);
  if (symlink(target, "/tmp/s/abs") != 0) fail("symlink abs");
  never_secret("open a new link to the host path of the secret", "/tmp/s/abs");
  if (symlink("../../../../../../../../outside/secret", "/tmp/s/rel") != 0) fail("symlink rel");
  never_secret("open a new link ../../../../../../../../outside/secret", "/tmp/s/rel");
  if (symlink("/../../../..", "/tmp/s/up") != 0) fail("symlink up");
  never_secret("open up/outside/secret through a link to /../../../..", "/tmp/s/up/outside/secret");
  snprintf(buf, sizeof buf, "/tmp/s/up%s/secret", host);
  never_secret("open up + host path of the secret", buf);
  int fd = open("/tmp/s/up", O_RDONLY | O_DIRECTORY);
  EXPECT("the link to /../../../.. is the root", fd >= 0 && faccessat(fd, "marker", F_OK, 0) == 0);
  close(fd);

  /* Loops and long chains: ELOOP like Linux (40 links at most). */
  if (symlink("/tmp/s/loop2", "/tmp/s/loop1") != 0 || symlink("/tmp/s/loop1", "/tmp/s/loop2") != 0) fail("loop");
  EXPECT_ERR("open a symlink loop", open("/tmp/s/loop1", O_RDONLY), ELOOP);
  if (symlink("/marker", "/tmp/s/c0") != 0) fail("c0");
  for (int i = 1; i <= 41; i++) {
    char from[64], to[64];
    snprintf(to, sizeof to, "/tmp/s/c%d", i - 1);
    snprintf(from, sizeof from, "/tmp/s/c%d", i);
    if (symlink(to, from) != 0) fail("chain");
  }
  EXPECT("a chain of 40 links resolves", slurp("/tmp/s/c39", buf, sizeof buf) > 0 && strstr(buf, "ROOT-MARKER"));
  EXPECT_ERR("a chain of 41 links", open("/tmp/s/c41", O_RDONLY), ELOOP);
  EXPECT_ERR("O_NOFOLLOW on a link", open("/tmp/s/abs", O_RDONLY | O_NOFOLLOW), ELOOP);

  /* A hard link to a planted symlink links the symlink, never its target. */
  EXPECT("link /evil_abs /tmp/s/hard", link("/evil_abs", "/tmp/s/hard") == 0);
  never_secret("open the hard link", "/tmp/s/hard");
  done();
}
