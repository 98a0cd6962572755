// issue: 4
/* Less common user-mode exceptions, each resumed by editing the saved context:
 *   single-step (EFLAGS.TF)         SIGTRAP TRAP_TRACE, si_addr = RIP = the next
 *                                   instruction; the handler clears TF
 *   alignment check (EFLAGS.AC and  SIGBUS BUS_ADRALN, si_addr 0, RIP = the
 *   CR0.AM set by the kernel)       misaligned load; the handler clears AC and
 *                                   the load re-executes
 *   SSE divide by zero, unmasked    SIGFPE FPE_FLTDIV, si_addr = RIP = the divsd;
 *   in MXCSR                        the handler masks it in the saved MXCSR
 *   into (0xCE, invalid in 64-bit)  SIGILL ILL_ILLOPN
 * They need the kernel to set CR0.AM, CR4.OSXMMEXCPT and to report #DB, #AC
 * and #XM like Linux. */
#include <ucontext.h>

#include "guest.h"

static volatile int got_sig, got_code, calls;
static void *volatile got_addr;
static volatile uintptr_t got_rip, resume_to;

#define EFL_TF 0x100
#define EFL_AC 0x40000

static void handler(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  calls++;
  got_sig = sig;
  got_code = si->si_code;
  got_addr = si->si_addr;
  got_rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
  uc->uc_mcontext.gregs[REG_EFL] &= ~(greg_t)(EFL_TF | EFL_AC);
  if (sig == SIGFPE) uc->uc_mcontext.fpregs->mxcsr = 0x1f80; /* mask all, clear flags: divsd re-executes */
  if (resume_to) uc->uc_mcontext.gregs[REG_RIP] = (greg_t)resume_to;
}

extern char step_at[], step_next[], step_after[], ac_at[], divsd_at[], into_at[], into_after[];

int main(void) {
  on_signal(SIGTRAP, handler, 0);
  on_signal(SIGBUS, handler, 0);
  on_signal(SIGFPE, handler, 0);
  on_signal(SIGILL, handler, 0);

  /* single step: TF set by popf traps after the instruction following popf */
  resume_to = 0;
  __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n"
                   ".globl step_at\nstep_at:\n\tnop\n"
                   ".globl step_next\nstep_next:\n\tnop\n"
                   ".globl step_after\nstep_after:\n" ::
                       : "memory", "cc");
  say("single step: %s %s, si_addr %s, RIP %s\n", signame(got_sig), got_code == TRAP_TRACE ? "TRAP_TRACE" : "other",
      got_addr == step_next ? "= next instruction" : "other", got_rip == (uintptr_t)step_next ? "= next instruction" : "other");
  CHECK(got_sig == SIGTRAP && got_code == TRAP_TRACE && got_rip == (uintptr_t)step_next, "single step");
  CHECK(calls == 1, "exactly one trap once TF is cleared");

  /* alignment check */
  static _Alignas(16) char buf[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  int v = 0;
  resume_to = 0;
  __asm__ volatile("pushfq\n\torl $0x40000, (%%rsp)\n\tpopfq\n"
                   ".globl ac_at\nac_at:\n\tmovl (%1), %0\n\t"
                   "pushfq\n\tandl $~0x40000, (%%rsp)\n\tpopfq\n"
                   : "=r"(v)
                   : "r"(buf + 1)
                   : "memory", "cc");
  say("misaligned load with EFLAGS.AC: %s %s, si_addr %s, RIP %s, load completed after clearing AC: %s\n",
      signame(got_sig), got_code == BUS_ADRALN ? "BUS_ADRALN" : "other",
      got_addr == NULL ? "0" : got_addr == buf + 1 ? "= address" : "other",
      got_rip == (uintptr_t)ac_at ? "= instruction" : "other", yesno(v == 0x05040302));
  CHECK(got_sig == SIGBUS && got_code == BUS_ADRALN && got_addr == NULL && got_rip == (uintptr_t)ac_at && v == 0x05040302, "alignment");

  /* SSE exception */
  resume_to = 0;
  unsigned mx = 0x1f80 & ~0x200u; /* unmask divide-by-zero */
  double num = 1.0, den = 0.0, res = 0;
  __asm__ volatile("ldmxcsr %1\n\t"
                   "movsd %2, %%xmm0\n\t"
                   ".globl divsd_at\ndivsd_at:\n\tdivsd %3, %%xmm0\n\t"
                   "movsd %%xmm0, %0\n\t"
                   : "=m"(res)
                   : "m"(mx), "m"(num), "x"(den)
                   : "xmm0", "memory");
  unsigned cur;
  __asm__ volatile("stmxcsr %0" : "=m"(cur));
  say("SSE divide by zero unmasked: %s %s, si_addr %s, RIP %s, result after masking: %s\n", signame(got_sig),
      got_code == FPE_FLTDIV ? "FPE_FLTDIV" : "other", got_addr == divsd_at ? "= instruction" : "other",
      got_rip == (uintptr_t)divsd_at ? "= instruction" : "other", res > 1e308 ? "inf" : "other");
  CHECK(got_sig == SIGFPE && got_code == FPE_FLTDIV && got_rip == (uintptr_t)divsd_at && res > 1e308, "sse");
  CHECK((cur & 0xffbf) == 0x1f80 || (cur & 0xffbf) == 0x1f84, "mxcsr restored from the frame: %#x", cur);
  __asm__ volatile("ldmxcsr %0" ::"m"(mx) : "memory");
  mx = 0x1f80;
  __asm__ volatile("ldmxcsr %0" ::"m"(mx) : "memory");

  /* into: invalid opcode in 64-bit mode */
  resume_to = (uintptr_t)into_after;
  __asm__ volatile(".globl into_at\ninto_at:\n\t.byte 0xce\n.globl into_after\ninto_after:\n" ::: "memory");
  say("into (0xCE): %s %s, RIP %s\n", signame(got_sig), got_code == ILL_ILLOPN ? "ILL_ILLOPN" : "other",
      got_rip == (uintptr_t)into_at ? "= instruction" : "other");
  CHECK(got_sig == SIGILL && got_code == ILL_ILLOPN && got_rip == (uintptr_t)into_at, "into");
  say("exceptions handled: %d\n", calls);
  return 0;
}
