// expect: pass
// spin-cc: -O0
// spin-run: -m500000
//
// The wakeup protocol of the SPSC message ring (src/wake.rs, src/ends.rs,
// src/spsc.rs), both directions: the consumer sleeps when the ring is empty,
// the producer when it is full; each advertises it in its waiting flag and
// the other side signals (an eventfd, modelled as a counter whose read blocks
// until it is non-zero and takes everything) only when it swaps a set flag
// back to 0. The producer sends MSGS messages and closes; the consumer
// receives until end of stream.
//
// Checked (safety run): every message arrives once, in order and not stale
// (assertions); nobody blocks forever: a process stuck in a sleep or a wait
// at the end is an "invalid end state" (a lost wakeup or a deadlock).
//
// Memory model: each statement is one sequentially consistent step, and every
// shared load or store is its own statement. The Rust code gets sequential
// consistency for this handshake from one SeqCst fence per side between its
// store and its load (Dekker); spsc_tso.pml checks that claim with x86 store
// buffers. Planted bugs (same model, lines marked BUG instead of FIX):
// spsc_bug_flag_before_publish.pml, spsc_bug_publish_before_write.pml.

#define CAP 2
#define MSGS 5

byte slot[CAP];
byte tail = 0;           // producer index (shared)
byte head = 0;           // consumer index (shared)
bit cons_waiting = 0;
bit prod_waiting = 0;
bit prod_closed = 0;
bit prod_done = 0;
bit cons_done = 0;
byte ev_data = 0;        // eventfd the consumer sleeps on
byte ev_space = 0;       // eventfd the producer sleeps on

// wake_if_waiting (after the fence): swap the peer's flag to 0, signal if it was set.
inline wake_if_waiting(flag, ev) {
  atomic { if :: flag == 1 -> flag = 0; ev++ :: else -> skip fi }
}

// eventfd read: blocks until the counter is non-zero, takes it all.
inline sleep_on(ev) {
  atomic { ev > 0 -> ev = 0 }
}

// Producer's ready(): room for one message? (one load of head)
inline room(r) {
  h = head;
  r = ((tail - h) < CAP)
}

// Consumer's ready(): 1 data, 2 end of stream, 0 nothing (loads as in ConsumerEnd::wait_available).
inline cons_ready(r) {
  t = tail;
  if
  :: t != head -> r = 1
  :: else ->
     c = prod_closed;
     if
     :: c -> t = tail; r = (t == head -> 2 : 1)
     :: else -> r = 0
     fi
  fi
}

active proctype producer() {
  byte sent = 0;
  byte h;
  bit r;
  do
  :: sent < MSGS ->
     room(r);
     if
     :: r -> skip
     :: else ->
        do                                             // wait_until(producer_waiting, room)
        :: prod_waiting = 1;
           room(r);                                    // after the fence
           if :: r -> prod_waiting = 0; break :: else -> skip fi;
           sleep_on(ev_space);
           room(r);
           if :: r -> prod_waiting = 0; break :: else -> skip fi
        od
     fi;
     slot[tail % CAP] = sent;                          // FIX: write the slot
     tail = tail + 1;                                  // FIX: publish (release)
     wake_if_waiting(cons_waiting, ev_data);           // FIX: fence, then the flag
     sent++
  :: else -> break
  od;
  if
  :: prod_closed = 1;                                  // close (release)
     wake_if_waiting(cons_waiting, ev_data)
  :: skip                                              // or go idle
  fi;
  prod_done = 1
}

active proctype consumer() {
  byte got = 0;
  byte t;
  bit c;
  byte r;
  do
  :: true ->
     cons_ready(r);
     if
     :: r == 0 ->
        do                                             // wait_until(consumer_waiting, data or eof)
        :: cons_waiting = 1;
           cons_ready(r);                              // after the fence
           if :: r != 0 -> cons_waiting = 0; break :: else -> skip fi;
end_sleep: sleep_on(ev_data);
           cons_ready(r);
           if :: r != 0 -> cons_waiting = 0; break :: else -> skip fi
        od
     :: else -> skip
     fi;
     if
     :: r == 2 -> break
     :: else ->
        assert(slot[head % CAP] == got);               // in order, not stale
        head = head + 1;                               // release the slot
        wake_if_waiting(prod_waiting, ev_space);
        got++
     fi
  od;
  assert(got == MSGS);                                 // none lost, none duplicated
  cons_done = 1
}

active proctype watchdog() {
  // Blocked for good: the producer must be done, and the consumer either done
  // or asleep on an empty ring that is still open.
  timeout -> assert(prod_done && (cons_done || (tail == head && !prod_closed)))
}
