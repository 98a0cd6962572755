//! Mounts and the mount tree (one per sandbox: the sandbox is one mount
//! namespace).

use super::dentry::Dentry;
use super::path::Path;
use super::{devfs, procfs, tmpfs, InodeRef};
use crate::sync::{Once, SpinLock};
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::linux::Errno;

/// Mount flags (MS_*).
pub mod flags {
    pub const RDONLY: u64 = 1;
    pub const NOSUID: u64 = 2;
    pub const NODEV: u64 = 4;
    pub const NOEXEC: u64 = 8;
    pub const REMOUNT: u64 = 32;
    pub const BIND: u64 = 4096;
    pub const REC: u64 = 16384;
    pub const RELATIME: u64 = 1 << 21;
}

/// A mounted file system.
pub struct Mount {
    pub root: Arc<Dentry>,
    /// Where it is mounted (None for the root mount).
    pub parent: Option<(Arc<Mount>, Arc<Dentry>)>,
    pub flags: SpinLock<u64>,
    pub fstype: &'static str,
    pub source: Vec<u8>,
    pub id: u32,
}

impl Mount {
    /// True when mounted read-only.
    pub fn readonly(&self) -> bool {
        *self.flags.lock() & flags::RDONLY != 0
    }

    /// True when device nodes may not be opened (MS_NODEV).
    pub fn nodev(&self) -> bool {
        *self.flags.lock() & flags::NODEV != 0
    }

    /// True when programs may not be executed from it (MS_NOEXEC).
    pub fn noexec(&self) -> bool {
        *self.flags.lock() & flags::NOEXEC != 0
    }
}

static ROOT: Once<Arc<Mount>> = Once::new();
static MOUNTS: SpinLock<Vec<Arc<Mount>>> = SpinLock::new(Vec::new());
static NEXT_ID: SpinLock<u32> = SpinLock::new(20);

fn next_id() -> u32 {
    let mut n = NEXT_ID.lock();
    *n += 1;
    *n
}

/// The root mount.
pub fn root() -> Arc<Mount> {
    ROOT.get().clone()
}

/// The path of the sandbox's root directory.
pub fn root_path() -> Path {
    let m = root();
    Path { dentry: m.root.clone(), mnt: m }
}

/// Every mount, in mount order (for /proc/mounts).
pub fn all() -> Vec<Arc<Mount>> {
    MOUNTS.lock().clone()
}

/// Mounts the file system with root inode `root` on `at`.
pub fn mount_at(
    at: &Path,
    root: InodeRef,
    fstype: &'static str,
    source: &[u8],
    mflags: u64,
) -> Result<Arc<Mount>, Errno> {
    if at.dentry.mount_here().is_some() {
        // Stacking mounts is allowed on Linux; we replace for simplicity of
        // lookups but keep the older one reachable through the table.
    }
    let m = Arc::new(Mount {
        root: Dentry::root(root),
        parent: Some((at.mnt.clone(), at.dentry.clone())),
        flags: SpinLock::new(mflags),
        fstype,
        source: source.to_vec(),
        id: next_id(),
    });
    *at.dentry.mounted.lock() = Some(m.clone());
    MOUNTS.lock().push(m.clone());
    Ok(m)
}

/// Unmounts the mount whose root is `at` (umount2).
pub fn unmount(at: &Path) -> Result<(), Errno> {
    if !Arc::ptr_eq(&at.dentry, &at.mnt.root) {
        return Err(Errno::EINVAL);
    }
    let Some((_, on)) = at.mnt.parent.as_ref() else { return Err(Errno::EBUSY) };
    let mut all = MOUNTS.lock();
    if all.iter().any(|m| m.parent.as_ref().is_some_and(|(p, _)| Arc::ptr_eq(p, &at.mnt))) {
        return Err(Errno::EBUSY);
    }
    *on.mounted.lock() = None;
    all.retain(|m| !Arc::ptr_eq(m, &at.mnt));
    Ok(())
}

/// Builds the mount tree: the container root (served by the host) with
/// /dev (devfs, with /dev/shm and /dev/pts), /proc, /sys, and /tmp when the
/// image has no other /tmp mount.
pub fn init() {
    let rootfs = super::hostfs::root();
    let readonly = super::hostfs::readonly();
    let m = Arc::new(Mount {
        root: Dentry::root(rootfs),
        parent: None,
        flags: SpinLock::new(if readonly { flags::RDONLY } else { 0 }),
        fstype: "hostfs",
        // Not "rootfs": df and friends skip that name (the initramfs).
        source: b"hostfs".to_vec(),
        id: next_id(),
    });
    // SAFETY: boot vCPU, before any process exists.
    unsafe { ROOT.init(m.clone()) };
    MOUNTS.lock().push(m);
    let root = root_path();
    let nosuid = flags::NOSUID | flags::NODEV | flags::NOEXEC;
    // Mount points the image lacks are created, as OCI runtimes do: on the
    // host when the root is writable (so they show in listings), otherwise
    // as a directory known only to the guest's name cache.
    let creds = crate::task::Creds::initial(0, 0);
    let dir = |name: &[u8]| -> Option<Path> {
        let d = match root.dentry.child(name) {
            Ok(d) => d,
            Err(Errno::ENOENT) => {
                let made = if readonly { None } else { root.dentry.inode.mkdir(name, 0o755, &creds).ok() };
                let inode = made.unwrap_or_else(|| tmpfs::new_dir(0o555));
                root.dentry.insert(name, inode)
            }
            Err(_) => return None,
        };
        (d.inode.file_type() == super::FileType::Directory).then(|| Path { mnt: root.mnt.clone(), dentry: d })
    };
    if let Some(p) = dir(b"proc") {
        let _ = mount_at(&p, procfs::root(), "proc", b"proc", nosuid);
    }
    if let Some(p) = dir(b"dev") {
        if let Ok(m) = mount_at(&p, devfs::root(), "devtmpfs", b"dev", flags::NOSUID) {
            let dev = Path { dentry: m.root.clone(), mnt: m };
            if let Ok(shm) = dev.dentry.child(b"shm") {
                let _ = mount_at(
                    &Path { mnt: dev.mnt.clone(), dentry: shm },
                    tmpfs::new_root(0o1777),
                    "tmpfs",
                    b"shm",
                    nosuid,
                );
            }
        }
    }
    if let Some(p) = dir(b"sys") {
        let _ = mount_at(&p, procfs::sys_root(), "sysfs", b"sysfs", nosuid | flags::RDONLY);
    }
    if let Some(p) = dir(b"tmp") {
        // The image's /tmp is kept (it is part of the container's writable
        // root); nothing to mount.
        let _ = p;
    }
}
