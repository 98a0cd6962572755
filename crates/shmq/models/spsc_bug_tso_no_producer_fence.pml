// expect: fail
// spin-cc: -O0
// spin-run: -m1000000
//
// PLANTED BUG (must be caught): spsc_tso.pml without the producer's fence
// between publishing the tail and loading the consumer's waiting flag. Under
// TSO the flag load overtakes the buffered tail store: the consumer sets its
// flag, fences, still reads the old tail and sleeps, while the producer read
// the flag as 0 and signals nobody. Only the line marked BUG differs.

#define MSGS 3
#define CAP 4            // >= MSGS: this model is about the consumer's sleep
#define TAIL CAP
#define CWAIT (CAP + 1)
#define PCLOSED (CAP + 2)
#define NADDR (CAP + 3)
#define B 3              // store buffer depth

byte mem[NADDR];
byte pb_addr[B]; byte pb_val[B]; byte pb_n = 0;    // producer's store buffer
byte cb_addr[B]; byte cb_val[B]; byte cb_n = 0;    // consumer's store buffer
byte ev_data = 0;
byte chead = 0;          // consumer's index (only it writes; global for the watchdog)
bit prod_done = 0;
bit cons_done = 0;

inline pstore(a, v) { atomic { pb_n < B -> pb_addr[pb_n] = a; pb_val[pb_n] = v; pb_n++ } }
inline cstore(a, v) { atomic { cb_n < B -> cb_addr[cb_n] = a; cb_val[cb_n] = v; cb_n++ } }

inline pload(a, dst) {
  d_step {
    i = pb_n; found = 0;
    do
    :: i > 0 && !found -> i--; if :: pb_addr[i] == a -> dst = pb_val[i]; found = 1 :: else -> skip fi
    :: else -> break
    od;
    if :: !found -> dst = mem[a] :: else -> skip fi;
    i = 0; found = 0
  }
}
inline cload(a, dst) {
  d_step {
    i = cb_n; found = 0;
    do
    :: i > 0 && !found -> i--; if :: cb_addr[i] == a -> dst = cb_val[i]; found = 1 :: else -> skip fi
    :: else -> break
    od;
    if :: !found -> dst = mem[a] :: else -> skip fi;
    i = 0; found = 0
  }
}

active proctype pflush() {
  byte k;
end:
  do
  :: d_step {
       pb_n > 0 -> mem[pb_addr[0]] = pb_val[0];
       k = 0;
       do :: k + 1 < pb_n -> pb_addr[k] = pb_addr[k + 1]; pb_val[k] = pb_val[k + 1]; k++ :: else -> break od;
       pb_n--; k = 0
     }
  od
}

active proctype cflush() {
  byte k;
end:
  do
  :: d_step {
       cb_n > 0 -> mem[cb_addr[0]] = cb_val[0];
       k = 0;
       do :: k + 1 < cb_n -> cb_addr[k] = cb_addr[k + 1]; cb_val[k] = cb_val[k + 1]; k++ :: else -> break od;
       cb_n--; k = 0
     }
  od
}

// Producer: after a publish, fence, load the flag, swap it (locked) if set, signal.
inline wake_consumer() {
  skip;                                                // BUG: no fence(SeqCst)
  pload(CWAIT, w);
  if
  :: w == 1 ->
     atomic { pb_n == 0 -> old = mem[CWAIT]; mem[CWAIT] = 0 };
     if :: old == 1 -> atomic { pb_n == 0 -> ev_data++ } :: else -> skip fi
  :: else -> skip
  fi
}

active proctype producer() {
  byte sent = 0;
  byte w, old, i;
  bit found;
  do
  :: sent < MSGS ->
     pstore(sent % CAP, sent + 1);                      // write the slot (message sent+1; 0 = empty)
     pstore(TAIL, sent + 1);                            // publish
     wake_consumer();
     sent++
  :: else -> break
  od;
  if
  :: pstore(PCLOSED, 1); wake_consumer()
  :: skip
  fi;
  prod_done = 1
}

// Consumer's ready(): 1 data, 2 end of stream, 0 nothing.
inline cons_ready(r) {
  cload(TAIL, t);
  if
  :: t != chead -> r = 1
  :: else ->
     cload(PCLOSED, c);
     if
     :: c -> cload(TAIL, t); r = (t == chead -> 2 : 1)
     :: else -> r = 0
     fi
  fi
}

active proctype consumer() {
  byte t, c, r, v, i;
  bit found;
  do
  :: true ->
     cons_ready(r);
     if
     :: r == 0 ->
        do
        :: cstore(CWAIT, 1);
           cb_n == 0;                                  // FIX: fence(SeqCst)
           cons_ready(r);
           if :: r != 0 -> cstore(CWAIT, 0); break :: else -> skip fi;
end_sleep: atomic { cb_n == 0 && ev_data > 0 -> ev_data = 0 };
           cons_ready(r);
           if :: r != 0 -> cstore(CWAIT, 0); break :: else -> skip fi
        od
     :: else -> skip
     fi;
     if
     :: r == 2 -> break
     :: else ->
        cload(chead % CAP, v);
        assert(v == chead + 1);                        // the message, not a stale slot
        chead++
     fi
  od;
  assert(chead == MSGS);
  cons_done = 1
}

active proctype watchdog() {
  timeout -> assert(prod_done && (cons_done || (mem[TAIL] == chead && mem[PCLOSED] == 0)))
}
