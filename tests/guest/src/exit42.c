// issue: 3
// exit: 42
/* The exit status of main's return value reaches the caller; stdio is flushed at exit. */
#include <stdio.h>

int main(void) {
  printf("exiting with 42\n");
  return 42;
}
