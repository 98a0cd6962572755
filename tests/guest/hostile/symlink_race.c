/* Symbolic links swapped during path walks: a thread keeps replacing
 * /tmp/r/link (rename over it, atomic) by links to a directory inside the
 * root, to `..` chains, to the host path of the outside directory, and by a
 * real directory, while the main thread opens, creates, stats and lists
 * through it. Every answer must come from inside the root (or be ENOENT);
 * the test checks on the host that nothing outside changed.
 * argv[1]: the host path of the outside directory; argv[2]: milliseconds
 * (at least 30 walks are made, however long they take). */
#include "hostile.h"
#include <pthread.h>
#include <dirent.h>
#include <time.h>

static volatile int stop;
static const char *host;

static void *swapper(void *arg) {
  (void)arg;
  char target[4096];
  snprintf(target, sizeof target, "%s", host);
  const char *targets[] = {"inside", "../../../../../../outside", target, "/../../..", "inside"};
  unsigned long i = 0;
  while (!stop) {
    const char *t = targets[i % 5];
    unlink("/tmp/r/new");
    if (symlink(t, "/tmp/r/new") != 0) continue;
    if (i % 7 == 6) {
      /* Swap in a real directory now and then (exchange). */
      rename("/tmp/r/new", "/tmp/r/link");
      rmdir("/tmp/r/realdir");
      mkdir("/tmp/r/realdir", 0755);
      renameat2(AT_FDCWD, "/tmp/r/realdir", AT_FDCWD, "/tmp/r/link", RENAME_EXCHANGE);
    } else {
      rename("/tmp/r/new", "/tmp/r/link");
    }
    i++;
  }
  return NULL;
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  host = argc > 1 ? argv[1] : "/nonexistent";
  long ms = argc > 2 ? atol(argv[2]) : 2000;
  if (mkdir("/tmp/r", 0755) != 0 || mkdir("/tmp/r/inside", 0755) != 0) fail("mkdir");
  int fd = open("/tmp/r/inside/secret", O_WRONLY | O_CREAT, 0644);
  if (fd < 0 || write(fd, "INSIDE\n", 7) != 7) fail("write inside/secret");
  close(fd);
  if (symlink("inside", "/tmp/r/link") != 0) fail("symlink");
  pthread_t th;
  if (pthread_create(&th, NULL, swapper, NULL) != 0) fail("pthread_create");

  long end = now_ms() + ms;
  unsigned long reads = 0, enoent = 0, creates = 0, lists = 0, other = 0;
  char buf[256], name[64];
  int last_errno = 0;
  /* At least `min_walks` walks whatever the load, and walks until `ms` passed. */
  const unsigned long min_walks = 30;
  for (unsigned long i = 0; i < min_walks || now_ms() < end; i++) {
    ssize_t n = slurp("/tmp/r/link/secret", buf, sizeof buf);
    if (n >= 0) {
      if (strstr(buf, "HOST-SECRET")) fail("read the host's secret through the swapped link");
      reads++;
    } else if (errno == ENOENT) {
      enoent++;
    } else {
      other++;
      last_errno = errno;
    }
    snprintf(name, sizeof name, "/tmp/r/link/new-%lu", i % 8);
    fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      creates++;
      close(fd);
      unlink(name);
    }
    struct stat st;
    if (stat("/tmp/r/link/secret", &st) == 0 && st.st_size != 7) fail("stat through the link saw a file of %ld bytes", (long)st.st_size);
    DIR *d = opendir("/tmp/r/link");
    if (d) {
      struct dirent *e;
      while ((e = readdir(d)))
        if (strcmp(e->d_name, "outside") != 0 && strstr(e->d_name, "secret") && strcmp(e->d_name, "secret") != 0)
          fail("listed %s", e->d_name);
      closedir(d);
      lists++;
    }
  }
  stop = 1;
  pthread_join(th, NULL);
  /* Whatever the interleaving, the answers were inside or ENOENT; ELOOP,
   * ENOTDIR and EISDIR-like errors can come from catching a link mid-swap. */
  if (other > 0 && last_errno != ENOTDIR && last_errno != ELOOP && last_errno != ENOENT)
    fail("unexpected errno %s", strerrorname_np(last_errno));
  EXPECT("the walks saw the inside file", reads > 0);
  EXPECT("the walks saw missing targets (ENOENT) too", enoent > 0);
  (void)creates;
  (void)lists;
  done();
}
