// issue: 4
// cpus: 2
/* clone(2) with the flags thread libraries use, checked from both sides:
 * CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_SETTID|
 * CHILD_CLEARTID. The new thread runs only raw syscalls (its TLS is a block of
 * ours): its tid is what PARENT_SETTID and CHILD_SETTID stored, its pid is
 * ours, %fs:0 is the TLS block; when it exits the kernel zeroes the
 * CHILD_CLEARTID word and futex-wakes it. Also CLONE_VM|CLONE_VFORK (the
 * parent resumes only after the child exits), and a clone child with exit
 * signal 0, which only waitpid(__WCLONE or __WALL) sees. */
#include <sched.h>

#include "guest.h"

static long raw(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

static volatile pid_t ptid, ctid = -1;
static volatile long child_tid, child_pid, child_fs0;
static unsigned long tls_block[64];

static int thread_fn(void *arg) {
  long fs0;
  __asm__ volatile("mov %%fs:0, %0" : "=r"(fs0));
  child_fs0 = fs0;
  child_tid = raw(SYS_gettid, 0, 0, 0);
  child_pid = raw(SYS_getpid, 0, 0, 0);
  raw(SYS_exit, 0, 0, 0); /* this thread only */
  return 0;
}

static volatile int vfork_child_ran;
static int vfork_fn(void *arg) {
  vfork_child_ran = 1;
  raw(SYS_exit, 8, 0, 0);
  return 0;
}

static int plain_fn(void *arg) {
  raw(SYS_exit, 4, 0, 0);
  return 0;
}

int main(void) {
  size_t stack_size = 64 * 1024;
  char *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(stack != MAP_FAILED, "stack");
  tls_block[0] = (unsigned long)tls_block; /* TCB self pointer */
  unsigned long canary;
  __asm__ volatile("mov %%fs:0x28, %0" : "=r"(canary));
  tls_block[5] = canary; /* stack-protector canary slot, in case */
  int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS |
              CLONE_PARENT_SETTID | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
  int tid = clone(thread_fn, stack + stack_size, flags, NULL, &ptid, tls_block, &ctid);
  CHECK(tid > 0, "clone thread: %s", errname(errno));
  say("CLONE_PARENT_SETTID stored the tid before clone returned: %s\n", yesno(ptid == tid));
  /* wait for CHILD_CLEARTID: the kernel zeroes ctid and wakes us */
  for (;;) {
    pid_t v = ctid;
    if (v == 0) break;
    long r = futex((volatile uint32_t *)&ctid, Q_FUTEX_WAIT, (uint32_t)v, NULL, NULL, 0);
    CHECK(r == 0 || errno == EAGAIN || errno == EINTR, "futex wait on ctid");
  }
  say("thread: gettid == clone's return %s, getpid == ours %s, %%fs:0 is its TLS block %s\n",
      yesno(child_tid == tid), yesno(child_pid == getpid()), yesno(child_fs0 == (long)tls_block));
  say("CHILD_CLEARTID: word zeroed and waiter woken at thread exit: yes\n");
  CHECK(ptid == tid && child_tid == tid && child_pid == getpid() && child_fs0 == (long)tls_block, "thread clone");

  /* CLONE_VFORK */
  int vpid = clone(vfork_fn, stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
  CHECK(vpid > 0, "clone vfork");
  int ran_when_resumed = vfork_child_ran;
  int st = xwait(vpid);
  say("CLONE_VM|CLONE_VFORK: parent resumed after the child ran: %s, child %s\n", yesno(ran_when_resumed),
      wstatus_str(st));
  CHECK(ran_when_resumed && WIFEXITED(st) && WEXITSTATUS(st) == 8, "vfork clone");

  /* exit signal 0: a "clone" child */
  int cpid = clone(plain_fn, stack + stack_size, 0, NULL);
  CHECK(cpid > 0, "clone with exit signal 0");
  errno = 0;
  pid_t r = waitpid(cpid, &st, 0);
  say("child with exit signal 0: waitpid without __WCLONE: %d %s\n", (int)r, errname(errno));
  CHECK(r == -1 && errno == ECHILD, "not a normal child");
  r = waitpid(cpid, &st, __WCLONE);
  say("waitpid with __WCLONE: found it %s, %s\n", yesno(r == cpid), wstatus_str(st));
  CHECK(r == cpid && WIFEXITED(st) && WEXITSTATUS(st) == 4, "__WCLONE");
  return 0;
}
