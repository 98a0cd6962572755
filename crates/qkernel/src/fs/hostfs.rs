//! The container root, served by the VMM's file service (docs/hostfs.md).
//!
//! Every inode holds an `O_PATH` host handle; lookups walk one component at
//! a time (the dentry cache keeps the result), files are opened by name
//! through their parent's handle (the service cannot reopen an `O_PATH`
//! handle of a non-directory), and bulk data moves between the host file and
//! the guest frames behind the user's buffer: the guest copies no bytes.
//!
//! Data requests (Read/Write) past the first MiB of a system call (the
//! host's policy) go through the queued host-call path instead (`crate::hostq`, docs/hostfs.md "Which
//! path"): the task parks while a host worker moves the bytes, the vCPU runs
//! other tasks. Their iovec list lives on the heap, not in the call page.
//!
//! Requests and small results travel in this vCPU's VMM-call page: the
//! response at `data[0..32]`, a stat at `data[STAT_AT..]`, names and iovec
//! lists after it. Calls do not nest and the kernel runs with interrupts off,
//! so the page is ours until the next call.

use super::file::File;
use super::iobuf::IoBuf;
use super::{DirEntry, FileOps, FileType, Inode, InodeRef, SetAttr, Statfs, TimeChange};
use crate::hcall;
use crate::task::Creds;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::hcall::{Call, GuestIovec, DATA_SIZE};
use qlib::hostfs::{build, open as hopen, req, resolve, unlink as hunlink, utime, GuestStr, Request, Response};
use qlib::layout::kernel_va_to_pa;
use qlib::linux::consts::mode::*;
use qlib::linux::types::Stat;
use qlib::linux::Errno;

/// Offset in the page's data of a stat the host writes.
const STAT_AT: usize = 64;
/// Offset of the first string argument.
const STR_AT: usize = 256;
/// Offset of the second string argument (names are at most 255 bytes).
const STR2_AT: usize = 512;
/// Offset of iovec lists and of small output buffers.
const BUF_AT: usize = 1024;
/// Most iovecs per Read/Write request.
const IOVS_PER_CALL: usize = (DATA_SIZE - BUF_AT) / 16;

fn page_pa(off: usize) -> u64 {
    kernel_va_to_pa(hcall::page().data.as_ptr() as u64) + off as u64
}

/// Puts `s` in the page at `off`; returns it as a request string.
fn put_str(off: usize, s: &[u8]) -> Result<GuestStr, Errno> {
    let room = match off {
        STR_AT => STR2_AT - STR_AT,
        STR2_AT => BUF_AT - STR2_AT,
        _ => DATA_SIZE - off,
    };
    if s.len() > room {
        return Err(Errno::ENAMETOOLONG);
    }
    hcall::page().data[off..off + s.len()].copy_from_slice(s);
    Ok(GuestStr { gpa: page_pa(off), len: s.len() as u64 })
}

/// Sends one request; returns the response.
fn call(r: Request) -> Response {
    let p = hcall::page();
    let b = r.to_bytes();
    for i in 0..8 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[8 * i..8 * i + 8]);
        p.args[i] = u64::from_le_bytes(w);
    }
    hcall::call(Call::HostFs);
    Response::from_bytes(&hcall::page().data[..32]).unwrap_or(Response::err(Errno::EIO))
}

fn call_ok(r: Request) -> Result<Response, Errno> {
    let resp = call(r);
    resp.result().map(|_| resp)
}

/// The stat the host wrote at `STAT_AT`.
fn page_stat() -> Stat {
    let mut st = Stat::default();
    // SAFETY: Stat is plain data (144 bytes) and the host wrote it at
    // data[STAT_AT..STAT_AT + 144].
    unsafe {
        core::ptr::copy_nonoverlapping(
            hcall::page().data[STAT_AT..].as_ptr(),
            &mut st as *mut Stat as *mut u8,
            core::mem::size_of::<Stat>(),
        )
    };
    st
}

fn close_handle(h: u64) {
    let _ = call(build::close(h));
}

/// An object of the container root.
pub struct HostInode {
    /// O_PATH handle.
    handle: u64,
    /// The directory it was found in, and its name there (None for the root).
    parent: Option<(Arc<HostInode>, Vec<u8>)>,
    ino: u64,
    kind: FileType,
    /// Mode, uid and gid from the last stat (for walks' permission checks;
    /// chmod/chown through the guest update it).
    perm: crate::sync::SpinLock<(u32, u32, u32)>,
    /// Ourselves, for children's parent links.
    me: Weak<HostInode>,
}

impl Drop for HostInode {
    fn drop(&mut self) {
        close_handle(self.handle);
    }
}

static ROOT: crate::sync::Once<Arc<HostInode>> = crate::sync::Once::new();
static READONLY: AtomicU64 = AtomicU64::new(0);

/// Connects to the file service: the root inode. Called once at boot.
pub fn init(readonly: bool) -> Result<(), Errno> {
    let r = call_ok(build::root(req::STAT, page_pa(STAT_AT)))?;
    let st = page_stat();
    let root = Arc::new_cyclic(|me| HostInode {
        handle: r.handle,
        parent: None,
        ino: st.st_ino,
        kind: FileType::Directory,
        perm: crate::sync::SpinLock::new((st.st_mode, st.st_uid, st.st_gid)),
        me: me.clone(),
    });
    READONLY.store(readonly as u64, Ordering::Relaxed);
    // SAFETY: boot vCPU, before any other user of ROOT.
    unsafe { ROOT.init(root) };
    Ok(())
}

/// The root directory of the container.
pub fn root_inode() -> InodeRef {
    root()
}

/// The root is served read-only.
pub fn readonly() -> bool {
    READONLY.load(Ordering::Relaxed) != 0
}

fn ts(c: Option<TimeChange>) -> (i64, u64) {
    match c {
        None => (0, utime::UTIME_OMIT),
        Some(TimeChange::Now) => (0, utime::UTIME_NOW),
        Some(TimeChange::Set(t)) => (t.tv_sec, t.tv_nsec as u64),
    }
}

impl HostInode {
    /// A child found or created in this directory (its stat is at STAT_AT).
    fn new_child(&self, name: &[u8], r: &Response) -> Result<InodeRef, Errno> {
        let st = page_stat();
        let parent = self.me.upgrade().ok_or(Errno::ENOENT)?;
        Ok(Arc::new_cyclic(|me| HostInode {
            handle: r.handle,
            parent: Some((parent, name.to_vec())),
            ino: st.st_ino,
            kind: FileType::from_mode(st.st_mode),
            perm: crate::sync::SpinLock::new((st.st_mode, st.st_uid, st.st_gid)),
            me: me.clone(),
        }))
    }

    /// Opens this object for I/O: directories through their own handle
    /// (".") and other files by name through the parent directory.
    fn open_host(&self, flags: u32) -> Result<u64, Errno> {
        let f = flags & (hopen::O_ACCMODE | hopen::O_APPEND | hopen::O_TRUNC | hopen::O_DIRECTORY | hopen::O_SYNC);
        let r = match (&self.parent, self.kind) {
            (_, FileType::Directory) | (None, _) => {
                let s = put_str(STR_AT, b".")?;
                call_ok(build::open(self.handle, s, f | hopen::O_DIRECTORY, 0, 0, 0))?
            }
            (Some((dir, name)), _) => {
                let s = put_str(STR_AT, name)?;
                call_ok(build::open(dir.handle, s, f | hopen::O_NOFOLLOW, 0, 0, 0))?
            }
        };
        Ok(r.handle)
    }

    fn create_kind(&self, name: &[u8], r: Request) -> Result<InodeRef, Errno> {
        let resp = call_ok(r)?;
        self.new_child(name, &resp)
    }

    fn handle_of(i: &InodeRef) -> Result<&HostInode, Errno> {
        i.as_any().downcast_ref::<HostInode>().ok_or(Errno::EXDEV)
    }
}

impl Inode for HostInode {
    fn ino(&self) -> u64 {
        self.ino
    }

    fn file_type(&self) -> FileType {
        self.kind
    }

    fn stat(&self) -> Result<Stat, Errno> {
        call_ok(build::stat(self.handle, page_pa(STAT_AT)))?;
        let st = page_stat();
        *self.perm.lock() = (st.st_mode, st.st_uid, st.st_gid);
        Ok(st)
    }

    fn perm(&self) -> Result<Stat, Errno> {
        let (mode, uid, gid) = *self.perm.lock();
        Ok(Stat { st_ino: self.ino, st_mode: mode, st_uid: uid, st_gid: gid, ..Stat::default() })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn lookup(&self, name: &[u8]) -> Result<InodeRef, Errno> {
        let s = put_str(STR_AT, name)?;
        let r = call_ok(build::walk(self.handle, s, resolve::NOFOLLOW | req::HANDLE | req::STAT, page_pa(STAT_AT)))?;
        self.new_child(name, &r)
    }

    fn create(&self, name: &[u8], mode: u32, _c: &Creds) -> Result<InodeRef, Errno> {
        let s = put_str(STR_AT, name)?;
        self.create_kind(
            name,
            build::mknod(self.handle, s, S_IFREG | (mode & 0o7777), req::HANDLE | req::STAT, page_pa(STAT_AT)),
        )
    }

    fn mkdir(&self, name: &[u8], mode: u32, _c: &Creds) -> Result<InodeRef, Errno> {
        let s = put_str(STR_AT, name)?;
        self.create_kind(name, build::mkdir(self.handle, s, mode & 0o7777, req::HANDLE | req::STAT, page_pa(STAT_AT)))
    }

    /// FIFOs, sockets and regular files; device nodes are EPERM (the host
    /// service never creates them).
    fn mknod(&self, name: &[u8], mode: u32, _rdev: u64, _c: &Creds) -> Result<InodeRef, Errno> {
        if matches!(mode & S_IFMT, S_IFCHR | S_IFBLK) {
            return Err(Errno::EPERM);
        }
        let s = put_str(STR_AT, name)?;
        self.create_kind(name, build::mknod(self.handle, s, mode, req::HANDLE | req::STAT, page_pa(STAT_AT)))
    }

    fn symlink(&self, name: &[u8], target: &[u8], _c: &Creds) -> Result<InodeRef, Errno> {
        let s = put_str(STR_AT, name)?;
        if target.len() > DATA_SIZE - BUF_AT {
            return Err(Errno::ENAMETOOLONG);
        }
        let t = put_str(BUF_AT, target)?;
        self.create_kind(name, build::symlink(self.handle, s, t, req::HANDLE | req::STAT, page_pa(STAT_AT)))
    }

    fn link(&self, name: &[u8], target: &InodeRef) -> Result<(), Errno> {
        let t = HostInode::handle_of(target)?;
        let Some((tdir, tname)) = &t.parent else { return Err(Errno::EPERM) };
        let old = put_str(STR_AT, tname)?;
        let new = put_str(STR2_AT, name)?;
        call_ok(build::link(tdir.handle, old, self.handle, new)).map(|_| ())
    }

    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        let s = put_str(STR_AT, name)?;
        call_ok(build::unlink(self.handle, s, 0)).map(|_| ())
    }

    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        let s = put_str(STR_AT, name)?;
        call_ok(build::unlink(self.handle, s, hunlink::AT_REMOVEDIR)).map(|_| ())
    }

    fn rename(&self, old: &[u8], new_dir: &InodeRef, new: &[u8], flags: u32) -> Result<(), Errno> {
        let nd = HostInode::handle_of(new_dir)?;
        let o = put_str(STR_AT, old)?;
        let n = put_str(STR2_AT, new)?;
        call_ok(build::rename(self.handle, o, nd.handle, n, flags)).map(|_| ())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; 4096];
        let out = GuestStr { gpa: kernel_va_to_pa(buf.as_mut_ptr() as u64), len: buf.len() as u64 };
        let n = call_ok(build::readlink(self.handle, GuestStr::default(), out))?.ret as usize;
        buf.truncate(n.min(4096));
        Ok(buf)
    }

    fn readdir(&self, _offset: u64, _emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        // Directories are listed through an open file (HostFile::readdir).
        Err(Errno::EBADF)
    }

    fn open(self: Arc<Self>, flags: u32) -> Result<Arc<dyn FileOps>, Errno> {
        if flags & qlib::linux::consts::fcntl::O_PATH as u32 != 0 {
            return Ok(Arc::new(HostFile { handle: 0, inode: self, dirpos: crate::sync::SpinLock::new(0) }));
        }
        let h = self.open_host(flags)?;
        Ok(Arc::new(HostFile { handle: h, inode: self, dirpos: crate::sync::SpinLock::new(0) }))
    }

    fn setattr(&self, a: &SetAttr) -> Result<(), Errno> {
        if let Some(size) = a.size {
            let h = self.open_host(hopen::O_WRONLY)?;
            let r = call_ok(build::truncate(h, size));
            close_handle(h);
            r?;
        }
        if let Some(mode) = a.mode {
            call_ok(build::chmod(self.handle, GuestStr::default(), mode & 0o7777))?;
        }
        if a.uid.is_some() || a.gid.is_some() {
            let uid = a.uid.map(|u| u as u64).unwrap_or(qlib::hostfs::ID_KEEP);
            let gid = a.gid.map(|g| g as u64).unwrap_or(qlib::hostfs::ID_KEEP);
            call_ok(build::chown(self.handle, GuestStr::default(), uid, gid))?;
        }
        if a.atime.is_some() || a.mtime.is_some() {
            call_ok(build::utimens(self.handle, GuestStr::default(), ts(a.atime), ts(a.mtime)))?;
        }
        if a.mode.is_some() || a.uid.is_some() || a.gid.is_some() {
            let _ = self.stat();
        }
        Ok(())
    }

    fn statfs(&self) -> Result<Statfs, Errno> {
        let mut s = Statfs::default();
        let gpa = page_pa(BUF_AT);
        call_ok(build::statfs(self.handle, gpa))?;
        // SAFETY: Statfs is plain data (120 bytes) and the host wrote it at
        // data[BUF_AT..].
        unsafe {
            core::ptr::copy_nonoverlapping(
                hcall::page().data[BUF_AT..].as_ptr(),
                &mut s as *mut Statfs as *mut u8,
                core::mem::size_of::<Statfs>(),
            )
        };
        Ok(s)
    }
}

/// The root directory.
pub fn root() -> InodeRef {
    ROOT.get().clone()
}

/// An open host file.
pub struct HostFile {
    /// Opened host handle (0 for O_PATH files).
    handle: u64,
    inode: Arc<HostInode>,
    /// The host directory position after the last listing (getdents).
    dirpos: crate::sync::SpinLock<u64>,
}

impl Drop for HostFile {
    fn drop(&mut self) {
        if self.handle != 0 {
            close_handle(self.handle);
        }
    }
}

/// How a data request travels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Synchronous VMM call (the vCPU waits in the host).
    Sync,
    /// Queued host call into a kernel buffer.
    QueuedKernel,
    /// Queued host call into user frames: each frame is pinned (a reference
    /// taken) until the host is done, because the parked task's vCPU acks TLB
    /// shootdowns and another thread's munmap could otherwise free a frame
    /// the host still writes. Until the task parks the kernel runs with
    /// interrupts disabled, so no shootdown completes between looking the
    /// frames up and pinning them.
    QueuedUser,
}

/// Takes (`pin`) or drops a reference on every user frame behind `iovs`.
fn pin_frames(iovs: &[GuestIovec], pin: bool) {
    use crate::mm::frame;
    use qlib::layout::PAGE_SIZE;
    for v in iovs {
        let mut pa = v.gpa & !(PAGE_SIZE - 1);
        while pa < v.gpa + v.len {
            if pin {
                frame::ref_inc(pa);
            } else if frame::ref_dec(pa) == 0 {
                // Unmapped while the host worked: ours was the last reference.
                frame::free_frame(pa);
            }
            pa += PAGE_SIZE;
        }
    }
}

/// Sends a Read/Write request through the queue; the task parks while a host
/// worker moves the data. The request names nothing in the vCPU's call page
/// (another task may use it meanwhile). Not interruptible: a
/// signal does not cut a regular file read or write short on Linux either.
fn call_queued(r: Request) -> Response {
    let b = r.to_bytes();
    let mut words = [0u64; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
    }
    match crate::hostq::call(qlib::hostq::op::HOSTFS, &words, false, crate::hostq::Expect::Later) {
        Some(c) => {
            let mut out = [0u8; 32];
            for (i, w) in c.resp.iter().enumerate() {
                out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
            }
            Response::from_bytes(&out).unwrap_or(Response::err(Errno::EIO))
        }
        None => Response::err(Errno::EAGAIN),
    }
}

/// Running totals of a Read/Write sent as several requests: bytes moved and
/// the offset of the next request.
struct Progress {
    total: u64,
    pos: u64,
}

impl Progress {
    /// Accounts one request's answer for `asked`. `Ok(true)`: it moved all of
    /// it, go on. An error ends the transfer; it is the caller's only when
    /// nothing moved yet (else the bytes moved so far are the result).
    fn step(&mut self, resp: Result<Response, Errno>, asked: &[GuestIovec]) -> Result<bool, Errno> {
        let resp = match resp {
            Ok(r) => r,
            Err(e) if self.total == 0 => return Err(e),
            Err(_) => return Ok(false),
        };
        let got = resp.ret as u64;
        self.total += got;
        self.pos = if self.pos == qlib::hostfs::OFFSET_CURRENT { resp.aux } else { self.pos + got };
        Ok(got >= asked.iter().map(|v| v.len).sum::<u64>())
    }
}

impl HostFile {
    /// Moves data between the host file at `offset` and `frames`.
    fn transfer(&self, offset: u64, iovs: &[GuestIovec], write: bool) -> Result<(u64, u64), Errno> {
        self.transfer_by(offset, iovs, write, Path::Sync)
    }

    fn transfer_by(&self, offset: u64, iovs: &[GuestIovec], write: bool, path: Path) -> Result<(u64, u64), Errno> {
        if path != Path::Sync {
            match self.transfer_queued(offset, iovs, write, path) {
                Err(Errno::EAGAIN) => {} // no queue after all: synchronous
                r => return r,
            }
        }
        let mut done = Progress { total: 0, pos: offset };
        for chunk in iovs.chunks(IOVS_PER_CALL) {
            let p = hcall::page();
            for (i, v) in chunk.iter().enumerate() {
                let o = BUF_AT + i * 16;
                p.data[o..o + 8].copy_from_slice(&v.gpa.to_le_bytes());
                p.data[o + 8..o + 16].copy_from_slice(&v.len.to_le_bytes());
            }
            let list = page_pa(BUF_AT);
            let r = if write {
                build::write(self.handle, done.pos, list, chunk.len() as u64)
            } else {
                build::read(self.handle, done.pos, list, chunk.len() as u64)
            };
            if !done.step(call_ok(r), chunk)? {
                break;
            }
        }
        Ok((done.total, done.pos))
    }

    /// [`HostFile::transfer`] through the queue, one request per
    /// `hostfs::MAX_IOVECS` iovecs. EAGAIN before anything moved: the queue
    /// is unavailable (the caller goes synchronous).
    fn transfer_queued(&self, offset: u64, iovs: &[GuestIovec], write: bool, path: Path) -> Result<(u64, u64), Errno> {
        let mut done = Progress { total: 0, pos: offset };
        for list in iovs.chunks(qlib::hostfs::MAX_IOVECS) {
            // `iovs` is a heap vector (IoBuf::frames): physically contiguous
            // and ours until we return, so the host reads the list in place.
            let gpa = kernel_va_to_pa(list.as_ptr() as u64);
            let r = if write {
                build::write(self.handle, done.pos, gpa, list.len() as u64)
            } else {
                build::read(self.handle, done.pos, gpa, list.len() as u64)
            };
            if path == Path::QueuedUser {
                pin_frames(list, true);
            }
            let resp = call_queued(r);
            if path == Path::QueuedUser {
                pin_frames(list, false);
            }
            if !done.step(resp.result().map(|_| resp), list)? {
                break;
            }
        }
        Ok((done.total, done.pos))
    }

    /// Reads file bytes at `offset` straight into guest frames (the program
    /// loader and file mappings).
    pub fn read_frames(&self, offset: u64, iovs: &[GuestIovec]) -> Result<u64, Errno> {
        self.transfer(offset, iovs, false).map(|r| r.0)
    }

    /// Writes guest frames to the host file at `offset` (write-back of
    /// shared mappings).
    pub fn write_frames(&self, offset: u64, iovs: &[GuestIovec]) -> Result<u64, Errno> {
        self.transfer(offset, iovs, true).map(|r| r.0)
    }

    fn rw(&self, f: &File, buf: &mut IoBuf, offset: u64, write: bool) -> Result<usize, Errno> {
        if self.handle == 0 {
            return Err(Errno::EBADF);
        }
        let append = write && f.flags() & hopen::O_APPEND != 0;
        let mut done = 0usize;
        let mut pos = if append { qlib::hostfs::OFFSET_CURRENT } else { offset };
        while buf.remaining() > 0 {
            let iovs = match buf.frames(1 << 20, !write) {
                Ok(v) => v,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            let want: u64 = iovs.iter().map(|v| v.len).sum();
            let path = match (crate::hostq::hostfs_queued(done as u64, want), buf.is_kernel()) {
                (false, _) => Path::Sync,
                (true, true) => Path::QueuedKernel,
                (true, false) => Path::QueuedUser,
            };
            let (got, newpos) = match self.transfer_by(pos, &iovs, write, path) {
                Ok(r) => r,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            buf.consume(got);
            done += got as usize;
            pos = newpos;
            if append {
                *f.pos.lock() = newpos;
            }
            if got < want {
                break;
            }
        }
        Ok(done)
    }
}

/// `struct linux_dirent64` header size.
const DIRENT_HDR: usize = 19;

impl FileOps for HostFile {
    fn read(&self, f: &File, buf: &mut IoBuf, offset: u64) -> Result<usize, Errno> {
        if self.inode.kind == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        self.rw(f, buf, offset, false)
    }

    fn write(&self, f: &File, buf: &mut IoBuf, offset: u64) -> Result<usize, Errno> {
        self.rw(f, buf, offset, true)
    }

    fn fsync(&self, _f: &File) -> Result<(), Errno> {
        if self.handle == 0 {
            return Err(Errno::EBADF);
        }
        call_ok(build::sync(self.handle, 0)).map(|_| ())
    }

    fn readdir(&self, _f: &File, offset: u64, emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        if self.handle == 0 || self.inode.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let mut pos = self.dirpos.lock();
        if *pos != offset {
            call_ok(build::seek(self.handle, offset as i64, qlib::hostfs::seek::SEEK_SET))?;
            *pos = offset;
        }
        loop {
            let out = GuestStr { gpa: page_pa(BUF_AT), len: (DATA_SIZE - BUF_AT) as u64 };
            let n = call_ok(build::getdents(self.handle, out))?.ret as usize;
            if n == 0 {
                return Ok(());
            }
            let data = &hcall::page().data[BUF_AT..BUF_AT + n];
            // Parse into owned entries first: `emit` may call into the
            // service (not today, but it must not see a half-read page).
            let mut entries = Vec::new();
            let mut i = 0;
            while i + DIRENT_HDR <= n {
                let rd = |o: usize| u64::from_le_bytes(data[i + o..i + o + 8].try_into().unwrap_or([0; 8]));
                let ino = rd(0);
                let off = rd(8);
                let reclen = u16::from_le_bytes([data[i + 16], data[i + 17]]) as usize;
                let dtype = data[i + 18];
                if reclen < DIRENT_HDR || i + reclen > n {
                    break;
                }
                let name_bytes = &data[i + DIRENT_HDR..i + reclen];
                let len = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len());
                let kind = match dtype {
                    1 => FileType::Fifo,
                    2 => FileType::CharDev,
                    4 => FileType::Directory,
                    6 => FileType::BlockDev,
                    10 => FileType::Symlink,
                    12 => FileType::Socket,
                    _ => FileType::Regular,
                };
                entries.push((off, DirEntry { ino, kind, name: name_bytes[..len].to_vec() }));
                i += reclen;
            }
            for (off, e) in entries {
                if !emit(off, e) {
                    // The host's position is past this entry: seek back next time.
                    *pos = u64::MAX;
                    return Ok(());
                }
                *pos = off;
            }
        }
    }

    fn release(&self, _f: &File) {}

    fn stat(&self, _f: &File) -> Result<Stat, Errno> {
        self.inode.stat()
    }

    fn host_file(&self) -> Option<&HostFile> {
        Some(self)
    }
}
