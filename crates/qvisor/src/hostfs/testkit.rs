//! A host-side driver of the hostfs protocol, for tests and benchmarks: a
//! [`GuestMemory`] stands in for the guest, strings and buffers are placed
//! in it, and every operation goes through encoded request bytes and
//! [`HostFs::handle`], exactly as a transport would deliver them. Plus
//! [`TestTree`], a temporary root with an "outside" next to it.

use super::service::HostFs;
use crate::memory::GuestMemory;
use crate::sys::{self, Errno};
use qlib::hcall::GuestIovec;
use qlib::hostfs::{build, req, GuestStr, Request, Response, Statfs, Statx};
use qlib::linux::types::Stat;
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// Where the scratch area for strings and buffers starts in guest memory.
pub const SCRATCH_BASE: u64 = 0x1000;

/// Drives a [`HostFs`] through request bytes.
pub struct Client {
    pub fs: HostFs,
    pub mem: GuestMemory,
    next: Cell<u64>,
}

/// Result of a call that returns a handle.
pub type HandleResult = Result<u64, Errno>;

impl Client {
    /// A client with `mem_size` bytes of guest memory.
    pub fn new(fs: HostFs, mem_size: u64) -> Client {
        let mem = GuestMemory::new(mem_size).expect("guest memory for the hostfs test client");
        Client { fs, mem, next: Cell::new(SCRATCH_BASE) }
    }

    /// Forgets every scratch allocation (call between operations).
    pub fn reset(&self) {
        self.next.set(SCRATCH_BASE);
    }

    /// Allocates `len` bytes of guest scratch memory (16-byte aligned).
    pub fn alloc(&self, len: u64) -> u64 {
        let at = self.next.get();
        let end = (at + len + 15) & !15;
        assert!(end <= self.mem.size(), "hostfs test client: scratch memory exhausted");
        self.next.set(end);
        at
    }

    /// Places bytes in guest memory.
    pub fn put(&self, b: &[u8]) -> GuestStr {
        let gpa = self.alloc(b.len() as u64);
        self.mem.write(gpa, b).expect("scratch write");
        GuestStr { gpa, len: b.len() as u64 }
    }

    /// Reads guest memory.
    pub fn get(&self, gpa: u64, len: u64) -> Vec<u8> {
        let mut v = vec![0u8; len as usize];
        self.mem.read(gpa, &mut v).expect("scratch read");
        v
    }

    /// Sends raw request bytes.
    pub fn raw(&self, bytes: &[u8]) -> Response {
        let out = self.fs.handle(&self.mem, bytes);
        Response::from_bytes(&out).expect("the service answers RESPONSE_SIZE bytes")
    }

    /// Sends a request (encoded to bytes first).
    pub fn call(&self, r: Request) -> Response {
        self.raw(&r.to_bytes())
    }

    fn stat_at(&self, gpa: u64) -> Stat {
        self.mem.read_obj(gpa).expect("stat in scratch")
    }

    /// A new root handle.
    pub fn root(&self) -> HandleResult {
        self.reset();
        let r = self.call(build::root(0, 0));
        r.result().map(|_| r.handle)
    }

    /// Walk with a handle; returns (handle, stat).
    pub fn walk(&self, dir: u64, path: &[u8], resolve: u32) -> Result<(u64, Stat), Errno> {
        self.reset();
        let p = self.put(path);
        let st = self.alloc(144);
        let r = self.call(build::walk(dir, p, resolve | req::HANDLE | req::STAT, st));
        r.result().map(|_| (r.handle, self.stat_at(st)))
    }

    /// Walk without a handle: the stat only.
    pub fn lstat(&self, dir: u64, path: &[u8], resolve: u32) -> Result<Stat, Errno> {
        self.reset();
        let p = self.put(path);
        let st = self.alloc(144);
        let r = self.call(build::walk(dir, p, resolve | req::STAT, st));
        r.result().map(|_| self.stat_at(st))
    }

    /// Open; returns the handle.
    pub fn open(&self, dir: u64, path: &[u8], flags: u32, mode: u32) -> HandleResult {
        self.open_res(dir, path, flags, mode, 0)
    }

    /// Open with resolve flags.
    pub fn open_res(&self, dir: u64, path: &[u8], flags: u32, mode: u32, resolve: u32) -> HandleResult {
        self.reset();
        let p = self.put(path);
        let r = self.call(build::open(dir, p, flags, mode, resolve, 0));
        r.result().map(|_| r.handle)
    }

    /// Close.
    pub fn close(&self, h: u64) -> Result<(), Errno> {
        self.call(build::close(h)).result().map(|_| ())
    }

    /// fstat.
    pub fn stat(&self, h: u64) -> Result<Stat, Errno> {
        self.reset();
        let st = self.alloc(144);
        self.call(build::stat(h, st)).result().map(|_| self.stat_at(st))
    }

    /// statx.
    pub fn statx(&self, h: u64, mask: u32) -> Result<Statx, Errno> {
        self.reset();
        let at = self.alloc(256);
        self.call(build::statx(h, mask, at)).result().map(|_| self.mem.read_obj(at).expect("statx in scratch"))
    }

    /// statfs.
    pub fn statfs(&self, h: u64) -> Result<Statfs, Errno> {
        self.reset();
        let at = self.alloc(120);
        self.call(build::statfs(h, at)).result().map(|_| self.mem.read_obj(at).expect("statfs in scratch"))
    }

    /// Reads up to `len` bytes at `off` (`OFFSET_CURRENT` allowed) into
    /// `pieces` guest buffers of equal size; returns the data and `aux`.
    pub fn read_split(&self, h: u64, off: u64, len: u64, pieces: u64) -> Result<(Vec<u8>, u64), Errno> {
        self.reset();
        let piece = len.div_ceil(pieces.max(1));
        let mut iov = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = piece.min(left);
            iov.push(GuestIovec { gpa: self.alloc(n), len: n });
            left -= n;
        }
        let list = self.alloc(16 * iov.len() as u64);
        for (i, v) in iov.iter().enumerate() {
            self.mem.write_obj(list + 16 * i as u64, v).expect("iovec in scratch");
        }
        let r = self.call(build::read(h, off, list, iov.len() as u64));
        let n = r.result()?;
        let mut data = Vec::new();
        for v in &iov {
            data.extend(self.get(v.gpa, v.len));
        }
        data.truncate(n as usize);
        Ok((data, r.aux))
    }

    /// Reads up to `len` bytes at `off`.
    pub fn read(&self, h: u64, off: u64, len: u64) -> Result<Vec<u8>, Errno> {
        self.read_split(h, off, len, 1).map(|(d, _)| d)
    }

    /// Writes `data` at `off` (`OFFSET_CURRENT` allowed) from `pieces` guest
    /// buffers; returns (bytes, aux).
    pub fn write_split(&self, h: u64, off: u64, data: &[u8], pieces: usize) -> Result<(u64, u64), Errno> {
        self.reset();
        let piece = data.len().div_ceil(pieces.max(1)).max(1);
        let iov: Vec<GuestIovec> =
            data.chunks(piece).map(|c| GuestIovec { gpa: self.put(c).gpa, len: c.len() as u64 }).collect();
        let list = self.alloc(16 * iov.len() as u64);
        for (i, v) in iov.iter().enumerate() {
            self.mem.write_obj(list + 16 * i as u64, v).expect("iovec in scratch");
        }
        let r = self.call(build::write(h, off, list, iov.len() as u64));
        r.result().map(|n| (n, r.aux))
    }

    /// Writes `data` at `off`.
    pub fn write(&self, h: u64, off: u64, data: &[u8]) -> Result<u64, Errno> {
        self.write_split(h, off, data, 1).map(|(n, _)| n)
    }

    /// All entries of a directory handle opened for reading, as (name,
    /// d_type, ino), with a small buffer so several calls are needed.
    pub fn list(&self, h: u64) -> Result<Vec<(Vec<u8>, u8, u64)>, Errno> {
        let mut all = Vec::new();
        loop {
            self.reset();
            let buf = self.alloc(512);
            let n = self.call(build::getdents(h, GuestStr { gpa: buf, len: 512 })).result()?;
            if n == 0 {
                break;
            }
            let bytes = self.get(buf, n);
            for d in qlib::hostfs::dirents(&bytes) {
                all.push((d.name.to_vec(), d.d_type, d.ino));
            }
        }
        all.sort();
        Ok(all)
    }

    /// readlink of `name` in `h` (empty: `h` itself).
    pub fn readlink(&self, h: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        self.reset();
        let n = if name.is_empty() { GuestStr::default() } else { self.put(name) };
        let out = self.alloc(4096);
        let got = self.call(build::readlink(h, n, GuestStr { gpa: out, len: 4096 })).result()?;
        Ok(self.get(out, got))
    }

    /// Sends a request built from placed strings (`names` are put in guest
    /// memory in order and passed to `f`).
    pub fn with_names(&self, names: &[&[u8]], f: impl FnOnce(&[GuestStr]) -> Request) -> Result<Response, Errno> {
        self.reset();
        let strs: Vec<GuestStr> =
            names.iter().map(|n| if n.is_empty() { GuestStr::default() } else { self.put(n) }).collect();
        let r = self.call(f(&strs));
        r.result().map(|_| r)
    }
}

/// A temporary directory holding `root/` (served) and, next to it, what
/// must stay untouched: `secret` (a file) and `outside/` (a directory with
/// `outside/file`). Removed on drop.
pub struct TestTree {
    pub base: PathBuf,
    pub root: PathBuf,
}

impl TestTree {
    /// An empty root and the outside objects.
    pub fn new(tag: &str) -> TestTree {
        let base = std::env::temp_dir().join(format!("quark-hostfs-{tag}-{}-{}", std::process::id(), sys::gettid()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root")).expect("create the test root");
        std::fs::create_dir_all(base.join("outside")).expect("create the outside dir");
        std::fs::write(base.join("secret"), b"outside secret").expect("create the secret");
        std::fs::write(base.join("outside/file"), b"outside file").expect("create the outside file");
        TestTree { root: base.join("root"), base }
    }

    /// The standard tree: files, directories, absolute/relative/looping and
    /// escaping symlinks, a FIFO, a hard link.
    pub fn standard(tag: &str) -> TestTree {
        use std::os::unix::fs::symlink;
        let t = TestTree::new(tag);
        let r = &t.root;
        for d in ["etc", "bin", "dir/sub", "empty"] {
            std::fs::create_dir_all(r.join(d)).expect("tree dir");
        }
        std::fs::write(r.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").expect("tree file");
        std::fs::write(r.join("bin/prog"), b"\x7fELF program").expect("tree file");
        std::fs::write(r.join("dir/sub/deep"), b"deep").expect("tree file");
        std::fs::write(r.join("file"), b"hello, hostfs").expect("tree file");
        std::fs::hard_link(r.join("file"), r.join("hardlink")).expect("tree hard link");
        symlink("/etc/passwd", r.join("abs-link")).expect("tree symlink");
        symlink("etc/passwd", r.join("rel-link")).expect("tree symlink");
        symlink("dir/sub", r.join("dir-link")).expect("tree symlink");
        symlink("loop-b", r.join("loop-a")).expect("tree symlink");
        symlink("loop-a", r.join("loop-b")).expect("tree symlink");
        symlink("nowhere", r.join("dangling")).expect("tree symlink");
        symlink("../secret", r.join("up-link")).expect("tree symlink");
        symlink("../../../secret", r.join("dir/sub/up3")).expect("tree symlink");
        symlink(t.base.join("secret"), r.join("host-abs-secret")).expect("tree symlink");
        symlink(t.base.join("outside"), r.join("host-abs-outside")).expect("tree symlink");
        symlink("/proc/self/root/etc/passwd", r.join("magic")).expect("tree symlink");
        mkfifo(&r.join("fifo"));
        t
    }

    /// A path inside the root.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// An O_PATH descriptor of the root.
    pub fn root_fd(&self) -> std::os::fd::OwnedFd {
        crate::rootfs::open_root_dir(&self.root).expect("open the test root")
    }

    /// A service for the root.
    pub fn service(&self, readonly: bool) -> HostFs {
        HostFs::new(self.root_fd(), readonly).expect("start hostfs")
    }

    /// A client with 4 MiB of guest memory.
    pub fn client(&self, readonly: bool) -> Client {
        Client::new(self.service(readonly), 4 << 20)
    }

    /// Everything outside the root (the base directory itself, `secret`,
    /// `outside/` and its entries): content, link targets, mode, owner,
    /// inode, link count, modification and change times. Compare before and
    /// after an attack.
    pub fn outside_snapshot(&self) -> Vec<Entry> {
        let mut v = vec![entry(&self.base, false)];
        v.push(entry(&self.base.join("secret"), true));
        v.extend(snapshot(&self.base.join("outside")));
        // The base's entries other than root/ (nothing may appear next to it).
        let mut names: Vec<_> =
            std::fs::read_dir(&self.base).expect("list base").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        v.push(Entry { path: PathBuf::from(format!("{names:?}")), ..Entry::default() });
        v
    }
}

/// One filesystem object as [`snapshot`] records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    /// File content or link target.
    pub data: Vec<u8>,
}

fn entry(p: &Path, with_data: bool) -> Entry {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(p).expect("snapshot: object exists");
    let data = if !with_data {
        Vec::new()
    } else if md.file_type().is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        std::fs::read_link(p).expect("readlink").as_os_str().as_bytes().to_vec()
    } else if md.is_file() {
        std::fs::read(p).expect("read")
    } else {
        Vec::new()
    };
    Entry {
        path: p.to_path_buf(),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        ino: md.ino(),
        nlink: md.nlink(),
        size: md.size(),
        mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
        data,
    }
}

/// Every object beneath `dir` (and `dir` itself), sorted by path; FIFOs and
/// devices are recorded without being opened.
pub fn snapshot(dir: &Path) -> Vec<Entry> {
    let mut out = vec![entry(dir, false)];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("snapshot: list") {
            let p = e.expect("snapshot: entry").path();
            let ft = std::fs::symlink_metadata(&p).expect("snapshot: stat").file_type();
            out.push(entry(&p, ft.is_file() || ft.is_symlink()));
            if ft.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

impl Drop for TestTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn cpath(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Creates a FIFO (test set-up, by the host).
pub fn mkfifo(p: &Path) {
    mknod_raw(p, 0o010644, 0).expect("mkfifo");
}

/// Creates a device node (test set-up, by the host; needs CAP_MKNOD).
pub fn mknod_raw(p: &Path, mode: u32, dev: u64) -> Result<(), Errno> {
    let c = cpath(p);
    // SAFETY: a valid C string; integer mode and device.
    unsafe { sys::syscall6(sys::nr::MKNODAT, (-100i64) as u64, c.as_ptr() as u64, mode as u64, dev, 0, 0) }.map(|_| ())
}
