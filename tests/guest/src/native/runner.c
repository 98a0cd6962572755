/* runner: runs one guest test program natively the way the sandbox runs it.
 *
 * Used by ../../native-check.mjs (not a guest program; built dynamically into
 * build/native/runner). The point is that Linux is the oracle only if the
 * program sees the same world natively as in the sandbox:
 *
 *   - a root filesystem holding only the program at /<name> (chroot into DIR),
 *     no /proc, /dev, /etc or /tmp (--proc mounts a procfs at DIR/proc for the
 *     programs whose header says `native-proc: yes`);
 *   - pid 1 of its own pid namespace (the sandbox's entry process is pid 1),
 *     session and process-group leader, so orphans re-parent to it and kill(-1)
 *     reaches only the program's own processes; own mount and IPC namespaces;
 *   - uid 0 with exactly the OCI default capability set (bounding, permitted,
 *     effective; no ambient), no supplementary groups, RLIMIT_CORE 0;
 *   - exactly the environment given with --env and nothing else;
 *   - the first N CPUs of the allowed set (--cpus, default 1: the sandbox's
 *     default is 1 vCPU);
 *   - fds 0, 1, 2 only.
 *
 * Options: --root DIR --cpus N --proc --pids-cgroup DIR (join that cgroup:
 * the native stand-in for --pids-limit) --as BYTES (RLIMIT_AS: the native
 * stand-in for --memory) --rusage FILE (write the child's rusage there) --env K=V
 * then `--` PATH ARGS... (PATH inside the root, also used as argv[0]).
 *
 * Exit status: the program's, or 128+n if it died by signal n (as the quark CLI
 * reports it). 125 means the runner itself failed (message on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

static void die(const char *what) {
  fprintf(stderr, "runner: %s: %s\n", what, strerror(errno));
  exit(125);
}

/* The OCI default capability set (runc/containerd/docker defaults). */
static const int oci_caps[] = {
    CAP_CHOWN,  CAP_DAC_OVERRIDE,     CAP_FSETID,      CAP_FOWNER,   CAP_MKNOD,
    CAP_NET_RAW, CAP_SETGID,          CAP_SETUID,      CAP_SETFCAP,  CAP_SETPCAP,
    CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL,    CAP_AUDIT_WRITE,
};

static void drop_caps(void) {
  uint64_t keep = 0;
  for (size_t i = 0; i < sizeof oci_caps / sizeof oci_caps[0]; i++) keep |= 1ULL << oci_caps[i];
  for (int c = 0; c < 64; c++) {
    if (keep & (1ULL << c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) die("PR_CAPBSET_DROP");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) die("PR_CAP_AMBIENT_CLEAR_ALL");
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  d[0].effective = d[0].permitted = (uint32_t)keep;
  d[1].effective = d[1].permitted = (uint32_t)(keep >> 32);
  if (syscall(SYS_capset, &h, d) != 0) die("capset");
}

static void pin_cpus(int n) {
  cpu_set_t cur, want;
  if (sched_getaffinity(0, sizeof cur, &cur) != 0) die("sched_getaffinity");
  CPU_ZERO(&want);
  int got = 0;
  for (int c = 0; c < CPU_SETSIZE && got < n; c++)
    if (CPU_ISSET(c, &cur)) {
      CPU_SET(c, &want);
      got++;
    }
  if (got < n) {
    fprintf(stderr, "runner: %d CPUs wanted, only %d available\n", n, got);
    exit(125);
  }
  if (sched_setaffinity(0, sizeof want, &want) != 0) die("sched_setaffinity");
}

int main(int argc, char **argv) {
  const char *root = NULL, *cgroup = NULL, *rusage_path = NULL;
  int cpus = 1, proc = 0;
  long long as = -1;
  char **env = calloc((size_t)argc + 1, sizeof *env);
  int nenv = 0, i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) {
      i++;
      break;
    } else if (!strcmp(a, "--proc")) {
      proc = 1;
    } else if (i + 1 < argc && !strcmp(a, "--root")) {
      root = argv[++i];
    } else if (i + 1 < argc && !strcmp(a, "--cpus")) {
      cpus = atoi(argv[++i]);
    } else if (i + 1 < argc && !strcmp(a, "--pids-cgroup")) {
      cgroup = argv[++i];
    } else if (i + 1 < argc && !strcmp(a, "--as")) {
      as = atoll(argv[++i]);
    } else if (i + 1 < argc && !strcmp(a, "--rusage")) {
      rusage_path = argv[++i];
    } else if (i + 1 < argc && !strcmp(a, "--env")) {
      env[nenv++] = argv[++i];
    } else {
      fprintf(stderr, "runner: bad argument %s\n", a);
      return 125;
    }
  }
  if (!root || i >= argc || cpus < 1) {
    fprintf(stderr, "usage: runner --root DIR [options] -- /prog args...\n");
    return 125;
  }
  char **prog_argv = &argv[i];

  int rusage_fd = -1;
  if (rusage_path) {
    rusage_fd = open(rusage_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (rusage_fd < 0) die("open rusage file");
  }
  if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC) != 0) die("unshare");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("make / private");

  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    /* pid 1 of the new pid namespace. Die with the runner (e.g. on timeout). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("PR_SET_PDEATHSIG");
    if (cgroup) {
      char path[4096];
      snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
      int fd = open(path, O_WRONLY);
      if (fd < 0) die("open cgroup.procs");
      if (write(fd, "0\n", 2) != 2) die("join cgroup");
      close(fd);
    }
    if (proc) {
      char path[4096];
      snprintf(path, sizeof path, "%s/proc", root);
      if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount proc");
    }
    if (setsid() < 0) die("setsid");
    if (setgroups(0, NULL) != 0) die("setgroups");
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0) die("RLIMIT_CORE");
    if (as > 0) {
      rl.rlim_cur = rl.rlim_max = (rlim_t)as;
      if (setrlimit(RLIMIT_AS, &rl) != 0) die("RLIMIT_AS");
    }
    pin_cpus(cpus);
    if (chroot(root) != 0) die("chroot");
    if (chdir("/") != 0) die("chdir /");
    drop_caps();
    /* Only fds 0, 1, 2 reach the program. */
    if (syscall(SYS_close_range, 3U, ~0U, 0) != 0) die("close_range");
    execve(prog_argv[0], prog_argv, env);
    fprintf(stderr, "runner: execve %s: %s\n", prog_argv[0], strerror(errno));
    _exit(125);
  }

  int st;
  struct rusage ru;
  pid_t r;
  do r = wait4(child, &st, 0, &ru);
  while (r < 0 && errno == EINTR);
  if (r != child) die("wait4");
  if (rusage_fd >= 0) {
    dprintf(rusage_fd, "minflt %ld\nmajflt %ld\nnvcsw %ld\nnivcsw %ld\nutime_us %ld\nstime_us %ld\n", ru.ru_minflt,
            ru.ru_majflt, ru.ru_nvcsw, ru.ru_nivcsw, (long)(ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec),
            (long)(ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec));
    close(rusage_fd);
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 125;
}
