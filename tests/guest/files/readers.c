// Concurrent readers of host files (issue 5: hostfs requests through the
// queued host-call path). Modes:
//
//   readers verify   8 threads pread their own and a shared file (1 MiB and
//                    4 KiB reads) and check every byte; then reads of a file
//                    while a timer signals the reader: a regular file read is
//                    never cut short or failed with EINTR (as on Linux).
//                    The output is compared with Linux.
//   readers overlap  one thread reads 1 MiB blocks while another spins:
//                    prints how many reads the spinner made progress during
//                    (a reader parked in a queued call leaves its vCPU to the
//                    other task; a synchronous VMM call stops the vCPU).
//                    Guest only, run with --cpus 1.
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
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s (%s)\n", __LINE__, #c, strerror(errno)); exit(1); } } while (0)

#define READERS 8
#define FILE_SIZE (4u << 20)
#define BIG (1u << 20)
#define SMALL 4096u

static unsigned char pattern(unsigned file, uint64_t off) {
  return (unsigned char)(off * 7 + file * 13 + (off >> 12) * 31 + (off >> 20));
}

static void make_file(unsigned i) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/r%u", i);
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  CHECK(fd >= 0);
  unsigned char *b = malloc(BIG);
  CHECK(b != NULL);
  for (uint64_t base = 0; base < FILE_SIZE; base += BIG) {
    for (uint64_t o = 0; o < BIG; o++) b[o] = pattern(i, base + o);
    CHECK(write(fd, b, BIG) == (ssize_t)BIG);
  }
  CHECK(fsync(fd) == 0);
  CHECK(close(fd) == 0);
  free(b);
}

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
  for (int i = 0; i < 256; i++) {
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
  struct sigaction sa = {0};
  sa.sa_handler = on_alarm;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  struct itimerval it = {{0, 5000}, {0, 5000}};
  CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
  int fd = open("/tmp/r3", O_RDONLY);
  CHECK(fd >= 0);
  unsigned char *b = malloc(FILE_SIZE);
  CHECK(b != NULL);
  int eintr = 0, partial = 0;
  uint64_t wrong = 0;
  struct timeval start, now;
  gettimeofday(&start, NULL);
  int rounds = 0;
  do {
    ssize_t n = pread(fd, b, FILE_SIZE, 0);
    if (n < 0 && errno == EINTR) eintr++;
    else if (n != (ssize_t)FILE_SIZE) partial++;
    else wrong += bad_bytes(3, 0, b, n);
    rounds++;
    gettimeofday(&now, NULL);
  } while (rounds < 20 || (signals < 5 && now.tv_sec - start.tv_sec < 10));
  struct itimerval off = {{0, 0}, {0, 0}};
  CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
  printf("reads under signals: %d EINTR, %d short, %llu wrong bytes, handler ran: %s\n", eintr, partial,
         (unsigned long long)wrong, signals > 0 ? "yes" : "no");
  free(b);
  close(fd);
  for (unsigned i = 0; i < READERS; i++) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/r%u", i);
    CHECK(unlink(path) == 0);
  }
  return 0;
}

static volatile uint64_t spins;
static volatile int stop;

static void *spinner(void *arg) {
  (void)arg;
  while (!stop) spins++;
  return NULL;
}

static int overlap(void) {
  make_file(0);
  int fd = open("/tmp/r0", O_RDONLY);
  CHECK(fd >= 0);
  unsigned char *b = malloc(BIG);
  CHECK(b != NULL);
  CHECK(pread(fd, b, BIG, 0) == (ssize_t)BIG); // fault the buffer in
  pthread_t t;
  CHECK(pthread_create(&t, NULL, spinner, NULL) == 0);
  while (spins == 0) sched_yield();
  int reads = 0, overlapped = 0;
  uint64_t bad = 0;
  for (int round = 0; round < 8; round++) {
    for (uint64_t off = 0; off < FILE_SIZE; off += BIG) {
      uint64_t before = spins;
      CHECK(pread(fd, b, BIG, off) == (ssize_t)BIG);
      overlapped += spins != before;
      reads++;
      bad += bad_bytes(0, off, b, BIG);
    }
  }
  stop = 1;
  CHECK(pthread_join(t, NULL) == 0);
  printf("overlap: %d of %d reads, %llu wrong bytes\n", overlapped, reads, (unsigned long long)bad);
  close(fd);
  CHECK(unlink("/tmp/r0") == 0);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 2 && strcmp(argv[1], "verify") == 0) return verify();
  if (argc == 2 && strcmp(argv[1], "overlap") == 0) return overlap();
  fprintf(stderr, "usage: readers verify|overlap\n");
  return 2;
}
