//! The container root, served to the guest read-only (for now) through
//! host handles. Paths are resolved by the host kernel beneath the root with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..`, absolute
//! symlinks and magic links cannot leave it. Only regular files and
//! directories are served; device nodes, FIFOs and sockets are refused (the
//! root is also bind-mounted `nodev` by the confinement, so the host kernel
//! refuses device opens itself).

use crate::sys::{self, Errno};
use qlib::linux::types::Stat;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Most host handles the guest may hold open.
pub const MAX_HANDLES: usize = 4096;
/// Handles 0..=2 name the sandbox's stdio.
pub const FIRST_FILE_HANDLE: u64 = 3;

const O_RDONLY: u64 = 0;
const O_NONBLOCK: u64 = 0o4000;
const O_DIRECTORY: u64 = 0o200000;
const O_CLOEXEC: u64 = 0o2000000;
const O_NOCTTY: u64 = 0o400;
const O_PATH: u64 = 0o10000000;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// The root and the guest's open handles.
pub struct RootFs {
    root: OwnedFd,
    handles: Mutex<Vec<Option<OwnedFd>>>,
}

/// Opens `path` as a directory handle (O_PATH) to serve as a root.
pub fn open_root_dir(path: &std::path::Path) -> Result<OwnedFd, std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: valid C string; flags are constants.
    let fd = unsafe {
        sys::syscall6(sys::nr::OPENAT, (-100i64) as u64, c.as_ptr() as u64, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, 0, 0)
    }
    .map_err(sys::io_error)?;
    Ok(sys::owned(fd))
}

/// fstat of a host descriptor.
pub fn fstat(fd: RawFd) -> Result<Stat, Errno> {
    let mut st = Stat::default();
    // SAFETY: `st` is a valid struct stat (144 bytes on x86-64).
    unsafe { sys::syscall3(sys::nr::FSTAT, fd as u64, &mut st as *mut Stat as u64, 0) }?;
    Ok(st)
}

/// What the guest may learn from a host stat: type, permissions, size and
/// times; not the host's device numbers.
pub fn sanitize(st: &Stat) -> Stat {
    Stat { st_dev: 0x51, st_rdev: if st.st_mode & 0o170000 == 0o020000 { st.st_rdev } else { 0 }, ..*st }
}

impl RootFs {
    /// Serves the directory `root` (an O_PATH descriptor).
    pub fn new(root: OwnedFd) -> RootFs {
        RootFs { root, handles: Mutex::new(Vec::new()) }
    }

    /// Opens `path` (absolute, inside the root) read-only; returns a handle.
    pub fn open(&self, path: &[u8]) -> Result<u64, Errno> {
        if path.first() != Some(&b'/') || path.contains(&0) {
            return Err(Errno::EINVAL);
        }
        let mut c = path.to_vec();
        c.push(0);
        // struct open_how { flags, mode, resolve }
        let how: [u64; 3] = [O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS];
        // SAFETY: valid C string and open_how of 24 bytes.
        let fd = unsafe {
            sys::syscall6(
                sys::nr::OPENAT2,
                self.root.as_raw_fd() as u64,
                c.as_ptr() as u64,
                how.as_ptr() as u64,
                24,
                0,
                0,
            )
        }?;
        let fd = sys::owned(fd);
        let st = fstat(fd.as_raw_fd())?;
        match st.st_mode & 0o170000 {
            0o100000 | 0o040000 => {}
            _ => return Err(Errno::EACCES),
        }
        let mut h = self.handles.lock().map_err(|_| Errno::EIO)?;
        let slot = match h.iter().position(|s| s.is_none()) {
            Some(i) => i,
            None if h.len() < MAX_HANDLES => {
                h.push(None);
                h.len() - 1
            }
            None => return Err(Errno::EMFILE),
        };
        h[slot] = Some(fd);
        Ok(slot as u64 + FIRST_FILE_HANDLE)
    }

    fn with_fd<T>(&self, handle: u64, f: impl FnOnce(RawFd) -> Result<T, Errno>) -> Result<T, Errno> {
        if handle < FIRST_FILE_HANDLE {
            return f(handle as RawFd);
        }
        let h = self.handles.lock().map_err(|_| Errno::EIO)?;
        let fd = h.get((handle - FIRST_FILE_HANDLE) as usize).and_then(|s| s.as_ref()).ok_or(Errno::EBADF)?;
        f(fd.as_raw_fd())
    }

    /// fstat of a handle (0..=2 are the stdio streams).
    pub fn stat(&self, handle: u64) -> Result<Stat, Errno> {
        self.with_fd(handle, |fd| fstat(fd).map(|s| sanitize(&s)))
    }

    /// preadv into host iovecs (which point into guest memory).
    pub fn pread(&self, handle: u64, iov: &[[u64; 2]], offset: u64) -> Result<u64, Errno> {
        if handle < FIRST_FILE_HANDLE {
            return Err(Errno::ESPIPE);
        }
        // SAFETY: the iovecs were built by GuestMemory::host_iovecs and lie
        // inside guest memory, which the kernel may write.
        self.with_fd(handle, |fd| unsafe { sys::preadv(fd, iov, offset) })
    }

    /// Closes a handle.
    pub fn close(&self, handle: u64) -> Result<(), Errno> {
        if handle < FIRST_FILE_HANDLE {
            return Err(Errno::EBADF);
        }
        let mut h = self.handles.lock().map_err(|_| Errno::EIO)?;
        match h.get_mut((handle - FIRST_FILE_HANDLE) as usize) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// The root descriptor.
    pub fn root_fd(&self) -> RawFd {
        self.root.as_raw_fd()
    }

    /// Number of open handles.
    pub fn open_count(&self) -> usize {
        self.handles.lock().map(|h| h.iter().filter(|s| s.is_some()).count()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (std::path::PathBuf, RootFs) {
        let base = std::env::temp_dir().join(format!("quark-rootfs-test-{}-{}", std::process::id(), sys::gettid()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root/bin")).unwrap();
        std::fs::write(base.join("root/bin/prog"), b"in-root").unwrap();
        std::fs::write(base.join("secret"), b"outside").unwrap();
        symlink("/bin/prog", base.join("root/abs-link")).unwrap();
        symlink("../../secret", base.join("root/bin/escape")).unwrap();
        symlink("/proc/self/root/etc/passwd", base.join("root/magic")).unwrap();
        let fs = RootFs::new(open_root_dir(&base.join("root")).unwrap());
        (base, fs)
    }

    fn read_all(fs: &RootFs, h: u64) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        let iov = [[buf.as_mut_ptr() as u64, 64]];
        let n = fs.pread(h, &iov, 0).unwrap();
        buf.truncate(n as usize);
        buf
    }

    #[test]
    fn opens_inside_and_resolves_symlinks_in_root() {
        let (base, fs) = tree();
        let h = fs.open(b"/bin/prog").unwrap();
        assert!(h >= FIRST_FILE_HANDLE);
        assert_eq!(read_all(&fs, h), b"in-root");
        // An absolute symlink resolves against the root, not the host.
        let h2 = fs.open(b"/abs-link").unwrap();
        assert_eq!(read_all(&fs, h2), b"in-root");
        assert_eq!(fs.stat(h).unwrap().st_size, 7);
        fs.close(h).unwrap();
        assert_eq!(fs.close(h), Err(Errno::EBADF));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn escapes_are_refused() {
        let (base, fs) = tree();
        // `..` beyond the root stays at the root: /../../secret is /secret in
        // the root, which does not exist.
        assert_eq!(fs.open(b"/../../secret"), Err(Errno::ENOENT));
        // A relative symlink climbing out is clamped to the root as well.
        assert_eq!(fs.open(b"/bin/escape"), Err(Errno::ENOENT));
        // Magic links are refused outright.
        assert!(fs.open(b"/magic").is_err());
        assert_eq!(fs.open(b"relative"), Err(Errno::EINVAL));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn only_files_and_directories_are_served() {
        let (base, fs) = tree();
        // A FIFO inside the root is refused (and opening it did not block).
        let fifo = base.join("root/fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        unsafe { sys::syscall6(sys::nr::MKNODAT, (-100i64) as u64, c.as_ptr() as u64, 0o010644, 0, 0, 0) }.unwrap();
        assert_eq!(fs.open(b"/fifo"), Err(Errno::EACCES));
        assert!(fs.open(b"/bin").is_ok());
        std::fs::remove_dir_all(base).unwrap();
    }
}
