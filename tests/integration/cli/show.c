// A static program for `quark run IMAGE` tests: prints what the sandbox gave it
// (argv, environment, working directory, program path, ids) and exits with $EXIT.
// With SLEEP=1 it prints "ready" and waits for SIGTERM, then exits with 143.
// It opens no files: the guest kernel's file support is not in yet.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t terminated;

static void on_term(int sig) {
  (void)sig;
  terminated = 1;
}

int main(int argc, char **argv) {
  for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
  for (char **e = environ; *e; e++) printf("env=%s\n", *e);
  char buf[4096];
  // getcwd is not implemented by the guest kernel yet (ENOSYS): the test then
  // reads the working directory from the program path of a relative command.
  if (getcwd(buf, sizeof buf)) printf("cwd=%s\n", buf);
  else printf("cwd-errno=%d\n", errno);
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n >= 0) {
    buf[n] = 0;
    printf("exe=%s\n", buf);
  } else {
    printf("exe-errno=%d\n", errno);
  }
  printf("uid=%d gid=%d\n", (int)getuid(), (int)getgid());
  if (getenv("SLEEP")) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (int i = 0; i < 3000 && !terminated; i++) nanosleep(&ts, NULL);
    printf(terminated ? "got SIGTERM\n" : "timed out\n");
    return terminated ? 143 : 1;
  }
  const char *x = getenv("EXIT");
  return x ? atoi(x) : 0;
}
