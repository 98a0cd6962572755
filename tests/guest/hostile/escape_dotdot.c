/* `..` escapes: walking above the root by paths, by directory descriptors,
 * and by the classic chroot-without-chdir trick must stop at the sandbox's
 * root, where Linux stops at a process's root. argv[1]: the host path of the
 * directory beside the root that holds the secret. */
#include "hostile.h"
#include <sys/syscall.h>

static struct stat root_st;

static void at_root(const char *what, int dirfd) {
  struct stat st;
  if (fstat(dirfd, &st) != 0) fail("%s: fstat", what);
  if (st.st_ino != root_st.st_ino || st.st_dev != root_st.st_dev) fail("%s: not the root", what);
  if (faccessat(dirfd, "marker", F_OK, 0) != 0) fail("%s: no marker", what);
  ok("%s: stays at the root", what);
}

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "/nonexistent";
  char buf[4096];
  if (stat("/", &root_st) != 0) fail("stat /");

  int fd = open("/../../../..", O_RDONLY | O_DIRECTORY);
  EXPECT("open /../../../..", fd >= 0);
  at_root("/../../../..", fd);
  close(fd);

  EXPECT_ERR("open /../outside/secret", open("/../outside/secret", O_RDONLY), ENOENT);
  EXPECT_ERR("open ../../../../outside/secret from /", open("../../../../outside/secret", O_RDONLY), ENOENT);
  EXPECT_ERR("stat ../outside", stat("../outside", &(struct stat){0}), ENOENT);
  snprintf(buf, sizeof buf, "%s/secret", host);
  EXPECT_ERR("open the host path of the secret", open(buf, O_RDONLY), ENOENT);
  snprintf(buf, sizeof buf, "/../../../../../../..%s/secret", host);
  EXPECT_ERR("open ../ chain + host path of the secret", open(buf, O_RDONLY), ENOENT);
  EXPECT_ERR("create ../outside/new", open("/../outside/new", O_WRONLY | O_CREAT, 0644), ENOENT);
  EXPECT_ERR("mkdir ../outside/dir/x", mkdir("/../outside/dir/x", 0755), ENOENT);

  /* Up from a deep working directory. */
  if (mkdir("/tmp/a", 0755) != 0 || mkdir("/tmp/a/b", 0755) != 0) fail("mkdir /tmp/a/b");
  if (chdir("/tmp/a/b") != 0) fail("chdir");
  for (int i = 0; i < 10; i++)
    if (chdir("..") != 0) fail("chdir ..");
  EXPECT("getcwd after 10 x chdir .. is /", getcwd(buf, sizeof buf) && strcmp(buf, "/") == 0);
  fd = open(".", O_RDONLY | O_DIRECTORY);
  at_root("cwd after chdir ..", fd);
  close(fd);

  /* openat with a directory descriptor, and fchdir. */
  int tmp = open("/tmp", O_RDONLY | O_DIRECTORY);
  fd = openat(tmp, "../../../..", O_RDONLY | O_DIRECTORY);
  at_root("openat(/tmp, ../../../..)", fd);
  close(fd);
  EXPECT_ERR("openat(/tmp, ../../outside/secret)", openat(tmp, "../../outside/secret", O_RDONLY), ENOENT);
  EXPECT_ERR("fstatat(/tmp, ../../../outside)", fstatat(tmp, "../../../outside", &(struct stat){0}, 0), ENOENT);

  /* The classic escape: chroot into a subdirectory without chdir, then walk
   * up from the old working directory. On Linux that leaves the new root but
   * only reaches the process's original root (which the sandbox's / is).
   * OCI's default capabilities include CAP_SYS_CHROOT. */
  if (mkdir("/tmp/jail", 0755) != 0) fail("mkdir /tmp/jail");
  int keep = open("/", O_RDONLY | O_DIRECTORY);
  if (chroot("/tmp/jail") != 0) fail("chroot /tmp/jail (errno %s)", strerrorname_np(errno));
  ok("chroot /tmp/jail (without chdir)");
  if (fchdir(keep) != 0) fail("fchdir to the old root");
  for (int i = 0; i < 20; i++)
    if (chdir("..") != 0) fail("chdir .. outside the jail");
  fd = open(".", O_RDONLY | O_DIRECTORY);
  at_root("chdir .. x 20 from outside the jail", fd);
  close(fd);
  if (chroot(".") != 0) fail("chroot . (back to the old root)");
  EXPECT_ERR("after chroot ., open ../outside/secret", open("../outside/secret", O_RDONLY), ENOENT);
  EXPECT_ERR("after chroot ., open /../../outside/secret", open("/../../outside/secret", O_RDONLY), ENOENT);
  fd = open("/", O_RDONLY | O_DIRECTORY);
  at_root("/ after re-chroot", fd);
  close(fd);
  done();
}
