// issue: 3
// signal: SIGSEGV
/* A NULL write with no handler installed: the program dies by SIGSEGV
 * (the quark CLI reports 139). The line before it must already be out. */
#include "guest.h"

int main(void) {
  say("writing to NULL\n");
  volatile int *p;
  /* Launder the pointer so the compiler cannot turn the store into a trap. */
  __asm__ volatile("" : "=r"(p) : "0"(0L));
  *p = 1;
  say("still alive after NULL write\n");
  return 1;
}
