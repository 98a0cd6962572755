// issue: 4
/* The signal frame and rt_sigreturn: the ucontext a handler receives describes
 * the interrupted code exactly, and what the handler changes in it is what
 * execution resumes with.
 *   - A raw `syscall` of kill(self, SIGUSR1): the saved RIP is the instruction
 *     after `syscall`, the saved RAX is kill's result (0); the handler sets RAX,
 *     RBX and R12 and the interrupted code sees the new values.
 *   - FPU/SSE state: xmm8 holds a value across the signal; the handler sees it in
 *     uc_mcontext.fpregs, clobbers the live register, and finds the saved one
 *     restored afterwards; a second run changes the saved xmm8 in the frame and
 *     the interrupted code resumes with the changed value. MXCSR/x87 control
 *     words are the defaults.
 *   - uc_sigmask: the handler adds SIGUSR2 to it, so SIGUSR2 is blocked after
 *     sigreturn.
 *   - The handler's stack is 16-byte aligned as the ABI requires (checked with
 *     an aligned local), both for kill and for a hardware fault, and the frame
 *     lies below the interrupted stack pointer, past the 128-byte red zone. */
#include <ucontext.h>

#include "guest.h"

extern char after_kill[];
static volatile int stage;
static volatile int rip_ok, rax_ok, xmm_seen_ok, frame_ok, aligned_ok, mxcsr_ok, fcw_ok;
static volatile uint64_t saved_rsp;

static void check_alignment(void) {
  _Alignas(16) volatile char probe[16];
  aligned_ok = ((uintptr_t)probe & 15) == 0;
}

static void handler(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  mcontext_t *mc = &uc->uc_mcontext;
  check_alignment();
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  saved_rsp = (uint64_t)mc->gregs[REG_RSP];
  frame_ok = here < saved_rsp - 128;
  if (stage == 1) {
    rip_ok = (uintptr_t)mc->gregs[REG_RIP] == (uintptr_t)after_kill;
    rax_ok = mc->gregs[REG_RAX] == 0;
    mc->gregs[REG_RAX] = 0x1234;
    mc->gregs[REG_RBX] = 0x5678;
    mc->gregs[REG_R12] = 0x9abc;
  } else if (stage == 2) {
    uint64_t saved;
    memcpy(&saved, &mc->fpregs->_xmm[8], 8);
    xmm_seen_ok = saved == 0x1122334455667788ULL;
    mxcsr_ok = (mc->fpregs->mxcsr & 0xffbf) == 0x1f80; /* ignore DAZ */
    fcw_ok = mc->fpregs->cwd == 0x37f;
    /* clobber the live register: sigreturn must restore the saved one */
    __asm__ volatile("movq %0, %%xmm8" ::"r"(0xdeadbeefULL) : "xmm8");
  } else if (stage == 3) {
    uint64_t v = 0xcafef00dULL;
    memcpy(&mc->fpregs->_xmm[8], &v, 8);
  } else if (stage == 4) {
    sigaddset(&uc->uc_sigmask, SIGUSR2);
  }
}

static void segv_handler(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  check_alignment();
  /* skip the faulting 6-byte `movl $1, (%rax)` (see step 5) */
  uc->uc_mcontext.gregs[REG_RIP] += 6;
}

int main(void) {
  on_signal(SIGUSR1, handler, 0);
  pid_t me = getpid();

  /* 1. general registers through the frame */
  stage = 1;
  long rax = 62 /* SYS_kill */, rbx = 0, r12v = 0;
  register long r12 __asm__("r12") = 0;
  __asm__ volatile("mov $0, %%rbx\n\t"
                   "syscall\n\t"
                   ".globl after_kill\n"
                   "after_kill:\n\t"
                   "mov %%rbx, %1\n\t"
                   : "+a"(rax), "=r"(rbx), "+r"(r12)
                   : "D"((long)me), "S"((long)SIGUSR1)
                   : "rcx", "r11", "rbx", "memory");
  r12v = r12;
  say("raw kill: saved RIP is after the syscall: %s, saved RAX was 0: %s\n", yesno(rip_ok), yesno(rax_ok));
  say("registers set by the handler seen after sigreturn: rax %s, rbx %s, r12 %s\n", yesno(rax == 0x1234),
      yesno(rbx == 0x5678), yesno(r12v == 0x9abc));
  CHECK(rip_ok && rax_ok && rax == 0x1234 && rbx == 0x5678 && r12v == 0x9abc, "general registers");
  say("handler stack 16-byte aligned: %s, frame below the red zone: %s\n", yesno(aligned_ok), yesno(frame_ok));
  CHECK(aligned_ok && frame_ok, "frame layout");

  /* 2. SSE state saved, visible, restored */
  stage = 2;
  uint64_t out;
  __asm__ volatile("movq %1, %%xmm8\n\t"
                   "syscall\n\t"
                   "movq %%xmm8, %0\n\t"
                   : "=r"(out)
                   : "r"(0x1122334455667788ULL), "a"(62L), "D"((long)me), "S"((long)SIGUSR1)
                   : "rcx", "r11", "xmm8", "memory");
  say("xmm8 in the saved FPU state: %s; live xmm8 restored after the handler clobbered it: %s\n", yesno(xmm_seen_ok),
      yesno(out == 0x1122334455667788ULL));
  say("saved MXCSR default: %s, saved x87 control word default: %s\n", yesno(mxcsr_ok), yesno(fcw_ok));
  CHECK(xmm_seen_ok && out == 0x1122334455667788ULL && mxcsr_ok && fcw_ok, "fpu state");

  /* 3. the handler edits the saved xmm8 */
  stage = 3;
  __asm__ volatile("movq %1, %%xmm8\n\t"
                   "syscall\n\t"
                   "movq %%xmm8, %0\n\t"
                   : "=r"(out)
                   : "r"(0x1111ULL), "a"(62L), "D"((long)me), "S"((long)SIGUSR1)
                   : "rcx", "r11", "xmm8", "memory");
  say("xmm8 changed in the frame is live after sigreturn: %s\n", yesno(out == 0xcafef00dULL));
  CHECK(out == 0xcafef00dULL, "fpu edit");

  /* 4. uc_sigmask edit */
  stage = 4;
  SYS(kill(me, SIGUSR1));
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  say("SIGUSR2 added to uc_sigmask is blocked after sigreturn: %s\n", yesno(sigismember(&cur, SIGUSR2)));
  CHECK(sigismember(&cur, SIGUSR2) && !sigismember(&cur, SIGUSR1), "uc_sigmask");
  block_signal(SIGUSR2, SIG_UNBLOCK);

  /* 5. a hardware fault: aligned handler stack, resume by editing RIP */
  on_signal(SIGSEGV, segv_handler, 0);
  aligned_ok = 0;
  int after = 0;
  __asm__ volatile("xor %%eax, %%eax\n\t"
                   "movl $1, (%%rax)\n\t" /* c7 00 01 00 00 00: 6 bytes */
                   "movl $7, %0\n\t"
                   : "=r"(after)
                   :
                   : "rax", "memory");
  say("SIGSEGV handler: stack aligned %s, resumed past the faulting instruction: %s\n", yesno(aligned_ok),
      yesno(after == 7));
  CHECK(aligned_ok && after == 7, "fault frame");
  return 0;
}
