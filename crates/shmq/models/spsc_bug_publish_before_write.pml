// expect: fail
// spin-cc: -O0
// spin-run: -m500000
//
// PLANTED BUG (must be caught): spsc_wakeup.pml with the producer publishing
// the tail *before* writing the slot. The consumer can see the new tail and
// read the slot before it holds the message: the in-order assertion fails
// (stale message). On x86 this is what a compiler reordering of a Relaxed
// publish could do; the Rust twin is the planted_bug_publish_before_write
// test in src/spsc.rs. Only the lines marked BUG differ from spsc_wakeup.pml.

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
     tail = tail + 1;                                  // BUG: publish first
     slot[(tail - 1) % CAP] = sent;                    // BUG: then write the slot
     wake_if_waiting(cons_waiting, ev_data);           // BUG: fence, then the flag
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
