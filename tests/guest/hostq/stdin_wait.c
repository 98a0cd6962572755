// Blocks in read(0) while the test watches the sandbox (issue 5, queued host
// calls). Usage:
//   stdin_wait wake ROUNDS   prints "ready", then per round blocks in read(0)
//                            and prints "woke <ns> <kernel ns> <bytes>" as
//                            soon as read returns: CLOCK_MONOTONIC then, and
//                            when the guest kernel resumed the parked task
//                            (quark_test LAST_HOSTQ_WAKE with --test-hooks,
//                            else 0)
//   stdin_wait signal        blocks in read(0) until SIGALRM (no SA_RESTART):
//                            prints "interrupted EINTR"; then again with
//                            SA_RESTART: the read restarts and returns the
//                            data written later ("restarted read <bytes>")
//   stdin_wait worker        a second thread keeps running (20 x 5 ms sleeps)
//                            while the main thread is blocked in read(0):
//                            prints "worker done" before any input arrives,
//                            then "read <bytes>" once it does
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NR_QUARK_TEST 0x51540000L
#define OP_LAST_HOSTQ_WAKE 7

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
  (void)sig;
  alarms++;
}

static void arm_alarm(int restart) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = restart ? SA_RESTART : 0;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 0}, {0, 200 * 1000}};
  setitimer(ITIMER_REAL, &it, NULL);
}

static void *worker(void *arg) {
  (void)arg;
  struct timespec d = {0, 5 * 1000 * 1000};
  for (int i = 0; i < 20; i++) nanosleep(&d, NULL);
  say("worker done\n");
  return NULL;
}

int main(int argc, char **argv) {
  char buf[256], line[128];
  if (argc >= 3 && !strcmp(argv[1], "wake")) {
    int rounds = atoi(argv[2]);
    say("ready\n");
    for (int i = 0; i < rounds; i++) {
      ssize_t n = read(0, buf, sizeof buf);
      struct timespec t;
      clock_gettime(CLOCK_MONOTONIC, &t);
      if (n <= 0) return 1;
      long kernel = syscall(NR_QUARK_TEST, OP_LAST_HOSTQ_WAKE);
      snprintf(line, sizeof line, "woke %lld %ld %zd\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec,
               kernel < 0 ? 0 : kernel, n);
      say(line);
    }
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "signal")) {
    say("ready\n");
    arm_alarm(0);
    ssize_t n = read(0, buf, sizeof buf);
    snprintf(line, sizeof line, "interrupted %s alarms %d\n", n < 0 && errno == EINTR ? "EINTR" : "no", (int)alarms);
    say(line);
    arm_alarm(1);
    n = read(0, buf, sizeof buf);
    snprintf(line, sizeof line, "restarted read %zd alarms %d\n", n, (int)alarms);
    say(line);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "worker")) {
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL)) return 1;
    say("reading\n");
    ssize_t n = read(0, buf, sizeof buf);
    pthread_join(th, NULL);
    snprintf(line, sizeof line, "read %zd\n", n);
    say(line);
    return 0;
  }
  fprintf(stderr, "usage: %s wake ROUNDS | signal | worker\n", argv[0]);
  return 2;
}
