// Concurrent readers of host files (issue 5: hostfs requests through the
// queued host-call path). Modes:
//
//   readers verify   8 threads pread their own and a shared file (256 KiB
//                    and 4 KiB reads) and check every byte; then reads of a file
//                    while a timer signals the reader: a regular file read is
//                    never cut short or failed with EINTR (as on Linux).
//                    The output is compared with Linux.
//   readers gap PATH one big read of PATH while another thread spins on the
//                    same vCPU: how long the spinner was kept off the vCPU
//                    (see gap()). Guest only, run with --cpus 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s (%s)\n", __LINE__, #c, strerror(errno)); exit(1); } } while (0)

#define READERS 8
#define FILE_SIZE (1u << 20)
#define BIG (256u << 10)
#define SMALL 4096u

static unsigned char pattern(unsigned file, uint64_t off) {
  return (unsigned char)(off * 7 + file * 13 + (off >> 12) * 31 + (off >> 20));
}

static void make_file_sized(unsigned i, uint64_t size) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/r%u", i);
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  CHECK(fd >= 0);
  unsigned char *b = malloc(BIG);
  CHECK(b != NULL);
  for (uint64_t base = 0; base < size; base += BIG) {
    for (uint64_t o = 0; o < BIG; o++) b[o] = pattern(i, base + o);
    CHECK(write(fd, b, BIG) == (ssize_t)BIG);
  }
  CHECK(fsync(fd) == 0);
  CHECK(close(fd) == 0);
  free(b);
}

static void make_file(unsigned i) { make_file_sized(i, FILE_SIZE); }

/* Bytes that differ from the pattern in [off, off + n). */
static uint64_t bad_bytes(unsigned file, uint64_t off, const unsigned char *b, size_t n) {
  uint64_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += b[i] != pattern(file, off + i);
  return bad;
}

struct reader {
  unsigned id;
  uint64_t bytes, bad, short_reads;
};

static void *reader(void *arg) {
  struct reader *r = arg;
  char path[64];
  snprintf(path, sizeof path, "/tmp/r%u", r->id);
  int own = open(path, O_RDONLY);
  int shared = open("/tmp/r0", O_RDONLY);
  CHECK(own >= 0 && shared >= 0);
  unsigned char *b = malloc(BIG);
  CHECK(b != NULL);
  for (int round = 0; round < 2; round++) {
    for (uint64_t off = 0; off < FILE_SIZE; off += BIG) {
      int fd = round == 0 ? own : shared;
      unsigned file = round == 0 ? r->id : 0;
      ssize_t n = pread(fd, b, BIG, off);
      CHECK(n >= 0);
      r->short_reads += n != (ssize_t)BIG;
      r->bytes += n;
      r->bad += bad_bytes(file, off, b, n);
    }
  }
  uint64_t x = r->id * 2654435761u + 1;
  for (int i = 0; i < 64; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t off = (x >> 33) % (FILE_SIZE / SMALL) * SMALL;
    ssize_t n = pread(own, b, SMALL, off);
    CHECK(n >= 0);
    r->short_reads += n != (ssize_t)SMALL;
    r->bytes += n;
    r->bad += bad_bytes(r->id, off, b, n);
  }
  // Sequential read() with the file position, in odd sizes across the end.
  CHECK(lseek(own, FILE_SIZE - 3 * BIG / 2, SEEK_SET) >= 0);
  uint64_t pos = FILE_SIZE - 3 * BIG / 2;
  for (;;) {
    ssize_t n = read(own, b, BIG - 1);
    CHECK(n >= 0);
    if (n == 0) break;
    r->bad += bad_bytes(r->id, pos, b, n);
    r->bytes += n;
    pos += n;
  }
  CHECK(pos == FILE_SIZE);
  free(b);
  close(own);
  close(shared);
  return NULL;
}

static volatile sig_atomic_t signals;
static void on_alarm(int s) { (void)s; signals++; }

static int verify(void) {
  for (unsigned i = 0; i < READERS; i++) make_file(i);
  pthread_t t[READERS];
  struct reader r[READERS];
  for (unsigned i = 0; i < READERS; i++) {
    r[i] = (struct reader){.id = i};
    CHECK(pthread_create(&t[i], NULL, reader, &r[i]) == 0);
  }
  uint64_t bytes = 0, bad = 0, shorts = 0;
  for (unsigned i = 0; i < READERS; i++) {
    CHECK(pthread_join(t[i], NULL) == 0);
    bytes += r[i].bytes;
    bad += r[i].bad;
    shorts += r[i].short_reads;
  }
  printf("%d readers: %llu bytes read, %llu wrong, %llu short reads\n", READERS, (unsigned long long)bytes,
         (unsigned long long)bad, (unsigned long long)shorts);

  // Signals during reads of a regular file: no EINTR, no short read, the
  // handler runs (SA_RESTART off, so a pipe read would fail with EINTR).
  // 4 MiB per read: more than one host request (1 MiB each).
  make_file_sized(READERS, 4 * FILE_SIZE);
  struct sigaction sa = {0};
  sa.sa_handler = on_alarm;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  struct itimerval it = {{0, 5000}, {0, 5000}};
  CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
  char big[64];
  snprintf(big, sizeof big, "/tmp/r%u", READERS);
  int fd = open(big, O_RDONLY);
  CHECK(fd >= 0);
  unsigned char *b = malloc(4 * FILE_SIZE);
  CHECK(b != NULL);
  int eintr = 0, partial = 0;
  uint64_t wrong = 0;
  struct timeval start, now;
  gettimeofday(&start, NULL);
  int rounds = 0;
  do {
    ssize_t n = pread(fd, b, 4 * FILE_SIZE, 0);
    if (n < 0 && errno == EINTR) eintr++;
    else if (n != (ssize_t)(4 * FILE_SIZE)) partial++;
    else wrong += bad_bytes(READERS, 0, b, n);
    rounds++;
    gettimeofday(&now, NULL);
  } while (rounds < 10 || (signals < 5 && now.tv_sec - start.tv_sec < 10));
  struct itimerval off = {{0, 0}, {0, 0}};
  CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
  printf("reads under signals: %d EINTR, %d short, %llu wrong bytes, handler ran: %s\n", eintr, partial,
         (unsigned long long)wrong, signals > 0 ? "yes" : "no");
  free(b);
  close(fd);
  for (unsigned i = 0; i <= READERS; i++) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/r%u", i);
    CHECK(unlink(path) == 0);
  }
  return 0;
}

static volatile int stop, started;
static double gaps[4096][2];
static volatile int ngaps;

static double mono(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

// Runs in user mode; records every stretch of more than 1 ms in which it did
// not run (its vCPU ran something else, or the kernel on someone's behalf).
static void *spinner(void *arg) {
  (void)arg;
  double last = mono();
  started = 1;
  while (!stop) {
    double now = mono();
    if (now - last > 0.001 && ngaps < 4096) {
      gaps[ngaps][0] = last;
      gaps[ngaps][1] = now;
      ngaps++;
    }
    last = now;
  }
  return NULL;
}

// One big pread of PATH (not in the host page cache: the harness drops it)
// while the spinner runs on the same vCPU (--cpus 1). Prints the read's
// duration and the longest stretch inside it in which the spinner could not
// run, in ms. A reader parked in queued host calls leaves the vCPU to the
// spinner between its 1 MiB requests; a synchronous VMM call keeps the
// vCPU (and the kernel is not preemptible) for the whole read.
static int gap(const char *path) {
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  unsigned char *b = malloc(st.st_size);
  CHECK(b != NULL);
  memset(b, 0, st.st_size); // faulted in before timing
  pthread_t t;
  CHECK(pthread_create(&t, NULL, spinner, NULL) == 0);
  while (!started) sched_yield();
  double t0 = mono();
  CHECK(pread(fd, b, st.st_size, 0) == st.st_size);
  double t1 = mono();
  sched_yield();
  usleep(20000);
  stop = 1;
  CHECK(pthread_join(t, NULL) == 0);
  double worst = 0;
  for (int i = 0; i < ngaps; i++) {
    double a = gaps[i][0] > t0 ? gaps[i][0] : t0, z = gaps[i][1] < t1 ? gaps[i][1] : t1;
    if (z - a > worst) worst = z - a;
  }
  printf("read %.0f ms, longest stretch without the spinner %.0f ms\n", (t1 - t0) * 1e3, worst * 1e3);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 2 && strcmp(argv[1], "verify") == 0) return verify();
  if (argc == 3 && strcmp(argv[1], "gap") == 0) return gap(argv[2]);
  fprintf(stderr, "usage: readers verify | readers gap PATH\n");
  return 2;
}
