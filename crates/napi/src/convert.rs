//! Conversions between JS values and Rust types.
//!
//! * [`FromJs`]: JS → Rust with a precise complaint ([`Invalid`]) when the
//!   value does not fit; [`crate::CallContext::arg`] turns that into Node's
//!   `ERR_INVALID_ARG_TYPE` / `ERR_OUT_OF_RANGE` / `ERR_INVALID_ARG_VALUE`
//!   error naming the argument.
//! * [`ToJs`]: owned Rust data → JS (implement it for your own structs).
//! * [`IntoValue`]: what setters and returns accept: anything `ToJs`, or a
//!   [`Value`] of the same environment.
//!
//! Numbers: JS numbers are `f64`. Integer types accept only integral numbers in
//! range; 64-bit integers are limited to ±(2^53 − 1) (`Number.MAX_SAFE_INTEGER`)
//! both ways. Use [`BigInt64`]/[`BigUint64`] for the full range.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::CString;

use crate::env::{Env, Value, ValueType};
use crate::error::{Error, Invalid, Result};

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Conversion of a JS value into a Rust value.
pub trait FromJs<'e>: Sized {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid>;
}

/// Conversion of owned Rust data into a JS value.
pub trait ToJs {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>>;
}

/// Anything that can become a [`Value`] of environment `'e`: a [`ToJs`] type
/// or an existing `Value<'e>`.
pub trait IntoValue<'e> {
    fn into_value(self, env: &'e Env) -> Result<Value<'e>>;
}

impl<'e> IntoValue<'e> for Value<'e> {
    fn into_value(self, _env: &'e Env) -> Result<Value<'e>> {
        Ok(self)
    }
}

impl<'e, T: ToJs> IntoValue<'e> for T {
    fn into_value(self, env: &'e Env) -> Result<Value<'e>> {
        self.to_js(env)
    }
}

fn expect_type(value: &Value<'_>, want: ValueType, expected: &'static str) -> Result<(), Invalid> {
    if value.value_type()? == want {
        Ok(())
    } else {
        Err(Invalid::Type(Cow::Borrowed(expected)))
    }
}

// ---- JS → Rust ------------------------------------------------------------

impl<'e> FromJs<'e> for Value<'e> {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        Ok(value)
    }
}

impl<'e> FromJs<'e> for bool {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        expect_type(&value, ValueType::Boolean, "of type boolean")?;
        Ok(value.get_bool()?)
    }
}

impl<'e> FromJs<'e> for f64 {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        expect_type(&value, ValueType::Number, "of type number")?;
        Ok(value.get_f64()?)
    }
}

/// Checks that `n` is an integer within `[min, max]`, phrased like Node.
pub(crate) fn check_integer(n: f64, min: f64, max: f64) -> Result<f64, Invalid> {
    if n.fract() != 0.0 || !n.is_finite() {
        return Err(Invalid::Range(Cow::Borrowed("an integer")));
    }
    if n < min || n > max {
        return Err(Invalid::Range(Cow::Owned(format!(
            ">= {} && <= {}",
            crate::error::js_number(min),
            crate::error::js_number(max)
        ))));
    }
    Ok(n)
}

macro_rules! integer_from_js {
    ($($t:ty => $min:expr, $max:expr;)*) => {$(
        impl<'e> FromJs<'e> for $t {
            fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
                let n = f64::from_js(value)?;
                // The range check makes the cast exact.
                Ok(check_integer(n, $min, $max)? as $t)
            }
        }
    )*};
}

integer_from_js! {
    i8 => i8::MIN as f64, i8::MAX as f64;
    u8 => 0.0, u8::MAX as f64;
    i16 => i16::MIN as f64, i16::MAX as f64;
    u16 => 0.0, u16::MAX as f64;
    i32 => i32::MIN as f64, i32::MAX as f64;
    u32 => 0.0, u32::MAX as f64;
    i64 => -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER;
    u64 => 0.0, MAX_SAFE_INTEGER;
    usize => 0.0, MAX_SAFE_INTEGER;
}

impl<'e> FromJs<'e> for String {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        expect_type(&value, ValueType::String, "of type string")?;
        Ok(value.get_string()?)
    }
}

/// A string for a C API: rejects strings containing NUL bytes, like Node's `fs`.
impl<'e> FromJs<'e> for CString {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        let s = String::from_js(value)?;
        CString::new(s).map_err(|_| Invalid::Value(Cow::Borrowed("must be a string without null bytes")))
    }
}

/// `undefined` and `null` become `None`.
impl<'e, T: FromJs<'e>> FromJs<'e> for Option<T> {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        if value.is_nullish() {
            return Ok(None);
        }
        T::from_js(value).map(Some).map_err(|invalid| match invalid {
            Invalid::Type(t) => Invalid::Type(Cow::Owned(format!("{t}, null or undefined"))),
            other => other,
        })
    }
}

impl<'e, T: FromJs<'e>> FromJs<'e> for Vec<T> {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        if !value.is_array()? {
            return Err(Invalid::Type(Cow::Borrowed("an instance of Array")));
        }
        let len = value.array_len()?;
        let mut out = Vec::with_capacity(len as usize);
        for i in 0..len {
            let item = value.get_index(i)?;
            out.push(T::from_js(item).map_err(|invalid| match invalid {
                Invalid::Type(t) => Invalid::Type(Cow::Owned(format!("an array whose every element is {t}"))),
                other => other,
            })?);
        }
        Ok(out)
    }
}

/// A JS object (anything but a primitive; functions included).
#[derive(Clone, Copy, Debug)]
pub struct Object<'e>(pub Value<'e>);

impl<'e> FromJs<'e> for Object<'e> {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        match value.value_type()? {
            ValueType::Object | ValueType::Function => Ok(Object(value)),
            _ => Err(Invalid::Type(Cow::Borrowed("of type object"))),
        }
    }
}

impl<'e> std::ops::Deref for Object<'e> {
    type Target = Value<'e>;
    fn deref(&self) -> &Value<'e> {
        &self.0
    }
}

/// A JS function.
#[derive(Clone, Copy, Debug)]
pub struct Function<'e>(pub Value<'e>);

impl<'e> FromJs<'e> for Function<'e> {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        expect_type(&value, ValueType::Function, "of type function")?;
        Ok(Function(value))
    }
}

impl<'e> std::ops::Deref for Function<'e> {
    type Target = Value<'e>;
    fn deref(&self) -> &Value<'e> {
        &self.0
    }
}

/// A JS `bigint` in the `i64` range (both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BigInt64(pub i64);

/// A JS `bigint` in the `u64` range (both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BigUint64(pub u64);

impl<'e> FromJs<'e> for BigInt64 {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        expect_type(&value, ValueType::BigInt, "of type bigint")?;
        match value.get_bigint_i64()? {
            (n, true) => Ok(BigInt64(n)),
            _ => Err(Invalid::Range(Cow::Borrowed(">= -(2n ** 63n) && < 2n ** 63n"))),
        }
    }
}

impl<'e> FromJs<'e> for BigUint64 {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        expect_type(&value, ValueType::BigInt, "of type bigint")?;
        match value.get_bigint_u64()? {
            (n, true) => Ok(BigUint64(n)),
            _ => Err(Invalid::Range(Cow::Borrowed(">= 0n && < 2n ** 64n"))),
        }
    }
}

// ---- Rust → JS ------------------------------------------------------------

/// JS `undefined`; also what `()` converts to.
#[derive(Clone, Copy, Debug)]
pub struct Undefined;

/// JS `null`.
#[derive(Clone, Copy, Debug)]
pub struct Null;

impl ToJs for Undefined {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.undefined()
    }
}

impl ToJs for () {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.undefined()
    }
}

impl ToJs for Null {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.null()
    }
}

impl ToJs for bool {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.boolean(self)
    }
}

impl ToJs for f64 {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.number(self)
    }
}

impl ToJs for f32 {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.number(self.into())
    }
}

macro_rules! small_int_to_js {
    ($($t:ty),*) => {$(
        impl ToJs for $t {
            fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
                env.number(f64::from(self))
            }
        }
    )*};
}
small_int_to_js!(i8, u8, i16, u16, i32, u32);

/// Converts a 64-bit integer to an exact JS number, or explains why it cannot.
pub(crate) fn exact_number(n: i128) -> Result<f64> {
    if n.unsigned_abs() < (1u128 << 53) {
        Ok(n as f64)
    } else {
        Err(Error::range_error(format!(
            "{n} does not fit a JavaScript number exactly (|n| > 2^53 - 1); return a BigInt instead"
        ))
        .with_code("ERR_OUT_OF_RANGE"))
    }
}

macro_rules! big_int_to_js {
    ($($t:ty),*) => {$(
        impl ToJs for $t {
            fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
                env.number(exact_number(self as i128)?)
            }
        }
    )*};
}
big_int_to_js!(i64, u64, isize, usize);

impl ToJs for BigInt64 {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.bigint_i64(self.0)
    }
}

impl ToJs for BigUint64 {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.bigint_u64(self.0)
    }
}

impl ToJs for &str {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.string(self)
    }
}

impl ToJs for String {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.string(&self)
    }
}

impl ToJs for &String {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.string(self)
    }
}

/// `None` becomes `null`.
impl<T: ToJs> ToJs for Option<T> {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        match self {
            Some(v) => v.to_js(env),
            None => env.null(),
        }
    }
}

impl<T: ToJs> ToJs for Vec<T> {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.array_from(self)
    }
}

/// A map becomes a plain object.
impl<K: AsRef<str>, V: ToJs> ToJs for BTreeMap<K, V> {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        let object = env.object()?;
        for (k, v) in self {
            object.set(k.as_ref(), v)?;
        }
        Ok(object)
    }
}

/// An error becomes its JS error object (as a value, not thrown).
impl ToJs for Error {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        env.error_value(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(r: Result<f64, Invalid>) -> String {
        match r {
            Err(Invalid::Range(c)) => c.into_owned(),
            other => panic!("expected a range complaint, got {other:?}"),
        }
    }

    #[test]
    fn integer_checks() {
        assert_eq!(check_integer(5.0, 0.0, 10.0).unwrap(), 5.0);
        assert_eq!(range(check_integer(1.5, 0.0, 10.0)), "an integer");
        assert_eq!(range(check_integer(f64::NAN, 0.0, 10.0)), "an integer");
        assert_eq!(range(check_integer(f64::INFINITY, 0.0, 10.0)), "an integer");
        assert_eq!(range(check_integer(-1.0, 0.0, 4294967295.0)), ">= 0 && <= 4294967295");
        assert_eq!(
            range(check_integer(1e300, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)),
            ">= -9007199254740991 && <= 9007199254740991"
        );
    }

    #[test]
    fn exact_numbers() {
        assert_eq!(exact_number(1 << 53).ok(), None);
        assert_eq!(exact_number((1 << 53) - 1).unwrap(), MAX_SAFE_INTEGER);
        assert_eq!(exact_number(-((1 << 53) - 1)).unwrap(), -MAX_SAFE_INTEGER);
        let e = exact_number(u64::MAX as i128).unwrap_err();
        assert_eq!(e.code(), Some("ERR_OUT_OF_RANGE"));
        assert!(e.message().contains("BigInt"), "{}", e.message());
    }
}
