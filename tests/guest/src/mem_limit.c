// issue: 4
// memory: 64M
// timeout: 20
/* Allocating past the memory limit (`--memory 64M` in the sandbox; RLIMIT_AS
 * 64 MiB natively): a child maps and touches 1 MiB chunks until mmap fails
 * with ENOMEM or the child is killed (SIGKILL) by the out-of-memory handling;
 * either way only the child is affected: the program survives, can still
 * allocate a little, and prints the same lines. The child must have touched
 * at least 16 MiB first (the limit is not hit by accident). */
#include "guest.h"

#define CHUNK (1UL << 20)

int main(void) {
  volatile uint32_t *sh = shared_mem(PAGE); /* [0] MiB touched, [1] ended with ENOMEM */
  pid_t c = xfork();
  if (c == 0) {
    for (int i = 0; i < 4096; i++) {
      char *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        sh[1] = errno == ENOMEM;
        _exit(sh[1] ? 0 : 1);
      }
      for (size_t off = 0; off < CHUNK; off += PAGE) p[off] = 1;
      sh[0] = (uint32_t)(i + 1);
    }
    _exit(2); /* 4 GiB without hitting a limit */
  }
  int st = xwait(c);
  int enomem = WIFEXITED(st) && WEXITSTATUS(st) == 0 && sh[1];
  int killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
  say("child allocating 1 MiB chunks stopped by the limit (ENOMEM or SIGKILL): %s\n", yesno(enomem || killed));
  CHECK(enomem || killed, "child %s after %u MiB", wstatus_str(st), sh[0]);
  say("child touched at least 16 MiB first: %s\n", yesno(sh[0] >= 16));
  CHECK(sh[0] >= 16, "only %u MiB", sh[0]);
  char *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED, "parent mmap after the child: %s", errname(errno));
  memset(p, 1, CHUNK);
  say("the program survived and can still allocate: yes\n");
  return 0;
}
