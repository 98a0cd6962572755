//! Quark's own small, safe layer over Node-API.
//!
//! An addon is a `cdylib` that calls [`module!`] with an init function:
//!
//! ```ignore
//! use napi::{CallContext, Env, Result, Value};
//!
//! fn init<'e>(env: &'e Env, exports: Value<'e>) -> Result<()> {
//!     exports.set_function("add", |cx| {
//!         let a: f64 = cx.arg(0, "a")?;
//!         let b: f64 = cx.arg(1, "b")?;
//!         cx.ret(a + b)
//!     })?;
//!     exports.set("answer", 42)?;
//!     Ok(())
//! }
//! napi::module!(init);
//! ```
//!
//! What is here, by module (see the README for the design):
//! * [`env`]: [`Env`] and [`Value`]; handle lifetimes; nested handle scopes.
//! * [`convert`]: [`FromJs`]/[`ToJs`]/[`IntoValue`] between JS and Rust.
//! * [`function`]: functions from closures, [`CallContext`] with argument
//!   checking, the panic guard every callback runs in.
//! * [`class`]: classes whose instances own a Rust value ([`NativeClass`]).
//! * [`threadsafe`]: [`JsThread`] (run code on the JS thread from any thread),
//!   JS values kept across threads ([`Persistent`]), promises ([`Deferred`],
//!   [`Env::spawn_promise`]).
//! * [`buffer`]: Buffers/ArrayBuffers, external ArrayBuffers over Rust memory.
//! * [`error`]: [`Error`] → JS errors with `code`, Node-style OS errors.
//! * [`sys`]: the raw `napi_*` declarations (resolved from `node` at load time).
//!
//! `unsafe` lives in `sys` (declarations), `env`, `function`, `class`,
//! `threadsafe` and `buffer`; every block says why it is sound.

pub mod buffer;
pub mod class;
pub mod convert;
pub mod env;
pub mod errno;
pub mod error;
pub mod function;
pub mod sys;
pub mod threadsafe;

pub use buffer::{ArrayBufferView, BufferView, Bytes, ExternalMemory};
pub use class::{ClassBuilder, NativeClass};
pub use convert::{BigInt64, BigUint64, FromJs, Function, IntoValue, Null, Object, ToJs, Undefined, MAX_SAFE_INTEGER};
pub use env::{Env, Value, ValueType};
pub use error::{Error, ErrorKind, Invalid, Prop, Received, Result};
pub use function::CallContext;
pub use threadsafe::{Deferred, JsThread, Persistent};

/// The Node-API version addons built with this crate require (Node ≥ 12.22 / 14.17 / 16).
pub const NAPI_VERSION: i32 = 8;

/// The signature of an addon's init function.
pub type InitFn = for<'e> fn(&'e Env, Value<'e>) -> Result<()>;

/// Exports `napi_register_module_v1` (and the API-version query) calling
/// `$init(env, exports)` when Node loads the addon. Errors and panics in
/// `$init` become the exception `require()` throws.
#[macro_export]
macro_rules! module {
    ($init:path) => {
        // Not in the addon's own unit-test binary: that executable has no `node` to resolve napi_* from.
        #[cfg(not(test))]
        #[no_mangle]
        extern "C" fn napi_register_module_v1(
            env: $crate::sys::napi_env,
            exports: $crate::sys::napi_value,
        ) -> $crate::sys::napi_value {
            // SAFETY: Node calls this symbol once per environment, on its JS thread, with that environment
            // and its `exports` object.
            unsafe { $crate::register_module(env, exports, $init) }
        }

        // In the unit-test binary, still count `$init` (and all it uses) as used.
        #[cfg(test)]
        const _: $crate::InitFn = $init;

        #[cfg(not(test))]
        #[no_mangle]
        extern "C" fn node_api_module_get_api_version_v1() -> i32 {
            $crate::NAPI_VERSION
        }
    };
}

/// The body of [`module!`]'s `napi_register_module_v1`.
///
/// # Safety
/// Must be called by Node as the module-registration callback, with its arguments.
#[doc(hidden)]
pub unsafe fn register_module(env: sys::napi_env, exports: sys::napi_value, init: InitFn) -> sys::napi_value {
    let body = move |env: &Env| -> Result<sys::napi_value> {
        // SAFETY: `exports` is the handle Node passed with this callback.
        let exports = unsafe { env.value_from_raw(exports) };
        init(env, exports)?;
        Ok(exports.raw())
    };
    // SAFETY: per this function's contract.
    unsafe { function::enter(env, body) }
}
