//! Confinement of the VMM process (defence in depth behind the VM boundary):
//! its own mount, PID, IPC, UTS and network namespaces; a view of the
//! filesystem that holds nothing but the container root (bind-mounted
//! `nodev,nosuid`); no capabilities; `no_new_privs`; rlimits; a cgroup when
//! one can be made; and a seccomp allowlist (seccomp.rs) installed before the
//! first guest instruction.

pub mod cgroup;
pub mod seccomp;

use crate::sys::{self, nr, Errno};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// A confinement step failed.
#[derive(Debug)]
pub struct ConfineError {
    pub step: &'static str,
    pub errno: Errno,
}

impl std::fmt::Display for ConfineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "confining the sandbox failed at {}: {} ({}); quark-sandbox must run as root (or with CAP_SYS_ADMIN) on a kernel with namespaces",
            self.step,
            self.errno.description(),
            self.errno.name()
        )
    }
}

impl std::error::Error for ConfineError {}

fn step<T>(step: &'static str, r: Result<T, Errno>) -> Result<T, ConfineError> {
    r.map_err(|errno| ConfineError { step, errno })
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("static string without NUL")
}

const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWUTS: u64 = 0x0400_0000;
const CLONE_NEWIPC: u64 = 0x0800_0000;
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;

/// In the parent: a new PID namespace for the child it forks next (the
/// child is PID 1 of it, so nothing it leaves behind survives it).
pub fn unshare_pid_namespace() -> Result<(), ConfineError> {
    // SAFETY: integer argument.
    step("unshare(PID)", unsafe { sys::syscall3(nr::UNSHARE, CLONE_NEWPID, 0, 0) }).map(|_| ())
}

/// In the child: new mount, UTS, IPC and (when `new_net`, i.e. `--net none`)
/// network namespaces (`hostnet::netns::Mode::unshares`).
pub fn unshare_namespaces(new_net: bool) -> Result<(), ConfineError> {
    let mut flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
    if new_net {
        flags |= CLONE_NEWNET;
    }
    // SAFETY: integer argument.
    step("unshare", unsafe { sys::syscall3(nr::UNSHARE, flags, 0, 0) }).map(|_| ())
}

/// `fork()`; returns 0 in the child.
pub fn fork() -> Result<i32, ConfineError> {
    const SIGCHLD: u64 = 17;
    // SAFETY: a plain fork (clone with SIGCHLD only). The caller has no other
    // threads yet, so the child's copy of the address space is consistent.
    step("fork", unsafe { sys::syscall6(nr::CLONE, SIGCHLD, 0, 0, 0, 0, 0) }).map(|p| p as i32)
}

const AT_FDCWD: u64 = (-100i64) as u64;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_RECURSIVE: u64 = 0x8000;
const OPEN_TREE_CLONE: u64 = 1;
const OPEN_TREE_CLOEXEC: u64 = 0o2000000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MS_REC: u64 = 0x4000;
const MS_PRIVATE: u64 = 1 << 18;
const MS_NODEV: u64 = 4;
const MS_NOSUID: u64 = 2;
const MS_NOEXEC: u64 = 8;
const MNT_DETACH: u64 = 2;

/// In the child: makes all mounts private, clones the container root as a
/// detached mount tree with `nodev,nosuid` (and `ro` when asked) applied
/// recursively, then pivots into an empty tmpfs so no host path remains
/// reachable. Returns the root descriptor the guest's files are served from
/// (the empty root itself when there is no container root, for `--check`).
pub fn isolate_filesystem(rootfs: Option<&Path>, readonly: bool) -> Result<OwnedFd, ConfineError> {
    let slash = cstr("/");
    // SAFETY: valid C strings; flags are constants.
    step("making mounts private", unsafe {
        sys::syscall6(nr::MOUNT, 0, slash.as_ptr() as u64, 0, MS_REC | MS_PRIVATE, 0, 0)
    })?;
    let tree = match rootfs {
        Some(p) => Some(clone_root(p, readonly)?),
        None => None,
    };
    pivot_to_empty_root()?;
    match tree {
        Some(t) => Ok(t),
        None => crate::rootfs::open_root_dir(Path::new("/")).map_err(|e| ConfineError {
            step: "opening the empty root",
            errno: Errno(e.raw_os_error().unwrap_or(5) as u16),
        }),
    }
}

/// Clones the mount tree at `rootfs` as a detached tree with nodev, nosuid
/// (and rdonly) applied recursively.
fn clone_root(rootfs: &Path, readonly: bool) -> Result<OwnedFd, ConfineError> {
    use std::os::unix::ffi::OsStrExt;
    let root = CString::new(rootfs.as_os_str().as_bytes())
        .map_err(|_| ConfineError { step: "rootfs path", errno: Errno::EINVAL })?;
    // SAFETY: valid C string.
    let tree = sys::owned(step("open_tree(rootfs)", unsafe {
        sys::syscall3(nr::OPEN_TREE, AT_FDCWD, root.as_ptr() as u64, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
    })?);
    // struct mount_attr { attr_set, attr_clr, propagation, userns_fd }
    let attr: [u64; 4] = [MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | if readonly { MOUNT_ATTR_RDONLY } else { 0 }, 0, 0, 0];
    let empty = cstr("");
    // SAFETY: valid descriptor, C string and mount_attr (32 bytes).
    step("mount_setattr(nodev,nosuid)", unsafe {
        sys::syscall6(
            nr::MOUNT_SETATTR,
            tree.as_raw_fd() as u64,
            empty.as_ptr() as u64,
            AT_EMPTY_PATH | AT_RECURSIVE,
            attr.as_ptr() as u64,
            32,
            0,
        )
    })?;
    Ok(tree)
}

/// Pivots into an empty, read-only tmpfs and detaches the host's root.
fn pivot_to_empty_root() -> Result<(), ConfineError> {
    // An empty, read-only tmpfs becomes the VMM's root.
    let dir = ["/mnt", "/tmp", "/run"].iter().copied().find(|d| Path::new(d).is_dir()).unwrap_or("/tmp");
    let dir_c = cstr(dir);
    let tmpfs = cstr("tmpfs");
    let opts = cstr("size=4k,nr_inodes=8,mode=0555");
    // SAFETY: valid C strings.
    step("mounting an empty root", unsafe {
        sys::syscall6(
            nr::MOUNT,
            tmpfs.as_ptr() as u64,
            dir_c.as_ptr() as u64,
            tmpfs.as_ptr() as u64,
            MS_NODEV | MS_NOSUID | MS_NOEXEC,
            opts.as_ptr() as u64,
            0,
        )
    })?;
    step("chdir", std::env::set_current_dir(dir).map_err(|e| Errno(e.raw_os_error().unwrap_or(5) as u16)))?;
    let dot = cstr(".");
    // SAFETY: valid C strings: pivot_root(".", ".") stacks the old root on
    // the new one, and the detach below removes it.
    step("pivot_root", unsafe { sys::syscall3(nr::PIVOT_ROOT, dot.as_ptr() as u64, dot.as_ptr() as u64, 0) })?;
    // SAFETY: valid C string.
    step("detaching the host root", unsafe { sys::syscall3(nr::UMOUNT2, dot.as_ptr() as u64, MNT_DETACH, 0) })?;
    step("chdir /", std::env::set_current_dir("/").map_err(|e| Errno(e.raw_os_error().unwrap_or(5) as u16)))?;
    Ok(())
}

/// Drops every capability (bounding, ambient, effective, permitted,
/// inheritable), makes the process non-dumpable, sets `no_new_privs` and
/// resource limits.
pub fn drop_privileges(nofile: u64) -> Result<(), ConfineError> {
    const PR_SET_DUMPABLE: u64 = 4;
    const PR_CAPBSET_DROP: u64 = 24;
    const PR_SET_NO_NEW_PRIVS: u64 = 38;
    const PR_CAP_AMBIENT: u64 = 47;
    const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;
    const RLIMIT_NOFILE: u64 = 7;
    const RLIMIT_CORE: u64 = 4;
    for (res, v) in [(RLIMIT_NOFILE, nofile), (RLIMIT_CORE, 0)] {
        let lim = [v, v];
        // SAFETY: `lim` is a struct rlimit.
        step("setrlimit", unsafe { sys::syscall6(nr::PRLIMIT64, 0, res, lim.as_ptr() as u64, 0, 0, 0) })?;
    }
    step("prctl(PR_SET_DUMPABLE)", sys::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))?;
    step("prctl(PR_CAP_AMBIENT)", sys::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))?;
    for cap in 0..64 {
        match sys::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) {
            Ok(_) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(ConfineError { step: "prctl(PR_CAPBSET_DROP)", errno: e }),
        }
    }
    // capset(v3 header, two zeroed data structs).
    let header: [u32; 2] = [0x2008_0522, 0];
    let data = [0u32; 6];
    // SAFETY: valid cap_user_header and two cap_user_data structs.
    step("capset", unsafe { sys::syscall3(nr::CAPSET, header.as_ptr() as u64, data.as_ptr() as u64, 0) })?;
    step("prctl(PR_SET_NO_NEW_PRIVS)", sys::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    Ok(())
}

/// Makes the process die with SIGKILL when its parent does.
pub fn die_with_parent() -> Result<(), ConfineError> {
    const PR_SET_PDEATHSIG: u64 = 1;
    step("prctl(PR_SET_PDEATHSIG)", sys::prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)).map(|_| ())
}

/// Sets the hostname inside the sandbox's UTS namespace.
pub fn set_hostname(name: &[u8]) -> Result<(), ConfineError> {
    // SAFETY: valid buffer and length.
    step("sethostname", unsafe { sys::syscall3(nr::SETHOSTNAME, name.as_ptr() as u64, name.len() as u64, 0) })
        .map(|_| ())
}
