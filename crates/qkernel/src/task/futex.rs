//! Futexes: WAIT, WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP, WAIT_BITSET and
//! WAKE_BITSET, private and shared, with timeouts on both clocks; robust
//! lists at thread exit. Priority-inheritance operations return ENOSYS.
//!
//! A futex is identified by a key: private futexes by (address space, user
//! address); shared ones by the guest-physical address of the word, so
//! processes that share a frame (MAP_SHARED, or before a copy-on-write
//! break) meet on the same key.
//!
//! The value check and the enqueue happen under the bucket lock, and wakers
//! take the same lock, so a wake between the check and the sleep cannot be
//! lost.

use super::wait::WaitResult;
use super::{current_arc, sched, Process, Task};

use crate::arch::x86_64::usercopy::{get_user_u64, read_user, write_user};
use crate::mm::addrspace::Access;
use crate::sync::SpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use qlib::layout::{phys_to_virt, PAGE_SIZE};
use qlib::linux::Errno;

/// Operations and flags.
pub mod op {
    pub const WAIT: u64 = 0;
    pub const WAKE: u64 = 1;
    pub const FD: u64 = 2;
    pub const REQUEUE: u64 = 3;
    pub const CMP_REQUEUE: u64 = 4;
    pub const WAKE_OP: u64 = 5;
    pub const LOCK_PI: u64 = 6;
    pub const UNLOCK_PI: u64 = 7;
    pub const TRYLOCK_PI: u64 = 8;
    pub const WAIT_BITSET: u64 = 9;
    pub const WAKE_BITSET: u64 = 10;
    pub const WAIT_REQUEUE_PI: u64 = 11;
    pub const CMP_REQUEUE_PI: u64 = 12;
    pub const LOCK_PI2: u64 = 13;
    pub const PRIVATE: u64 = 128;
    pub const CLOCK_REALTIME: u64 = 256;
    pub const CMD_MASK: u64 = !(PRIVATE | CLOCK_REALTIME);
    pub const BITSET_MATCH_ANY: u32 = u32::MAX;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Private(u64, u64),
    Shared(u64),
}

impl Key {
    /// The bucket this key hashes to.
    fn bucket(&self) -> usize {
        let x = match *self {
            Key::Private(mm, addr) => mm ^ (addr >> 2),
            Key::Shared(pa) => pa >> 2,
        };
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BUCKET_BITS)) as usize
    }
}

/// A task sleeping on a futex.
struct Waiter {
    /// The key it waits on (a requeue changes it; read and written under
    /// the lock of the bucket it is in).
    key: SpinLock<Key>,
    bitset: u32,
    woken: AtomicBool,
    task: Arc<Task>,
}

/// Hashed wait lists: operations on different futexes rarely share a lock,
/// and a wake-up is done after the bucket lock is released (it may send an
/// IPI), so another vCPU never spins on a bucket for long.
const BUCKET_BITS: u32 = 6;
static BUCKETS: [SpinLock<Vec<Arc<Waiter>>>; 1 << BUCKET_BITS] =
    [const { SpinLock::new(Vec::new()) }; 1 << BUCKET_BITS];

/// Resolves the key of the futex word at `uaddr` in process `p`.
fn key_of(p: &Process, uaddr: u64, private: bool) -> Result<Key, Errno> {
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let mm = p.mm.lock().clone();
    if private {
        return Ok(Key::Private(Arc::as_ptr(&mm) as u64, uaddr));
    }
    let s = mm.space.read();
    let shared = s.find(uaddr).is_some_and(|v| v.backing == crate::mm::addrspace::Backing::SharedAnon);
    if !shared {
        return Ok(Key::Private(Arc::as_ptr(&mm) as u64, uaddr));
    }
    if s.frame_at(uaddr).is_none() {
        s.fault(uaddr, Access::Read).map_err(|_| Errno::EFAULT)?;
    }
    let pa = s.frame_at(uaddr).ok_or(Errno::EFAULT)?;
    Ok(Key::Shared(pa + uaddr % PAGE_SIZE))
}

fn read_u32(uaddr: u64) -> Result<u32, Errno> {
    read_user::<u32>(uaddr)
}

/// FUTEX_WAIT(_BITSET): sleeps while `*uaddr == val`.
pub fn wait(uaddr: u64, val: u32, private: bool, bitset: u32, deadline: Option<u64>) -> Result<u64, Errno> {
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    let me = current_arc();
    let key = key_of(&me.process, uaddr, private)?;
    // Fault the word in before taking the bucket lock.
    let _ = read_u32(uaddr)?;
    let w = Arc::new(Waiter { key: SpinLock::new(key), bitset, woken: AtomicBool::new(false), task: me });
    {
        let mut b = BUCKETS[key.bucket()].lock();
        if read_u32(uaddr)? != val {
            return Err(Errno::EAGAIN);
        }
        b.push(w.clone());
    }
    let r = super::wait::wait_on(&[], || w.woken.load(Ordering::SeqCst), true, deadline);
    if w.woken.load(Ordering::SeqCst) {
        return Ok(0);
    }
    // Not woken: leave the bucket (wherever a requeue moved us).
    loop {
        let k = *w.key.lock();
        let mut b = BUCKETS[k.bucket()].lock();
        if *w.key.lock() != k {
            continue; // requeued meanwhile
        }
        b.retain(|x| !Arc::ptr_eq(x, &w));
        break;
    }
    if w.woken.load(Ordering::SeqCst) {
        return Ok(0);
    }
    match r {
        WaitResult::TimedOut => Err(Errno::ETIMEDOUT),
        WaitResult::Interrupted if deadline.is_some() => Err(Errno::EINTR),
        WaitResult::Interrupted => Err(Errno::ERESTARTSYS),
        WaitResult::Ready => Ok(0),
    }
}

/// Takes up to `n` waiters on `key` whose bitset matches out of its bucket
/// (the caller holds the bucket lock) and marks them woken; the caller wakes
/// their tasks once the lock is released.
fn take_waiters(list: &mut Vec<Arc<Waiter>>, key: Key, n: u32, bitset: u32, out: &mut Vec<Arc<Waiter>>) -> u32 {
    let mut taken = 0;
    let mut i = 0;
    while i < list.len() && taken < n {
        if *list[i].key.lock() == key && list[i].bitset & bitset != 0 {
            let w = list.remove(i);
            w.woken.store(true, Ordering::SeqCst);
            out.push(w);
            taken += 1;
        } else {
            i += 1;
        }
    }
    taken
}

fn wake_all_taken(ws: Vec<Arc<Waiter>>) {
    for w in ws {
        sched::wake(&w.task);
    }
}

fn wake_key(key: Key, n: u32, bitset: u32) -> u32 {
    let mut ws = Vec::new();
    let woken = take_waiters(&mut BUCKETS[key.bucket()].lock(), key, n, bitset, &mut ws);
    wake_all_taken(ws);
    woken
}

/// FUTEX_WAKE(_BITSET): wakes up to `n` waiters.
pub fn wake(uaddr: u64, n: u32, private: bool, bitset: u32) -> Result<u64, Errno> {
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    let key = key_of(&current_arc().process, uaddr, private)?;
    Ok(wake_key(key, n, bitset) as u64)
}

/// Wakes waiters on `uaddr` of process `p` (CLONE_CHILD_CLEARTID at exit).
pub fn wake_address(p: &Process, uaddr: u64, n: u32) {
    if let Ok(key) = key_of(p, uaddr, false) {
        wake_key(key, n, op::BITSET_MATCH_ANY);
    }
}

/// A locked bucket.
type BucketGuard = crate::sync::SpinGuard<'static, Vec<Arc<Waiter>>>;

/// Locks the buckets of two keys (once when they share one), in index order.
fn lock_two(k1: Key, k2: Key) -> (BucketGuard, Option<BucketGuard>) {
    let (b1, b2) = (k1.bucket(), k2.bucket());
    if b1 == b2 {
        (BUCKETS[b1].lock(), None)
    } else if b1 < b2 {
        let g1 = BUCKETS[b1].lock();
        (g1, Some(BUCKETS[b2].lock()))
    } else {
        let g2 = BUCKETS[b2].lock();
        (BUCKETS[b1].lock(), Some(g2))
    }
}

/// FUTEX_REQUEUE / FUTEX_CMP_REQUEUE.
pub fn requeue(
    uaddr: u64,
    uaddr2: u64,
    n_wake: u32,
    n_move: u32,
    cmp: Option<u32>,
    private: bool,
) -> Result<u64, Errno> {
    let p = current_arc().process.clone();
    let k1 = key_of(&p, uaddr, private)?;
    let k2 = key_of(&p, uaddr2, private)?;
    let _ = read_u32(uaddr)?;
    let mut ws = Vec::new();
    let total = {
        let (mut g1, mut g2) = lock_two(k1, k2);
        if let Some(c) = cmp {
            if read_u32(uaddr)? != c {
                return Err(Errno::EAGAIN);
            }
        }
        let woken = take_waiters(&mut g1, k1, n_wake, op::BITSET_MATCH_ANY, &mut ws);
        let mut moved = 0;
        if k1 != k2 {
            let mut i = 0;
            while i < g1.len() && moved < n_move {
                if *g1[i].key.lock() != k1 {
                    i += 1;
                    continue;
                }
                *g1[i].key.lock() = k2;
                moved += 1;
                if g2.is_some() {
                    let w = g1.remove(i);
                    if let Some(g2) = g2.as_mut() {
                        g2.push(w);
                    }
                } else {
                    i += 1;
                }
            }
        }
        woken + moved
    };
    wake_all_taken(ws);
    Ok(total as u64)
}

/// FUTEX_WAKE_OP: atomically applies an operation to `*uaddr2`, wakes
/// waiters on `uaddr`, and on `uaddr2` too if the old value passes a test.
pub fn wake_op(uaddr: u64, n: u32, uaddr2: u64, n2: u32, encoded: u32, private: bool) -> Result<u64, Errno> {
    let p = current_arc().process.clone();
    let k1 = key_of(&p, uaddr, private)?;
    let k2 = key_of(&p, uaddr2, private)?;
    let opcode = (encoded >> 28) & 7;
    let shift_arg = encoded & (8 << 28) != 0;
    let cmp = (encoded >> 24) & 15;
    let mut oparg = (encoded >> 12) & 0xfff;
    let cmparg = encoded & 0xfff;
    if shift_arg {
        if oparg > 31 {
            return Err(Errno::EINVAL);
        }
        oparg = 1 << oparg;
    }
    if opcode > 4 || cmp > 5 {
        return Err(Errno::ENOSYS);
    }
    // The word is changed through its frame, atomically with respect to
    // other vCPUs (and user code).
    let mm = p.mm.lock().clone();
    {
        let s = mm.space.read();
        s.fault(uaddr2, Access::Write).map_err(|_| Errno::EFAULT)?;
    }
    let old = {
        let s = mm.space.read();
        let pa = s.frame_at(uaddr2).ok_or(Errno::EFAULT)? + uaddr2 % PAGE_SIZE;
        // SAFETY: the frame is mapped writable in the caller's space and
        // stays allocated while the shared lock is held (unmapping needs the
        // exclusive one); the word is 4-byte aligned (checked by key_of).
        let word = unsafe { &*(phys_to_virt(pa) as *const AtomicU32) };
        match opcode {
            0 => word.swap(oparg, Ordering::SeqCst),
            1 => word.fetch_add(oparg, Ordering::SeqCst),
            2 => word.fetch_or(oparg, Ordering::SeqCst),
            3 => word.fetch_and(!oparg, Ordering::SeqCst),
            _ => word.fetch_xor(oparg, Ordering::SeqCst),
        }
    };
    // The buckets are locked after the change (a waiter that checks the word
    // under its bucket lock either sees the new value or is found here), and
    // without the address-space lock (waiters fault under bucket locks).
    let mut ws = Vec::new();
    let total = {
        let (mut g1, mut g2) = lock_two(k1, k2);
        let woken = take_waiters(&mut g1, k1, n, op::BITSET_MATCH_ANY, &mut ws);
        let (o, c) = (old as i32, cmparg as i32);
        let pass = match cmp {
            0 => o == c,
            1 => o != c,
            2 => o < c,
            3 => o <= c,
            4 => o > c,
            _ => o >= c,
        };
        let woken2 = if !pass {
            0
        } else if let Some(g2) = g2.as_mut() {
            take_waiters(g2, k2, n2, op::BITSET_MATCH_ANY, &mut ws)
        } else {
            take_waiters(&mut g1, k2, n2, op::BITSET_MATCH_ANY, &mut ws)
        };
        woken + woken2
    };
    mm.finish();
    wake_all_taken(ws);
    Ok(total as u64)
}

/// Robust-list processing at thread exit: every futex the thread still
/// holds gets FUTEX_OWNER_DIED and one waiter is woken.
pub fn exit_robust_list(t: &Task) {
    const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
    const FUTEX_WAITERS: u32 = 0x8000_0000;
    const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
    let head = t.robust_list.swap(0, Ordering::AcqRel);
    if head == 0 {
        return;
    }
    let Ok(first) = get_user_u64(head) else { return };
    let Ok(offset) = get_user_u64(head + 8) else { return };
    let pending = get_user_u64(head + 16).unwrap_or(0);
    let handle = |entry: u64| {
        let uaddr = entry.wrapping_add(offset);
        if let Ok(v) = read_u32(uaddr) {
            if v & FUTEX_TID_MASK == t.tid {
                let nv = (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
                if write_user(uaddr, &nv).is_ok() && v & FUTEX_WAITERS != 0 {
                    wake_address(&t.process, uaddr, 1);
                }
            }
        }
    };
    let mut entry = first;
    let mut limit = 2048;
    while entry != head && entry != 0 && limit > 0 {
        let next = get_user_u64(entry).unwrap_or(0);
        if entry != pending {
            handle(entry & !1);
        }
        entry = next;
        limit -= 1;
    }
    if pending != 0 {
        handle(pending & !1);
    }
}
