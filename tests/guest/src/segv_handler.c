// issue: 4
/* A SIGSEGV handler that recovers with siglongjmp, for every kind of bad
 * access: NULL, an unmapped page, a write to read-only memory, a read of
 * PROT_NONE memory, a write to the program's own text, executing a
 * non-executable page, a kernel address and a non-canonical address. For each,
 * si_code (SEGV_MAPERR / SEGV_ACCERR / SI_KERNEL) and si_addr are checked, and
 * for one the saved RIP is the faulting instruction. Then 200 faults in a row
 * (siglongjmp restores the signal mask each time). */
#include <setjmp.h>
#include <ucontext.h>

#include "guest.h"

static sigjmp_buf env;
static volatile int faults;
static volatile int last_code;
static void *volatile last_addr;
static volatile uintptr_t last_rip;

static void handler(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  faults++;
  last_code = si->si_code;
  last_addr = si->si_addr;
  last_rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
  CHECK(si->si_signo == SIGSEGV && sig == SIGSEGV, "signo");
  siglongjmp(env, 1);
}

static const char *segv_code(int c) {
  switch (c) {
  case SEGV_MAPERR:
    return "SEGV_MAPERR";
  case SEGV_ACCERR:
    return "SEGV_ACCERR";
  case SI_KERNEL:
    return "SI_KERNEL";
  default: {
    static char b[16];
    snprintf(b, sizeof b, "%d", c);
    return b;
  }
  }
}

typedef void (*fn_t)(void);

static void try_read(const char *what, volatile char *p, void *expect_addr, int expect_code) {
  volatile int before = faults;
  if (sigsetjmp(env, 1) == 0) {
    (void)*p;
    fail("%s: no fault", what);
  }
  CHECK(faults == before + 1, "%s: one fault", what);
  say("%s: %s, si_addr is the address: %s\n", what, segv_code(last_code), yesno(last_addr == expect_addr));
  CHECK(last_code == expect_code && last_addr == expect_addr, "%s", what);
}

static void try_write(const char *what, volatile char *p, void *expect_addr, int expect_code) {
  volatile int before = faults;
  if (sigsetjmp(env, 1) == 0) {
    *p = 1;
    fail("%s: no fault", what);
  }
  CHECK(faults == before + 1, "%s: one fault", what);
  say("%s: %s, si_addr is the address: %s\n", what, segv_code(last_code), yesno(last_addr == expect_addr));
  CHECK(last_code == expect_code && last_addr == expect_addr, "%s", what);
}

extern char faulting_store[];

int main(void) {
  on_signal(SIGSEGV, handler, 0);

  try_read("read NULL", (volatile char *)0, NULL, SEGV_MAPERR);
  char *m = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED, "mmap");
  SYS(munmap(m + PAGE, PAGE));
  try_read("read an unmapped page", m + PAGE + 123, m + PAGE + 123, SEGV_MAPERR);
  try_write("write an unmapped page", m + PAGE + 5, m + PAGE + 5, SEGV_MAPERR);
  SYS(mprotect(m, PAGE, PROT_READ));
  try_write("write read-only memory", m + 77, m + 77, SEGV_ACCERR);
  CHECK(m[77] == 0, "read-only memory unchanged");
  SYS(mprotect(m + 2 * PAGE, PAGE, PROT_NONE));
  try_read("read PROT_NONE memory", m + 2 * PAGE + 9, m + 2 * PAGE + 9, SEGV_ACCERR);
  try_write("write own text", (volatile char *)(uintptr_t)main, (void *)(uintptr_t)main, SEGV_ACCERR);

  /* Execute a page without PROT_EXEC (holding a `ret`): the fetch faults at the page. */
  char *code = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(code != MAP_FAILED, "mmap code");
  code[0] = (char)0xc3;
  volatile int before = faults;
  if (sigsetjmp(env, 1) == 0) {
    ((fn_t)(void *)code)();
    fail("executing a non-executable page did not fault");
  }
  CHECK(faults == before + 1, "nx fault");
  say("execute a non-executable page: %s, si_addr is the page: %s, RIP is the page: %s\n", segv_code(last_code),
      yesno(last_addr == code), yesno(last_rip == (uintptr_t)code));
  CHECK(last_code == SEGV_ACCERR && last_addr == code && last_rip == (uintptr_t)code, "nx");
  /* The same page made executable runs. */
  SYS(mprotect(code, PAGE, PROT_READ | PROT_EXEC));
  ((fn_t)(void *)code)();
  say("the same page after mprotect(PROT_EXEC) runs: yes\n");

  try_read("read a kernel address", (volatile char *)0xffffffff81000000UL, (void *)0xffffffff81000000UL,
           SEGV_MAPERR);
  /* A non-canonical address raises #GP, not #PF: SI_KERNEL with si_addr 0. */
  before = faults;
  if (sigsetjmp(env, 1) == 0) {
    (void)*(volatile char *)0x8000000000000000UL;
    fail("non-canonical read did not fault");
  }
  say("read a non-canonical address: %s, si_addr %s\n", segv_code(last_code), last_addr ? "non-zero" : "0");
  CHECK(faults == before + 1 && last_code == SI_KERNEL && last_addr == NULL, "non-canonical");

  /* The saved RIP is the faulting instruction. */
  if (sigsetjmp(env, 1) == 0) {
    __asm__ volatile("xor %%eax, %%eax\n\t"
                     ".globl faulting_store\n"
                     "faulting_store:\n\t"
                     "movb $1, (%%rax)\n\t" ::
                         : "rax", "memory");
    fail("no fault");
  }
  say("saved RIP is the faulting instruction: %s\n", yesno(last_rip == (uintptr_t)faulting_store));
  CHECK(last_rip == (uintptr_t)faulting_store, "rip");

  /* Many faults in a row: siglongjmp(env, 1) restores the mask every time. */
  before = faults;
  for (volatile int i = 0; i < 200; i++) {
    if (sigsetjmp(env, 1) == 0) (void)*(volatile char *)(m + 2 * PAGE + (i % 4096)); /* PROT_NONE */
  }
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  say("200 faults in a row handled: %s, SIGSEGV unblocked afterwards: %s\n", yesno(faults - before == 200),
      yesno(!sigismember(&cur, SIGSEGV)));
  CHECK(faults - before == 200 && !sigismember(&cur, SIGSEGV), "repeat");

  /* Memory made accessible again works normally. */
  SYS(mprotect(m, PAGE, PROT_READ | PROT_WRITE));
  m[77] = 5;
  CHECK(m[77] == 5, "writable again");
  say("total faults: %d\n", faults);
  return 0;
}
