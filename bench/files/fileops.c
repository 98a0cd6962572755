/* File-operation micro-benchmarks for bench/files/files.bench.ts, run the
 * same way natively (in a chroot) and in the sandbox. Prints one number.
 *
 *   fileops openstat N PATH    open + fstat + close, N times: ns per iteration
 *   fileops stat N PATH        stat, N times: ns per call
 *   fileops pread N PATH       4 KiB pread at pseudo-random 4 KiB-aligned offsets: ns per call
 *   fileops write MIB PATH     write MIB MiB sequentially (1 MiB writes) + fsync: MB/s
 *   fileops read PATH          read the whole file sequentially (1 MiB reads): MB/s
 *   fileops spawn N PROG ARGS  fork + execve + wait, N times: ns per spawn
 *   fileops readers T BS N PREFIX  T threads; thread i preads N blocks of BS
 *                              bytes at pseudo-random BS-aligned offsets of
 *                              PREFIX<i> (its own file); prints ns per read
 *                              (wall time / all reads) and the reads done
 *   fileops evict PATH...      drop the files from the host's page cache
 *                              (posix_fadvise DONTNEED; run natively)
 *
 * N = 0 does the set-up only (the benchmark subtracts its counters). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

struct rd {
  int fd;
  long bs, n, blocks;
  unsigned seed;
  long done;
};

static void *rd_thread(void *arg) {
  struct rd *r = arg;
  char *b = malloc(r->bs);
  if (!b) die("malloc");
  memset(b, 0, r->bs); /* faulted in before timing */
  uint64_t x = 88172645463325252ull ^ r->seed;
  for (long i = 0; i < r->n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    off_t off = (off_t)(x % (uint64_t)r->blocks) * r->bs;
    if (pread(r->fd, b, r->bs, off) != r->bs) die("pread");
    r->done++;
  }
  free(b);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fileops openstat|stat|pread|write|read|spawn ...\n");
    return 2;
  }
  const char *op = argv[1];
  static char buf[1 << 20];
  if (!strcmp(op, "openstat") || !strcmp(op, "stat") || !strcmp(op, "pread")) {
    long n = atol(argv[2]);
    const char *path = argv[3];
    struct stat st;
    int fd = -1;
    if (!strcmp(op, "pread")) {
      fd = open(path, O_RDONLY);
      if (fd < 0 || fstat(fd, &st) != 0) die("open");
      if (pread(fd, buf, 4096, 0) != 4096) die("pread"); /* warm: buffer faulted in */
    } else if (stat(path, &st) != 0) {
      die("stat");
    }
    long blocks = st.st_size / 4096;
    uint64_t x = 88172645463325252ull;
    double t = now();
    for (long i = 0; i < n; i++) {
      if (!strcmp(op, "openstat")) {
        int f = open(path, O_RDONLY);
        if (f < 0 || fstat(f, &st) != 0) die("open/fstat");
        close(f);
      } else if (!strcmp(op, "stat")) {
        if (stat(path, &st) != 0) die("stat");
      } else {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (pread(fd, buf, 4096, (off_t)(x % (uint64_t)blocks) * 4096) != 4096) die("pread");
      }
    }
    printf("%.1f\n", n ? (now() - t) / n : 0.0);
    return 0;
  }
  if (!strcmp(op, "write")) {
    long mib = atol(argv[2]);
    memset(buf, 'q', sizeof buf); /* faulted in before timing */
    int fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open");
    double t = now();
    for (long i = 0; i < mib; i++)
      if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) die("write");
    if (fsync(fd) != 0) die("fsync");
    double ns = now() - t;
    close(fd);
    printf("%.1f\n", mib ? mib * 1048576.0 / 1e6 / (ns / 1e9) : 0.0);
    return 0;
  }
  if (!strcmp(op, "read")) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) die("open");
    memset(buf, 0, sizeof buf);
    long total = 0;
    ssize_t r;
    double t = now();
    while ((r = read(fd, buf, sizeof buf)) > 0) total += r;
    if (r < 0) die("read");
    double ns = now() - t;
    printf("%.1f\n", total / 1e6 / (ns / 1e9));
    return 0;
  }
  if (!strcmp(op, "readers") && argc == 6) {
    int t = atoi(argv[2]);
    long bs = atol(argv[3]), n = atol(argv[4]);
    pthread_t th[64];
    struct rd r[64];
    if (t < 1 || t > 64 || bs < 1) die("readers: 1..64 threads");
    for (int i = 0; i < t; i++) {
      char path[4096];
      struct stat st;
      snprintf(path, sizeof path, "%s%d", argv[5], i);
      r[i] = (struct rd){.fd = open(path, O_RDONLY), .bs = bs, .n = n, .seed = (unsigned)i * 2654435761u};
      if (r[i].fd < 0 || fstat(r[i].fd, &st) != 0) die(path);
      r[i].blocks = st.st_size / bs;
      if (r[i].blocks < 1) die("file smaller than a block");
    }
    double t0 = now();
    for (int i = 0; i < t; i++)
      if (pthread_create(&th[i], NULL, rd_thread, &r[i]) != 0) die("pthread_create");
    long done = 0;
    for (int i = 0; i < t; i++) {
      pthread_join(th[i], NULL);
      done += r[i].done;
    }
    double ns = now() - t0;
    printf("%.1f %ld\n", done ? ns / done : 0.0, done);
    return 0;
  }
  if (!strcmp(op, "evict")) {
    for (int i = 2; i < argc; i++) {
      int fd = open(argv[i], O_RDONLY);
      if (fd < 0) die(argv[i]);
      if (fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) die("fadvise");
      close(fd);
    }
    return 0;
  }
  if (!strcmp(op, "spawn")) {
    long n = atol(argv[2]);
    double t = now();
    for (long i = 0; i < n; i++) {
      pid_t p = fork();
      if (p < 0) die("fork");
      if (p == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 1);
        execv(argv[3], &argv[3]);
        _exit(127);
      }
      int st;
      if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) die("child");
    }
    printf("%.1f\n", n ? (now() - t) / n : 0.0);
    return 0;
  }
  fprintf(stderr, "unknown op %s\n", op);
  return 2;
}
