// issue: 4
/* sigaltstack: a SA_ONSTACK handler runs on the alternate stack (a local's
 * address lies inside it, sigaltstack reports SS_ONSTACK there and 0 outside);
 * a handler without SA_ONSTACK stays on the normal stack; a stack overflow
 * (unbounded recursion into the guard page of a small thread stack, and into
 * the main stack's RLIMIT_STACK) is caught on the alternate stack and left with
 * siglongjmp; error cases (too small -> ENOMEM, bad flags -> EINVAL, changing
 * it while on it -> EPERM); SS_DISABLE. */
#include <pthread.h>
#include <setjmp.h>
#include <sys/resource.h>

#include "guest.h"

static char *alt;
static size_t alt_size = 64 * 1024;
static volatile int on_alt, flags_inside, eperm_inside, handled;

static int inside(void *p) { return (char *)p >= alt && (char *)p < alt + alt_size; }

static void handler(int sig, siginfo_t *si, void *uc) {
  volatile char local;
  handled++;
  on_alt = inside((void *)&local);
  stack_t cur;
  sigaltstack(NULL, &cur);
  flags_inside = cur.ss_flags;
  /* Changing the alternate stack while running on it is refused. */
  stack_t other = {.ss_sp = alt, .ss_size = alt_size, .ss_flags = 0};
  eperm_inside = on_alt ? (sigaltstack(&other, NULL) == -1 && errno == EPERM) : 0;
}

static sigjmp_buf env;
static volatile int overflow_caught, overflow_on_alt;
static void segv(int sig, siginfo_t *si, void *uc) {
  volatile char local;
  overflow_caught = 1;
  stack_t cur;
  sigaltstack(NULL, &cur);
  overflow_on_alt = (char *)&local >= (char *)cur.ss_sp && (char *)&local < (char *)cur.ss_sp + cur.ss_size &&
                    (cur.ss_flags & SS_ONSTACK);
  siglongjmp(env, 1);
}

static volatile int depth_limit = 1 << 30; /* never reached: the stack ends first */
static int __attribute__((noinline)) recurse(int n) {
  volatile char pad[512];
  if (n > depth_limit) return 0;
  pad[0] = (char)n;
  pad[511] = (char)n;
  return recurse(n + 1) + pad[0] + pad[511];
}

static void *overflow_thread(void *arg) {
  stack_t ss = {.ss_sp = malloc(64 * 1024), .ss_size = 64 * 1024, .ss_flags = 0};
  CHECK(ss.ss_sp && sigaltstack(&ss, NULL) == 0, "thread sigaltstack");
  if (sigsetjmp(env, 1) == 0) recurse(0);
  return NULL;
}

int main(void) {
  alt = malloc(alt_size);
  CHECK(alt, "malloc");
  stack_t ss = {.ss_sp = alt, .ss_size = alt_size, .ss_flags = 0}, cur;
  SYS(sigaltstack(&ss, NULL));
  SYS(sigaltstack(NULL, &cur));
  say("sigaltstack set: size matches %s, flags outside a handler %d\n", yesno(cur.ss_size == alt_size && cur.ss_sp == alt),
      cur.ss_flags);
  CHECK(cur.ss_flags == 0, "flags outside");

  on_signal(SIGUSR1, handler, SA_ONSTACK);
  SYS(kill(getpid(), SIGUSR1));
  say("SA_ONSTACK handler on the alternate stack: %s, ss_flags inside SS_ONSTACK: %s, changing it there EPERM: %s\n",
      yesno(on_alt), yesno(flags_inside & SS_ONSTACK), yesno(eperm_inside));
  CHECK(handled == 1 && on_alt && (flags_inside & SS_ONSTACK) && eperm_inside, "onstack");
  on_signal(SIGUSR2, handler, 0);
  SYS(kill(getpid(), SIGUSR2));
  say("handler without SA_ONSTACK on the alternate stack: %s\n", yesno(on_alt));
  CHECK(handled == 2 && !on_alt, "not onstack");
  SYS(sigaltstack(NULL, &cur));
  CHECK(cur.ss_flags == 0, "flags after");

  /* Overflow of a small thread stack into its guard page. */
  on_signal(SIGSEGV, segv, SA_ONSTACK);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  CHECK(pthread_create(&t, &attr, overflow_thread, NULL) == 0, "create");
  pthread_join(t, NULL);
  say("thread stack overflow caught on the thread's alternate stack: %s\n", yesno(overflow_caught && overflow_on_alt));
  CHECK(overflow_caught && overflow_on_alt, "thread overflow");

  /* Overflow of the main stack past a 1 MiB RLIMIT_STACK. */
  struct rlimit rl;
  SYS(getrlimit(RLIMIT_STACK, &rl));
  rl.rlim_cur = 1 << 20;
  SYS(setrlimit(RLIMIT_STACK, &rl));
  overflow_caught = overflow_on_alt = 0;
  if (sigsetjmp(env, 1) == 0) recurse(0);
  say("main stack overflow past RLIMIT_STACK caught on the alternate stack: %s\n",
      yesno(overflow_caught && overflow_on_alt));
  CHECK(overflow_caught && overflow_on_alt, "main overflow");

  /* Errors and SS_DISABLE. */
  stack_t small = {.ss_sp = alt, .ss_size = 512, .ss_flags = 0};
  errno = 0;
  int r = sigaltstack(&small, NULL);
  say("sigaltstack(512 bytes): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == ENOMEM, "too small");
  stack_t badf = {.ss_sp = alt, .ss_size = alt_size, .ss_flags = 0x1234};
  errno = 0;
  r = sigaltstack(&badf, NULL);
  say("sigaltstack(bad flags): %d %s\n", r, errname(errno));
  CHECK(r == -1 && errno == EINVAL, "bad flags");
  stack_t dis = {.ss_flags = SS_DISABLE};
  SYS(sigaltstack(&dis, NULL));
  SYS(sigaltstack(NULL, &cur));
  say("SS_DISABLE: reported flags SS_DISABLE: %s\n", yesno(cur.ss_flags == SS_DISABLE));
  CHECK(cur.ss_flags == SS_DISABLE, "disable");
  SYS(kill(getpid(), SIGUSR1));
  say("SA_ONSTACK handler with the alternate stack disabled runs on the normal stack: %s\n", yesno(!on_alt));
  CHECK(handled == 3 && !on_alt, "disabled");
  return 0;
}
