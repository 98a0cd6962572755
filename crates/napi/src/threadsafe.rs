//! Getting back onto the JS thread from Rust threads: [`JsThread`], and the
//! promises built on it ([`Deferred`], [`Env::spawn_promise`]).
//!
//! A [`JsThread`] wraps one Node-API threadsafe function created without a JS
//! function: [`JsThread::run`] queues a Rust closure, and Node calls it on the
//! JS thread with a fresh [`Env`] (under the same panic guard as every other
//! callback). Clones share the threadsafe function (`napi_acquire_…`); when the
//! last clone is dropped it is released and Node closes it once its queue is
//! drained. While any clone exists it keeps the event loop alive, unless
//! [`JsThread::unref`] was called.
//!
//! Teardown: when the environment goes away Node closes the threadsafe
//! function and frees it after calling our finalize callback. That callback
//! clears the shared handle under a mutex, and every use takes the same mutex,
//! so a Rust thread that outlives the environment gets an error from `run`
//! instead of touching freed memory.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::convert::ToJs;
use crate::env::{Env, Value};
use crate::error::{Error, Result};
use crate::function::{enter, guard_finalizer};
use crate::sys;

type Task = Box<dyn FnOnce(&Env) -> Result<()> + Send>;

struct Shared {
    /// Null once Node has finalized the threadsafe function.
    tsfn: Mutex<Handle>,
    /// The environment the closures run in (its address, for identity checks only).
    env: usize,
}

struct Handle(sys::napi_threadsafe_function);

// SAFETY: a threadsafe-function handle may be used from any thread (that is its purpose); the JS-thread-only
// operations (`ref`/`unref`) take an `&Env`, which exists only on the JS thread.
unsafe impl Send for Handle {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Handle> {
        // A panic while holding the lock cannot leave the handle half-written: use it anyway.
        self.tsfn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle for running closures on the JS thread of an environment, from any
/// thread. See the module documentation.
pub struct JsThread {
    shared: Arc<Shared>,
}

fn closed() -> Error {
    Error::new("the JavaScript environment is shutting down; the result cannot be delivered")
        .with_code("ERR_NAPI_TSFN_CLOSING")
}

unsafe extern "C" fn call_js(
    raw_env: sys::napi_env,
    _js_callback: sys::napi_value,
    _ctx: *mut c_void,
    data: *mut c_void,
) {
    // SAFETY: `data` is the `Box<Task>` leaked by `JsThread::run`; Node hands each one over exactly once.
    let task = unsafe { Box::from_raw(data.cast::<Task>()) };
    if raw_env.is_null() {
        // The threadsafe function is being torn down: drop the task without running it.
        guard_finalizer(move || drop(task));
        return;
    }
    let body = move |env: &Env| -> Result<sys::napi_value> {
        (*task)(env)?;
        Ok(ptr::null_mut())
    };
    // SAFETY: Node calls this on the JS thread with its env.
    unsafe { enter(raw_env, body) };
}

unsafe extern "C" fn finalize_tsfn(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    guard_finalizer(|| {
        // SAFETY: `data` is the `Arc<Shared>` reference leaked for the threadsafe function by `Env::js_thread`.
        let shared = unsafe { Arc::from_raw(data.cast::<Shared>()) };
        shared.lock().0 = ptr::null_mut();
    });
}

impl Env {
    /// Creates a [`JsThread`] for this environment.
    pub fn js_thread(&self) -> Result<JsThread> {
        let shared = Arc::new(Shared { tsfn: Mutex::new(Handle(ptr::null_mut())), env: self.raw() as usize });
        let name = self.string("quark-napi")?;
        let for_finalizer = Arc::into_raw(shared.clone());
        let mut tsfn = ptr::null_mut();
        // SAFETY: no JS function (call_js handles each item); `name` is a handle of this env; queue size 0 is
        // unbounded; one initial thread (this `JsThread`); `for_finalizer` is handed to `finalize_tsfn`, which
        // takes it back exactly once.
        let status = unsafe {
            sys::napi_create_threadsafe_function(
                self.raw(),
                ptr::null_mut(),
                ptr::null_mut(),
                name.raw(),
                0,
                1,
                for_finalizer.cast_mut().cast(),
                Some(finalize_tsfn),
                ptr::null_mut(),
                Some(call_js),
                &mut tsfn,
            )
        };
        if let Err(e) = self.check(status) {
            // SAFETY: creation failed, so the finalizer will never run; reclaim its reference.
            drop(unsafe { Arc::from_raw(for_finalizer) });
            return Err(e);
        }
        shared.lock().0 = tsfn;
        Ok(JsThread { shared })
    }
}

impl JsThread {
    /// Queues `f` to run on the JS thread. Fails only when the environment is
    /// shutting down (then `f` is dropped without running). An `Err` returned
    /// by `f` is thrown on the JS thread as an uncaught exception, like an
    /// error thrown in a timer callback.
    pub fn run(&self, f: impl FnOnce(&Env) -> Result<()> + Send + 'static) -> Result<()> {
        let handle = self.shared.lock();
        if handle.0.is_null() {
            return Err(closed());
        }
        let task: Box<Task> = Box::new(Box::new(f));
        let data = Box::into_raw(task);
        // SAFETY: the handle is live (not finalized: checked under the lock that the finalizer takes); Node
        // passes `data` to `call_js` exactly once, or returns an error and leaves it with us.
        let status = unsafe { sys::napi_call_threadsafe_function(handle.0, data.cast(), sys::napi_tsfn_nonblocking) };
        if status != sys::napi_ok {
            // SAFETY: not queued, so still ours.
            drop(unsafe { Box::from_raw(data) });
            return Err(if status == sys::napi_closing {
                closed()
            } else {
                Error::new(format!("napi_call_threadsafe_function failed with status {status}"))
            });
        }
        Ok(())
    }

    /// Stops this handle (and its clones) from keeping the event loop alive.
    pub fn unref(&self, env: &Env) -> Result<()> {
        let handle = self.shared.lock();
        if handle.0.is_null() {
            return Err(closed());
        }
        // SAFETY: called on the JS thread (`env` exists only there) with a live handle.
        env.check(unsafe { sys::napi_unref_threadsafe_function(env.raw(), handle.0) })
    }

    /// Keeps `value` (an object, function or symbol) alive until the returned
    /// [`Persistent`] is dropped, from any thread. Read it back on the JS
    /// thread, e.g. to call a JS callback from a [`JsThread::run`] closure.
    pub fn persist(&self, value: Value<'_>) -> Result<Persistent> {
        let env = value.env();
        if env.raw() as usize != self.shared.env {
            return Err(Error::new("JsThread::persist: the value belongs to another JavaScript environment"));
        }
        let mut raw = ptr::null_mut();
        // SAFETY: JS thread (`env` exists only there); `value` is a handle of it; `raw` is a local out-pointer.
        env.check(unsafe { sys::napi_create_reference(env.raw(), value.raw(), 1, &mut raw) })?;
        Ok(Persistent { raw: RawRef(raw), thread: self.clone() })
    }

    /// Undoes [`JsThread::unref`].
    pub fn ref_(&self, env: &Env) -> Result<()> {
        let handle = self.shared.lock();
        if handle.0.is_null() {
            return Err(closed());
        }
        // SAFETY: called on the JS thread (`env` exists only there) with a live handle.
        env.check(unsafe { sys::napi_ref_threadsafe_function(env.raw(), handle.0) })
    }
}

impl Clone for JsThread {
    fn clone(&self) -> Self {
        let handle = self.shared.lock();
        if !handle.0.is_null() {
            // SAFETY: live handle (checked under the lock). A failure means it is closing; `run` reports that.
            unsafe { sys::napi_acquire_threadsafe_function(handle.0) };
        }
        drop(handle);
        JsThread { shared: self.shared.clone() }
    }
}

impl Drop for JsThread {
    fn drop(&mut self) {
        let handle = self.shared.lock();
        if !handle.0.is_null() {
            // SAFETY: live handle (checked under the lock); this releases the one count this clone holds.
            unsafe { sys::napi_release_threadsafe_function(handle.0, sys::napi_tsfn_release) };
        }
    }
}

/// The settling side of a JS promise, usable from any thread.
///
/// Settle it exactly once with [`Deferred::settle`] (or `resolve`/`reject`,
/// or `settle_with` for results that need the JS thread to build). Dropping
/// it unsettled rejects the promise with `code: 'ERR_NAPI_PROMISE_DROPPED'`,
/// so a forgotten promise fails loudly instead of hanging.
pub struct Deferred {
    raw: RawDeferred,
    thread: Option<JsThread>,
}

struct RawDeferred(sys::napi_deferred);
// SAFETY: the deferred handle is only used on the JS thread (inside `JsThread::run` tasks); other threads just
// carry it.
unsafe impl Send for RawDeferred {}

impl Env {
    /// A new promise and the [`Deferred`] that settles it.
    pub fn promise(&self) -> Result<(Deferred, Value<'_>)> {
        let thread = self.js_thread()?;
        let mut deferred = ptr::null_mut();
        let mut promise = ptr::null_mut();
        // SAFETY: live env; both out-pointers are locals.
        self.check(unsafe { sys::napi_create_promise(self.raw(), &mut deferred, &mut promise) })?;
        // SAFETY: `promise` was just created in this env.
        let promise = unsafe { self.value_from_raw(promise) };
        Ok((Deferred { raw: RawDeferred(deferred), thread: Some(thread) }, promise))
    }

    /// Runs `work` on a new Rust thread and returns a promise of its result:
    /// resolved with the `Ok` value converted to JS, rejected with the `Err`
    /// (or with `code: 'ERR_RUST_PANIC'` if `work` panics).
    pub fn spawn_promise<T, F>(&self, thread_name: &str, work: F) -> Result<Value<'_>>
    where
        T: ToJs + Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (deferred, promise) = self.promise()?;
        let slot = Arc::new(Mutex::new(Some(deferred)));
        let in_thread = slot.clone();
        let spawned = std::thread::Builder::new().name(thread_name.to_owned()).spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| Err(Error::panic(&*payload)));
            if let Some(deferred) = in_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
                deferred.settle(result);
            }
        });
        if let Err(e) = spawned {
            if let Some(deferred) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                deferred.reject(Error::from_io(&e, "pthread_create", None));
            }
        }
        Ok(promise)
    }
}

impl Deferred {
    /// Settles the promise from a value built on the JS thread: `Ok` resolves,
    /// `Err` rejects (a pending JS exception rejects with that exception).
    pub fn settle_with<F>(mut self, f: F)
    where
        F: for<'e> FnOnce(&'e Env) -> Result<Value<'e>> + Send + 'static,
    {
        let raw = std::mem::replace(&mut self.raw, RawDeferred(ptr::null_mut()));
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Dropping `thread` right after queueing is fine: Node delivers queued calls before it closes a
        // released threadsafe function. If queueing fails the environment is going away and nobody can
        // observe the promise any more.
        let _ = thread.run(move |env| {
            let outcome = f(env);
            settle_now(env, raw, outcome)
        });
    }

    /// Settles with a Rust result: `Ok(v)` resolves with `v` converted to JS, `Err(e)` rejects with `e`.
    pub fn settle<T: ToJs + Send + 'static>(self, result: Result<T>) {
        self.settle_with(move |env| match result {
            Ok(v) => v.to_js(env),
            Err(e) => Err(e),
        });
    }

    pub fn resolve<T: ToJs + Send + 'static>(self, value: T) {
        self.settle(Ok(value));
    }

    pub fn reject(self, error: Error) {
        self.settle::<()>(Err(error));
    }
}

/// Resolves or rejects on the JS thread.
fn settle_now<'e>(env: &'e Env, raw: RawDeferred, outcome: Result<Value<'e>>) -> Result<()> {
    match outcome {
        Ok(value) => {
            // SAFETY: JS thread; `raw` is an unsettled deferred of this env (settling consumes it, once).
            env.check(unsafe { sys::napi_resolve_deferred(env.raw(), raw.0, value.raw()) })
        }
        Err(error) => {
            let reason = if error.is_pending() {
                match env.take_exception() {
                    Some(exception) => exception,
                    None => env.error_value(&Error::new("a JavaScript exception was lost"))?,
                }
            } else {
                env.error_value(&error)?
            };
            // SAFETY: as above.
            env.check(unsafe { sys::napi_reject_deferred(env.raw(), raw.0, reason.raw()) })
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let this = Deferred {
                raw: std::mem::replace(&mut self.raw, RawDeferred(ptr::null_mut())),
                thread: self.thread.take(),
            };
            this.reject(
                Error::new("the native operation ended without settling its promise")
                    .with_code("ERR_NAPI_PROMISE_DROPPED"),
            );
        }
    }
}

/// A JS value kept alive across callbacks and threads (a Node-API reference).
///
/// Made by [`JsThread::persist`]. It can be moved to and dropped on any thread;
/// the value itself is only reachable on the JS thread ([`Persistent::get`]),
/// and the reference is deleted there (queued through its `JsThread`).
pub struct Persistent {
    raw: RawRef,
    thread: JsThread,
}

struct RawRef(sys::napi_ref);
// SAFETY: the reference is only dereferenced or deleted on the JS thread of its environment (`get` checks the
// environment; `Drop` deletes it in a `JsThread::run` closure); other threads just carry the pointer.
unsafe impl Send for RawRef {}
// SAFETY: as above; `&Persistent` allows nothing else.
unsafe impl Sync for RawRef {}

impl Persistent {
    /// The value, as a handle of the current callback's scope.
    pub fn get<'e>(&self, env: &'e Env) -> Result<Value<'e>> {
        if env.raw() as usize != self.thread.shared.env {
            return Err(Error::new("Persistent::get: called with another JavaScript environment"));
        }
        let mut raw = ptr::null_mut();
        // SAFETY: JS thread of the reference's own environment (checked); `raw` is a local out-pointer.
        env.check(unsafe { sys::napi_get_reference_value(env.raw(), self.raw.0, &mut raw) })?;
        // SAFETY: `raw` is a handle just created in `env`'s current scope.
        Ok(unsafe { env.value_from_raw(raw) })
    }
}

impl Drop for Persistent {
    fn drop(&mut self) {
        let raw = RawRef(std::mem::replace(&mut self.raw.0, ptr::null_mut()));
        // If the environment is going away the reference goes with it.
        let _ = self.thread.run(move |env| {
            let raw = raw;
            // SAFETY: JS thread of the reference's environment (the JsThread runs closures only there); the
            // reference is deleted once, here.
            env.check(unsafe { sys::napi_delete_reference(env.raw(), raw.0) })
        });
    }
}
