/* Descriptor exhaustion: RLIMIT_NOFILE is enforced exactly (EMFILE for
 * open, pipe, dup, eventfd), fds at or above the limit are refused, the hard
 * limit cannot be raised without CAP_SYS_RESOURCE, and holding many host
 * files open at once (each one a handle in the VMM's file service) either
 * works or ends with a Linux error (EMFILE or ENFILE), never a crash, after
 * which everything works again.
 * argv[1]: how many host files to hold open at once. */
#include "hostile.h"
#include <sys/eventfd.h>
#include <sys/resource.h>

int main(int argc, char **argv) {
  long many = argc > 1 ? atol(argv[1]) : 1000;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) fail("getrlimit");
  rl.rlim_cur = 256;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) fail("setrlimit 256");
  int n = 0, fd;
  while ((fd = open("/marker", O_RDONLY)) >= 0) n++;
  EXPECT_ERR("open beyond RLIMIT_NOFILE", fd, EMFILE);
  EXPECT("253 files opened with fds 0-2 in use and a limit of 256", n == 253);
  int p[2];
  EXPECT_ERR("pipe at the limit", pipe(p), EMFILE);
  EXPECT_ERR("dup at the limit", dup(0), EMFILE);
  EXPECT_ERR("eventfd at the limit", eventfd(0, 0), EMFILE);
  EXPECT_ERR("dup2 to the limit", dup2(0, 256), EBADF);
  EXPECT_ERR("F_DUPFD at the limit", fcntl(0, F_DUPFD, 256), EINVAL);
  close(100);
  EXPECT("one close frees one slot", (fd = open("/marker", O_RDONLY)) == 100);
  EXPECT_ERR("and only one", open("/marker", O_RDONLY), EMFILE);
  for (int i = 3; i < 256; i++) close(i);

  struct rlimit hard;
  getrlimit(RLIMIT_NOFILE, &hard);
  struct rlimit up = {hard.rlim_max + 1, hard.rlim_max + 1};
  EXPECT_ERR("raise the hard limit without CAP_SYS_RESOURCE", setrlimit(RLIMIT_NOFILE, &up), EPERM);
  struct rlimit nr_open = {(rlim_t)many + 16, (rlim_t)many + 16};
  if ((rlim_t)many + 16 > hard.rlim_max) nr_open = hard;
  if (setrlimit(RLIMIT_NOFILE, &nr_open) != 0) fail("setrlimit to %ld", (long)nr_open.rlim_cur);

  /* Many host files held open at once. */
  int *fds = calloc((size_t)many, sizeof *fds);
  long held = 0;
  while (held < many && (fd = open("/marker", O_RDONLY)) >= 0) fds[held++] = fd;
  if (held < many) {
    EXPECT_ERR("holding many host files ends with", fd, EMFILE, ENFILE);
  } else {
    ok("held host files: all");
  }
  char buf[64];
  EXPECT("the last file held reads", held == 0 || pread(fds[held - 1], buf, sizeof buf, 0) > 0);
  for (long i = 0; i < held; i++) close(fds[i]);
  EXPECT("after closing them, files open and read again", slurp("/marker", buf, sizeof buf) > 0 && strstr(buf, "ROOT-MARKER"));
  printf("held %ld of %ld\n", held, many);
  done();
}
