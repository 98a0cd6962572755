//! Spin locks. The kernel runs with interrupts disabled (they are taken in
//! user mode and at explicit wait points only), so a plain spin lock is
//! sufficient and cannot deadlock against an interrupt handler.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A test-and-test-and-set spin lock.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; T: Send suffices.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Pointer to the protected value (for code that holds the lock through
    /// a forgotten guard, like the scheduler across a context switch).
    pub fn data_ptr(&self) -> *mut T {
        self.value.get()
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        // The guard is built only once the lock is ours: a guard built
        // eagerly (`bool::then_some(SpinGuard { .. })`) is dropped on
        // failure, and its drop released the lock another vCPU held (issue
        // 4: `steal` unlocked busy run queues, a lost wake-up and heap
        // corruption under load).
        if self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            Some(SpinGuard { lock: self })
        } else {
            None
        }
    }

    /// Raw access for code that holds the lock by other means (the
    /// scheduler passes a run-queue lock across a context switch).
    ///
    /// # Safety
    /// The caller must hold the lock (e.g. through a forgotten guard).
    pub unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Takes the lock, spinning while another vCPU holds it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while self.locked.load(Ordering::Relaxed) {
                crate::arch::x86_64::cpu::pause();
                // Another vCPU may hold this lock while waiting for our TLB
                // flush: serve it so both make progress.
                crate::mm::tlb::service_pending();
            }
        }
        SpinGuard { lock: self }
    }
}

/// Holds a [`SpinLock`]; releases it when dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A value initialised once at boot and read-only afterwards.
#[derive(Default)]
pub struct Once<T> {
    value: UnsafeCell<Option<T>>,
}

// SAFETY: written once by the boot vCPU before any other vCPU reads it.
unsafe impl<T: Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Once { value: UnsafeCell::new(None) }
    }

    /// Sets the value.
    ///
    /// # Safety
    /// Call exactly once, on the boot vCPU, before any `get`.
    pub unsafe fn init(&self, v: T) {
        // SAFETY: upheld by the caller (no concurrent readers yet).
        unsafe { *self.value.get() = Some(v) };
    }

    /// The value; panics if used before boot initialised it.
    #[inline(always)]
    pub fn get(&self) -> &T {
        // SAFETY: only read after `init` (boot order); never written again.
        match unsafe { &*self.value.get() } {
            Some(v) => v,
            None => panic!("Once used before initialisation"),
        }
    }
}

/// A reader-writer spin lock with upgradable readers, used for address
/// spaces: page faults and user-memory copies take it shared, mapping
/// changes exclusively. Writers cannot starve: once a writer waits, new
/// readers back off until it is done.
///
/// State word: bit 63 writer, bit 62 upgradable reader, bit 61 writer
/// waiting, low bits reader count (the upgradable reader counts as a reader).
pub struct RwLock<T> {
    state: core::sync::atomic::AtomicU64,
    value: UnsafeCell<T>,
}

const RW_WRITER: u64 = 1 << 63;
const RW_UPGRADER: u64 = 1 << 62;
const RW_WAITING: u64 = 1 << 61;
const RW_READERS: u64 = RW_WAITING - 1;

// SAFETY: the state word serialises writers against everyone.
unsafe impl<T: Send + Sync> Sync for RwLock<T> {}
// SAFETY: as for SpinLock.
unsafe impl<T: Send> Send for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        RwLock { state: core::sync::atomic::AtomicU64::new(0), value: UnsafeCell::new(value) }
    }

    fn spin() {
        crate::arch::x86_64::cpu::pause();
        crate::mm::tlb::service_pending();
    }

    /// Shared access.
    pub fn read(&self) -> ReadGuard<'_, T> {
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & (RW_WRITER | RW_WAITING) == 0
                && self.state.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return ReadGuard { lock: self };
            }
            Self::spin();
        }
    }

    /// Shared access that may later become exclusive with [`UpgradableGuard::upgrade`].
    pub fn upgradable_read(&self) -> UpgradableGuard<'_, T> {
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & (RW_WRITER | RW_WAITING | RW_UPGRADER) == 0
                && self
                    .state
                    .compare_exchange_weak(s, (s + 1) | RW_UPGRADER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return UpgradableGuard { lock: self };
            }
            Self::spin();
        }
    }

    /// Exclusive access.
    pub fn write(&self) -> WriteGuard<'_, T> {
        self.state.fetch_or(RW_WAITING, Ordering::Relaxed);
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & (RW_WRITER | RW_UPGRADER | RW_READERS) == 0
                && self.state.compare_exchange_weak(s, RW_WRITER, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return WriteGuard { lock: self };
            }
            if s & RW_WAITING == 0 {
                // Another writer took and released the lock meanwhile.
                self.state.fetch_or(RW_WAITING, Ordering::Relaxed);
            }
            Self::spin();
        }
    }
}

/// Shared access to an [`RwLock`].
pub struct ReadGuard<'a, T> {
    lock: &'a RwLock<T>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers exclude writers.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.fetch_sub(1, Ordering::Release);
    }
}

/// Shared access that can be upgraded.
pub struct UpgradableGuard<'a, T> {
    lock: &'a RwLock<T>,
}

impl<T> Deref for UpgradableGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the upgradable reader excludes writers.
        unsafe { &*self.lock.value.get() }
    }
}

impl<'a, T> UpgradableGuard<'a, T> {
    /// Waits for the other readers to leave and becomes the writer. New
    /// readers are held off meanwhile, so the upgrade cannot starve.
    pub fn upgrade(self) -> WriteGuard<'a, T> {
        let lock = self.lock;
        core::mem::forget(self);
        lock.state.fetch_or(RW_WAITING, Ordering::Relaxed);
        loop {
            let s = lock.state.load(Ordering::Relaxed);
            // Only we remain: one reader (us) plus our upgrader bit.
            if s & RW_READERS == 1
                && lock.state.compare_exchange_weak(s, RW_WRITER, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return WriteGuard { lock };
            }
            RwLock::<T>::spin();
        }
    }
}

impl<T> Drop for UpgradableGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.fetch_sub(1 | RW_UPGRADER, Ordering::Release);
    }
}

/// Exclusive access to an [`RwLock`].
pub struct WriteGuard<'a, T> {
    lock: &'a RwLock<T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer is alone.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the writer is alone.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // Clears the writer bit; a waiting writer re-announces itself.
        self.lock.state.fetch_and(!RW_WRITER & !RW_WAITING, Ordering::Release);
    }
}
