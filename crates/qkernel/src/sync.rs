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

    /// Takes the lock, spinning while another vCPU holds it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while self.locked.load(Ordering::Relaxed) {
                crate::arch::x86_64::cpu::pause();
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
