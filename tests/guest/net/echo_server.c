// An edge-triggered epoll echo server (issue 7): listens on 127.0.0.1:PORT,
// accepts until EAGAIN, reads each connection until EAGAIN and echoes it,
// and exits after CLIENTS connections have closed, printing totals.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int port = atoi(argv[1]), clients = atoi(argv[2]);
  int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096)) { perror("bind/listen"); return 1; }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = l};
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  printf("listening\n");
  fflush(stdout);
  long bytes = 0, accepted = 0, closed = 0, max_open = 0, open_now = 0;
  struct epoll_event evs[256];
  char buf[4096];
  while (closed < clients) {
    int n = epoll_wait(ep, evs, 256, 30000);
    if (n == 0) { printf("timeout with %ld closed\n", closed); return 1; }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == l) {
        for (;;) {
          int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) { if (errno != EAGAIN) perror("accept4"); break; }
          accepted++;
          if (++open_now > max_open) max_open = open_now;
          struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
          bytes += r;
          ssize_t off = 0;
          while (off < r) {
            ssize_t w = write(fd, buf + off, r - off);
            if (w < 0) { if (errno == EAGAIN) continue; break; }
            off += w;
          }
          continue;
        }
        if (r == 0 || errno != EAGAIN) { close(fd); closed++; open_now--; }
        break;
      }
    }
  }
  printf("served %ld clients, %ld bytes, all closed %d\n", accepted, bytes, open_now == 0);
  fprintf(stderr, "most open at once: %ld\n", max_open);
  return 0;
}
