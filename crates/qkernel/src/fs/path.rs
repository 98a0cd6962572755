//! Path resolution: components, `.` and `..` (clamped at the process root
//! and crossing mount boundaries), symlinks (at most 40 per resolution:
//! ELOOP), mount points, trailing slashes.

use super::dentry::Dentry;
use super::mount::Mount;
use super::{may_access, FileType, MAY_EXEC};
use crate::sync::SpinLock;
use crate::task::Creds;
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::linux::Errno;

/// Longest path (PATH_MAX, NUL included).
pub const PATH_MAX: usize = 4096;
/// Longest name component.
pub const NAME_MAX: usize = 255;
/// Most symlinks followed in one resolution.
pub const MAX_SYMLINKS: u32 = 40;

/// A location in the mount tree.
#[derive(Clone)]
pub struct Path {
    pub mnt: Arc<Mount>,
    pub dentry: Arc<Dentry>,
}

impl Path {
    /// True when this is the root of its mount.
    pub fn is_mount_root(&self) -> bool {
        Arc::ptr_eq(&self.dentry, &self.mnt.root)
    }

    /// True when both name the same place.
    pub fn same(&self, o: &Path) -> bool {
        Arc::ptr_eq(&self.mnt, &o.mnt) && Arc::ptr_eq(&self.dentry, &o.dentry)
    }

    /// The parent directory, crossing mount boundaries upwards; stays put at
    /// `root`.
    pub fn parent(&self, root: &Path) -> Path {
        let mut p = self.clone();
        loop {
            if p.same(root) {
                return p;
            }
            if p.is_mount_root() {
                match p.mnt.parent.clone() {
                    Some((m, d)) => {
                        p = Path { mnt: m, dentry: d };
                        continue;
                    }
                    None => return p,
                }
            }
            return match p.dentry.parent.clone() {
                Some(d) => Path { mnt: p.mnt, dentry: d },
                None => p,
            };
        }
    }

    /// Follows mounts stacked on this dentry down to the top one's root.
    pub fn follow_mounts(mut self) -> Path {
        while let Some(m) = self.dentry.mount_here() {
            self = Path { dentry: m.root.clone(), mnt: m };
        }
        self
    }

    /// The absolute path from `root` (for getcwd, /proc).
    pub fn absolute(&self, root: &Path) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut p = self.clone();
        let mut guard = 0;
        while !p.same(root) && guard < 4096 {
            guard += 1;
            if p.is_mount_root() {
                match p.mnt.parent.clone() {
                    Some((m, d)) => {
                        p = Path { mnt: m, dentry: d };
                        continue;
                    }
                    None => break,
                }
            }
            parts.push(p.dentry.name.clone());
            match p.dentry.parent.clone() {
                Some(d) => p = Path { mnt: p.mnt, dentry: d },
                None => break,
            }
        }
        if parts.is_empty() {
            return b"/".to_vec();
        }
        let mut out = Vec::new();
        for part in parts.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(part);
        }
        out
    }
}

/// A process's file-system context (CLONE_FS shares it).
pub struct FsContext {
    pub root: Path,
    pub cwd: Path,
    pub umask: u32,
}

/// Shared file-system context.
pub type FsRef = Arc<SpinLock<FsContext>>;

/// How to resolve the final component.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Follow a final symlink.
    Yes,
    /// Do not follow it (lstat, O_NOFOLLOW, unlink...).
    No,
}

/// Resolves `path` from `start` (for relative paths) with `root` as the
/// process root.
pub fn resolve(root: &Path, start: &Path, path: &[u8], follow: Follow, c: &Creds) -> Result<Path, Errno> {
    let mut links = 0;
    resolve_inner(root, start, path, follow, c, &mut links)
}

fn resolve_inner(
    root: &Path,
    start: &Path,
    path: &[u8],
    follow: Follow,
    c: &Creds,
    links: &mut u32,
) -> Result<Path, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut cur = if path[0] == b'/' { root.clone() } else { start.clone() };
    let trailing_slash = path.len() > 1 && path.ends_with(b"/");
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|s| !s.is_empty()).collect();
    let n = comps.len();
    for (i, comp) in comps.into_iter().enumerate() {
        let last = i + 1 == n;
        if cur.dentry.inode.file_type() != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        may_access(&cur.dentry.inode.perm()?, c, MAY_EXEC)?;
        if comp == b"." {
            continue;
        }
        if comp == b".." {
            cur = cur.parent(root);
            continue;
        }
        if comp.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let child = cur.dentry.child(comp)?;
        let next = Path { mnt: cur.mnt.clone(), dentry: child }.follow_mounts();
        if next.dentry.inode.file_type() == FileType::Symlink && (!last || follow == Follow::Yes || trailing_slash) {
            *links += 1;
            if *links > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            // /proc magic links lead to the object itself, not to their text.
            if let Some(m) = next.dentry.inode.magic_target() {
                cur = match m {
                    super::Magic::Path(p) => p,
                    super::Magic::File(f) => match &f.path {
                        Some(p) => p.clone(),
                        None => {
                            Path { mnt: next.mnt.clone(), dentry: Dentry::root(Arc::new(super::AnonInode::new(f))) }
                        }
                    },
                };
                continue;
            }
            let target = next.dentry.inode.readlink()?;
            cur = resolve_inner(root, &cur, &target, Follow::Yes, c, links)?;
            continue;
        }
        cur = next;
    }
    if trailing_slash && cur.dentry.inode.file_type() != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok(cur)
}

/// Resolves everything but the last component: returns the parent directory
/// and the final name (which may not exist yet). `/` and names ending in
/// `.`/`..` have no final component: EEXIST/EBUSY-like errors are the
/// caller's choice; here they give EINVAL... callers map as Linux does.
pub fn resolve_parent(root: &Path, start: &Path, path: &[u8], c: &Creds) -> Result<(Path, Vec<u8>), Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let trimmed = {
        let mut e = path.len();
        while e > 1 && path[e - 1] == b'/' {
            e -= 1;
        }
        &path[..e]
    };
    let (dir, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(0) => (&b"/"[..], &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    if name.is_empty() {
        // The path is "/" (or "////").
        return Err(Errno::EEXIST);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let parent = resolve(root, start, dir, Follow::Yes, c)?;
    if parent.dentry.inode.file_type() != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok((parent, name.to_vec()))
}
