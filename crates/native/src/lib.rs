//! `quark-native`: the Node-API addon behind `@quark/native`, the one home of
//! the Linux calls Node cannot make itself. The TypeScript types of every
//! export are in `packages/native/src/types.ts`; keep the two in step (a test
//! checks every declared export exists with its declared shape).
//!
//! Raw calls are fenced in [`sys`]; [`host`] holds the host-facts decisions.
//! Errors are Node-style system errors (`code`, negative `errno`, `syscall`,
//! `path`), argument mistakes Node-style `TypeError`/`RangeError`s.

use std::borrow::Cow;
use std::ffi::CString;

use napi::{BufferView, Bytes, CallContext, Env, Error, FromJs, Invalid, Result, ToJs, Value, MAX_SAFE_INTEGER};

mod host;
mod ring;
mod sys;

use host::{CgroupVersion, HostFacts};

impl ToJs for HostFacts {
    fn to_js<'e>(self, env: &'e Env) -> Result<Value<'e>> {
        let kvm = env.object()?;
        kvm.set("present", self.kvm.present)?;
        kvm.set("path", host::KVM_PATH)?;
        kvm.set("accessible", self.kvm.accessible)?;
        kvm.set("flavour", self.kvm.flavour.as_str())?;
        kvm.set("apiVersion", self.kvm.api_version)?;
        kvm.set("detail", self.kvm.detail)?;

        let cgroup = env.object()?;
        match self.cgroup.version {
            CgroupVersion::V1 => cgroup.set("version", 1)?,
            CgroupVersion::V2 => cgroup.set("version", 2)?,
            CgroupVersion::Hybrid => cgroup.set("version", "hybrid")?,
            CgroupVersion::None => cgroup.set("version", "none")?,
        }
        cgroup.set("mountpoint", self.cgroup.mountpoint)?;

        let facts = env.object()?;
        facts.set("kvm", kvm)?;
        facts.set("cgroup", cgroup)?;
        facts.set("overlayfs", self.overlayfs)?;
        facts.set("root", self.root)?;
        facts.set("kernel", self.kernel)?;
        Ok(facts)
    }
}

/// `flock` operations as JS spells them.
#[derive(Clone, Copy)]
enum LockOp {
    Shared,
    Exclusive,
    Unlock,
}

impl<'e> FromJs<'e> for LockOp {
    fn from_js(value: Value<'e>) -> Result<Self, Invalid> {
        match String::from_js(value)?.as_str() {
            "shared" => Ok(LockOp::Shared),
            "exclusive" => Ok(LockOp::Exclusive),
            "unlock" => Ok(LockOp::Unlock),
            _ => Err(Invalid::Value(Cow::Borrowed("must be one of 'shared', 'exclusive' or 'unlock'"))),
        }
    }
}

impl LockOp {
    fn flag(self) -> i32 {
        match self {
            LockOp::Shared => sys::LOCK_SH,
            LockOp::Exclusive => sys::LOCK_EX,
            LockOp::Unlock => sys::LOCK_UN,
        }
    }
}

fn os_error(err: &std::io::Error, syscall: &str, path: &CString) -> Error {
    Error::from_io(err, syscall, Some(&path.to_string_lossy()))
}

pub(crate) fn fd_arg(cx: &CallContext<'_>, index: usize) -> Result<i32> {
    let fd: i32 = cx.arg(index, "fd")?;
    if fd < 0 {
        return Err(Error::range_error(format!(
            "The value of \"fd\" is out of range. It must be >= 0 && <= 2147483647. Received {fd}"
        ))
        .with_code("ERR_OUT_OF_RANGE"));
    }
    Ok(fd)
}

fn mknod<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let path: CString = cx.arg(0, "path")?;
    let mode: u32 = cx.arg(1, "mode")?;
    let dev: u64 = cx.arg(2, "dev")?;
    sys::mknod(&path, mode, dev).map_err(|e| os_error(&e, "mknod", &path))?;
    cx.ret(())
}

fn makedev<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let major: u32 = cx.arg(0, "major")?;
    let minor: u32 = cx.arg(1, "minor")?;
    let dev = sys::makedev(major, minor);
    if dev as f64 > MAX_SAFE_INTEGER {
        return Err(Error::range_error(format!(
            "makedev({major}, {minor}) = {dev} does not fit a JavaScript number exactly"
        ))
        .with_code("ERR_OUT_OF_RANGE"));
    }
    cx.ret(dev)
}

fn lsetxattr<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let path: CString = cx.arg(0, "path")?;
    let name: CString = cx.arg(1, "name")?;
    let value: BufferView = cx.arg(2, "value")?;
    let flags: Option<i32> = cx.arg(3, "flags")?;
    sys::lsetxattr(&path, &name, value.as_slice(), flags.unwrap_or(0)).map_err(|e| os_error(&e, "lsetxattr", &path))?;
    cx.ret(())
}

fn lgetxattr<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let path: CString = cx.arg(0, "path")?;
    let name: CString = cx.arg(1, "name")?;
    let value = sys::lgetxattr(&path, &name).map_err(|e| os_error(&e, "lgetxattr", &path))?;
    cx.ret(value.map(Bytes))
}

fn llistxattr<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let path: CString = cx.arg(0, "path")?;
    let raw = sys::llistxattr(&path).map_err(|e| os_error(&e, "llistxattr", &path))?;
    let names: Vec<String> =
        raw.split(|&b| b == 0).filter(|n| !n.is_empty()).map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    cx.ret(names)
}

fn flock<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let fd = fd_arg(cx, 0)?;
    let op: LockOp = cx.arg(1, "op")?;
    let non_blocking: bool = cx.arg(2, "nonBlocking")?;
    let flags = op.flag() | if non_blocking { sys::LOCK_NB } else { 0 };
    loop {
        match sys::flock(fd, flags) {
            Ok(()) => return cx.ret(true),
            Err(e) if non_blocking && e.raw_os_error() == Some(sys::EWOULDBLOCK) => return cx.ret(false),
            Err(e) if e.raw_os_error() == Some(sys::EINTR) => continue,
            Err(e) => return Err(Error::from_io(&e, "flock", None)),
        }
    }
}

fn flock_async<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let fd = fd_arg(cx, 0)?;
    let op: LockOp = cx.arg(1, "op")?;
    if matches!(op, LockOp::Unlock) {
        return Err(Error::type_error(
            "The argument 'op' must be one of 'shared' or 'exclusive' (unlocking never blocks: use flock). \
             Received 'unlock'",
        )
        .with_code("ERR_INVALID_ARG_VALUE"));
    }
    cx.env().spawn_promise("quark-flock", move || loop {
        match sys::flock(fd, op.flag()) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(sys::EINTR) => continue,
            Err(e) => return Err(Error::from_io(&e, "flock", None)),
        }
    })
}

fn mount<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let source: Option<CString> = cx.arg(0, "source")?;
    let target: CString = cx.arg(1, "target")?;
    let fstype: Option<CString> = cx.arg(2, "fstype")?;
    let flags: u64 = cx.arg(3, "flags")?;
    let data: Option<CString> = cx.arg(4, "data")?;
    sys::mount(source.as_deref(), &target, fstype.as_deref(), flags, data.as_deref())
        .map_err(|e| os_error(&e, "mount", &target))?;
    cx.ret(())
}

fn umount<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let target: CString = cx.arg(0, "target")?;
    let flags: i32 = cx.arg(1, "flags")?;
    sys::umount2(&target, flags).map_err(|e| os_error(&e, "umount2", &target))?;
    cx.ret(())
}

/// Linux constants, exported as `constants`.
const CONSTANTS: &[(&str, u32)] = &[
    ("MS_RDONLY", 1),
    ("MS_NOSUID", 2),
    ("MS_NODEV", 4),
    ("MS_NOEXEC", 8),
    ("MS_REMOUNT", 32),
    ("MS_BIND", 4096),
    ("MS_MOVE", 8192),
    ("MS_REC", 16384),
    ("MS_PRIVATE", 1 << 18),
    ("MS_SLAVE", 1 << 19),
    ("MS_SHARED", 1 << 20),
    ("MNT_FORCE", 1),
    ("MNT_DETACH", 2),
    ("S_IFMT", 0o170000),
    ("S_IFIFO", 0o010000),
    ("S_IFCHR", 0o020000),
    ("S_IFBLK", 0o060000),
    ("S_IFREG", 0o100000),
    ("S_IFSOCK", 0o140000),
    ("XATTR_CREATE", 1),
    ("XATTR_REPLACE", 2),
];

fn init<'e>(env: &'e Env, exports: Value<'e>) -> Result<()> {
    exports.set_function("hostFacts", |cx| cx.ret(host::host_facts(&host::RealHost)))?;
    exports.set_function("mknod", mknod)?;
    exports.set_function("makedev", makedev)?;
    exports.set_function("lsetxattr", lsetxattr)?;
    exports.set_function("lgetxattr", lgetxattr)?;
    exports.set_function("llistxattr", llistxattr)?;
    exports.set_function("flock", flock)?;
    exports.set_function("flockAsync", flock_async)?;
    exports.set_function("mount", mount)?;
    exports.set_function("umount", umount)?;
    exports.set_function("createRing", ring::create_ring)?;
    exports.set_function("attachRing", ring::attach_ring)?;
    exports.set_function("createStream", ring::create_stream)?;
    exports.set_function("attachStream", ring::attach_stream)?;
    let constants = env.object()?;
    for &(name, value) in CONSTANTS {
        constants.set(name, value)?;
    }
    exports.set("constants", constants)?;
    Ok(())
}

napi::module!(init);
