// issue: 4
// libc: glibc
/* posix_spawn of this program (argv[0]) in "exit N" mode, and of a missing file.
 * glibc spawns with clone(CLONE_VM|CLONE_VFORK) and reports exec errors through
 * the shared memory. musl reports them through a pipe (pipe2), which the sandbox
 * gets with files (issue 6), so only the glibc build runs here for now. */
#include <spawn.h>

#include "guest.h"

int main(int argc, char **argv, char **envp) {
  if (argc >= 3 && !strcmp(argv[1], "exit")) return atoi(argv[2]);
  char *self = argv[0];
  char *pargv[] = {self, "exit", "15", NULL};
  pid_t sp;
  int se = posix_spawn(&sp, self, NULL, NULL, pargv, envp);
  CHECK(se == 0, "posix_spawn: %s", errname(se));
  int st = xwait(sp);
  say("posix_spawn: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 15, "posix_spawn");
  char *bad[] = {"/nope", NULL};
  se = posix_spawn(&sp, "/nope", NULL, NULL, bad, envp);
  say("posix_spawn of a missing file: %s\n", se ? errname(se) : "spawned");
  CHECK(se == ENOENT, "posix_spawn ENOENT");
  /* posix_spawnp with attributes: a new process group. */
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&at, 0);
  char *qargv[] = {self, "exit", "16", NULL};
  se = posix_spawn(&sp, self, NULL, &at, qargv, envp);
  CHECK(se == 0, "posix_spawn setpgroup: %s", errname(se));
  st = xwait(sp);
  say("posix_spawn with POSIX_SPAWN_SETPGROUP: %s\n", wstatus_str(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 16, "posix_spawn pgroup");
  return 0;
}
