// issue: 4
/* Copy-on-write isolation after fork: private anonymous memory, .data, .bss,
 * heap and stack are copied logically; MAP_SHARED anonymous memory is shared.
 * Writes on either side after fork are invisible to the other, in both orders
 * (child writes first / parent writes first), across a grandchild, after
 * mprotect changes, and for a page only read before fork. The processes talk
 * through a shared page and report failures through their exit status. */
#include "guest.h"

#define NPAGES 64

static int data_var = 1234;
static int bss_var;
static char *priv;
static int *heap;
static volatile uint32_t *sh; /* [0] step, [1] child result */

static int check_pattern(const char *p, char v) {
  for (size_t i = 0; i < NPAGES * PAGE; i += 512)
    if (p[i] != v) return 0;
  return 1;
}

static void fill(char *p, char v) {
  for (size_t i = 0; i < NPAGES * PAGE; i += 512) p[i] = v;
}

int main(void) {
  priv = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(priv != MAP_FAILED, "mmap private");
  char *shared = shared_mem(NPAGES * PAGE);
  sh = shared_mem(PAGE);
  heap = malloc(1 << 20);
  CHECK(heap, "malloc");
  int stack_var = 77;
  fill(priv, 'A');
  fill(shared, 'S');
  heap[1000] = 42;
  bss_var = 9;
  char *readonly_before = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(readonly_before != MAP_FAILED, "mmap");
  readonly_before[0] = 'R';
  /* A page never written before fork (only read): the zero page must be copied correctly too. */
  char *untouched = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(untouched != MAP_FAILED && untouched[100] == 0, "mmap untouched");

  /* Child writes first. */
  pid_t c = xfork();
  if (c == 0) {
    int ok = check_pattern(priv, 'A') && data_var == 1234 && bss_var == 9 && heap[1000] == 42 && stack_var == 77;
    fill(priv, 'C');
    data_var = 1;
    bss_var = 2;
    heap[1000] = 3;
    stack_var = 4;
    untouched[100] = 'u';
    fill(shared, 'T'); /* visible to the parent */
    ok = ok && check_pattern(priv, 'C') && data_var == 1 && untouched[100] == 'u';
    _exit(ok ? 0 : 1);
  }
  expect_child_ok(c, "child-writes-first");
  int iso = check_pattern(priv, 'A') && data_var == 1234 && bss_var == 9 && heap[1000] == 42 && stack_var == 77 &&
            untouched[100] == 0;
  say("child writes first: parent's private, data, bss, heap, stack unchanged: %s\n", yesno(iso));
  CHECK(iso, "COW isolation (child wrote)");
  say("child's writes to MAP_SHARED memory visible to the parent: %s\n", yesno(check_pattern(shared, 'T')));
  CHECK(check_pattern(shared, 'T'), "shared memory");

  /* Parent writes first, while the child waits; then the child checks its view. */
  sh[0] = 0;
  c = xfork();
  if (c == 0) {
    futex_wait_while(&sh[0], 0);
    int ok = check_pattern(priv, 'A') && data_var == 1234 && heap[1000] == 42 && check_pattern(shared, 'P');
    _exit(ok ? 0 : 1);
  }
  fill(priv, 'P');
  data_var = 5678;
  heap[1000] = 43;
  fill(shared, 'P');
  futex_set_wake(&sh[0], 1);
  expect_child_ok(c, "parent-writes-first");
  say("parent writes first: child sees the old private values and the new shared ones: yes\n");
  fill(priv, 'A');
  data_var = 1234;
  heap[1000] = 42;

  /* Three generations: each writes its own value; none sees another's. */
  sh[1] = 0;
  c = xfork();
  if (c == 0) {
    fill(priv, 'M');
    pid_t g = fork();
    if (g < 0) _exit(2);
    if (g == 0) {
      int ok = check_pattern(priv, 'M');
      fill(priv, 'G');
      _exit(ok && check_pattern(priv, 'G') ? 0 : 1);
    }
    int st;
    if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(3);
    _exit(check_pattern(priv, 'M') ? 0 : 4);
  }
  expect_child_ok(c, "grandchild");
  say("child and grandchild write in turn; every generation keeps its own copy: %s\n", yesno(check_pattern(priv, 'A')));
  CHECK(check_pattern(priv, 'A'), "three generations");

  /* Read-only before fork, made writable in the child only. */
  SYS(mprotect(readonly_before, PAGE, PROT_READ));
  c = xfork();
  if (c == 0) {
    if (mprotect(readonly_before, PAGE, PROT_READ | PROT_WRITE) != 0) _exit(1);
    readonly_before[0] = 'W';
    _exit(readonly_before[0] == 'W' ? 0 : 1);
  }
  expect_child_ok(c, "mprotect child");
  say("page read-only at fork, written by the child after mprotect; parent still sees the old byte: %s\n",
      yesno(readonly_before[0] == 'R'));
  CHECK(readonly_before[0] == 'R', "mprotect COW");

  /* Many forks in a row, each dirtying every page: frames are copied and freed. */
  for (int i = 0; i < 8; i++) {
    c = xfork();
    if (c == 0) {
      fill(priv, (char)('a' + i));
      _exit(check_pattern(priv, (char)('a' + i)) ? 0 : 1);
    }
    expect_child_ok(c, "repeated fork");
  }
  say("8 forks dirtying all %d pages, parent unchanged: %s\n", NPAGES, yesno(check_pattern(priv, 'A')));
  CHECK(check_pattern(priv, 'A'), "repeated forks");

  /* The parent writes after the child exited: no stale sharing left behind. */
  fill(priv, 'Z');
  CHECK(check_pattern(priv, 'Z'), "write after children");
  say("done\n");
  return 0;
}
