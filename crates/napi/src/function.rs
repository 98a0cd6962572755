//! JS functions backed by Rust closures, and the guard every callback runs in.
//!
//! Every entry from Node into Rust (functions, class constructors and
//! methods, module initialisation, threadsafe-function calls) goes through
//! [`enter`]: it builds the callback's [`Env`], runs the Rust code under
//! `catch_unwind`, and turns an `Err` or a panic into a thrown JS exception,
//! so a Rust panic never unwinds into Node (which would abort the process).
//! Finalizers cannot throw; a panic there is reported on stderr and dropped
//! ([`guard_finalizer`]).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use crate::convert::{FromJs, IntoValue};
use crate::env::{Env, Value};
use crate::error::{Error, Result};
use crate::sys;

/// Runs Rust code for a callback entered from Node. See the module docs.
///
/// # Safety
/// `raw_env` must be the environment Node passed to the callback that is
/// running on this thread.
pub(crate) unsafe fn enter<F>(raw_env: sys::napi_env, f: F) -> sys::napi_value
where
    F: FnOnce(&Env) -> Result<sys::napi_value>,
{
    // SAFETY: per this function's contract; `env` lives on this stack frame only.
    let env = unsafe { Env::from_raw(raw_env) };
    match catch_unwind(AssertUnwindSafe(|| f(&env))) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            env.throw(&error);
            ptr::null_mut()
        }
        Err(payload) => {
            env.throw(&Error::panic(&*payload));
            ptr::null_mut()
        }
    }
}

/// Runs a finalizer body; a panic is reported on stderr (finalizers cannot throw).
pub(crate) fn guard_finalizer(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        eprintln!("napi: a finalizer panicked; continuing: {}", Error::panic(&*payload));
    }
}

/// Arguments and receiver of a JS call into Rust.
pub struct CallContext<'e> {
    env: &'e Env,
    this: sys::napi_value,
    args: Vec<sys::napi_value>,
    pub(crate) new_target: sys::napi_value,
    pub(crate) data: *mut c_void,
}

/// Arguments read without a second `napi_get_cb_info` call; more are fetched on demand.
const INLINE_ARGS: usize = 8;

impl<'e> CallContext<'e> {
    /// Reads the call's arguments, receiver, `new.target` and data pointer.
    ///
    /// # Safety
    /// `info` must be the callback info Node passed to the callback `env` belongs to.
    pub(crate) unsafe fn read(env: &'e Env, info: sys::napi_callback_info) -> Result<Self> {
        let mut argc = INLINE_ARGS;
        let mut args = vec![ptr::null_mut(); INLINE_ARGS];
        let mut this = ptr::null_mut();
        let mut data = ptr::null_mut();
        // SAFETY: `info` is this callback's (contract); `args` has room for `argc` handles; the rest are locals.
        let status =
            unsafe { sys::napi_get_cb_info(env.raw(), info, &mut argc, args.as_mut_ptr(), &mut this, &mut data) };
        env.check(status)?;
        if argc > INLINE_ARGS {
            args = vec![ptr::null_mut(); argc];
            // SAFETY: as above, with room for all `argc` arguments.
            let status = unsafe {
                sys::napi_get_cb_info(env.raw(), info, &mut argc, args.as_mut_ptr(), ptr::null_mut(), ptr::null_mut())
            };
            env.check(status)?;
        }
        args.truncate(argc);
        let mut new_target = ptr::null_mut();
        // SAFETY: as above; `new_target` is a local out-pointer (left null for a plain call).
        let status = unsafe { sys::napi_get_new_target(env.raw(), info, &mut new_target) };
        env.check(status)?;
        Ok(CallContext { env, this, args, new_target, data })
    }

    pub fn env(&self) -> &'e Env {
        self.env
    }

    /// Number of arguments passed.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The receiver (`this`).
    pub fn this(&self) -> Value<'e> {
        // SAFETY: a handle Node gave this callback, live for its duration.
        unsafe { self.env.value_from_raw(self.this) }
    }

    /// Argument `index` as a JS value (`undefined` when not passed).
    pub fn arg_value(&self, index: usize) -> Result<Value<'e>> {
        match self.args.get(index) {
            // SAFETY: a handle Node gave this callback, live for its duration.
            Some(&raw) => Ok(unsafe { self.env.value_from_raw(raw) }),
            None => self.env.undefined(),
        }
    }

    /// Argument `index` converted to `T`; on mismatch a `TypeError`/`RangeError`
    /// naming the argument (`The "path" argument must be of type string.
    /// Received type number (5)`). A missing argument is `undefined`, so use
    /// `Option<T>` for optional ones.
    pub fn arg<T: FromJs<'e>>(&self, index: usize, name: &str) -> Result<T> {
        self.arg_value(index)?.convert_named(name, false)
    }

    /// Converts `value` for returning it from the callback.
    pub fn ret(&self, value: impl IntoValue<'e>) -> Result<Value<'e>> {
        value.into_value(self.env)
    }
}

/// The Rust side of a JS function made by [`Env::function`].
type Callback = dyn for<'c> Fn(&CallContext<'c>) -> Result<Value<'c>>;

unsafe extern "C" fn call_function(raw_env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let body = |env: &Env| -> Result<sys::napi_value> {
        // SAFETY: `info` is the info Node passed to this callback.
        let cx = unsafe { CallContext::read(env, info) }?;
        // SAFETY: the data pointer is the `Box<Box<Callback>>` made by `Env::function`, freed only after the
        // function object is collected (and it is being called, so it is alive).
        let f = unsafe { &**cx.data.cast::<Box<Callback>>() };
        Ok(f(&cx)?.raw())
    };
    // SAFETY: Node calls this with the env of the running callback.
    unsafe { enter(raw_env, body) }
}

impl Env {
    /// Creates a JS function that runs `f`. Its arguments are read with
    /// [`CallContext::arg`]; its result is returned with [`CallContext::ret`].
    /// An `Err` is thrown; a panic becomes an `Error` with `code: 'ERR_RUST_PANIC'`.
    ///
    /// ```ignore
    /// let add = env.function("add", |cx| {
    ///     let a: f64 = cx.arg(0, "a")?;
    ///     let b: f64 = cx.arg(1, "b")?;
    ///     cx.ret(a + b)
    /// })?;
    /// ```
    pub fn function<F>(&self, name: &str, f: F) -> Result<Value<'_>>
    where
        F: for<'c> Fn(&CallContext<'c>) -> Result<Value<'c>> + 'static,
    {
        let boxed: Box<Box<Callback>> = Box::new(Box::new(f));
        let data = Box::into_raw(boxed);
        let mut raw = ptr::null_mut();
        // SAFETY: `name` is UTF-8 of `name.len()` bytes (copied by Node); `call_function` matches the callback
        // type; `data` stays valid until the finalizer attached below frees it.
        let status = unsafe {
            sys::napi_create_function(
                self.raw(),
                name.as_ptr().cast(),
                name.len(),
                Some(call_function),
                data.cast(),
                &mut raw,
            )
        };
        if let Err(e) = self.check(status) {
            // SAFETY: Node did not take the pointer; reclaim it.
            drop(unsafe { Box::from_raw(data) });
            return Err(e);
        }
        // SAFETY: `raw` is the function just created in this env.
        let function = unsafe { self.value_from_raw(raw) };
        // Free the closure once the function object is collected.
        function.attach(OwnedCallback(data))?;
        Ok(function)
    }
}

/// Frees a callback box when dropped (attached to its function object).
struct OwnedCallback(*mut Box<Callback>);

impl Drop for OwnedCallback {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw` in `Env::function`; the function object that used it
        // has been collected, so nothing can call it any more.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

impl<'e> Value<'e> {
    /// Defines `self[name]` as a function running `f` (see [`Env::function`]).
    pub fn set_function<F>(&self, name: &str, f: F) -> Result<()>
    where
        F: for<'c> Fn(&CallContext<'c>) -> Result<Value<'c>> + 'static,
    {
        let function = self.env().function(name, f)?;
        self.set(name, function)
    }
}
