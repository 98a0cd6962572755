//! Buffers and ArrayBuffers, including external ones over memory Rust owns.
//!
//! * Copies: [`Env::buffer_copy`], [`Env::arraybuffer_copy`], and [`Bytes`]
//!   (a `Vec<u8>` that converts to and from a `Buffer`).
//! * Views without copying: [`BufferView`] (a `Buffer`/`Uint8Array`
//!   argument) and [`ArrayBufferView`] (an `ArrayBuffer` argument).
//! * External memory: [`Env::external_arraybuffer`] makes an `ArrayBuffer`
//!   whose bytes are memory a Rust value owns (a `Vec`, an mmap'd or memfd
//!   region behind an `Arc`, ...). JS reads and writes that memory directly;
//!   the owner is dropped by a finalizer after the `ArrayBuffer` is collected.
//!   Other Rust threads may keep writing to the region (through their own
//!   `Arc` clone, with atomics or volatile writes) and JS sees the bytes.

use std::borrow::Cow;
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use crate::convert::{FromJs, ToJs};
use crate::env::{Env, Value};
use crate::error::{Invalid, Result};
use crate::function::guard_finalizer;
use crate::sys;

/// Memory that can back an external `ArrayBuffer`.
///
/// # Safety
/// `as_ptr()` and `len()` must return the same values for as long as the value
/// lives, and describe memory valid for reads and writes of `len()` bytes for
/// that whole time (JS may write any byte at any time until the value is
/// dropped). A non-zero `len()` needs a non-null pointer.
pub unsafe trait ExternalMemory: 'static {
    fn as_ptr(&self) -> *mut u8;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: a `Vec` owned by the finalizer box is never resized, so its heap pointer and length are fixed.
unsafe impl ExternalMemory for Vec<u8> {
    fn as_ptr(&self) -> *mut u8 {
        <[u8]>::as_ptr(self).cast_mut()
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

// SAFETY: a boxed slice never moves or resizes.
unsafe impl ExternalMemory for Box<[u8]> {
    fn as_ptr(&self) -> *mut u8 {
        <[u8]>::as_ptr(self).cast_mut()
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

// SAFETY: forwards to the shared value, which the `Arc` keeps alive (and whose own contract holds).
unsafe impl<M: ExternalMemory + Send + Sync> ExternalMemory for Arc<M> {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

impl Env {
    /// A new `Buffer` holding a copy of `bytes`.
    pub fn buffer_copy(&self, bytes: &[u8]) -> Result<Value<'_>> {
        let mut data = ptr::null_mut();
        let mut raw = ptr::null_mut();
        // SAFETY: `bytes` is readable for `bytes.len()` bytes (Node copies them); out-pointers are locals.
        let status = unsafe {
            sys::napi_create_buffer_copy(self.raw(), bytes.len(), bytes.as_ptr().cast(), &mut data, &mut raw)
        };
        self.check(status)?;
        // SAFETY: `raw` was just created in this env.
        Ok(unsafe { self.value_from_raw(raw) })
    }

    /// A new `ArrayBuffer` holding a copy of `bytes`.
    pub fn arraybuffer_copy(&self, bytes: &[u8]) -> Result<Value<'_>> {
        let mut data: *mut c_void = ptr::null_mut();
        let mut raw = ptr::null_mut();
        // SAFETY: live env; out-pointers are locals.
        self.check(unsafe { sys::napi_create_arraybuffer(self.raw(), bytes.len(), &mut data, &mut raw) })?;
        if !bytes.is_empty() {
            // SAFETY: V8 allocated `bytes.len()` writable bytes at `data` for the new buffer, which nothing else
            // references yet; the regions cannot overlap.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), bytes.len()) };
        }
        // SAFETY: `raw` was just created in this env.
        Ok(unsafe { self.value_from_raw(raw) })
    }

    /// An `ArrayBuffer` over `memory` without copying (see the module docs).
    /// `memory` is dropped on the JS thread after the buffer is collected.
    pub fn external_arraybuffer<M: ExternalMemory>(&self, memory: M) -> Result<Value<'_>> {
        if memory.is_empty() {
            return self.arraybuffer_copy(&[]);
        }
        unsafe extern "C" fn drop_owner<M>(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
            guard_finalizer(|| {
                // SAFETY: `hint` is the `Box<M>` leaked by `external_arraybuffer::<M>`; Node calls this once.
                drop(unsafe { Box::from_raw(hint.cast::<M>()) });
            });
        }
        let ptr = memory.as_ptr();
        let len = memory.len();
        let owner = Box::into_raw(Box::new(memory));
        let mut raw = ptr::null_mut();
        // SAFETY: by `ExternalMemory`'s contract `ptr`/`len` stay valid while the owner lives, and the owner is
        // freed only by `drop_owner::<M>` after V8 no longer uses the memory.
        let status = unsafe {
            sys::napi_create_external_arraybuffer(
                self.raw(),
                ptr.cast(),
                len,
                Some(drop_owner::<M>),
                owner.cast(),
                &mut raw,
            )
        };
        if let Err(e) = self.check(status) {
            // SAFETY: creation failed, Node did not take the owner.
            drop(unsafe { Box::from_raw(owner) });
            return Err(e);
        }
        // SAFETY: `raw` was just created in this env.
        Ok(unsafe { self.value_from_raw(raw) })
    }
}

/// A `Buffer` (or any `Uint8Array`) argument, read in place.
///
/// The bytes belong to JS: do not keep the slice across a call back into JS,
/// which could detach or change the buffer.
#[derive(Clone, Copy)]
pub struct BufferView<'e> {
    value: Value<'e>,
    ptr: *const u8,
    len: usize,
}

impl<'e> FromJs<'e> for BufferView<'e> {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        if !value.is_buffer()? {
            return Err(Invalid::Type(Cow::Borrowed("an instance of Buffer or Uint8Array")));
        }
        let mut data = ptr::null_mut();
        let mut len = 0usize;
        let env = value.env();
        // SAFETY: `value` is a buffer handle of the live env; out-pointers are locals.
        env.check(unsafe { sys::napi_get_buffer_info(env.raw(), value.raw(), &mut data, &mut len) })?;
        Ok(BufferView { value, ptr: data.cast_const().cast(), len })
    }
}

impl<'e> BufferView<'e> {
    pub fn value(&self) -> Value<'e> {
        self.value
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: Node reported `len` readable bytes at `ptr` for this buffer, which the handle keeps alive for
        // `'e`; see the type's docs about calling back into JS.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_slice().to_vec()
    }
}

/// An `ArrayBuffer` argument, read in place (same caveat as [`BufferView`]).
#[derive(Clone, Copy)]
pub struct ArrayBufferView<'e> {
    value: Value<'e>,
    ptr: *const u8,
    len: usize,
}

impl<'e> FromJs<'e> for ArrayBufferView<'e> {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        if !value.is_arraybuffer()? {
            return Err(Invalid::Type(Cow::Borrowed("an instance of ArrayBuffer")));
        }
        let mut data = ptr::null_mut();
        let mut len = 0usize;
        let env = value.env();
        // SAFETY: `value` is an ArrayBuffer handle of the live env; out-pointers are locals.
        env.check(unsafe { sys::napi_get_arraybuffer_info(env.raw(), value.raw(), &mut data, &mut len) })?;
        Ok(ArrayBufferView { value, ptr: data.cast_const().cast(), len })
    }
}

impl<'e> ArrayBufferView<'e> {
    pub fn value(&self) -> Value<'e> {
        self.value
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Address of the first byte (compare with the memory behind an external buffer).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
    pub fn as_slice(&self) -> &[u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: Node reported `len` readable bytes at `ptr`, kept alive by the handle for `'e`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Owned bytes that convert to a `Buffer` (copy) and from a `Buffer`/`Uint8Array` (copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl ToJs for Bytes {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.buffer_copy(&self.0)
    }
}

impl<'e> FromJs<'e> for Bytes {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        Ok(Bytes(BufferView::from_js(value)?.to_vec()))
    }
}
