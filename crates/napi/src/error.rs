//! Errors that become JavaScript `Error` objects.
//!
//! An [`Error`] is plain Rust data (it is `Send`, so a Rust thread can build
//! one and reject a promise with it): a kind (`Error`, `TypeError`,
//! `RangeError`), a message, an optional `code` and extra properties. It
//! becomes a JS object only when thrown or used to reject a promise.
//!
//! Constructors follow Node's own conventions so JS callers handle native
//! errors exactly like `fs` errors:
//! * [`Error::os`]: `ENOENT: no such file or directory, mknod '/x'` with
//!   `code: 'ENOENT'`, `errno: -2`, `syscall: 'mknod'`, `path: '/x'`.
//! * [`Error::invalid_arg`]: `ERR_INVALID_ARG_TYPE`, `ERR_OUT_OF_RANGE` and
//!   `ERR_INVALID_ARG_VALUE` with Node's message shapes.
//! * [`Error::panic`]: a Rust panic, `code: 'ERR_RUST_PANIC'`.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;

use crate::errno;

/// Which JS constructor the error is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Error,
    TypeError,
    RangeError,
}

/// The value of an extra property of an error object.
#[derive(Clone, Debug, PartialEq)]
pub enum Prop {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl From<&str> for Prop {
    fn from(s: &str) -> Self {
        Prop::Str(s.to_owned())
    }
}
impl From<String> for Prop {
    fn from(s: String) -> Self {
        Prop::Str(s)
    }
}
impl From<f64> for Prop {
    fn from(n: f64) -> Self {
        Prop::Num(n)
    }
}
impl From<i32> for Prop {
    fn from(n: i32) -> Self {
        Prop::Num(n.into())
    }
}
impl From<u32> for Prop {
    fn from(n: u32) -> Self {
        Prop::Num(n.into())
    }
}
impl From<bool> for Prop {
    fn from(b: bool) -> Self {
        Prop::Bool(b)
    }
}

/// An error on its way to JavaScript. See the module documentation.
#[derive(Clone, PartialEq)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone, Debug, PartialEq)]
struct Inner {
    kind: ErrorKind,
    message: String,
    code: Option<String>,
    props: Vec<(String, Prop)>,
    /// A JS exception is already pending (a Node-API call reported
    /// `napi_pending_exception`, e.g. because a JS callback threw): returning
    /// this error rethrows nothing and lets that exception propagate.
    pending: bool,
}

/// Shorthand used throughout the crate and by addons.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn with_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner { kind, message: message.into(), code: None, props: Vec::new(), pending: false }),
        }
    }

    /// A plain `Error`.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::Error, message)
    }

    /// A `TypeError`.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::TypeError, message)
    }

    /// A `RangeError`.
    pub fn range_error(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::RangeError, message)
    }

    /// Marks that a JS exception is already pending; see [`Error::is_pending`].
    pub(crate) fn pending() -> Self {
        let mut e = Self::new("a JavaScript exception is pending");
        e.inner.pending = true;
        e
    }

    /// Sets the `code` property (`'ENOENT'`, `'ERR_INVALID_ARG_TYPE'`, ...).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.inner.code = Some(code.into());
        self
    }

    /// Adds (or replaces) an extra property of the error object.
    pub fn with_prop(mut self, name: impl Into<String>, value: impl Into<Prop>) -> Self {
        let name = name.into();
        let value = value.into();
        match self.inner.props.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.inner.props.push((name, value)),
        }
        self
    }

    /// A Node-style system error for a failed system call.
    ///
    /// `errno` is the positive Linux number (as `std::io::Error::raw_os_error`
    /// returns it); the JS `errno` property is negative like Node's.
    pub fn os(errno: i32, syscall: &str, path: Option<&str>) -> Self {
        Self::os_with_dest(errno, syscall, path, None)
    }

    /// Like [`Error::os`], for two-path calls (`rename 'a' -> 'b'`).
    pub fn os_with_dest(errno: i32, syscall: &str, path: Option<&str>, dest: Option<&str>) -> Self {
        let (code, description) = match errno::lookup(errno) {
            Some((code, description)) => (Cow::Borrowed(code), Cow::Borrowed(description)),
            None => (Cow::Borrowed("UNKNOWN"), Cow::Owned(format!("unknown system error -{errno}"))),
        };
        let mut message = format!("{code}: {description}, {syscall}");
        if let Some(p) = path {
            message.push_str(&format!(" '{p}'"));
        }
        if let Some(d) = dest {
            message.push_str(&format!(" -> '{d}'"));
        }
        let mut e = Self::new(message).with_code(code).with_prop("errno", -errno).with_prop("syscall", syscall);
        if let Some(p) = path {
            e = e.with_prop("path", p);
        }
        if let Some(d) = dest {
            e = e.with_prop("dest", d);
        }
        e
    }

    /// A system error from a `std::io::Error` (which must carry an OS errno;
    /// anything else becomes a plain `Error` with the I/O error's text).
    pub fn from_io(err: &std::io::Error, syscall: &str, path: Option<&str>) -> Self {
        match err.raw_os_error() {
            Some(n) => Self::os(n, syscall, path),
            None => Self::new(format!("{syscall}: {err}")),
        }
    }

    /// The error for argument `name` that failed to convert, in Node's words.
    pub fn invalid_arg(name: &str, invalid: Invalid, received: &Received) -> Self {
        Self::invalid(&format!("\"{name}\" argument"), &format!("argument '{name}'"), name, invalid, received)
    }

    /// The error for property `name` (e.g. `"options.flags"`) that failed to convert.
    pub fn invalid_property(name: &str, invalid: Invalid, received: &Received) -> Self {
        Self::invalid(&format!("\"{name}\" property"), &format!("property '{name}'"), name, invalid, received)
    }

    fn invalid(quoted: &str, plain: &str, name: &str, invalid: Invalid, received: &Received) -> Self {
        match invalid {
            Invalid::Type(expected) => Self::type_error(format!("The {quoted} must be {expected}. {received}"))
                .with_code("ERR_INVALID_ARG_TYPE"),
            Invalid::Range(constraint) => Self::range_error(format!(
                "The value of \"{name}\" is out of range. It must be {constraint}. Received {}",
                received.plain()
            ))
            .with_code("ERR_OUT_OF_RANGE"),
            Invalid::Value(reason) => {
                Self::type_error(format!("The {plain} {reason}. {received}")).with_code("ERR_INVALID_ARG_VALUE")
            }
            Invalid::Error(e) => e,
        }
    }

    /// The error a Rust panic becomes: `Rust panic: <message>`, `code: 'ERR_RUST_PANIC'`.
    pub fn panic(payload: &(dyn Any + Send)) -> Self {
        let text = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string panic payload)".to_owned()
        };
        Self::new(format!("Rust panic: {text}")).with_code("ERR_RUST_PANIC")
    }

    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    pub fn message(&self) -> &str {
        &self.inner.message
    }
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }
    pub fn props(&self) -> &[(String, Prop)] {
        &self.inner.props
    }
    /// Whether this error only records that a JS exception is already pending.
    pub fn is_pending(&self) -> bool {
        self.inner.pending
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .field("code", &self.inner.code)
            .field("props", &self.inner.props)
            .field("pending", &self.inner.pending)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner.kind {
            ErrorKind::Error => "Error",
            ErrorKind::TypeError => "TypeError",
            ErrorKind::RangeError => "RangeError",
        };
        match &self.inner.code {
            Some(code) => write!(f, "{kind} [{code}]: {}", self.inner.message),
            None => write!(f, "{kind}: {}", self.inner.message),
        }
    }
}

impl std::error::Error for Error {}

/// Why a JS value could not be converted to a Rust type (see [`crate::FromJs`]).
/// The caller adds the argument's name and the received value.
#[derive(Debug)]
pub enum Invalid {
    /// Wrong type; holds what was expected, phrased to follow "must be":
    /// `"of type string"`, `"an instance of Buffer or Uint8Array"`.
    Type(Cow<'static, str>),
    /// Right type, out of range; holds the constraint following "It must be":
    /// `">= 0 && <= 4294967295"`, `"an integer"`.
    Range(Cow<'static, str>),
    /// Right type, unacceptable value; holds the reason following "The argument
    /// 'x'": `"must be a string without null bytes"`.
    Value(Cow<'static, str>),
    /// Conversion failed for another reason (e.g. a pending exception).
    Error(Error),
}

impl From<Error> for Invalid {
    fn from(e: Error) -> Self {
        Invalid::Error(e)
    }
}

/// A short description of a received JS value, for error messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    Undefined,
    Null,
    Boolean(bool),
    Number(f64),
    String(String),
    BigInt(String),
    Symbol,
    /// A function and its name.
    Function(String),
    /// An object and its constructor's name, if it has one.
    Object(Option<String>),
    /// An external value.
    External,
}

impl Received {
    /// Just the value (`5`, `'abc'`, `undefined`), as Node prints it after
    /// "Received" in range errors.
    pub fn plain(&self) -> String {
        match self {
            Received::Number(n) => js_number(*n),
            Received::String(s) => quote_truncated(s),
            Received::BigInt(s) => format!("{s}n"),
            Received::Boolean(b) => b.to_string(),
            Received::Undefined => "undefined".into(),
            Received::Null => "null".into(),
            other => other.to_string().trim_start_matches("Received ").to_owned(),
        }
    }
}

impl fmt::Display for Received {
    /// Node's `ERR_INVALID_ARG_TYPE` tail: `Received type number (5)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Received::Undefined => write!(f, "Received undefined"),
            Received::Null => write!(f, "Received null"),
            Received::Boolean(b) => write!(f, "Received type boolean ({b})"),
            Received::Number(n) => write!(f, "Received type number ({})", js_number(*n)),
            Received::String(s) => write!(f, "Received type string ({})", quote_truncated(s)),
            Received::BigInt(s) => write!(f, "Received type bigint ({s}n)"),
            Received::Symbol => write!(f, "Received type symbol"),
            Received::Function(name) if name.is_empty() => {
                write!(f, "Received function <anonymous>")
            }
            Received::Function(name) => write!(f, "Received function {name}"),
            Received::Object(Some(ctor)) => write!(f, "Received an instance of {ctor}"),
            Received::Object(None) => write!(f, "Received [Object: null prototype]"),
            Received::External => write!(f, "Received type external"),
        }
    }
}

/// Formats a number the way JavaScript's `String(n)` does for the values that
/// appear in messages.
pub(crate) fn js_number(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if n == 0.0 {
        "0".into()
    } else if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

fn quote_truncated(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(25).collect();
    if chars.next().is_some() {
        format!("'{head}...'")
    } else {
        format!("'{head}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_like_node() {
        let e = Error::os(errno::ENOENT, "mknod", Some("/x"));
        assert_eq!(e.message(), "ENOENT: no such file or directory, mknod '/x'");
        assert_eq!(e.code(), Some("ENOENT"));
        assert_eq!(e.kind(), ErrorKind::Error);
        assert_eq!(
            e.props(),
            &[
                ("errno".to_owned(), Prop::Num(-2.0)),
                ("syscall".to_owned(), Prop::Str("mknod".into())),
                ("path".to_owned(), Prop::Str("/x".into())),
            ]
        );
        let e = Error::os_with_dest(18, "rename", Some("a"), Some("b"));
        assert_eq!(e.message(), "EXDEV: cross-device link not permitted, rename 'a' -> 'b'");
        let e = Error::os(errno::EWOULDBLOCK, "flock", None);
        assert_eq!(e.message(), "EAGAIN: resource temporarily unavailable, flock");
        let e = Error::os(4000, "x", None);
        assert_eq!(e.code(), Some("UNKNOWN"));
        assert_eq!(e.message(), "UNKNOWN: unknown system error -4000, x");
    }

    #[test]
    fn from_io() {
        let io = std::io::Error::from_raw_os_error(13);
        let e = Error::from_io(&io, "open", Some("/p"));
        assert_eq!(e.message(), "EACCES: permission denied, open '/p'");
        let io = std::io::Error::other("boom");
        assert_eq!(Error::from_io(&io, "read", None).message(), "read: boom");
    }

    #[test]
    fn invalid_arg_messages_like_node() {
        let e = Error::invalid_arg("path", Invalid::Type("of type string".into()), &Received::Number(5.0));
        assert_eq!(e.kind(), ErrorKind::TypeError);
        assert_eq!(e.code(), Some("ERR_INVALID_ARG_TYPE"));
        assert_eq!(e.message(), "The \"path\" argument must be of type string. Received type number (5)");

        let e = Error::invalid_arg("major", Invalid::Range(">= 0 && <= 4294967295".into()), &Received::Number(-1.0));
        assert_eq!(e.kind(), ErrorKind::RangeError);
        assert_eq!(e.code(), Some("ERR_OUT_OF_RANGE"));
        assert_eq!(
            e.message(),
            "The value of \"major\" is out of range. It must be >= 0 && <= 4294967295. Received -1"
        );

        let e = Error::invalid_arg(
            "path",
            Invalid::Value("must be a string without null bytes".into()),
            &Received::String("a\0b".into()),
        );
        assert_eq!(e.code(), Some("ERR_INVALID_ARG_VALUE"));
        assert_eq!(
            e.message(),
            "The argument 'path' must be a string without null bytes. Received type string ('a\0b')"
        );

        let e = Error::invalid_property("options.flags", Invalid::Type("of type number".into()), &Received::Null);
        assert_eq!(e.message(), "The \"options.flags\" property must be of type number. Received null");
    }

    #[test]
    fn received_descriptions() {
        assert_eq!(Received::Undefined.to_string(), "Received undefined");
        assert_eq!(Received::Number(1.5).to_string(), "Received type number (1.5)");
        assert_eq!(Received::Number(f64::NAN).to_string(), "Received type number (NaN)");
        assert_eq!(Received::Number(f64::NEG_INFINITY).plain(), "-Infinity");
        assert_eq!(
            Received::String("abcdefghijklmnopqrstuvwxyz0123".into()).to_string(),
            "Received type string ('abcdefghijklmnopqrstuvwxy...')"
        );
        assert_eq!(Received::Object(Some("Map".into())).to_string(), "Received an instance of Map");
        assert_eq!(Received::Function("f".into()).to_string(), "Received function f");
        assert_eq!(Received::BigInt("5".into()).plain(), "5n");
        assert_eq!(Received::Boolean(true).plain(), "true");
        assert_eq!(Received::Null.plain(), "null");
    }

    #[test]
    fn panic_payloads() {
        let e = Error::panic(&"static str");
        assert_eq!(e.message(), "Rust panic: static str");
        assert_eq!(e.code(), Some("ERR_RUST_PANIC"));
        let e = Error::panic(&String::from("owned"));
        assert_eq!(e.message(), "Rust panic: owned");
        let e = Error::panic(&42u8);
        assert_eq!(e.message(), "Rust panic: (non-string panic payload)");
    }

    #[test]
    fn props_replace_and_display() {
        let e = Error::new("x").with_code("C").with_prop("a", 1).with_prop("a", "two");
        assert_eq!(e.props(), &[("a".to_owned(), Prop::Str("two".into()))]);
        assert_eq!(e.to_string(), "Error [C]: x");
        assert_eq!(Error::type_error("t").to_string(), "TypeError: t");
        assert!(Error::pending().is_pending());
        assert!(!Error::new("x").is_pending());
    }
}
