// expect: pass
// spin-cc: -O0
// spin-run: -m1000000
//
// The wakeup protocol of the SPSC byte stream (src/stream.rs, src/ends.rs,
// src/wake.rs): partial writes and reads of any size, both sides sleeping
// (reader on empty, writer on full), end of stream (writer closes) and early
// close by the reader (the writer must then stop with `Closed`, not sleep).
// Each byte is a separate store; the tail/head publishes are separate steps.
//
// Checked: every byte arrives once and in order (assertions), and when the
// whole system is blocked the writer is done and the reader is either done
// or asleep on an empty stream that is still open: no lost wakeup (data or
// end of stream nobody signalled), no deadlock. Memory model as in
// spsc_wakeup.pml. Planted bug: stream_bug_close_without_wake.pml.

#define CAP 4
#define N 7

byte data[CAP];
byte tail = 0;
byte head = 0;
bit r_waiting = 0;       // consumer_waiting
bit w_waiting = 0;       // producer_waiting
bit w_closed = 0;        // producer_closed
bit r_closed = 0;        // consumer_closed
byte ev_r = 0;           // eventfd the reader sleeps on
byte ev_w = 0;           // eventfd the writer sleeps on
bit w_done = 0;
bit r_done = 0;

inline wake_if_waiting(flag, ev) {
  atomic { if :: flag == 1 -> flag = 0; ev++ :: else -> skip fi }
}
inline sleep_on(ev) {
  atomic { ev > 0 -> ev = 0 }
}

// Writer's ready(): 2 reader closed, 1 room, 0 full.
inline w_ready(r) {
  c = r_closed;
  if
  :: c -> r = 2
  :: else -> h = head; r = ((tail - h) < CAP -> 1 : 0)
  fi
}

// Reader's ready(): 1 data, 2 end of stream, 0 nothing.
inline r_ready(r) {
  t = tail;
  if
  :: t != head -> r = 1
  :: else ->
     c = w_closed;
     if
     :: c -> t = tail; r = (t == head -> 2 : 1)
     :: else -> r = 0
     fi
  fi
}

active proctype writer() {
  byte sent = 0;
  byte h, n, k, free;
  bit c;
  byte r;
  do
  :: sent < N ->
     w_ready(r);
     if
     :: r == 0 ->
        do
        :: w_waiting = 1;
           w_ready(r);
           if :: r != 0 -> w_waiting = 0; break :: else -> skip fi;
           sleep_on(ev_w);
           w_ready(r);
           if :: r != 0 -> w_waiting = 0; break :: else -> skip fi
        od
     :: else -> skip
     fi;
     if
     :: r == 2 -> break                                // Err(Closed)
     :: else ->
        free = CAP - (tail - h);
        if :: free > N - sent -> free = N - sent :: else -> skip fi;
        n = 1;                                         // any partial write 1..free
        do :: n < free -> n++ :: break od;
        k = 0;
        do
        :: k < n -> data[(tail + k) % CAP] = sent + k; k++
        :: else -> break
        od;
        tail = tail + n;                               // publish
        wake_if_waiting(r_waiting, ev_r);              // fence, flag
        sent = sent + n
     fi
  :: else -> break
  od;
  if
  :: sent == N ->
     if
     :: w_closed = 1;                                  // FIX: close
        wake_if_waiting(r_waiting, ev_r)               // FIX: and wake a sleeping reader
     :: skip                                           // or go idle
     fi
  :: else -> skip
  fi;
  w_done = 1
}

active proctype reader() {
  byte got = 0;
  byte t, m, k;
  bit c;
  byte r;
  do
  :: got > 0 && got < N ->                             // close early (shutdown(SHUT_RD))
     r_closed = 1;
     wake_if_waiting(w_waiting, ev_w);
     break
  :: true ->
     r_ready(r);
     if
     :: r == 0 ->
        do
        :: r_waiting = 1;
           r_ready(r);
           if :: r != 0 -> r_waiting = 0; break :: else -> skip fi;
end_sleep: sleep_on(ev_r);
           r_ready(r);
           if :: r != 0 -> r_waiting = 0; break :: else -> skip fi
        od
     :: else -> skip
     fi;
     if
     :: r == 2 -> assert(got == N); break              // end of stream after every byte
     :: else ->
        m = 1;                                         // any partial read 1..available
        do :: m < t - head -> m++ :: break od;
        k = 0;
        do
        :: k < m -> assert(data[(head + k) % CAP] == got + k); k++
        :: else -> break
        od;
        head = head + m;                               // release
        wake_if_waiting(w_waiting, ev_w);
        got = got + m
     fi
  od;
  r_done = 1
}

active proctype watchdog() {
  // Blocked for good: the writer must be done, and the reader either done
  // (end of stream, or closed) or asleep on an empty, still open stream.
  timeout -> assert(w_done && (r_done || (tail == head && !w_closed)))
}
