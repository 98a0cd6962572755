//! JS classes whose instances own a Rust value.
//!
//! [`Env::class`] defines a class (`napi_define_class`): its constructor runs
//! a Rust closure that returns the `T` each instance owns; the value is
//! attached with `napi_wrap` and dropped by a finalizer after the instance is
//! garbage-collected. Instances are also type-tagged
//! (`napi_type_tag_object`) with a tag unique to `T` in this addon, so a
//! method called on a foreign object (`Probe.prototype.label.call({})`), or
//! [`Value::unwrap`] on the wrong object, is a `TypeError`, never a bad cast.
//!
//! Methods get `&T`: JS may re-enter a method while another runs, so state
//! that changes needs `Cell`/`RefCell`/atomics inside `T`.
//!
//! The closures of a class live as long as its environment (they are freed
//! by an environment clean-up hook): the method functions V8 makes from a
//! class template can outlive the constructor object.

use std::any::TypeId;
use std::ffi::{c_void, CString};
use std::hash::{Hash, Hasher};
use std::ptr;

use crate::convert::FromJs;
use crate::env::{Env, Value};
use crate::error::{Error, Invalid, Result};
use crate::function::{enter, guard_finalizer, CallContext};
use crate::sys;

/// A Rust type whose values JS objects of a class own.
pub trait NativeClass: 'static {
    /// The JS class name.
    const NAME: &'static str;
}

type Ctor<T> = dyn for<'c> Fn(&CallContext<'c>) -> Result<T>;
type Method<T> = dyn for<'c> Fn(&CallContext<'c>, &'c T) -> Result<Value<'c>>;
type Static = dyn for<'c> Fn(&CallContext<'c>) -> Result<Value<'c>>;

enum Member<T> {
    Method(Box<Method<T>>),
    Static(Box<Static>),
}

struct Entry<T> {
    /// `"Probe.prototype.label"`, for error messages.
    what: String,
    member: Member<T>,
}

struct ClassData<T> {
    ctor: Box<Ctor<T>>,
    /// Never modified after the descriptors (which point into it) are made.
    entries: Vec<Entry<T>>,
}

enum Kind {
    Method,
    Getter,
    Static,
}

/// Builder returned by [`Env::class`].
pub struct ClassBuilder<'e, T: NativeClass> {
    env: &'e Env,
    ctor: Box<Ctor<T>>,
    members: Vec<(String, Kind, Member<T>)>,
}

impl Env {
    /// Starts defining class `T::NAME` whose constructor runs `ctor`:
    ///
    /// ```ignore
    /// let class = env
    ///     .class::<Probe>(|cx| Ok(Probe { label: cx.arg(0, "label")? }))
    ///     .method("label", |cx, this| cx.ret(this.label.as_str()))
    ///     .build()?;
    /// exports.set("Probe", class)?;
    /// ```
    pub fn class<T: NativeClass>(
        &self,
        ctor: impl for<'c> Fn(&CallContext<'c>) -> Result<T> + 'static,
    ) -> ClassBuilder<'_, T> {
        ClassBuilder { env: self, ctor: Box::new(ctor), members: Vec::new() }
    }
}

impl<'e, T: NativeClass> ClassBuilder<'e, T> {
    /// A prototype method; `this` is the instance's `T`.
    pub fn method(
        mut self,
        name: &str,
        f: impl for<'c> Fn(&CallContext<'c>, &'c T) -> Result<Value<'c>> + 'static,
    ) -> Self {
        self.members.push((name.to_owned(), Kind::Method, Member::Method(Box::new(f))));
        self
    }

    /// A read-only accessor property on the prototype.
    pub fn getter(
        mut self,
        name: &str,
        f: impl for<'c> Fn(&CallContext<'c>, &'c T) -> Result<Value<'c>> + 'static,
    ) -> Self {
        self.members.push((name.to_owned(), Kind::Getter, Member::Method(Box::new(f))));
        self
    }

    /// A static method on the class itself.
    pub fn static_method(
        mut self,
        name: &str,
        f: impl for<'c> Fn(&CallContext<'c>) -> Result<Value<'c>> + 'static,
    ) -> Self {
        self.members.push((name.to_owned(), Kind::Static, Member::Static(Box::new(f))));
        self
    }

    /// Defines the class and returns its constructor.
    pub fn build(self) -> Result<Value<'e>> {
        let env = self.env;
        let mut data = Box::new(ClassData { ctor: self.ctor, entries: Vec::new() });
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        for (name, kind, member) in self.members {
            let what = match kind {
                Kind::Static => format!("{}.{name}", T::NAME),
                _ => format!("{}.prototype.{name}", T::NAME),
            };
            names.push(
                CString::new(name)
                    .map_err(|_| Error::type_error(format!("class member name of {what} contains a NUL byte")))?,
            );
            kinds.push(kind);
            data.entries.push(Entry { what, member });
        }
        let descriptors: Vec<sys::napi_property_descriptor> = names
            .iter()
            .zip(&kinds)
            .zip(&data.entries)
            .map(|((name, kind), entry)| {
                let callback: sys::napi_callback = Some(call_member::<T>);
                let (method, getter, attributes) = match kind {
                    Kind::Method => (callback, None, sys::napi_default_method),
                    Kind::Getter => (None, callback, sys::napi_configurable),
                    Kind::Static => (callback, None, sys::napi_default_method | sys::napi_static),
                };
                sys::napi_property_descriptor {
                    utf8name: name.as_ptr(),
                    name: ptr::null_mut(),
                    method,
                    getter,
                    setter: None,
                    value: ptr::null_mut(),
                    attributes,
                    data: (entry as *const Entry<T>).cast_mut().cast(),
                }
            })
            .collect();
        let data = Box::into_raw(data);
        let mut raw = ptr::null_mut();
        // SAFETY: the name is UTF-8 of the given length; the descriptors point to NUL-terminated names alive
        // for this call (V8 copies them) and to entries owned by `data`, which lives until the environment's
        // clean-up hook registered below; the callbacks match `napi_callback`.
        let status = unsafe {
            sys::napi_define_class(
                env.raw(),
                T::NAME.as_ptr().cast(),
                T::NAME.len(),
                Some(construct::<T>),
                data.cast(),
                descriptors.len(),
                descriptors.as_ptr(),
                &mut raw,
            )
        };
        if let Err(e) = env.check(status) {
            // SAFETY: Node kept no pointer into `data` after a failed definition.
            drop(unsafe { Box::from_raw(data) });
            return Err(e);
        }
        unsafe extern "C" fn free_class<T: NativeClass>(arg: *mut c_void) {
            guard_finalizer(|| {
                // SAFETY: `arg` is the `ClassData<T>` box of `build`; the environment is being torn down, so
                // no JS (hence no method) runs any more.
                drop(unsafe { Box::from_raw(arg.cast::<ClassData<T>>()) });
            });
        }
        // SAFETY: `free_class::<T>` matches the hook type and frees exactly the `ClassData<T>` passed with it.
        let status = unsafe { sys::napi_add_env_cleanup_hook(env.raw(), Some(free_class::<T>), data.cast()) };
        // Without the hook the data is leaked rather than freed early, which is safe.
        let _ = env.check(status);
        // SAFETY: `raw` is the constructor just defined in this env.
        Ok(unsafe { env.value_from_raw(raw) })
    }
}

/// The type tag of `T`'s instances: derived from `T`'s `TypeId` and the address
/// of a static of this copy of the crate, so two addons never share a tag.
pub(crate) fn type_tag<T: 'static>() -> sys::napi_type_tag {
    static ANCHOR: u8 = 0;
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (TypeId::of::<T>(), std::ptr::addr_of!(ANCHOR) as usize, salt).hash(&mut h);
        h.finish()
    };
    sys::napi_type_tag { lower: half(0x71_75_61_72_6b), upper: half(0x6e_61_70_69) }
}

unsafe extern "C" fn construct<T: NativeClass>(
    raw_env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let body = |env: &Env| -> Result<sys::napi_value> {
        // SAFETY: `info` is the info Node passed to this callback.
        let cx = unsafe { CallContext::read(env, info) }?;
        if cx.new_target.is_null() {
            return Err(Error::type_error(format!("Class constructor {} cannot be invoked without 'new'", T::NAME))
                .with_code("ERR_CONSTRUCT_CALL_REQUIRED"));
        }
        // SAFETY: the class data pointer is the `ClassData<T>` of `build`, alive until environment teardown.
        let data = unsafe { &*cx.data.cast::<ClassData<T>>() };
        let value = (data.ctor)(&cx)?;
        let this = cx.this();
        let native = Box::into_raw(Box::new(value));
        unsafe extern "C" fn finalize<T>(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
            guard_finalizer(|| {
                // SAFETY: `data` is the box wrapped by `construct::<T>`; Node calls this once, after collection.
                drop(unsafe { Box::from_raw(data.cast::<T>()) });
            });
        }
        // SAFETY: `this` is the new instance; `finalize::<T>` frees exactly the `Box<T>` passed with it.
        let status = unsafe {
            sys::napi_wrap(env.raw(), this.raw(), native.cast(), Some(finalize::<T>), ptr::null_mut(), ptr::null_mut())
        };
        if let Err(e) = env.check(status) {
            // SAFETY: the wrap failed, so Node does not own the box.
            drop(unsafe { Box::from_raw(native) });
            return Err(e);
        }
        let tag = type_tag::<T>();
        // SAFETY: `tag` is a local; `this` is a handle of this env.
        let status = unsafe { sys::napi_type_tag_object(env.raw(), this.raw(), &tag) };
        env.check(status)?;
        Ok(this.raw())
    };
    // SAFETY: Node calls this with the env of the running callback.
    unsafe { enter(raw_env, body) }
}

unsafe extern "C" fn call_member<T: NativeClass>(
    raw_env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let body = |env: &Env| -> Result<sys::napi_value> {
        // SAFETY: `info` is the info Node passed to this callback.
        let cx = unsafe { CallContext::read(env, info) }?;
        // SAFETY: the descriptor's data is an `Entry<T>` owned by the class data, alive until teardown.
        let entry = unsafe { &*cx.data.cast::<Entry<T>>() };
        match &entry.member {
            Member::Method(f) => {
                let this = cx.this().unwrap::<T>().map_err(|_| {
                    Error::type_error(format!(
                        "Value of \"this\" must be of type {}: {} was called on another object",
                        T::NAME,
                        entry.what
                    ))
                    .with_code("ERR_INVALID_THIS")
                })?;
                Ok(f(&cx, this)?.raw())
            }
            Member::Static(f) => Ok(f(&cx)?.raw()),
        }
    };
    // SAFETY: Node calls this with the env of the running callback.
    unsafe { enter(raw_env, body) }
}

impl<'e> Value<'e> {
    /// The `T` owned by this instance of class `T::NAME`; a `TypeError` for any
    /// other value.
    pub fn unwrap<T: NativeClass>(&self) -> Result<&'e T> {
        let not_instance = || Error::type_error(format!("expected an instance of {}", T::NAME));
        if !matches!(self.value_type()?, crate::ValueType::Object) {
            return Err(not_instance());
        }
        let tag = type_tag::<T>();
        let mut tagged = false;
        // SAFETY: handles of the live env; `tag` and `tagged` are locals.
        let status = unsafe { sys::napi_check_object_type_tag(self.env().raw(), self.raw(), &tag, &mut tagged) };
        self.env().check(status)?;
        if !tagged {
            return Err(not_instance());
        }
        let mut native = ptr::null_mut();
        // SAFETY: handles of the live env; `native` is a local out-pointer.
        let status = unsafe { sys::napi_unwrap(self.env().raw(), self.raw(), &mut native) };
        self.env().check(status)?;
        // SAFETY: the tag proves `construct::<T>` wrapped a `Box<T>` here (tags are unique per type and set
        // only after a successful wrap); the instance is alive while this handle is (lifetime `'e`), and the
        // box is freed only by the finalizer after collection.
        Ok(unsafe { &*native.cast::<T>() })
    }
}

/// An instance of class `T` as an argument: `cx.arg::<&Probe>(0, "probe")`.
impl<'e, T: NativeClass> FromJs<'e> for &'e T {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        value.unwrap::<T>().map_err(|_| Invalid::Type(format!("an instance of {}", T::NAME).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;

    #[test]
    fn type_tags_are_per_type_and_stable() {
        assert_eq!(type_tag::<A>(), type_tag::<A>());
        assert_ne!(type_tag::<A>(), type_tag::<B>());
        assert_ne!(type_tag::<A>().lower, type_tag::<A>().upper);
    }
}
