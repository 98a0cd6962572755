// expect: pass
// spin-cc: -DCOLLAPSE
// spin-run: -m1000000
//
// The MPMC ring (src/mpmc.rs: Vyukov's per-slot sequence numbers) with its
// counted wakeups (src/wake.rs: wait_until_counted / wake_if_any_waiting):
// NP producers and NC consumers share one eventfd per direction; a sleeper
// increments the count of sleepers, re-checks, sleeps, decrements on wakeup;
// a waker signals while the count is non-zero. The eventfd read is modelled
// as two steps (poll sees it readable, then the read takes the counter), so
// several sleepers can wake for one signal and all but one find nothing.
//
// Checked: each message is received exactly once (assertions), and when the
// whole system is blocked every producer is done and every message was
// received: the consumers left asleep have nothing to be woken for.
// This file: 2 producers, 2 consumers (sleeping consumers); the full-ring
// direction (sleeping producers) is mpmc_full_wakeup.pml. Planted bug:
// mpmc_bug_register_after_check.pml.

#define CAP 2
#define NP 2
#define NC 2
#define PER 1
#define TOTAL (NP * PER)

byte seq[CAP];
byte payload[CAP];
byte enq = 0;
byte deq = 0;
byte cwait = 0;          // number of sleeping consumers
byte pwait = 0;          // number of sleeping producers
byte ev_data = 0;
byte ev_space = 0;
bit seen[TOTAL];
byte received = 0;
byte p_done = 0;

inline wake_if_any(count, ev) {
  if :: count > 0 -> ev++ :: else -> skip fi          // after the fence
}
inline sleep_on(ev) {
  ev > 0;                                              // poll says readable
  ev = 0                                               // read takes the counter (maybe 0 by now)
}
inline has_room(r) {
  p = enq; s = seq[p % CAP]; r = (s >= p)
}
inline has_message(r) {
  p = deq; s = seq[p % CAP]; r = (s >= p + 1)
}

proctype producer(byte id) {
  byte k = 0;
  byte pos, s, p;
  bit ok, r;
  do
  :: k < PER ->
     pos = enq;
     s = seq[pos % CAP];
     if
     :: s == pos ->                                    // free for this lap: claim it
        atomic { if :: enq == pos -> enq = pos + 1; ok = 1 :: else -> ok = 0 fi };
        if
        :: ok ->
           payload[pos % CAP] = id * PER + k;          // write
           seq[pos % CAP] = pos + 1;                   // publish (release)
           wake_if_any(cwait, ev_data);
           k++
        :: else -> skip                                // lost the race: retry
        fi
     :: s < pos ->                                     // full: wait_until_counted
        do
        :: pwait++;
           has_room(r);
           if :: r -> pwait--; break :: else -> skip fi;
           sleep_on(ev_space);
           pwait--;
           has_room(r);
           if :: r -> break :: else -> skip fi
        od
     :: s > pos -> skip                                // stale position: reload
     fi
  :: else -> break
  od;
  p_done++
}

proctype consumer(byte id) {
  byte pos, s, p, v;
  bit ok, r;
end:
  do
  :: pos = deq;
     s = seq[pos % CAP];
     if
     :: s == pos + 1 ->                                // holds a message: claim it
        atomic { if :: deq == pos -> deq = pos + 1; ok = 1 :: else -> ok = 0 fi };
        if
        :: ok ->
           v = payload[pos % CAP];                     // read
           seq[pos % CAP] = pos + CAP;                 // release the slot to the next lap
           wake_if_any(pwait, ev_space);
           atomic { assert(!seen[v]); seen[v] = 1; received++ }
        :: else -> skip
        fi
     :: s < pos + 1 ->                                 // empty: wait_until_counted
        do
        :: cwait++;                                    // FIX: register as a sleeper
           has_message(r);                             // FIX: then re-check
           if :: r -> cwait--; break :: else -> skip fi;
end_sleep: sleep_on(ev_data);
           cwait--;
           has_message(r);
           if :: r -> break :: else -> skip fi
        od
     :: s > pos + 1 -> skip
     fi
  od
}

init {
  byte i = 0;
  atomic {
    do :: i < CAP -> seq[i] = i; i++ :: else -> break od;
    i = 0;
    do :: i < NP -> run producer(i); i++ :: else -> break od;
    i = 0;
    do :: i < NC -> run consumer(i); i++ :: else -> break od
  }
}

active proctype watchdog() {
  timeout -> assert(p_done == NP && received == TOTAL)
}
