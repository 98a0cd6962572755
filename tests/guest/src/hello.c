// issue: 3
// pie: yes
#include <stdio.h>
int main(void) {
  puts("hello from a static program");
  return 0;
}
