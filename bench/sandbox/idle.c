// Prints "ready" and sleeps: an idle sandbox whose memory is measured.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  int s = argc > 1 ? atoi(argv[1]) : 5;
  printf("ready\n");
  fflush(stdout);
  struct timespec t = {s, 0};
  nanosleep(&t, 0);
  return 0;
}
