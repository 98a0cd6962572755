// expect: fail
// spin-cc: -O0
// spin-run: -m500000
//
// PLANTED BUG (must be caught): spsc_wakeup.pml with the producer checking the
// consumer's waiting flag *before* publishing the tail. The consumer can set
// its flag and re-check the ring between the two steps, see it empty, and
// sleep with a message in the ring that nobody signals: when the producer
// then goes idle, the watchdog finds the system blocked with a non-empty ring.
// Only the lines marked BUG differ from spsc_wakeup.pml (checked by a cargo test).

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
     slot[tail % CAP] = sent;                          // BUG: write the slot
     wake_if_waiting(cons_waiting, ev_data);           // BUG: the flag is checked before publishing
     tail = tail + 1;                                  // BUG: publish after the check
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
