// The vDSO mapped into every process: clock_gettime, gettimeofday, time,
// getcpu and clock_getres answered in user mode from the TSC and the time
// page the kernel maps just below it (vvar), with no kernel entry. Unknown
// clocks fall back to the real system call.
//
// User-mode code: runs natively on every host (SSE allowed here).

#include <stdint.h>

struct vvar {
  uint64_t tsc_base;
  uint64_t mult;
  uint64_t shift;
  uint64_t mono_base;
  uint64_t real_base;
  /* 1: RDTSCP's TSC_AUX holds the vCPU index; 0: ask the kernel (on
     kvm_pvm hosts user mode runs on the host CPU, whose TSC_AUX it sees). */
  uint64_t getcpu_rdtscp;
};

// Defined by the link script one page below the image.
extern const struct vvar vvar_page __attribute__((visibility("hidden")));

struct timespec_ {
  long tv_sec;
  long tv_nsec;
};
struct timeval_ {
  long tv_sec;
  long tv_usec;
};

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

static inline long sys2(long nr, long a, long b) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
  return ret;
}

static inline uint64_t elapsed_ns(const volatile struct vvar *v) {
  uint64_t delta = rdtsc() - v->tsc_base;
  return (uint64_t)(((unsigned __int128)delta * v->mult) >> v->shift);
}

/* The *_COARSE clocks tick every 4 ms (Linux's jiffy at HZ=250, what
   clock_getres reports for them): the time of the last tick. */
#define COARSE_NS 4000000ull
static inline uint64_t coarse(uint64_t ns) { return ns - ns % COARSE_NS; }

static int clock_ns(long clk, uint64_t *ns) {
  const volatile struct vvar *v = &vvar_page;
  switch (clk) {
  case 0: /* REALTIME */
    *ns = v->real_base + elapsed_ns(v);
    return 1;
  case 5: /* REALTIME_COARSE */
    *ns = coarse(v->real_base + elapsed_ns(v));
    return 1;
  case 11: /* TAI */
    *ns = v->real_base + elapsed_ns(v) + 37000000000ull;
    return 1;
  case 1: /* MONOTONIC */
  case 4: /* MONOTONIC_RAW */
  case 7: /* BOOTTIME */
    *ns = v->mono_base + elapsed_ns(v);
    return 1;
  case 6: /* MONOTONIC_COARSE */
    *ns = coarse(v->mono_base + elapsed_ns(v));
    return 1;
  default:
    return 0;
  }
}

int __vdso_clock_gettime(long clk, struct timespec_ *ts) {
  uint64_t ns;
  if (!clock_ns(clk, &ns)) return (int)sys2(228, clk, (long)ts);
  ts->tv_sec = (long)(ns / 1000000000ull);
  ts->tv_nsec = (long)(ns % 1000000000ull);
  return 0;
}

int __vdso_gettimeofday(struct timeval_ *tv, void *tz) {
  if (tz) return (int)sys2(96, (long)tv, (long)tz);
  if (tv) {
    uint64_t ns;
    clock_ns(0, &ns);
    tv->tv_sec = (long)(ns / 1000000000ull);
    tv->tv_usec = (long)((ns % 1000000000ull) / 1000);
  }
  return 0;
}

long __vdso_time(long *t) {
  uint64_t ns;
  clock_ns(0, &ns);
  long s = (long)(ns / 1000000000ull);
  if (t) *t = s;
  return s;
}

int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused) {
  uint32_t lo, hi, aux;
  const volatile struct vvar *v = &vvar_page;
  if (!v->getcpu_rdtscp) return (int)sys2(309, (long)cpu, (long)node);
  (void)unused;
  __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
  if (cpu) *cpu = aux & 0xfff;
  if (node) *node = 0;
  return 0;
}

int __vdso_clock_getres(long clk, struct timespec_ *res) {
  uint64_t ns;
  if (!clock_ns(clk, &ns)) return (int)sys2(229, clk, (long)res);
  if (res) {
    res->tv_sec = 0;
    res->tv_nsec = (clk == 5 || clk == 6) ? (long)COARSE_NS : 1;
  }
  return 0;
}

// The unprefixed names, as Linux's vDSO exports them too.
int clock_gettime(long, struct timespec_ *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval_ *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
long time(long *) __attribute__((weak, alias("__vdso_time")));
int getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(long, struct timespec_ *) __attribute__((weak, alias("__vdso_clock_getres")));
