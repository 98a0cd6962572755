/* Host device nodes placed in the root by the test (/hostdev/sda: block
 * 8:0, /hostdev/mem: char 1:1 like /dev/mem, /hostdev/disk: the block
 * device of the host's root filesystem) can be stat'ed but never opened,
 * whatever the route; device nodes the program makes cannot be opened
 * either; the sandbox's /dev has no host devices. */
#include "hostile.h"
#include <sys/sysmacros.h>

static void never_opens(const char *what, const char *path) {
  char msg[256];
  int modes[] = {O_RDONLY, O_WRONLY, O_RDWR};
  const char *names[] = {"O_RDONLY", "O_WRONLY", "O_RDWR"};
  for (int i = 0; i < 3; i++) {
    snprintf(msg, sizeof msg, "open %s %s", what, names[i]);
    int fd = open(path, modes[i]);
    if (fd >= 0) {
      char b[16];
      ssize_t n = read(fd, b, sizeof b);
      fail("%s: opened (read gave %ld)", msg, (long)n);
    }
    /* Linux: EACCES on a nodev mount, EPERM from the devices cgroup, ENXIO without a driver. */
    EXPECT_ERR(msg, fd, EACCES, EPERM, ENXIO);
  }
  /* An O_PATH descriptor is harmless; reopening it through /proc must not open the device. */
  int p = open(path, O_PATH);
  if (p >= 0) {
    char via[64];
    snprintf(via, sizeof via, "/proc/self/fd/%d", p);
    snprintf(msg, sizeof msg, "reopen %s through /proc/self/fd", what);
    int fd = open(via, O_RDONLY);
    EXPECT_ERR(msg, fd, EACCES, EPERM, ENXIO);
    close(p);
  }
}

int main(void) {
  struct stat st;
  EXPECT("stat /hostdev/mem: a char device 1:1",
         stat("/hostdev/mem", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 1);
  EXPECT("stat /hostdev/sda: a block device 8:0",
         stat("/hostdev/sda", &st) == 0 && S_ISBLK(st.st_mode) && major(st.st_rdev) == 8 && minor(st.st_rdev) == 0);
  never_opens("/hostdev/mem", "/hostdev/mem");
  never_opens("/hostdev/sda", "/hostdev/sda");
  never_opens("/hostdev/disk", "/hostdev/disk");
  never_opens("/hostdev/link-to-mem (a symlink)", "/hostdev/link-to-mem");

  /* Making device nodes: Linux lets CAP_MKNOD make them (and refuses the
   * open); either way they must not open. */
  int r = mknod("/tmp/mem2", S_IFCHR | 0600, makedev(1, 1));
  if (r == 0) {
    ok("mknod /tmp/mem2 c 1 1: made");
    never_opens("/tmp/mem2", "/tmp/mem2");
  } else {
    EXPECT_ERR("mknod /tmp/mem2 c 1 1", r, EPERM);
  }
  r = mknod("/tmp/sda2", S_IFBLK | 0600, makedev(8, 0));
  if (r == 0) {
    ok("mknod /tmp/sda2 b 8 0: made");
    never_opens("/tmp/sda2", "/tmp/sda2");
  } else {
    EXPECT_ERR("mknod /tmp/sda2 b 8 0", r, EPERM);
  }
  r = mknod("/dev/shm/mem3", S_IFCHR | 0600, makedev(1, 1));
  if (r == 0) {
    ok("mknod /dev/shm/mem3 c 1 1 (tmpfs): made");
    never_opens("/dev/shm/mem3", "/dev/shm/mem3");
  } else {
    EXPECT_ERR("mknod /dev/shm/mem3 c 1 1 (tmpfs)", r, EPERM);
  }

  /* The sandbox's /dev holds no host device. */
  const char *absent[] = {"/dev/sda", "/dev/vda", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kvm", "/dev/kmsg"};
  for (unsigned i = 0; i < sizeof absent / sizeof absent[0]; i++) {
    char msg[64];
    snprintf(msg, sizeof msg, "open %s", absent[i]);
    EXPECT_ERR(msg, open(absent[i], O_RDONLY), ENOENT);
  }
  done();
}
