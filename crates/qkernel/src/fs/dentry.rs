//! Dentries: the cached tree of names. A dentry binds a name in its parent
//! directory to an inode and may have a mount stacked on it. Lookups through
//! the cache avoid calling the file system (for hostfs: a VMM call) again;
//! entries the host may change are revalidated by the inode
//! (`Inode::revalidate`).

use super::mount::Mount;
use super::InodeRef;
use crate::sync::SpinLock;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::linux::Errno;

/// A name → inode binding.
pub struct Dentry {
    pub name: Vec<u8>,
    pub parent: Option<Arc<Dentry>>,
    pub inode: InodeRef,
    children: SpinLock<BTreeMap<Vec<u8>, Arc<Dentry>>>,
    /// A file system mounted on this dentry.
    pub mounted: SpinLock<Option<Arc<Mount>>>,
}

impl Dentry {
    /// The root dentry of a file system.
    pub fn root(inode: InodeRef) -> Arc<Dentry> {
        Arc::new(Dentry {
            name: Vec::new(),
            parent: None,
            inode,
            children: SpinLock::new(BTreeMap::new()),
            mounted: SpinLock::new(None),
        })
    }

    /// The child named `name`, from the cache or the file system.
    pub fn child(self: &Arc<Self>, name: &[u8]) -> Result<Arc<Dentry>, Errno> {
        let cached = self.children.lock().get(name).cloned();
        if let Some(c) = cached {
            if self.inode.revalidate(name, &c.inode) {
                return Ok(c);
            }
            self.children.lock().remove(name);
        }
        let inode = self.inode.lookup(name)?;
        Ok(self.insert(name, inode))
    }

    /// Caches `inode` as child `name` (after a create/mkdir/...).
    pub fn insert(self: &Arc<Self>, name: &[u8], inode: InodeRef) -> Arc<Dentry> {
        let d = Arc::new(Dentry {
            name: name.to_vec(),
            parent: Some(self.clone()),
            inode,
            children: SpinLock::new(BTreeMap::new()),
            mounted: SpinLock::new(None),
        });
        self.children.lock().insert(name.to_vec(), d.clone());
        d
    }

    /// Forgets child `name` (after unlink/rmdir/rename).
    pub fn forget(&self, name: &[u8]) {
        self.children.lock().remove(name);
    }

    /// The cached child, without asking the file system.
    pub fn cached(&self, name: &[u8]) -> Option<Arc<Dentry>> {
        self.children.lock().get(name).cloned()
    }

    /// The mount on top of this dentry, if any.
    pub fn mount_here(&self) -> Option<Arc<Mount>> {
        self.mounted.lock().clone()
    }
}
