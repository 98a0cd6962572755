// TCP over loopback for bench/net: `rr N` (64-byte request/response round
// trips), `stream MIB CONNS` (MiB sent over CONNS connections at once),
// `cps N` (connect + accept + close, sequential). Server and clients are
// processes of this program; prints one number (us per round trip, MiB/s,
// connections per second); `sends N`/`recvs N` (N socket calls, for counting
// the kernel's work per call).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int listener(struct sockaddr_in *a) {
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l, (struct sockaddr *)a, sizeof *a) || listen(l, 1024)) { perror("listen"); exit(1); }
  socklen_t al = sizeof *a;
  getsockname(l, (struct sockaddr *)a, &al);
  return l;
}

static int dial(struct sockaddr_in *a) {
  int c = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (connect(c, (struct sockaddr *)a, sizeof *a)) { perror("connect"); exit(1); }
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

static void full(int fd, char *b, int n) { int k = 0; while (k < n) { int r = read(fd, b + k, n - k); if (r <= 0) exit(1); k += r; } }

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  struct sockaddr_in a;
  int l = listener(&a);
  long n = atol(argv[2]);
  char b[65536];
  memset(b, 'x', sizeof b);
  if (!strcmp(argv[1], "rr")) {
    if (fork() == 0) {
      int s = accept(l, 0, 0), one = 1;
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      for (long i = 0; i < n; i++) { full(s, b, 64); if (write(s, b, 64) != 64) exit(1); }
      _exit(0);
    }
    int c = dial(&a);
    double t = now();
    for (long i = 0; i < n; i++) { if (write(c, b, 64) != 64) return 1; full(c, b, 64); }
    printf("%.3f\n", (now() - t) * 1e6 / n);
  } else if (!strcmp(argv[1], "stream")) {
    int conns = argc > 3 ? atoi(argv[3]) : 1;
    long bytes = n << 20;
    double t = now();
    for (int k = 0; k < conns; k++)
      if (fork() == 0) { int c = dial(&a); long left = bytes / conns; while (left > 0) { int w = write(c, b, left < (long)sizeof b ? left : (long)sizeof b); if (w <= 0) _exit(1); left -= w; } _exit(0); }
    for (int k = 0; k < conns; k++)
      if (fork() == 0) { int s = accept(l, 0, 0); while (read(s, b, sizeof b) > 0) {} _exit(0); }
    for (int k = 0; k < 2 * conns; k++) wait(NULL);
    printf("%.3f\n", n / (now() - t));
  } else if (!strcmp(argv[1], "sends") || !strcmp(argv[1], "recvs")) {
    // One process, one connection: `sends N` makes N 64-byte writes (the
    // receiver stays idle: N * 64 bytes fit in its buffer); `recvs N` queues
    // N * 64 bytes with one write, then makes N 64-byte reads. Run with two
    // values of N, the difference of the kernel's counters is per call.
    int c = dial(&a), s = accept(l, 0, 0);
    if (!strcmp(argv[1], "sends")) {
      for (long i = 0; i < n; i++) if (write(c, b, 64) != 64) return 1;
    } else {
      static char big[1 << 20];
      if (n * 64 > (long)sizeof big || write(c, big, n * 64) != n * 64) return 1;
      for (long i = 0; i < n; i++) full(s, b, 64);
    }
    printf("%ld\n", n);
  } else {
    if (fork() == 0) { for (long i = 0; i < n; i++) { int s = accept(l, 0, 0); close(s); } _exit(0); }
    double t = now();
    for (long i = 0; i < n; i++) close(dial(&a));
    wait(NULL);
    printf("%.1f\n", n / (now() - t));
  }
  return 0;
}
