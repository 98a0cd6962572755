// issue: 4
// cpus: 2
// timeout: 20
/* The storm of sched_race.c (a futex token ring beside fork/exit/wait churn,
 * short-lived threads woken as they sleep and exit, a futex sleeper
 * interrupted by signals at varying moments), run twice on 2 vCPUs, each
 * time in a fresh child process. It reproduced issue 4's lost wake-up:
 * SpinLock::try_lock released a lock it had failed to take, so the
 * scheduler's work stealing unlocked busy run queues; the sandbox hung (or
 * the kernel panicked) in about half the storms. Self-checking: a lost
 * wake-up shows as a hang. */
#define SCHED_RACE_STORM
#include "sched_race.c"
