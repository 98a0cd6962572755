//! [`Env`] and [`Value`]: the environment of the running callback and the JS
//! values it hands out.
//!
//! # Lifetimes
//! Node-API handles (`napi_value`) are valid until the innermost handle scope
//! closes: for a callback, until it returns. This crate creates an `Env` on the
//! stack of each callback it runs and never lets one escape (`Env` is neither
//! `Clone`, `Send` nor `Sync`), and every [`Value<'e>`] borrows the `Env` it
//! came from. So the borrow checker rejects any handle that would outlive its
//! scope, including values created in a nested [`Env::scope`].
//!
//! # Unsafe
//! The `napi!` macro below is the one place most Node-API calls are made. It
//! is only used with arguments that are handles of the same `Env` or
//! pointers to the caller's live locals (outputs). Calls with other pointer
//! arguments are written out with their own `SAFETY` comments.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr;

use crate::convert::{FromJs, IntoValue};
use crate::error::{Error, ErrorKind, Invalid, Prop, Received, Result};
use crate::sys;

/// Calls `sys::$f(env.raw, args...)` and turns its status into a `Result`.
macro_rules! napi {
    ($env:expr, $f:ident($($arg:expr),* $(,)?)) => {{
        let env: &$crate::env::Env = $env;
        // SAFETY: `env.raw` is the live environment of the callback running on
        // this thread (an `Env` exists only there, see the module docs); the
        // other arguments are handles of that environment or pointers to live
        // locals of the caller, which is the only way this macro is used.
        let status = unsafe { $crate::sys::$f(env.raw(), $($arg),*) };
        env.check(status)
    }};
}

/// The Node-API environment of the callback that is running on this thread.
///
/// Only this crate creates one, on the stack of a callback (module
/// initialisation, a function or method call, a threadsafe-function call, a
/// nested handle scope). See the module documentation for why values cannot
/// outlive it.
pub struct Env {
    raw: sys::napi_env,
    /// Not `Send`/`Sync`: an environment belongs to one JS thread.
    _not_send: PhantomData<*mut ()>,
}

impl Env {
    /// # Safety
    /// `raw` must be the environment of a Node-API callback that is running on
    /// the current thread, and the returned `Env` must be dropped before that
    /// callback (or handle scope) returns.
    pub(crate) unsafe fn from_raw(raw: sys::napi_env) -> Env {
        Env { raw, _not_send: PhantomData }
    }

    /// The raw `napi_env`, for calling a Node-API function this crate does not wrap.
    pub fn raw(&self) -> sys::napi_env {
        self.raw
    }

    /// Turns a Node-API status into a `Result`, reading the engine's message
    /// for a failure. A pending JS exception becomes [`Error::is_pending`].
    pub(crate) fn check(&self, status: sys::napi_status) -> Result<()> {
        if status == sys::napi_ok {
            return Ok(());
        }
        // Read the error info first: any other Node-API call overwrites it.
        let mut info: *const sys::napi_extended_error_info = ptr::null();
        // SAFETY: `self.raw` is live (see `from_raw`) and `info` is a local out-pointer.
        let got = unsafe { sys::napi_get_last_error_info(self.raw, &mut info) };
        let detail = if got == sys::napi_ok && !info.is_null() {
            // SAFETY: Node returned a pointer to its error-info record, valid until the next Node-API call.
            let message = unsafe { (*info).error_message };
            if message.is_null() {
                String::new()
            } else {
                // SAFETY: `error_message` is a NUL-terminated static string owned by Node.
                unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned()
            }
        } else {
            String::new()
        };
        if status == sys::napi_pending_exception || self.exception_pending() {
            return Err(Error::pending());
        }
        Err(Error::new(format!("Node-API call failed with status {status}: {detail}")).with_code("ERR_NAPI_CALL"))
    }

    fn wrap(&self, raw: sys::napi_value) -> Value<'_> {
        Value { env: self, raw }
    }

    /// Wraps a raw handle. Intended for values obtained from raw Node-API calls.
    ///
    /// # Safety
    /// `raw` must be a live handle of this environment's current scope.
    pub unsafe fn value_from_raw(&self, raw: sys::napi_value) -> Value<'_> {
        self.wrap(raw)
    }

    /// `undefined`.
    pub fn undefined(&self) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_get_undefined(&mut r))?;
        Ok(self.wrap(r))
    }

    /// `null`.
    pub fn null(&self) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_get_null(&mut r))?;
        Ok(self.wrap(r))
    }

    /// `globalThis`.
    pub fn global(&self) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_get_global(&mut r))?;
        Ok(self.wrap(r))
    }

    pub fn boolean(&self, b: bool) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_get_boolean(b, &mut r))?;
        Ok(self.wrap(r))
    }

    pub fn number(&self, n: f64) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_create_double(n, &mut r))?;
        Ok(self.wrap(r))
    }

    pub fn bigint_i64(&self, n: i64) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_create_bigint_int64(n, &mut r))?;
        Ok(self.wrap(r))
    }

    pub fn bigint_u64(&self, n: u64) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_create_bigint_uint64(n, &mut r))?;
        Ok(self.wrap(r))
    }

    pub fn string(&self, s: &str) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        // SAFETY: `s` is valid UTF-8 of exactly `s.len()` bytes (Node copies it); `r` is a local out-pointer.
        let status = unsafe { sys::napi_create_string_utf8(self.raw, s.as_ptr().cast(), s.len(), &mut r) };
        self.check(status)?;
        Ok(self.wrap(r))
    }

    /// A new empty object.
    pub fn object(&self) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_create_object(&mut r))?;
        Ok(self.wrap(r))
    }

    /// A new array of `len` holes.
    pub fn array(&self, len: usize) -> Result<Value<'_>> {
        let mut r = ptr::null_mut();
        napi!(self, napi_create_array_with_length(len, &mut r))?;
        Ok(self.wrap(r))
    }

    /// An array holding `items`.
    pub fn array_from<'e, I>(&'e self, items: I) -> Result<Value<'e>>
    where
        I: IntoIterator,
        I::Item: IntoValue<'e>,
    {
        let array = self.array(0)?;
        for (i, item) in items.into_iter().enumerate() {
            let index = u32::try_from(i).map_err(|_| Error::range_error("array too long for JavaScript"))?;
            array.set_index(index, item)?;
        }
        Ok(array)
    }

    /// Creates the JS error object for `error` (kind, message, `code`, extra properties).
    pub fn error_value(&self, error: &Error) -> Result<Value<'_>> {
        let message = self.string(error.message())?;
        let code = match error.code() {
            Some(c) => self.string(c)?.raw,
            None => ptr::null_mut(),
        };
        let mut r = ptr::null_mut();
        match error.kind() {
            ErrorKind::Error => napi!(self, napi_create_error(code, message.raw, &mut r))?,
            ErrorKind::TypeError => napi!(self, napi_create_type_error(code, message.raw, &mut r))?,
            ErrorKind::RangeError => napi!(self, napi_create_range_error(code, message.raw, &mut r))?,
        }
        let value = self.wrap(r);
        for (name, prop) in error.props() {
            match prop {
                Prop::Str(s) => value.set(name, s.as_str())?,
                Prop::Num(n) => value.set(name, *n)?,
                Prop::Bool(b) => value.set(name, *b)?,
            }
        }
        Ok(value)
    }

    /// Throws `error` as a JS exception, unless an exception is already
    /// pending (that one wins, as in JS).
    pub fn throw(&self, error: &Error) {
        if error.is_pending() || self.exception_pending() {
            return;
        }
        let thrown = self.error_value(error).and_then(|v| napi!(self, napi_throw(v.raw)));
        if thrown.is_err() && !self.exception_pending() {
            // Creating the error object failed without an exception: say so rather than return silently.
            let fallback = format!("{error} (and creating the JS error object failed)");
            let mut msg = ptr::null_mut();
            let mut err = ptr::null_mut();
            // SAFETY: `fallback` is valid UTF-8 of the given length; the out-pointers are locals.
            unsafe {
                sys::napi_create_string_utf8(self.raw, fallback.as_ptr().cast(), fallback.len(), &mut msg);
                sys::napi_create_error(self.raw, ptr::null_mut(), msg, &mut err);
                sys::napi_throw(self.raw, err);
            }
        }
    }

    /// Whether a JS exception is pending.
    pub fn exception_pending(&self) -> bool {
        let mut pending = false;
        // SAFETY: `self.raw` is live; `pending` is a local out-pointer.
        let status = unsafe { sys::napi_is_exception_pending(self.raw, &mut pending) };
        status == sys::napi_ok && pending
    }

    /// Takes the pending JS exception, if any, clearing it.
    pub fn take_exception(&self) -> Option<Value<'_>> {
        if !self.exception_pending() {
            return None;
        }
        let mut r = ptr::null_mut();
        napi!(self, napi_get_and_clear_last_exception(&mut r)).ok()?;
        Some(self.wrap(r))
    }

    /// Runs `f` in a nested handle scope: handles `f` creates are released when
    /// it returns (use this in loops that create many temporary values). The
    /// closure's result cannot hold a value of the inner scope.
    pub fn scope<R>(&self, f: impl for<'s> FnOnce(&'s Env) -> R) -> Result<R> {
        let mut scope = ptr::null_mut();
        napi!(self, napi_open_handle_scope(&mut scope))?;
        struct Close<'a>(&'a Env, sys::napi_handle_scope);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                // SAFETY: the scope was opened on this env by `scope` and is closed exactly once,
                // here, also when `f` unwinds, so scopes stay properly nested.
                unsafe { sys::napi_close_handle_scope(self.0.raw, self.1) };
            }
        }
        let _close = Close(self, scope);
        // SAFETY: same environment, same thread; the inner `Env` is dropped before the scope closes.
        let inner = unsafe { Env::from_raw(self.raw) };
        Ok(f(&inner))
    }
}

/// The type of a JS value (`typeof`, with `null` apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Undefined,
    Null,
    Boolean,
    Number,
    String,
    Symbol,
    Object,
    Function,
    External,
    BigInt,
}

/// A JS value, valid while the [`Env`] it borrows is.
#[derive(Clone, Copy)]
pub struct Value<'e> {
    env: &'e Env,
    raw: sys::napi_value,
}

impl<'e> Value<'e> {
    pub fn env(&self) -> &'e Env {
        self.env
    }

    /// The raw handle, for calling a Node-API function this crate does not wrap.
    pub fn raw(&self) -> sys::napi_value {
        self.raw
    }

    pub fn value_type(&self) -> Result<ValueType> {
        let mut t = 0;
        napi!(self.env, napi_typeof(self.raw, &mut t))?;
        Ok(match t {
            sys::napi_undefined => ValueType::Undefined,
            sys::napi_null => ValueType::Null,
            sys::napi_boolean => ValueType::Boolean,
            sys::napi_number => ValueType::Number,
            sys::napi_string => ValueType::String,
            sys::napi_symbol => ValueType::Symbol,
            sys::napi_object => ValueType::Object,
            sys::napi_function => ValueType::Function,
            sys::napi_external => ValueType::External,
            sys::napi_bigint => ValueType::BigInt,
            other => return Err(Error::new(format!("unknown napi_valuetype {other}"))),
        })
    }

    /// `undefined` or `null`.
    pub fn is_nullish(&self) -> bool {
        matches!(self.value_type(), Ok(ValueType::Undefined | ValueType::Null))
    }

    /// Converts to a Rust value; a mismatch is reported as an invalid `"value"`.
    pub fn to<T: FromJs<'e>>(self) -> Result<T> {
        self.convert_named("value", false)
    }

    pub(crate) fn convert_named<T: FromJs<'e>>(self, name: &str, property: bool) -> Result<T> {
        T::from_js(self).map_err(|invalid| match invalid {
            Invalid::Error(e) => e,
            invalid => {
                let received = self.describe();
                if property {
                    Error::invalid_property(name, invalid, &received)
                } else {
                    Error::invalid_arg(name, invalid, &received)
                }
            }
        })
    }

    /// Reads `self[key]`.
    pub fn get(&self, key: &str) -> Result<Value<'e>> {
        let k = self.env.string(key)?;
        let mut r = ptr::null_mut();
        napi!(self.env, napi_get_property(self.raw, k.raw, &mut r))?;
        Ok(self.env.wrap(r))
    }

    /// Reads and converts `self[key]`; a mismatch names the property.
    pub fn get_as<T: FromJs<'e>>(&self, key: &str) -> Result<T> {
        self.get(key)?.convert_named(key, true)
    }

    /// `key in self`.
    pub fn has(&self, key: &str) -> Result<bool> {
        let k = self.env.string(key)?;
        let mut r = false;
        napi!(self.env, napi_has_property(self.raw, k.raw, &mut r))?;
        Ok(r)
    }

    /// Sets `self[key] = value`.
    pub fn set(&self, key: &str, value: impl IntoValue<'e>) -> Result<()> {
        let k = self.env.string(key)?;
        let v = value.into_value(self.env)?;
        napi!(self.env, napi_set_property(self.raw, k.raw, v.raw))
    }

    /// Reads `self[index]`.
    pub fn get_index(&self, index: u32) -> Result<Value<'e>> {
        let mut r = ptr::null_mut();
        napi!(self.env, napi_get_element(self.raw, index, &mut r))?;
        Ok(self.env.wrap(r))
    }

    /// Sets `self[index] = value`.
    pub fn set_index(&self, index: u32, value: impl IntoValue<'e>) -> Result<()> {
        let v = value.into_value(self.env)?;
        napi!(self.env, napi_set_element(self.raw, index, v.raw))
    }

    pub fn is_array(&self) -> Result<bool> {
        let mut r = false;
        napi!(self.env, napi_is_array(self.raw, &mut r))?;
        Ok(r)
    }

    /// `length` of an array.
    pub fn array_len(&self) -> Result<u32> {
        let mut r = 0;
        napi!(self.env, napi_get_array_length(self.raw, &mut r))?;
        Ok(r)
    }

    /// The enumerable string keys of an object (`Object.keys`-like, including inherited enumerable ones).
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut r = ptr::null_mut();
        napi!(self.env, napi_get_property_names(self.raw, &mut r))?;
        self.env.wrap(r).to::<Vec<String>>()
    }

    pub fn is_error(&self) -> Result<bool> {
        let mut r = false;
        napi!(self.env, napi_is_error(self.raw, &mut r))?;
        Ok(r)
    }

    pub fn is_buffer(&self) -> Result<bool> {
        let mut r = false;
        napi!(self.env, napi_is_buffer(self.raw, &mut r))?;
        Ok(r)
    }

    pub fn is_arraybuffer(&self) -> Result<bool> {
        let mut r = false;
        napi!(self.env, napi_is_arraybuffer(self.raw, &mut r))?;
        Ok(r)
    }

    /// `self === other`.
    pub fn strict_equals(&self, other: Value<'_>) -> Result<bool> {
        let mut r = false;
        napi!(self.env, napi_strict_equals(self.raw, other.raw, &mut r))?;
        Ok(r)
    }

    /// `self instanceof constructor`.
    pub fn instance_of(&self, constructor: Value<'_>) -> Result<bool> {
        let mut r = false;
        napi!(self.env, napi_instanceof(self.raw, constructor.raw, &mut r))?;
        Ok(r)
    }

    /// Calls `self` (a function) with `this = undefined`.
    pub fn call(&self, args: &[Value<'e>]) -> Result<Value<'e>> {
        self.call_with_this(self.env.undefined()?, args)
    }

    /// Calls `self` (a function) with the given `this`. A JS exception thrown
    /// by the callee comes back as a pending error ([`Error::is_pending`]):
    /// return it to let the exception propagate, or use
    /// [`Env::take_exception`] to handle it.
    pub fn call_with_this(&self, this: Value<'e>, args: &[Value<'e>]) -> Result<Value<'e>> {
        let raw_args: Vec<sys::napi_value> = args.iter().map(|a| a.raw).collect();
        let mut r = ptr::null_mut();
        napi!(self.env, napi_call_function(this.raw, self.raw, raw_args.len(), raw_args.as_ptr(), &mut r))?;
        Ok(self.env.wrap(r))
    }

    // Primitive reads used by the conversions; Node-API checks the type itself.

    pub(crate) fn get_f64(&self) -> Result<f64> {
        let mut r = 0.0;
        napi!(self.env, napi_get_value_double(self.raw, &mut r))?;
        Ok(r)
    }

    pub(crate) fn get_bool(&self) -> Result<bool> {
        let mut r = false;
        napi!(self.env, napi_get_value_bool(self.raw, &mut r))?;
        Ok(r)
    }

    /// (value, lossless)
    pub(crate) fn get_bigint_i64(&self) -> Result<(i64, bool)> {
        let (mut r, mut lossless) = (0, false);
        napi!(self.env, napi_get_value_bigint_int64(self.raw, &mut r, &mut lossless))?;
        Ok((r, lossless))
    }

    /// (value, lossless)
    pub(crate) fn get_bigint_u64(&self) -> Result<(u64, bool)> {
        let (mut r, mut lossless) = (0, false);
        napi!(self.env, napi_get_value_bigint_uint64(self.raw, &mut r, &mut lossless))?;
        Ok((r, lossless))
    }

    pub(crate) fn get_string(&self) -> Result<String> {
        let mut len = 0usize;
        napi!(self.env, napi_get_value_string_utf8(self.raw, ptr::null_mut(), 0, &mut len))?;
        let mut buf = vec![0u8; len + 1];
        let mut written = 0usize;
        // SAFETY: `buf` is a live local of `buf.len()` bytes; Node writes at most that many, NUL included.
        let status = unsafe {
            sys::napi_get_value_string_utf8(self.env.raw, self.raw, buf.as_mut_ptr().cast(), buf.len(), &mut written)
        };
        self.env.check(status)?;
        buf.truncate(written);
        // V8 writes lone surrogates as U+FFFD, so this is valid UTF-8; stay lossless-or-replace regardless.
        Ok(String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn coerce_string(&self) -> Option<String> {
        let mut r = ptr::null_mut();
        napi!(self.env, napi_coerce_to_string(self.raw, &mut r)).ok()?;
        self.env.wrap(r).get_string().ok()
    }

    /// Describes the value for error messages (Node's "Received ..." part).
    /// Never fails: an exception raised while looking (a throwing getter) is cleared.
    pub fn describe(&self) -> Received {
        let had_exception = self.env.exception_pending();
        let received = match self.value_type() {
            Ok(ValueType::Undefined) => Received::Undefined,
            Ok(ValueType::Null) => Received::Null,
            Ok(ValueType::Boolean) => Received::Boolean(self.get_bool().unwrap_or(false)),
            Ok(ValueType::Number) => Received::Number(self.get_f64().unwrap_or(f64::NAN)),
            Ok(ValueType::String) => Received::String(self.get_string().unwrap_or_default()),
            Ok(ValueType::BigInt) => Received::BigInt(self.coerce_string().unwrap_or_default()),
            Ok(ValueType::Symbol) => Received::Symbol,
            Ok(ValueType::External) => Received::External,
            Ok(ValueType::Function) => {
                Received::Function(self.get("name").ok().and_then(|n| n.get_string().ok()).unwrap_or_default())
            }
            Ok(ValueType::Object) | Err(_) => Received::Object(
                self.get("constructor")
                    .ok()
                    .filter(|c| matches!(c.value_type(), Ok(ValueType::Function)))
                    .and_then(|c| c.get("name").ok())
                    .and_then(|n| n.get_string().ok())
                    .filter(|n| !n.is_empty()),
            ),
        };
        if !had_exception {
            let _ = self.env.take_exception();
        }
        received
    }

    /// Attaches `data` to the object; it is dropped after the object is garbage-collected.
    pub fn attach<T: 'static>(&self, data: T) -> Result<()> {
        unsafe extern "C" fn drop_box<T>(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
            crate::function::guard_finalizer(|| {
                // SAFETY: `data` came from `Box::into_raw` in `attach::<T>` and Node calls this once.
                drop(unsafe { Box::from_raw(data.cast::<T>()) });
            });
        }
        let data = Box::into_raw(Box::new(data));
        // SAFETY: `self.raw` is an object handle of the live env; Node keeps `data` and passes it to
        // `drop_box::<T>`, whose type matches the box, exactly once after the object is collected.
        let status = unsafe {
            sys::napi_add_finalizer(
                self.env.raw,
                self.raw,
                data.cast(),
                Some(drop_box::<T>),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let status = self.env.check(status);
        if status.is_err() {
            // SAFETY: Node did not take ownership, so the box is still ours.
            drop(unsafe { Box::from_raw(data) });
        }
        status
    }
}

impl std::fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({:?})", self.describe())
    }
}
