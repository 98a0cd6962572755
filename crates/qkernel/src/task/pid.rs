//! Thread and process ids, the task table, and the sandbox's task limit
//! (`--pids-limit`): creating a task beyond it fails with EAGAIN.

use super::{Process, Task};
use crate::sync::SpinLock;
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use qlib::linux::Errno;

/// Largest id (Linux's default pid_max).
pub const PID_MAX: u32 = 32768;

struct Table {
    next: u32,
    tasks: BTreeMap<u32, Weak<Task>>,
    processes: BTreeMap<u32, Weak<Process>>,
}

static TABLE: SpinLock<Table> = SpinLock::new(Table { next: 1, tasks: BTreeMap::new(), processes: BTreeMap::new() });
/// Live tasks (threads), checked against the limit.
static LIVE: AtomicU32 = AtomicU32::new(0);

/// Reserves an id for a new task; EAGAIN at the sandbox's task limit.
pub fn alloc() -> Result<u32, Errno> {
    let limit = crate::boot::params().pids_limit;
    if LIVE.fetch_add(1, Ordering::SeqCst) >= limit {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        return Err(Errno::EAGAIN);
    }
    let mut t = TABLE.lock();
    for _ in 0..PID_MAX {
        let id = t.next;
        t.next = if id >= PID_MAX - 1 { 300 } else { id + 1 };
        // An id stays taken while a task or a (zombie) process uses it.
        if !t.tasks.contains_key(&id) && !t.processes.contains_key(&id) {
            t.tasks.insert(id, Weak::new());
            return Ok(id);
        }
    }
    LIVE.fetch_sub(1, Ordering::SeqCst);
    Err(Errno::EAGAIN)
}

/// Records the task for an id from [`alloc`].
pub fn register_task(t: &Arc<Task>) {
    TABLE.lock().tasks.insert(t.tid, Arc::downgrade(t));
}

/// Records a process (its pid is its leader's tid).
pub fn register_process(p: &Arc<Process>) {
    TABLE.lock().processes.insert(p.pid, Arc::downgrade(p));
}

/// A task is gone: its id is free unless its process still holds it.
pub fn release_task(tid: u32) {
    TABLE.lock().tasks.remove(&tid);
    LIVE.fetch_sub(1, Ordering::SeqCst);
}

/// A process was reaped: its id is free.
pub fn release_process(pid: u32) {
    TABLE.lock().processes.remove(&pid);
}

/// The task with id `tid`.
pub fn task(tid: u32) -> Option<Arc<Task>> {
    TABLE.lock().tasks.get(&tid)?.upgrade()
}

/// The process with id `pid`.
pub fn process(pid: u32) -> Option<Arc<Process>> {
    TABLE.lock().processes.get(&pid)?.upgrade()
}

/// Every live process (for kill(-1), process groups, /proc).
pub fn processes() -> Vec<Arc<Process>> {
    TABLE.lock().processes.values().filter_map(|w| w.upgrade()).collect()
}

/// Every live task.
pub fn tasks() -> Vec<Arc<Task>> {
    TABLE.lock().tasks.values().filter_map(|w| w.upgrade()).collect()
}

/// Number of live tasks.
pub fn live() -> u32 {
    LIVE.load(Ordering::Relaxed)
}
