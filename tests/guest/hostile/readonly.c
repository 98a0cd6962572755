/* A read-only root (quark-sandbox --read-only): every change to it fails
 * with EROFS, as on a read-only Linux mount, while reads work and the
 * sandbox's own tmpfs (/dev/shm) stays writable. Remounting is refused. */
#include "hostile.h"
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/statfs.h>
#include <sys/time.h>

int main(void) {
  char buf[256];
  EXPECT("read /marker", slurp("/marker", buf, sizeof buf) > 0 && strstr(buf, "ROOT-MARKER"));
  struct statfs sfs;
  EXPECT("statfs / reports ST_RDONLY", statfs("/", &sfs) == 0 && (sfs.f_flags & ST_RDONLY));

  EXPECT_ERR("open /marker O_WRONLY", open("/marker", O_WRONLY), EROFS);
  EXPECT_ERR("open /marker O_RDWR", open("/marker", O_RDWR), EROFS);
  EXPECT_ERR("open /marker O_WRONLY|O_TRUNC", open("/marker", O_WRONLY | O_TRUNC), EROFS);
  EXPECT_ERR("open /marker O_APPEND", open("/marker", O_WRONLY | O_APPEND), EROFS);
  EXPECT_ERR("create /new", open("/new", O_WRONLY | O_CREAT, 0644), EROFS);
  EXPECT_ERR("create /tmp/new", open("/tmp/new", O_WRONLY | O_CREAT, 0644), EROFS);
  EXPECT_ERR("mkdir /tmp/d", mkdir("/tmp/d", 0755), EROFS);
  EXPECT_ERR("unlink /marker", unlink("/marker"), EROFS);
  EXPECT_ERR("rmdir /tmp", rmdir("/tmp"), EROFS, EBUSY);
  EXPECT_ERR("rename /marker", rename("/marker", "/marker2"), EROFS);
  EXPECT_ERR("symlink /tmp/l", symlink("/marker", "/tmp/l"), EROFS);
  EXPECT_ERR("link /tmp/h", link("/marker", "/tmp/h"), EROFS);
  EXPECT_ERR("chmod /marker", chmod("/marker", 0777), EROFS);
  EXPECT_ERR("chown /marker", chown("/marker", 1, 1), EROFS);
  EXPECT_ERR("utimes /marker", utimes("/marker", NULL), EROFS);
  EXPECT_ERR("truncate /marker", truncate("/marker", 0), EROFS);
  EXPECT_ERR("mkfifo /tmp/f", mkfifo("/tmp/f", 0644), EROFS);
  int fd = open("/marker", O_RDONLY);
  EXPECT("open /marker O_RDONLY", fd >= 0);
  EXPECT_ERR("ftruncate a read-only descriptor", ftruncate(fd, 0), EINVAL, EBADF);
  EXPECT_ERR("write a read-only descriptor", write(fd, "x", 1), EBADF);
  close(fd);
  EXPECT_ERR("remount / read-write", mount(NULL, "/", NULL, MS_REMOUNT, NULL), EPERM);

  fd = open("/dev/shm/scratch", O_RDWR | O_CREAT, 0600);
  EXPECT("/dev/shm (tmpfs) stays writable", fd >= 0 && write(fd, "x", 1) == 1);
  done();
}
