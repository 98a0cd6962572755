// expect: fail
// spin-cc: -O0 -DCOLLAPSE
// spin-run: -m1000000
//
// PLANTED BUG (must be caught): mpmc_wakeup.pml with a consumer that
// re-checks the ring *before* counting itself as a sleeper. A producer can
// publish and see no sleeper between the two steps: the consumer sleeps on a
// non-empty ring and, once the producers are done, nobody wakes it (the
// watchdog finds the system blocked with a message unreceived). Only the
// lines marked BUG differ from mpmc_wakeup.pml.

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
bit seen[TOTAL];         // ghost: messages received
byte received = 0;       // ghost
byte p_done = 0;         // ghost
byte left = 0;           // ghost: consumers that stopped for good

inline wake_if_any(count, ev) {
  atomic { c = count };                                // after the fence
  if :: c > 0 -> atomic { ev++ } :: else -> skip fi
}
inline sleep_on(ev) {
  atomic { ev > 0 };                                   // poll says readable
  atomic { ev = 0 }                                    // the read takes the counter (maybe 0 by now)
}
inline has_room(r) {
  atomic { p = enq };
  atomic { r = (seq[p % CAP] >= p) }
}
inline has_message(r) {
  atomic { p = deq };
  atomic { r = (seq[p % CAP] >= p + 1) }
}

proctype producer(byte id) {
  byte k = 0;
  byte pos, s, p, c;
  bit ok, r;
  do
  :: k < PER ->
     atomic { pos = enq };
     atomic { s = seq[pos % CAP] };
     if
     :: s == pos ->                                    // free for this lap: claim it (CAS)
        atomic {                                       // the claimer owns the payload: claim and write as one step
          if :: enq == pos -> enq = pos + 1; ok = 1; payload[pos % CAP] = id * PER + k :: else -> ok = 0 fi
        };
        if
        :: ok ->
           atomic { seq[pos % CAP] = pos + 1 };        // publish (release)
           wake_if_any(cwait, ev_data);
           has_room(r);                                // FIX: chain: more room and
           if :: r -> wake_if_any(pwait, ev_space) :: else -> skip fi;  // FIX: a fellow sleeper?
           k++
        :: else -> skip                                // lost the race: retry
        fi
     :: s < pos ->                                     // full: wait_until_counted
        do
        :: atomic { pwait++ };
           has_room(r);
           if :: r -> atomic { pwait-- }; break :: else -> skip fi;
           sleep_on(ev_space);
           atomic { pwait-- };
           has_room(r);
           if :: r -> break :: else -> skip fi
        od
     :: s > pos -> skip                                // stale position: reload
     fi
  :: else -> break
  od;
  atomic { p_done++ }
}

proctype consumer(byte id) {
  byte pos, s, p, v, c;
  bit ok, r;
end:
  do
  :: atomic { pos = deq };
     atomic { s = seq[pos % CAP] };
     if
     :: s == pos + 1 ->                                // holds a message: claim it (CAS)
        atomic {                                       // claim and read as one step (the slot is ours)
          if
          :: deq == pos -> deq = pos + 1; ok = 1; v = payload[pos % CAP]; assert(!seen[v]); seen[v] = 1; received++
          :: else -> ok = 0
          fi
        };
        if
        :: ok ->
           atomic { seq[pos % CAP] = pos + CAP };      // release the slot to the next lap
           wake_if_any(pwait, ev_space);
           has_message(r);                             // FIX: chain: more to take and
           if :: r -> wake_if_any(cwait, ev_data) :: else -> skip fi;  // FIX: a fellow sleeper?
           if
           :: left + 1 < NC -> atomic { left++ }; goto gone   // stop consuming for good
           :: skip
           fi
        :: else -> skip
        fi
     :: s < pos + 1 ->                                 // empty: wait_until_counted
        do
        :: has_message(r);                             // BUG: re-check first
           atomic { cwait++ };                         // BUG: then register as a sleeper
           if :: r -> atomic { cwait-- }; break :: else -> skip fi;
end_sleep: sleep_on(ev_data);
           atomic { cwait-- };
           has_message(r);
           if :: r -> break :: else -> skip fi
        od
     :: s > pos + 1 -> skip
     fi
  od;
gone:
  skip
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
