// Sockets compared with Linux (issue 7): TCP over loopback (non-blocking
// connect with a timeout, refused connect, half-close, RST on close with
// unread data, SIGPIPE versus MSG_NOSIGNAL), UDP echo with sendmmsg/recvmmsg,
// AF_UNIX (socketpair, path and abstract names, fd passing between two
// processes with SCM_RIGHTS, SCM_CREDENTIALS, SO_PEERCRED, seqpacket and
// datagram boundaries), FIONREAD and socket options. Prints only what is
// the same on every run.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s (%s)\n", __LINE__, #c, strerror(errno)); exit(1); } } while (0)

static volatile int sigpipes;
static void on_sigpipe(int s) { (void)s; sigpipes++; }

static int listener(struct sockaddr_in *a) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(l >= 0);
  int one = 1;
  CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(l, (struct sockaddr *)a, sizeof *a) == 0);
  CHECK(listen(l, 8) == 0);
  socklen_t al = sizeof *a;
  CHECK(getsockname(l, (struct sockaddr *)a, &al) == 0);
  return l;
}

static void tcp(void) {
  struct sockaddr_in a;
  int l = listener(&a);
  int v = 0; socklen_t vl = sizeof v;
  CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0);
  printf("tcp: acceptconn %d type %d\n", v, (getsockopt(l, SOL_SOCKET, SO_TYPE, &v, &vl), v));
  // Non-blocking connect, completed within a poll timeout.
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int r = connect(c, (struct sockaddr *)&a, sizeof a);
  printf("tcp: nonblocking connect %s\n", r == 0 ? "done at once" : errno == EINPROGRESS ? "EINPROGRESS" : strerror(errno));
  struct pollfd p = {c, POLLOUT, 0};
  CHECK(poll(&p, 1, 5000) == 1);
  int err = -1; socklen_t el = sizeof err;
  CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
  printf("tcp: connect completed, SO_ERROR %d, revents out %d\n", err, !!(p.revents & POLLOUT));
  struct sockaddr_in peer; socklen_t pl = sizeof peer;
  int s = accept4(l, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
  CHECK(s >= 0);
  printf("tcp: accepted from loopback %d, peer len %u\n", peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK), pl);
  int one = 1;
  CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
  vl = sizeof v;
  CHECK(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0);
  printf("tcp: nodelay %d\n", v != 0);
  // Data both ways, FIONREAD, MSG_PEEK, MSG_WAITALL.
  int fl = fcntl(c, F_GETFL); fcntl(c, F_SETFL, fl & ~O_NONBLOCK);
  CHECK(send(c, "hello world", 11, 0) == 11);
  struct pollfd ps = {s, POLLIN, 0};
  CHECK(poll(&ps, 1, 5000) == 1);
  usleep(20000);
  int avail = 0; CHECK(ioctl(s, FIONREAD, &avail) == 0);
  char b[64];
  int n = recv(s, b, 5, MSG_PEEK);
  printf("tcp: fionread %d peek %d %.*s\n", avail, n, n, b);
  n = recv(s, b, 11, MSG_WAITALL);
  printf("tcp: waitall %d %.*s\n", n, n, b);
  // Half-close: the client shuts down writing; the server sees EOF and can still answer.
  CHECK(shutdown(c, SHUT_WR) == 0);
  n = recv(s, b, sizeof b, 0);
  printf("tcp: after SHUT_WR server reads %d\n", n);
  CHECK(send(s, "bye", 3, 0) == 3);
  CHECK(shutdown(s, SHUT_WR) == 0);
  n = recv(c, b, sizeof b, MSG_WAITALL);
  printf("tcp: client still reads %d %.*s\n", n, n, b);
  n = send(c, "x", 1, MSG_NOSIGNAL);
  printf("tcp: send after SHUT_WR %d %s\n", n, n < 0 ? strerror(errno) : "");
  close(s);
  close(c);

  // RST on close with unread data; then SIGPIPE versus MSG_NOSIGNAL.
  c = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
  s = accept(l, NULL, NULL);
  CHECK(send(c, "unread", 6, 0) == 6);
  ps.fd = s; CHECK(poll(&ps, 1, 5000) == 1);
  close(s);
  struct pollfd pc = {c, POLLIN, 0};
  CHECK(poll(&pc, 1, 5000) == 1);
  n = recv(c, b, sizeof b, 0);
  printf("tcp: read after peer closed with unread data: %d %s\n", n, n < 0 ? strerror(errno) : "");
  n = send(c, "x", 1, MSG_NOSIGNAL);
  printf("tcp: send MSG_NOSIGNAL %d %s, sigpipes %d\n", n, n < 0 ? strerror(errno) : "", sigpipes);
  n = send(c, "x", 1, 0);
  printf("tcp: send %d %s, sigpipes %d\n", n, n < 0 ? strerror(errno) : "", sigpipes);
  close(c);

  // A refused non-blocking connect reports ECONNREFUSED through SO_ERROR.
  struct sockaddr_in closed = a;
  close(l);
  c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  r = connect(c, (struct sockaddr *)&closed, sizeof closed);
  if (r < 0 && errno == EINPROGRESS) {
    p.fd = c; p.events = POLLOUT;
    CHECK(poll(&p, 1, 5000) == 1);
    el = sizeof err;
    CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
    int first = err;
    CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
    printf("tcp: refused: %s, then SO_ERROR %d\n", strerror(first), err);
  } else {
    printf("tcp: refused: %s, then SO_ERROR 0\n", r == 0 ? "connected" : strerror(errno));
  }
  close(c);
  // Blocking connect to a closed port.
  c = socket(AF_INET, SOCK_STREAM, 0);
  r = connect(c, (struct sockaddr *)&closed, sizeof closed);
  printf("tcp: blocking connect to a closed port: %d %s\n", r, strerror(errno));
  close(c);
}

static void udp(void) {
  int srv = socket(AF_INET, SOCK_DGRAM, 0), cli = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0);
  socklen_t al = sizeof a;
  CHECK(getsockname(srv, (struct sockaddr *)&a, &al) == 0);
  CHECK(connect(cli, (struct sockaddr *)&a, sizeof a) == 0);
  const char *words[3] = {"one", "three", "fifteen bytes!!"};
  struct mmsghdr m[3];
  struct iovec iov[3];
  memset(m, 0, sizeof m);
  for (int i = 0; i < 3; i++) {
    iov[i].iov_base = (void *)words[i];
    iov[i].iov_len = strlen(words[i]);
    m[i].msg_hdr.msg_iov = &iov[i];
    m[i].msg_hdr.msg_iovlen = 1;
  }
  printf("udp: sendmmsg %d\n", sendmmsg(cli, m, 3, 0));
  char bufs[3][8];
  struct sockaddr_in from[3];
  for (int i = 0; i < 3; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = sizeof bufs[i];
    m[i].msg_hdr.msg_name = &from[i];
    m[i].msg_hdr.msg_namelen = sizeof from[i];
  }
  struct pollfd p = {srv, POLLIN, 0};
  CHECK(poll(&p, 1, 5000) == 1);
  usleep(20000);
  int n = recvmmsg(srv, m, 3, MSG_WAITFORONE, NULL);
  printf("udp: recvmmsg %d\n", n);
  for (int i = 0; i < n; i++)
    printf("udp:  len %u trunc %d %.*s from client %d\n", m[i].msg_len, !!(m[i].msg_hdr.msg_flags & MSG_TRUNC),
           (int)(m[i].msg_len < 8 ? m[i].msg_len : 8), bufs[i], m[i].msg_hdr.msg_namelen == sizeof(struct sockaddr_in));
  // Echo back to the sources.
  for (int i = 0; i < n; i++) iov[i].iov_len = m[i].msg_len < 8 ? m[i].msg_len : 8;
  printf("udp: echo sendmmsg %d\n", sendmmsg(srv, m, n, 0));
  char r[32];
  for (int i = 0; i < n; i++) {
    int k = recv(cli, r, sizeof r, 0);
    printf("udp: client got %d %.*s\n", k, k, r);
  }
  n = recv(cli, r, sizeof r, MSG_DONTWAIT);
  printf("udp: nothing more: %d %s\n", n, strerror(errno));
  close(srv);
  close(cli);
}

static int send_fd(int sock, int fd) {
  char c = 'F';
  struct iovec iov = {&c, 1};
  union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  h->cmsg_level = SOL_SOCKET;
  h->cmsg_type = SCM_RIGHTS;
  h->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(h), &fd, sizeof fd);
  return sendmsg(sock, &m, 0);
}

static int recv_fd(int sock) {
  char c;
  struct iovec iov = {&c, 1};
  union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
  if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1) return -1;
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  if (!h || h->cmsg_type != SCM_RIGHTS) return -2;
  int fd;
  memcpy(&fd, CMSG_DATA(h), sizeof fd);
  return fd;
}

static void unix_sockets(void) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  struct ucred cr; socklen_t cl = sizeof cr;
  CHECK(getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0);
  printf("unix: socketpair peercred pid is me %d uid %u gid %u\n", cr.pid == getpid(), cr.uid, cr.gid);
  // fd passing between two processes: the child sends the read end of a pipe it filled.
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "through a passed pipe", 21) == 21);
    close(p[1]);
    CHECK(send_fd(sv[1], p[0]) == 1);
    close(p[0]);
    _exit(0);
  }
  close(sv[1]);
  int fd = recv_fd(sv[0]);
  CHECK(fd >= 0);
  char b[64];
  int n = read(fd, b, sizeof b);
  printf("unix: received fd, cloexec %d, reads %d %.*s\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, n, n, b);
  int st;
  waitpid(pid, &st, 0);
  n = read(sv[0], b, sizeof b);
  printf("unix: after the child exited the pair reads %d\n", n);
  close(fd);
  close(sv[0]);

  // A path-named listener: SO_PEERCRED of a connection from a child process.
  unlink("/quark-test.sock");
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, "/quark-test.sock");
  CHECK(bind(l, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(listen(l, 4) == 0);
  int again = socket(AF_UNIX, SOCK_STREAM, 0);
  printf("unix: bind again: %s\n", bind(again, (struct sockaddr *)&sa, sizeof sa) < 0 ? strerror(errno) : "ok");
  close(again);
  pid = fork();
  if (pid == 0) {
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&sa, sizeof sa) == 0);
    struct ucred x; socklen_t xl = sizeof x;
    CHECK(getsockopt(c, SOL_SOCKET, SO_PEERCRED, &x, &xl) == 0);
    char ok = x.pid == getppid() ? 'P' : 'X';
    CHECK(write(c, &ok, 1) == 1);
    _exit(0);
  }
  struct sockaddr_un from; socklen_t fl = sizeof from;
  int s = accept(l, (struct sockaddr *)&from, &fl);
  CHECK(s >= 0);
  cl = sizeof cr;
  CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0);
  n = read(s, b, 1);
  printf("unix: accepted, from len %u, peer pid is the child %d, child saw listener %c\n", fl, cr.pid == pid, n == 1 ? b[0] : '?');
  waitpid(pid, &st, 0);
  struct sockaddr_un me; socklen_t ml = sizeof me;
  CHECK(getsockname(s, (struct sockaddr *)&me, &ml) == 0);
  printf("unix: accepted socket name %s\n", me.sun_path);
  close(s);
  close(l);

  printf("unix: socket file exists until unlinked %d\n", access("/quark-test.sock", F_OK) == 0);
  CHECK(unlink("/quark-test.sock") == 0);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  printf("unix: connect to a removed name: %s\n", connect(c, (struct sockaddr *)&sa, sizeof sa) < 0 ? strerror(errno) : "ok");
  close(c);

  // Abstract datagram sockets keep boundaries and report the sender; credentials on request.
  int d1 = socket(AF_UNIX, SOCK_DGRAM, 0), d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un an = {.sun_family = AF_UNIX};
  memcpy(an.sun_path, "\0quark-abstract", 15);
  socklen_t anl = offsetof(struct sockaddr_un, sun_path) + 15;
  CHECK(bind(d1, (struct sockaddr *)&an, anl) == 0);
  int one = 1;
  CHECK(setsockopt(d1, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
  CHECK(sendto(d2, "first", 5, 0, (struct sockaddr *)&an, anl) == 5);
  CHECK(sendto(d2, "second!", 7, 0, (struct sockaddr *)&an, anl) == 7);
  union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(struct ucred))]; } u;
  struct iovec iov = {b, 3};
  struct sockaddr_un src; 
  struct msghdr m = {.msg_name = &src, .msg_namelen = sizeof src, .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
  n = recvmsg(d1, &m, 0);
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  struct ucred got = {0};
  if (h && h->cmsg_type == SCM_CREDENTIALS) memcpy(&got, CMSG_DATA(h), sizeof got);
  printf("unix: dgram %d %.*s trunc %d autobound sender %d (abstract %d) creds %d pid is me %d\n", n, n, b,
         !!(m.msg_flags & MSG_TRUNC), m.msg_namelen > sizeof(sa_family_t), src.sun_path[0] == 0,
         h && h->cmsg_type == SCM_CREDENTIALS, got.pid == getpid());
  n = recv(d1, b, sizeof b, 0);
  printf("unix: dgram %d %.*s\n", n, n, b);
  printf("unix: abstract name in use: %s\n", bind(d2, (struct sockaddr *)&an, anl) < 0 ? strerror(errno) : "ok");
  close(d1);
  close(d2);

  // Seqpacket keeps boundaries; closing with unread data resets a stream peer; SIGPIPE.
  CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
  CHECK(send(sv[0], "abc", 3, 0) == 3);
  CHECK(send(sv[0], "defgh", 5, 0) == 5);
  n = recv(sv[1], b, sizeof b, 0);
  int n2 = recv(sv[1], b + 10, 2, 0);
  printf("unix: seqpacket %d %.*s then %d (truncated)\n", n, n, b, n2);
  close(sv[0]);
  printf("unix: seqpacket after peer close %d\n", (int)recv(sv[1], b, sizeof b, 0));
  close(sv[1]);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(send(sv[0], "unread", 6, 0) == 6);
  close(sv[1]);
  n = send(sv[0], "x", 1, MSG_NOSIGNAL);
  printf("unix: send MSG_NOSIGNAL to a closed peer %d %s, sigpipes %d\n", n, strerror(errno), sigpipes);
  n = write(sv[0], "x", 1);
  printf("unix: write to a closed peer %d %s, sigpipes %d\n", n, strerror(errno), sigpipes);
  close(sv[0]);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(send(sv[1], "unread", 6, 0) == 6);
  close(sv[0]);
  errno = 0;
  n = recv(sv[1], b, sizeof b, 0);
  printf("unix: the peer closed with our data unread: recv %d %s\n", n, n < 0 ? strerror(errno) : "");
  close(sv[1]);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  signal(SIGPIPE, on_sigpipe);
  tcp();
  udp();
  unix_sockets();
  printf("done\n");
  return 0;
}
