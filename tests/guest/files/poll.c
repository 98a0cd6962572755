// poll, select, epoll (level, edge, oneshot) and eventfd over pipes,
// compared with Linux.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdint.h>

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s (%s)\n", __LINE__, #c, strerror(errno)); exit(1); } } while (0)

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int p[2];
  CHECK(pipe(p) == 0);
  struct pollfd pf[2] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}};
  CHECK(poll(pf, 2, 0) == 1);
  printf("empty pipe: read end %x, write end %x\n", pf[0].revents, pf[1].revents);
  CHECK(write(p[1], "x", 1) == 1);
  CHECK(poll(pf, 2, 0) == 2);
  printf("after write: read end %x\n", pf[0].revents);
  // A child writes later; poll blocks until then.
  pid_t c = fork();
  if (c == 0) { usleep(50000); write(p[1], "y", 1); _exit(0); }
  char b[8];
  CHECK(read(p[0], b, 1) == 1);
  pf[0].revents = 0;
  CHECK(poll(pf, 1, 5000) == 1 && (pf[0].revents & POLLIN));
  printf("poll woke for the child's byte\n");
  CHECK(read(p[0], b, 1) == 1 && b[0] == 'y');
  waitpid(c, NULL, 0);
  CHECK(poll(pf, 1, 20) == 0);
  printf("poll timeout: 0\n");
  // select
  fd_set r; FD_ZERO(&r); FD_SET(p[0], &r);
  struct timeval tv = {0, 10000};
  CHECK(select(p[0] + 1, &r, NULL, NULL, &tv) == 0);
  CHECK(write(p[1], "z", 1) == 1);
  FD_ZERO(&r); FD_SET(p[0], &r);
  CHECK(select(p[0] + 1, &r, NULL, NULL, NULL) == 1 && FD_ISSET(p[0], &r));
  printf("select: readable\n");
  // epoll level-triggered: reported while data remains.
  int ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(ep >= 0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42}, out[4];
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == -1 && errno == EEXIST);
  CHECK(epoll_wait(ep, out, 4, 0) == 1 && out[0].data.u64 == 42);
  CHECK(epoll_wait(ep, out, 4, 0) == 1);
  printf("epoll level: reported twice\n");
  CHECK(read(p[0], b, 1) == 1);
  CHECK(epoll_wait(ep, out, 4, 0) == 0);
  // Edge-triggered: once per write.
  ev.events = EPOLLIN | EPOLLET;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
  CHECK(write(p[1], "ab", 2) == 2);
  CHECK(epoll_wait(ep, out, 4, 0) == 1);
  CHECK(epoll_wait(ep, out, 4, 0) == 0);
  CHECK(write(p[1], "c", 1) == 1);
  CHECK(epoll_wait(ep, out, 4, 1000) == 1);
  printf("epoll edge: once per write\n");
  CHECK(read(p[0], b, 3) == 3);
  // Oneshot: disabled after one report until MOD.
  ev.events = EPOLLIN | EPOLLONESHOT;
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
  CHECK(write(p[1], "d", 1) == 1);
  CHECK(epoll_wait(ep, out, 4, 0) == 1);
  CHECK(write(p[1], "e", 1) == 1);
  CHECK(epoll_wait(ep, out, 4, 0) == 0);
  CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
  CHECK(epoll_wait(ep, out, 4, 0) == 1);
  printf("epoll oneshot: rearmed by MOD\n");
  // Hang-up when the writer closes.
  close(p[1]);
  CHECK(read(p[0], b, 2) == 2);
  pf[0].events = POLLIN; pf[0].revents = 0;
  CHECK(poll(pf, 1, 0) == 1);
  printf("writer closed: %x\n", pf[0].revents);
  // eventfd
  int e = eventfd(3, EFD_NONBLOCK);
  uint64_t v;
  CHECK(read(e, &v, 8) == 8 && v == 3);
  CHECK(read(e, &v, 8) == -1 && errno == EAGAIN);
  v = 5; CHECK(write(e, &v, 8) == 8);
  struct pollfd ef = {e, POLLIN, 0};
  CHECK(poll(&ef, 1, 0) == 1);
  int s = eventfd(2, EFD_SEMAPHORE);
  CHECK(read(s, &v, 8) == 8 && v == 1);
  printf("eventfd ok\n");
  // timerfd: a one-shot wakes poll; a periodic one counts expirations. The
  // one-shot is 400 ms so it cannot expire before the first poll even when a
  // loaded host stretches the two calls (each emulated system call can take
  // milliseconds).
  int tf = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  CHECK(tf >= 0);
  struct itimerspec its = {{0, 0}, {0, 400000000}};
  CHECK(timerfd_settime(tf, 0, &its, NULL) == 0);
  struct pollfd tp = {tf, POLLIN, 0};
  CHECK(poll(&tp, 1, 0) == 0);
  CHECK(poll(&tp, 1, 5000) == 1);
  CHECK(read(tf, &v, 8) == 8 && v == 1);
  its.it_interval.tv_nsec = 10000000;
  its.it_value.tv_nsec = 10000000;
  CHECK(timerfd_settime(tf, 0, &its, NULL) == 0);
  usleep(45000);
  CHECK(read(tf, &v, 8) == 8);
  printf("timerfd: one-shot woke poll; periodic counted >= 3: %s\n", v >= 3 ? "yes" : "no");
  struct itimerspec cur;
  CHECK(timerfd_gettime(tf, &cur) == 0 && cur.it_interval.tv_nsec == 10000000);
  // signalfd: blocked signals read as records; a blocking read wakes for a
  // signal another process sends.
  sigset_t ss;
  sigemptyset(&ss);
  sigaddset(&ss, SIGUSR1);
  sigaddset(&ss, SIGUSR2);
  CHECK(sigprocmask(SIG_BLOCK, &ss, NULL) == 0);
  int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
  CHECK(sfd >= 0);
  struct pollfd sp = {sfd, POLLIN, 0};
  CHECK(poll(&sp, 1, 0) == 0);
  CHECK(kill(getpid(), SIGUSR1) == 0);
  CHECK(poll(&sp, 1, 0) == 1);
  struct signalfd_siginfo si;
  CHECK(read(sfd, &si, sizeof si) == sizeof si);
  printf("signalfd: signo %d from self %d code %d\n", si.ssi_signo, si.ssi_pid == (uint32_t)getpid(), si.ssi_code);
  pid_t me = getpid();
  pid_t k = fork();
  if (k == 0) { usleep(30000); kill(me, SIGUSR2); _exit(0); }
  CHECK(read(sfd, &si, sizeof si) == sizeof si);
  printf("signalfd: blocking read woke for %d from the child %d\n", si.ssi_signo, si.ssi_pid == (uint32_t)k);
  waitpid(k, NULL, 0);
  return 0;
}
