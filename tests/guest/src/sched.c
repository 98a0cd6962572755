// issue: 4
// cpus: 2
/* Scheduling calls on a 2-CPU sandbox: sched_getaffinity reports 2 CPUs;
 * sched_setaffinity pins the caller (getcpu then names that CPU, via the vDSO
 * or the syscall); a mask with only nonexistent CPUs is EINVAL; threads pinned
 * to different CPUs run there at the same time; sched_yield, the scheduler
 * policy (SCHED_OTHER), priority ranges, nice value 0, and raising priority
 * without CAP_SYS_NICE refused. */
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include "guest.h"

static int cpu_now(void) {
  unsigned c = 999;
  CHECK(syscall(SYS_getcpu, &c, NULL, NULL) == 0, "getcpu");
  int v = sched_getcpu();
  CHECK(v == (int)c, "sched_getcpu (vDSO) %d vs getcpu %u", v, c);
  return (int)c;
}

static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  SYS(sched_setaffinity(0, sizeof s, &s));
}

static int cpus[2];
static volatile int arrived;
static void *pinned(void *arg) {
  int want = (int)(long)arg;
  pin(want);
  /* both threads must be running at the same time: spin until the other arrives */
  __atomic_add_fetch(&arrived, 1, __ATOMIC_SEQ_CST);
  int64_t t0 = mono_ns();
  while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) < 2 && mono_ns() - t0 < 5000000000LL) {
  }
  cpus[want] = cpu_now();
  return NULL;
}

int main(void) {
  cpu_set_t set;
  SYS(sched_getaffinity(0, sizeof set, &set));
  say("sched_getaffinity: %d CPUs\n", CPU_COUNT(&set));
  CHECK(CPU_COUNT(&set) == 2 && CPU_ISSET(0, &set) && CPU_ISSET(1, &set), "need CPUs 0 and 1");

  pin(1);
  int c1 = cpu_now();
  pin(0);
  int c0 = cpu_now();
  say("pinned to CPU 1, getcpu says %d; pinned to CPU 0, getcpu says %d\n", c1, c0);
  CHECK(c1 == 1 && c0 == 0, "pinning");
  cpu_set_t bad;
  CPU_ZERO(&bad);
  CPU_SET(200, &bad);
  errno = 0;
  int r = sched_setaffinity(0, sizeof bad, &bad);
  say("sched_setaffinity to a nonexistent CPU: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad mask");
  SYS(sched_setaffinity(0, sizeof set, &set));

  pthread_t t[2];
  for (long i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, pinned, (void *)i) == 0, "create");
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  say("two threads pinned to CPUs 0 and 1, running at once: on %d and %d\n", cpus[0], cpus[1]);
  CHECK(cpus[0] == 0 && cpus[1] == 1 && arrived == 2, "threads on both CPUs");

  for (int i = 0; i < 10; i++) SYS(sched_yield());
  say("sched_yield: 0\n");
  /* raw syscalls: musl's sched_getscheduler/sched_setscheduler always return ENOSYS */
  long pol = syscall(SYS_sched_getscheduler, 0);
  say("policy: %s\n", pol == SCHED_OTHER ? "SCHED_OTHER" : "other");
  CHECK(pol == SCHED_OTHER, "policy");
  say("priority range SCHED_FIFO %d..%d, SCHED_OTHER %d..%d\n", sched_get_priority_min(SCHED_FIFO),
      sched_get_priority_max(SCHED_FIFO), sched_get_priority_min(SCHED_OTHER), sched_get_priority_max(SCHED_OTHER));
  errno = 0;
  int prio = getpriority(PRIO_PROCESS, 0);
  say("nice value: %d\n", prio);
  CHECK(prio == 0 && errno == 0, "nice");
  struct sched_param sp = {.sched_priority = 10};
  errno = 0;
  r = (int)syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, &sp);
  say("sched_setscheduler(SCHED_FIFO) without CAP_SYS_NICE: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EPERM, "fifo");
  errno = 0;
  r = setpriority(PRIO_PROCESS, 0, -5);
  say("setpriority(-5) without CAP_SYS_NICE: %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EACCES, "negative nice");
  SYS(setpriority(PRIO_PROCESS, 0, 5));
  say("setpriority(5) then getpriority: %d\n", getpriority(PRIO_PROCESS, 0));
  return 0;
}
