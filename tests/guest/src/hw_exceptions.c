// issue: 4
/* CPU exceptions in user mode become the signals Linux gives, with Linux's
 * si_code, si_addr and saved RIP:
 *   idiv by zero and INT_MIN/-1   SIGFPE  FPE_INTDIV  si_addr = RIP = the idiv
 *   ud2                           SIGILL  ILL_ILLOPN  si_addr = RIP = the ud2
 *   int3 (0xCC)                   SIGTRAP SI_KERNEL   RIP = after the int3
 *   int $0x81 (CD 81)             SIGSEGV SI_KERNEL   si_addr 0, RIP = the int
 *   hlt, cli, in, mov from %cr0   SIGSEGV SI_KERNEL   (#GP in user mode)
 * (int $0x80 is avoided: on Linux it is the 32-bit syscall gate.) The handler
 * resumes after each instruction by setting the saved RIP to a label. On the
 * PVM host INT3 and INT n arrive in the guest as #UD: the kernel must decode
 * the opcode to give the same signals. */
#include <ucontext.h>

#include "guest.h"

static volatile int got_sig, got_code, calls;
static void *volatile got_addr;
static volatile uintptr_t got_rip, resume_to;

static void handler(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  calls++;
  got_sig = sig;
  got_code = si->si_code;
  got_addr = si->si_addr;
  got_rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
  uc->uc_mcontext.gregs[REG_RIP] = (greg_t)resume_to;
}

static const char *code_name(int sig, int c) {
  if (c == SI_KERNEL) return "SI_KERNEL";
  if (sig == SIGFPE && c == FPE_INTDIV) return "FPE_INTDIV";
  if (sig == SIGFPE && c == FPE_INTOVF) return "FPE_INTOVF";
  if (sig == SIGILL && c == ILL_ILLOPN) return "ILL_ILLOPN";
  if (sig == SIGILL && c == ILL_PRVOPC) return "ILL_PRVOPC";
  if (sig == SIGTRAP && c == TRAP_BRKPT) return "TRAP_BRKPT";
  if (sig == SIGSEGV && c == SEGV_MAPERR) return "SEGV_MAPERR";
  static char b[16];
  snprintf(b, sizeof b, "%d", c);
  return b;
}

/* Each case: a label at the instruction (NAME_at) and after it (NAME_after). */
#define LABELS(name) extern char name##_at[], name##_after[];
LABELS(div0)
LABELS(divovf)
LABELS(ud2)
LABELS(int3)
LABELS(int81)
LABELS(hlt)
LABELS(cli)
LABELS(inb)
LABELS(movcr0)

static void report(const char *what, char *at, char *after, int want_sig, int want_code, int addr_is_at,
                   int rip_is_after) {
  say("%-26s %s %s, si_addr %s, RIP %s\n", what, signame(got_sig), code_name(got_sig, got_code),
      got_addr == NULL ? "0" : got_addr == at ? "= instruction" : "other",
      got_rip == (uintptr_t)at ? "= instruction" : got_rip == (uintptr_t)after ? "= next instruction" : "other");
  CHECK(got_sig == want_sig && got_code == want_code, "%s: signal/code", what);
  CHECK(addr_is_at ? got_addr == at : got_addr == NULL, "%s: si_addr", what);
  CHECK(got_rip == (uintptr_t)(rip_is_after ? after : at), "%s: RIP", what);
}

int main(void) {
  on_signal(SIGFPE, handler, 0);
  on_signal(SIGILL, handler, 0);
  on_signal(SIGTRAP, handler, 0);
  on_signal(SIGSEGV, handler, 0);

  resume_to = (uintptr_t)div0_after;
  __asm__ volatile("mov $1, %%eax\n\tcdq\n\txor %%ecx, %%ecx\n"
                   ".globl div0_at\ndiv0_at:\n\tidivl %%ecx\n"
                   ".globl div0_after\ndiv0_after:\n" ::
                       : "eax", "ecx", "edx", "memory");
  report("idiv by zero:", div0_at, div0_after, SIGFPE, FPE_INTDIV, 1, 0);

  resume_to = (uintptr_t)divovf_after;
  __asm__ volatile("mov $0x80000000, %%eax\n\tcdq\n\tmov $-1, %%ecx\n"
                   ".globl divovf_at\ndivovf_at:\n\tidivl %%ecx\n"
                   ".globl divovf_after\ndivovf_after:\n" ::
                       : "eax", "ecx", "edx", "memory");
  report("idiv INT_MIN / -1:", divovf_at, divovf_after, SIGFPE, FPE_INTDIV, 1, 0);

  resume_to = (uintptr_t)ud2_after;
  __asm__ volatile(".globl ud2_at\nud2_at:\n\tud2\n.globl ud2_after\nud2_after:\n" ::: "memory");
  report("ud2:", ud2_at, ud2_after, SIGILL, ILL_ILLOPN, 1, 0);

  resume_to = (uintptr_t)int3_after;
  __asm__ volatile(".globl int3_at\nint3_at:\n\tint3\n.globl int3_after\nint3_after:\n" ::: "memory");
  report("int3:", int3_at, int3_after, SIGTRAP, SI_KERNEL, 0, 1);

  resume_to = (uintptr_t)int81_after;
  __asm__ volatile(".globl int81_at\nint81_at:\n\tint $0x81\n.globl int81_after\nint81_after:\n" ::: "memory");
  report("int $0x81:", int81_at, int81_after, SIGSEGV, SI_KERNEL, 0, 0);

  resume_to = (uintptr_t)hlt_after;
  __asm__ volatile(".globl hlt_at\nhlt_at:\n\thlt\n.globl hlt_after\nhlt_after:\n" ::: "memory");
  report("hlt:", hlt_at, hlt_after, SIGSEGV, SI_KERNEL, 0, 0);

  resume_to = (uintptr_t)cli_after;
  __asm__ volatile(".globl cli_at\ncli_at:\n\tcli\n.globl cli_after\ncli_after:\n" ::: "memory");
  report("cli:", cli_at, cli_after, SIGSEGV, SI_KERNEL, 0, 0);

  resume_to = (uintptr_t)inb_after;
  __asm__ volatile(".globl inb_at\ninb_at:\n\tinb $0x80, %%al\n.globl inb_after\ninb_after:\n" ::: "eax", "memory");
  report("inb $0x80:", inb_at, inb_after, SIGSEGV, SI_KERNEL, 0, 0);

  resume_to = (uintptr_t)movcr0_after;
  __asm__ volatile(".globl movcr0_at\nmovcr0_at:\n\tmov %%cr0, %%rax\n.globl movcr0_after\nmovcr0_after:\n" ::
                       : "rax", "memory");
  report("mov %cr0, %rax:", movcr0_at, movcr0_after, SIGSEGV, SI_KERNEL, 0, 0);

  say("exceptions handled: %d\n", calls);
  CHECK(calls == 9, "calls");

  /* Without a handler, ud2 kills a child with SIGILL and int3 with SIGTRAP. */
  pid_t c = xfork();
  if (c == 0) {
    signal(SIGILL, SIG_DFL);
    __asm__ volatile("ud2");
    _exit(1);
  }
  say("ud2 without a handler: child %s\n", wstatus_str(xwait(c) & 0x7f));
  c = xfork();
  if (c == 0) {
    signal(SIGTRAP, SIG_DFL);
    __asm__ volatile("int3");
    _exit(1);
  }
  say("int3 without a handler: child %s\n", wstatus_str(xwait(c) & 0x7f));
  c = xfork();
  if (c == 0) {
    signal(SIGFPE, SIG_DFL);
    __asm__ volatile("xor %%ecx, %%ecx\n\tmov $1, %%eax\n\tcdq\n\tidivl %%ecx" ::: "eax", "ecx", "edx");
    _exit(1);
  }
  say("idiv by zero without a handler: child %s\n", wstatus_str(xwait(c) & 0x7f));
  return 0;
}
