//! procfs (/proc) and a minimal sysfs (/sys): directories and files
//! generated from kernel state when opened (a file's content is a snapshot
//! taken at open, then read like a regular file).

use super::file::File;
use super::iobuf::IoBuf;
use super::path::Path;
use super::{new_ino, DirEntry, FileOps, FileType, Inode, InodeRef, Statfs};
use crate::task::{self, pid, Process, Task};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::Ordering;
use qlib::linux::consts::mode::*;
use qlib::linux::types::Stat;
use qlib::linux::Errno;

const PROC_SUPER_MAGIC: u64 = 0x9fa0;
const SYSFS_MAGIC: u64 = 0x6265_6572;

/// Text built without `core::fmt`.
#[derive(Default)]
pub struct Text(pub Vec<u8>);

impl Text {
    pub fn s(&mut self, s: &[u8]) -> &mut Self {
        self.0.extend_from_slice(s);
        self
    }
    pub fn n(&mut self, v: u64) -> &mut Self {
        let mut b = [0u8; 20];
        let k = qlib::numfmt::fmt_u64(v, &mut b);
        self.0.extend_from_slice(&b[20 - k..]);
        self
    }
    pub fn i(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.0.push(b'-');
        }
        self.n(v.unsigned_abs())
    }
    /// Hexadecimal, zero-padded to `width` digits.
    pub fn x(&mut self, v: u64, width: usize) -> &mut Self {
        let mut b = [0u8; 16];
        let k = qlib::numfmt::fmt_hex(v, &mut b);
        for _ in k..width {
            self.0.push(b'0');
        }
        self.0.extend_from_slice(&b[16 - k..]);
        self
    }
    /// Octal, zero-padded to `width` digits.
    pub fn o(&mut self, v: u64, width: usize) -> &mut Self {
        let mut digits = [0u8; 22];
        let mut k = 0;
        let mut x = v;
        loop {
            digits[k] = b'0' + (x & 7) as u8;
            k += 1;
            x >>= 3;
            if x == 0 {
                break;
            }
        }
        for _ in k..width {
            self.0.push(b'0');
        }
        for i in (0..k).rev() {
            self.0.push(digits[i]);
        }
        self
    }
    /// Right-aligned decimal in `width` columns.
    pub fn padn(&mut self, v: u64, width: usize) -> &mut Self {
        let mut b = [0u8; 20];
        let k = qlib::numfmt::fmt_u64(v, &mut b);
        for _ in k..width {
            self.0.push(b' ');
        }
        self.0.extend_from_slice(&b[20 - k..]);
        self
    }
    pub fn nl(&mut self) -> &mut Self {
        self.0.push(b'\n');
        self
    }
}

/// What a procfs node is.
#[derive(Clone)]
enum Node {
    Root,
    SelfLink,
    ThreadSelf,
    Pid(u32),
    PidFile(u32, PidFile),
    Fds(u32),
    Fd(u32, u64),
    Tasks(u32),
    Static(fn() -> Vec<u8>),
    Dir(&'static [(&'static [u8], Node)]),
    SysLink(&'static [u8]),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PidFile {
    Stat,
    Status,
    Statm,
    Cmdline,
    Environ,
    Comm,
    Maps,
    Smaps,
    Exe,
    Cwd,
    Root,
    Mounts,
    Mountinfo,
    Cgroup,
    Limits,
    Oom,
    Fdinfo,
}

const PID_FILES: [(&[u8], PidFile); 17] = [
    (b"stat", PidFile::Stat),
    (b"status", PidFile::Status),
    (b"statm", PidFile::Statm),
    (b"cmdline", PidFile::Cmdline),
    (b"environ", PidFile::Environ),
    (b"comm", PidFile::Comm),
    (b"maps", PidFile::Maps),
    (b"smaps", PidFile::Smaps),
    (b"exe", PidFile::Exe),
    (b"cwd", PidFile::Cwd),
    (b"root", PidFile::Root),
    (b"mounts", PidFile::Mounts),
    (b"mountinfo", PidFile::Mountinfo),
    (b"cgroup", PidFile::Cgroup),
    (b"limits", PidFile::Limits),
    (b"oom_score_adj", PidFile::Oom),
    (b"fdinfo", PidFile::Fdinfo),
];

static SYS_KERNEL: [(&[u8], Node); 5] = [
    (b"hostname", Node::Static(gen_hostname)),
    (b"ostype", Node::Static(gen_ostype)),
    (b"osrelease", Node::Static(gen_osrelease)),
    (b"pid_max", Node::Static(gen_pid_max)),
    (b"ngroups_max", Node::Static(gen_ngroups)),
];
static SYS_VM: [(&[u8], Node); 2] =
    [(b"overcommit_memory", Node::Static(gen_zero)), (b"max_map_count", Node::Static(gen_max_map))];
static SYS_FS: [(&[u8], Node); 1] = [(b"nr_open", Node::Static(gen_nr_open))];
static SYS: [(&[u8], Node); 3] =
    [(b"kernel", Node::Dir(&SYS_KERNEL)), (b"vm", Node::Dir(&SYS_VM)), (b"fs", Node::Dir(&SYS_FS))];
static ROOT_FILES: [(&[u8], Node); 12] = [
    (b"meminfo", Node::Static(gen_meminfo)),
    (b"cpuinfo", Node::Static(gen_cpuinfo)),
    (b"stat", Node::Static(gen_stat)),
    (b"uptime", Node::Static(gen_uptime)),
    (b"loadavg", Node::Static(gen_loadavg)),
    (b"version", Node::Static(gen_version)),
    (b"filesystems", Node::Static(gen_filesystems)),
    (b"cmdline", Node::Static(gen_cmdline)),
    (b"mounts", Node::SysLink(b"self/mounts")),
    (b"sys", Node::Dir(&SYS)),
    (b"thread-self", Node::ThreadSelf),
    (b"self", Node::SelfLink),
];

static SYS_CPU: [(&[u8], Node); 3] =
    [(b"online", Node::Static(gen_cpus)), (b"possible", Node::Static(gen_cpus)), (b"present", Node::Static(gen_cpus))];
static SYS_SYSTEM: [(&[u8], Node); 1] = [(b"cpu", Node::Dir(&SYS_CPU))];
static SYS_DEVICES: [(&[u8], Node); 1] = [(b"system", Node::Dir(&SYS_SYSTEM))];
static SYS_FS_DIRS: [(&[u8], Node); 1] = [(b"cgroup", Node::Dir(&[]))];
static SYSFS: [(&[u8], Node); 2] = [(b"devices", Node::Dir(&SYS_DEVICES)), (b"fs", Node::Dir(&SYS_FS_DIRS))];

/// A procfs inode.
pub struct ProcInode {
    node: Node,
    ino: u64,
    magic: u64,
}

fn inode(node: Node, magic: u64) -> InodeRef {
    Arc::new(ProcInode { ino: node_ino(&node), node, magic })
}

fn node_ino(n: &Node) -> u64 {
    match n {
        Node::Root => 1,
        Node::Pid(p) => (*p as u64) << 16,
        Node::PidFile(p, f) => ((*p as u64) << 16) | (*f as u64 + 16),
        Node::Fds(p) => ((*p as u64) << 16) | 0x100,
        Node::Fd(p, fd) => ((*p as u64) << 16) | 0x200 | (fd & 0xff),
        Node::Tasks(p) => ((*p as u64) << 16) | 0x300,
        _ => new_ino(),
    }
}

/// The root of /proc.
pub fn root() -> InodeRef {
    inode(Node::Root, PROC_SUPER_MAGIC)
}

/// The root of /sys.
pub fn sys_root() -> InodeRef {
    inode(Node::Dir(&SYSFS), SYSFS_MAGIC)
}

fn process(pid: u32) -> Result<Arc<Process>, Errno> {
    let p = pid::process(pid).ok_or(Errno::ENOENT)?;
    if p.exit.lock().reaped {
        return Err(Errno::ENOENT);
    }
    Ok(p)
}

fn pid_of_task(tid: u32) -> Option<u32> {
    pid::task(tid).map(|t| t.process.pid)
}

impl ProcInode {
    fn mode(&self) -> u32 {
        match &self.node {
            Node::Root | Node::Pid(_) | Node::Fds(_) | Node::Tasks(_) | Node::Dir(_) => S_IFDIR | 0o555,
            Node::PidFile(_, PidFile::Fdinfo) => S_IFDIR | 0o500,
            // fdinfo entries (the pid carries the fdinfo bit).
            Node::Fd(p, _) if *p & 0x8000_0000 != 0 => S_IFREG | 0o400,
            Node::SelfLink | Node::ThreadSelf | Node::Fd(_, _) | Node::SysLink(_) => S_IFLNK | 0o777,
            Node::PidFile(_, PidFile::Exe | PidFile::Cwd | PidFile::Root) => S_IFLNK | 0o777,
            Node::PidFile(_, PidFile::Environ) => S_IFREG | 0o400,
            Node::PidFile(_, PidFile::Oom) => S_IFREG | 0o644,
            _ => S_IFREG | 0o444,
        }
    }

    fn owner(&self) -> (u32, u32) {
        let pid = match &self.node {
            Node::Pid(p) | Node::PidFile(p, _) | Node::Fds(p) | Node::Fd(p, _) | Node::Tasks(p) => *p & 0x7fff_ffff,
            _ => return (0, 0),
        };
        match pid::process(pid) {
            Some(p) => {
                let c = p.creds.lock();
                (c.euid, c.egid)
            }
            None => (0, 0),
        }
    }

    fn entries(&self) -> Result<Vec<(Vec<u8>, Node)>, Errno> {
        Ok(match &self.node {
            Node::Root => {
                let mut v: Vec<(Vec<u8>, Node)> = ROOT_FILES.iter().map(|(n, k)| (n.to_vec(), k.clone())).collect();
                for p in pid::processes() {
                    if !p.exit.lock().reaped {
                        let mut t = Text::default();
                        t.n(p.pid as u64);
                        v.push((t.0, Node::Pid(p.pid)));
                    }
                }
                v
            }
            Node::Pid(p) => {
                let mut v: Vec<(Vec<u8>, Node)> =
                    PID_FILES.iter().map(|(n, f)| (n.to_vec(), Node::PidFile(*p, *f))).collect();
                v.push((b"fd".to_vec(), Node::Fds(*p)));
                v.push((b"task".to_vec(), Node::Tasks(*p)));
                v
            }
            Node::Fds(p) => {
                let files = process(*p)?.files.lock().clone();
                let fds: Vec<u64> = files.lock().open_fds().collect();
                fds.into_iter()
                    .map(|fd| {
                        let mut t = Text::default();
                        t.n(fd);
                        (t.0, Node::Fd(*p, fd))
                    })
                    .collect()
            }
            Node::PidFile(p, PidFile::Fdinfo) => {
                let files = process(*p)?.files.lock().clone();
                let fds: Vec<u64> = files.lock().open_fds().collect();
                fds.into_iter()
                    .map(|fd| {
                        let mut t = Text::default();
                        t.n(fd);
                        (t.0, Node::Fd(*p | 0x8000_0000, fd))
                    })
                    .collect()
            }
            Node::Tasks(p) => {
                let threads = process(*p)?.threads.lock().clone();
                threads
                    .iter()
                    .map(|t| {
                        let mut x = Text::default();
                        x.n(t.tid as u64);
                        (x.0, Node::Pid(*p))
                    })
                    .collect()
            }
            Node::Dir(list) => list.iter().map(|(n, k)| (n.to_vec(), k.clone())).collect(),
            _ => return Err(Errno::ENOTDIR),
        })
    }

    fn content(&self) -> Result<Vec<u8>, Errno> {
        Ok(match &self.node {
            Node::Static(f) => f(),
            Node::PidFile(p, f) => pid_file(&process(*p)?, *f)?,
            Node::Fd(p, fd) if *p & 0x8000_0000 != 0 => fdinfo(&process(*p & 0x7fff_ffff)?, *fd)?,
            _ => return Err(Errno::EISDIR),
        })
    }
}

impl Inode for ProcInode {
    fn ino(&self) -> u64 {
        self.ino
    }

    fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let (uid, gid) = self.owner();
        let t = crate::time::realtime_ns();
        Ok(Stat {
            st_dev: if self.magic == SYSFS_MAGIC { 0x15 } else { 0x14 },
            st_ino: self.ino,
            st_nlink: if self.file_type() == FileType::Directory { 2 } else { 1 },
            st_mode: self.mode(),
            st_uid: uid,
            st_gid: gid,
            st_blksize: 1024,
            st_atime: (t / 1_000_000_000) as i64,
            st_mtime: (t / 1_000_000_000) as i64,
            st_ctime: (t / 1_000_000_000) as i64,
            ..Stat::default()
        })
    }

    fn revalidate(&self, name: &[u8], _child: &InodeRef) -> bool {
        // Process directories come and go: always look them up again.
        !matches!(self.node, Node::Root | Node::Fds(_) | Node::Tasks(_) | Node::PidFile(_, PidFile::Fdinfo))
            || !name.first().is_some_and(|c| c.is_ascii_digit())
    }

    fn lookup(&self, name: &[u8]) -> Result<InodeRef, Errno> {
        if let Node::Root = self.node {
            if let Some(pid) = qlib::numfmt::parse_u64(name) {
                // /proc/<tid> works for threads too (hidden from listings).
                let p = pid_of_task(pid as u32).ok_or(Errno::ENOENT)?;
                process(p)?;
                return Ok(inode(Node::Pid(pid as u32), self.magic));
            }
        }
        if let Node::Tasks(p) = self.node {
            let tid = qlib::numfmt::parse_u64(name).ok_or(Errno::ENOENT)? as u32;
            if pid_of_task(tid) != Some(p) {
                return Err(Errno::ENOENT);
            }
            return Ok(inode(Node::Pid(p), self.magic));
        }
        for (n, node) in self.entries()? {
            if n == name {
                return Ok(inode(node, self.magic));
            }
        }
        Err(Errno::ENOENT)
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        let me = task::current();
        match &self.node {
            Node::SelfLink => {
                let mut t = Text::default();
                t.n(me.process.pid as u64);
                Ok(t.0)
            }
            Node::ThreadSelf => {
                let mut t = Text::default();
                t.n(me.process.pid as u64).s(b"/task/").n(me.tid as u64);
                Ok(t.0)
            }
            Node::SysLink(t) => Ok(t.to_vec()),
            Node::PidFile(p, PidFile::Exe) => Ok(process(*p)?.exe.lock().clone()),
            // Seen from the reader's root, as Linux's d_path.
            Node::PidFile(p, PidFile::Cwd) => {
                let pr = process(*p)?;
                let cwd = pr.fs.lock().lock().cwd.clone();
                let mine = me.process.fs.lock().lock().root.clone();
                Ok(cwd.absolute(&mine))
            }
            Node::PidFile(p, PidFile::Root) => {
                let pr = process(*p)?;
                let root = pr.fs.lock().lock().root.clone();
                let mine = me.process.fs.lock().lock().root.clone();
                Ok(root.absolute(&mine))
            }
            Node::Fd(p, fd) => {
                let files = process(*p)?.files.lock().clone();
                let file = files.lock().get(*fd).map_err(|_| Errno::ENOENT)?;
                Ok(describe(&file))
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn magic_target(&self) -> Option<super::Magic> {
        match &self.node {
            Node::Fd(p, fd) if *p & 0x8000_0000 == 0 => {
                let files = pid::process(*p)?.files.lock().clone();
                let file = files.lock().get(*fd).ok()?;
                Some(super::Magic::File(file))
            }
            Node::PidFile(p, PidFile::Cwd) => {
                let pr = pid::process(*p)?;
                let fs = pr.fs.lock().clone();
                let c = fs.lock().cwd.clone();
                Some(super::Magic::Path(c))
            }
            Node::PidFile(p, PidFile::Root) => {
                let pr = pid::process(*p)?;
                let fs = pr.fs.lock().clone();
                let r = fs.lock().root.clone();
                Some(super::Magic::Path(r))
            }
            Node::PidFile(p, PidFile::Exe) => {
                let pr = pid::process(*p)?;
                let fs = pr.fs.lock().clone();
                let (root, cwd) = {
                    let f = fs.lock();
                    (f.root.clone(), f.cwd.clone())
                };
                let exe = pr.exe.lock().clone();
                let c = pr.creds.lock().clone();
                super::path::resolve(&root, &cwd, &exe, super::path::Follow::Yes, &c).ok().map(super::Magic::Path)
            }
            _ => None,
        }
    }

    fn readdir(&self, offset: u64, emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        let entries = self.entries()?;
        let mut pos = offset;
        if pos == 0 {
            if !emit(1, DirEntry { ino: self.ino, kind: FileType::Directory, name: b".".to_vec() }) {
                return Ok(());
            }
            pos = 1;
        }
        if pos == 1 {
            if !emit(2, DirEntry { ino: 1, kind: FileType::Directory, name: b"..".to_vec() }) {
                return Ok(());
            }
            pos = 2;
        }
        for (i, (name, node)) in entries.into_iter().enumerate().skip((pos - 2) as usize) {
            let n = ProcInode { ino: node_ino(&node), node, magic: self.magic };
            if !emit(i as u64 + 3, DirEntry { ino: n.ino, kind: n.file_type(), name }) {
                break;
            }
        }
        Ok(())
    }

    fn open(self: Arc<Self>, flags: u32) -> Result<Arc<dyn FileOps>, Errno> {
        if self.file_type() == FileType::Directory {
            return Ok(Arc::new(ProcDir { inode: self }));
        }
        if flags & qlib::linux::consts::fcntl::O_ACCMODE as u32 != qlib::linux::consts::fcntl::O_RDONLY as u32 {
            // /proc/self/oom_score_adj and similar: writes are accepted.
            if let Node::PidFile(_, PidFile::Oom) = self.node {
                return Ok(Arc::new(Snapshot { data: self.content()? }));
            }
            return Err(Errno::EACCES);
        }
        Ok(Arc::new(Snapshot { data: self.content()? }))
    }

    fn statfs(&self) -> Result<Statfs, Errno> {
        Ok(Statfs { f_type: self.magic, f_bsize: 4096, f_namelen: 255, f_frsize: 4096, ..Statfs::default() })
    }
}

/// An open procfs directory.
struct ProcDir {
    inode: Arc<ProcInode>,
}

impl FileOps for ProcDir {
    fn readdir(&self, _f: &File, offset: u64, emit: &mut dyn FnMut(u64, DirEntry) -> bool) -> Result<(), Errno> {
        self.inode.readdir(offset, emit)
    }
}

/// File content captured at open.
struct Snapshot {
    data: Vec<u8>,
}

impl FileOps for Snapshot {
    fn read(&self, _f: &File, buf: &mut IoBuf, offset: u64) -> Result<usize, Errno> {
        if offset >= self.data.len() as u64 {
            return Ok(0);
        }
        buf.write_from(&self.data[offset as usize..])
    }

    fn write(&self, _f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        let n = buf.remaining() as usize;
        buf.consume(n as u64);
        Ok(n)
    }
}

/// How /proc/<pid>/fd/<n> describes a file.
pub fn describe(f: &File) -> Vec<u8> {
    if let Some(p) = &f.path {
        let root = task::process().fs.lock().lock().root.clone();
        return p.absolute(&root);
    }
    let mut t = Text::default();
    match &f.inode {
        Some(i) if i.file_type() == FileType::Fifo => t.s(b"pipe:[").n(i.ino()).s(b"]"),
        Some(i) if i.file_type() == FileType::Socket => t.s(b"socket:[").n(i.ino()).s(b"]"),
        Some(i) => t.s(b"anon_inode:[").n(i.ino()).s(b"]"),
        None => match f.ops.anon_name() {
            "pipe" => t.s(b"pipe:[").n(super::anon_ino(f)).s(b"]"),
            name => t.s(name.as_bytes()),
        },
    };
    t.0
}

fn gen_hostname() -> Vec<u8> {
    let mut v = task::hostname().to_vec();
    v.push(b'\n');
    v
}
fn gen_ostype() -> Vec<u8> {
    b"Linux\n".to_vec()
}
fn gen_osrelease() -> Vec<u8> {
    let mut v = crate::syscalls::sys_info::RELEASE.to_vec();
    v.push(b'\n');
    v
}
fn gen_pid_max() -> Vec<u8> {
    let mut t = Text::default();
    t.n(pid::PID_MAX as u64).nl();
    t.0
}
fn gen_ngroups() -> Vec<u8> {
    b"65536\n".to_vec()
}
fn gen_zero() -> Vec<u8> {
    b"0\n".to_vec()
}
fn gen_max_map() -> Vec<u8> {
    b"65530\n".to_vec()
}
fn gen_nr_open() -> Vec<u8> {
    b"1048576\n".to_vec()
}
fn gen_cpus() -> Vec<u8> {
    let n = crate::boot::params().vcpu_count as u64;
    let mut t = Text::default();
    if n == 1 {
        t.s(b"0\n");
    } else {
        t.s(b"0-").n(n - 1).nl();
    }
    t.0
}

fn gen_meminfo() -> Vec<u8> {
    let total = crate::boot::params().user_mem_limit / 1024;
    let free = crate::mm::frame::free_bytes() / 1024;
    let mut t = Text::default();
    let line = |t: &mut Text, name: &[u8], kb: u64| {
        t.s(name).s(b":");
        let pad = 16usize.saturating_sub(name.len() + 1);
        for _ in 0..pad {
            t.s(b" ");
        }
        t.padn(kb, 8).s(b" kB\n");
    };
    line(&mut t, b"MemTotal", total);
    line(&mut t, b"MemFree", free.min(total));
    line(&mut t, b"MemAvailable", free.min(total));
    line(&mut t, b"Buffers", 0);
    line(&mut t, b"Cached", 0);
    line(&mut t, b"SwapCached", 0);
    line(&mut t, b"SwapTotal", 0);
    line(&mut t, b"SwapFree", 0);
    line(&mut t, b"Shmem", 0);
    t.0
}

fn gen_cpuinfo() -> Vec<u8> {
    let mut t = Text::default();
    let r = core::arch::x86_64::__cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&r.edx.to_le_bytes());
    vendor[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    let khz = crate::boot::params().tsc_khz;
    let n = crate::boot::params().vcpu_count as u64;
    for c in 0..n {
        t.s(b"processor\t: ").n(c).nl();
        t.s(b"vendor_id\t: ").s(&vendor).nl();
        t.s(b"model name\t: Quark virtual CPU\n");
        t.s(b"cpu MHz\t\t: ").n(khz / 1000).s(b".").n((khz % 1000) / 100).nl();
        t.s(b"cpu cores\t: ").n(n).nl();
        t.s(b"flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall nx lm constant_tsc nopl pni ssse3 cx16 sse4_1 sse4_2 x2apic hypervisor\n");
        t.nl();
    }
    t.0
}

fn gen_stat() -> Vec<u8> {
    let mut t = Text::default();
    let up = crate::time::uptime_ns() / 10_000_000;
    t.s(b"cpu  ").n(up).s(b" 0 0 0 0 0 0 0 0 0\n");
    for c in 0..crate::boot::params().vcpu_count as u64 {
        t.s(b"cpu").n(c).s(b" ").n(up).s(b" 0 0 0 0 0 0 0 0 0\n");
    }
    let boot = (crate::boot::params().realtime_base_ns) / 1_000_000_000;
    t.s(b"ctxt 0\nbtime ").n(boot).s(b"\nprocesses ").n(pid::live() as u64).s(b"\nprocs_running 1\nprocs_blocked 0\n");
    t.0
}

fn gen_uptime() -> Vec<u8> {
    let ns = crate::time::uptime_ns();
    let mut t = Text::default();
    let cs = ns / 10_000_000;
    t.n(cs / 100).s(b".");
    if cs % 100 < 10 {
        t.s(b"0");
    }
    t.n(cs % 100).s(b" 0.00\n");
    t.0
}

fn gen_loadavg() -> Vec<u8> {
    let mut t = Text::default();
    t.s(b"0.00 0.00 0.00 1/").n(pid::live() as u64).s(b" ").n(pid::live() as u64).nl();
    t.0
}

fn gen_version() -> Vec<u8> {
    let mut t = Text::default();
    t.s(b"Linux version ")
        .s(crate::syscalls::sys_info::RELEASE)
        .s(b" (quark@quark) ")
        .s(crate::syscalls::sys_info::VERSION)
        .nl();
    t.0
}

fn gen_filesystems() -> Vec<u8> {
    b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\tdevpts\nnodev\thostfs\n".to_vec()
}

fn gen_cmdline() -> Vec<u8> {
    b"quark\n".to_vec()
}

fn read_user_range(p: &Process, start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if end <= start || end - start > 1 << 20 {
        return out;
    }
    let mm = p.mm.lock().clone();
    let space = mm.space.read();
    let mut a = start;
    while a < end {
        let page_end = ((a & !0xfff) + 0x1000).min(end);
        match space.frame_at(a) {
            Some(pa) => {
                let off = a & 0xfff;
                // SAFETY: a frame mapped in the process; direct map; read only.
                let s = unsafe {
                    core::slice::from_raw_parts(
                        (qlib::layout::phys_to_virt(pa) + off) as *const u8,
                        (page_end - a) as usize,
                    )
                };
                out.extend_from_slice(s);
            }
            None => break,
        }
        a = page_end;
    }
    out
}

fn state_char(t: &Task) -> &'static [u8] {
    match t.state() {
        task::State::Runnable if t.on_cpu.load(Ordering::Relaxed) => b"R (running)",
        task::State::Runnable => b"R (running)",
        task::State::Sleeping => b"S (sleeping)",
        task::State::Stopped => b"T (stopped)",
        task::State::Dead => b"Z (zombie)",
    }
}

fn pid_file(p: &Arc<Process>, f: PidFile) -> Result<Vec<u8>, Errno> {
    let mut t = Text::default();
    let leader = p.threads.lock().first().cloned();
    let comm = leader.as_ref().map(|l| *l.comm.lock()).unwrap_or([0; 16]);
    let comm = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(16)];
    let ppid = p.parent.lock().upgrade().map(|x| x.pid).unwrap_or(0) as u64;
    let mm = p.mm.lock().clone();
    match f {
        PidFile::Comm => {
            t.s(comm).nl();
        }
        PidFile::Cmdline => {
            let s = mm.space.read();
            let (a, b) = (s.arg_start, s.arg_end);
            drop(s);
            return Ok(read_user_range(p, a, b));
        }
        PidFile::Environ => {
            let s = mm.space.read();
            let (a, b) = (s.env_start, s.env_end);
            drop(s);
            return Ok(read_user_range(p, a, b));
        }
        PidFile::Stat => {
            let state = leader.as_ref().map(|l| state_char(l)[0]).unwrap_or(b'Z');
            let rss = mm.space.read().resident_pages();
            let vsize: u64 = mm.space.read().vmas().map(|v| v.end - v.start).sum();
            let threads = p.threads.lock().len() as u64;
            let start = p.start_ns / 10_000_000;
            t.n(p.pid as u64).s(b" (").s(comm).s(b") ").s(&[state]).s(b" ").n(ppid).s(b" ");
            t.n(p.pgid.load(Ordering::Relaxed) as u64).s(b" ").n(p.sid.load(Ordering::Relaxed) as u64);
            t.s(b" 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 ").n(threads).s(b" 0 ").n(start).s(b" ");
            t.n(vsize).s(b" ").n(rss).s(b" 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n");
        }
        PidFile::Statm => {
            let s = mm.space.read();
            let rss = s.resident_pages();
            let vsize: u64 = s.vmas().map(|v| v.end - v.start).sum::<u64>() / 4096;
            t.n(vsize).s(b" ").n(rss).s(b" 0 0 0 0 0\n");
        }
        PidFile::Status => {
            let c = p.creds.lock().clone();
            let state = leader.as_ref().map(|l| state_char(l)).unwrap_or(b"Z (zombie)");
            let s = mm.space.read();
            let rss = s.resident_pages() * 4;
            let vsize: u64 = s.vmas().map(|v| v.end - v.start).sum::<u64>() / 1024;
            drop(s);
            let (blocked, pending) = leader
                .as_ref()
                .map(|l| {
                    let sg = l.sig.lock();
                    (sg.blocked, sg.pending.set)
                })
                .unwrap_or((0, 0));
            let ign_cgt = {
                let h = p.sighand.lock().clone();
                let h = h.lock();
                let mut ign = 0u64;
                let mut cgt = 0u64;
                for (i, a) in h.actions.iter().enumerate() {
                    if a.handler == task::signal::SIG_IGN {
                        ign |= 1 << i;
                    } else if a.handler != task::signal::SIG_DFL {
                        cgt |= 1 << i;
                    }
                }
                (ign, cgt)
            };
            t.s(b"Name:\t").s(comm).nl();
            t.s(b"Umask:\t").o(p.fs.lock().lock().umask as u64, 4).nl();
            t.s(b"State:\t").s(state).nl();
            t.s(b"Tgid:\t").n(p.pid as u64).nl();
            t.s(b"Ngid:\t0\n");
            t.s(b"Pid:\t").n(p.pid as u64).nl();
            t.s(b"PPid:\t").n(ppid).nl();
            t.s(b"TracerPid:\t0\n");
            t.s(b"Uid:\t")
                .n(c.uid as u64)
                .s(b"\t")
                .n(c.euid as u64)
                .s(b"\t")
                .n(c.suid as u64)
                .s(b"\t")
                .n(c.fsuid as u64)
                .nl();
            t.s(b"Gid:\t")
                .n(c.gid as u64)
                .s(b"\t")
                .n(c.egid as u64)
                .s(b"\t")
                .n(c.sgid as u64)
                .s(b"\t")
                .n(c.fsgid as u64)
                .nl();
            t.s(b"FDSize:\t64\nGroups:\t");
            for (i, g) in c.groups.iter().enumerate() {
                if i > 0 {
                    t.s(b" ");
                }
                t.n(*g as u64);
            }
            // Linux ends the line with a space, groups or not.
            t.s(b" ").nl();
            t.s(b"VmSize:\t").padn(vsize, 8).s(b" kB\n");
            t.s(b"VmRSS:\t").padn(rss, 8).s(b" kB\n");
            t.s(b"Threads:\t").n(p.threads.lock().len() as u64).nl();
            t.s(b"SigQ:\t0/65536\n");
            t.s(b"SigPnd:\t").x(pending, 16).nl();
            t.s(b"ShdPnd:\t").x(p.shared_pending.lock().set, 16).nl();
            t.s(b"SigBlk:\t").x(blocked, 16).nl();
            t.s(b"SigIgn:\t").x(ign_cgt.0, 16).nl();
            t.s(b"SigCgt:\t").x(ign_cgt.1, 16).nl();
            t.s(b"CapInh:\t").x(c.cap_inheritable, 16).nl();
            t.s(b"CapPrm:\t").x(c.cap_permitted, 16).nl();
            t.s(b"CapEff:\t").x(c.cap_effective, 16).nl();
            t.s(b"CapBnd:\t").x(c.cap_bounding, 16).nl();
            t.s(b"CapAmb:\t0000000000000000\n");
            t.s(b"NoNewPrivs:\t0\nSeccomp:\t0\n");
            t.s(b"Cpus_allowed_list:\t");
            t.0.extend_from_slice(&gen_cpus());
        }
        PidFile::Maps | PidFile::Smaps => {
            let s = mm.space.read();
            for v in s.vmas() {
                t.x(v.start, 8).s(b"-").x(v.end, 8).s(b" ");
                t.s(if v.prot & 1 != 0 { b"r" } else { b"-" });
                t.s(if v.prot & 2 != 0 { b"w" } else { b"-" });
                t.s(if v.prot & 4 != 0 { b"x" } else { b"-" });
                t.s(if v.backing == crate::mm::addrspace::Backing::SharedAnon { b"s" } else { b"p" });
                t.s(b" 00000000 00:00 0");
                if let Some(name) = s.vma_name(v) {
                    t.s(b"                          ").s(name);
                }
                t.nl();
                if f == PidFile::Smaps {
                    let kb = (v.end - v.start) / 1024;
                    t.s(b"Size:           ").padn(kb, 8).s(b" kB\n");
                    t.s(b"Rss:            ").padn(s.resident_in(v.start, v.end) * 4, 8).s(b" kB\n");
                }
            }
        }
        PidFile::Exe | PidFile::Cwd | PidFile::Root => return Err(Errno::EINVAL),
        PidFile::Mounts => {
            for m in super::mount::all() {
                let at = mount_point(&m);
                t.s(&m.source).s(b" ").s(&at).s(b" ").s(m.fstype.as_bytes()).s(b" ");
                t.s(if m.readonly() { b"ro" } else { b"rw" });
                let fl = *m.flags.lock();
                if fl & super::mount::flags::NOSUID != 0 {
                    t.s(b",nosuid");
                }
                if fl & super::mount::flags::NODEV != 0 {
                    t.s(b",nodev");
                }
                if fl & super::mount::flags::NOEXEC != 0 {
                    t.s(b",noexec");
                }
                t.s(b" 0 0\n");
            }
        }
        PidFile::Mountinfo => {
            for m in super::mount::all() {
                let parent = m.parent.as_ref().map(|(p, _)| p.id).unwrap_or(m.id);
                let at = mount_point(&m);
                t.n(m.id as u64).s(b" ").n(parent as u64).s(b" 0:").n(m.id as u64).s(b" / ").s(&at).s(b" ");
                t.s(if m.readonly() { b"ro" } else { b"rw" }).s(b" - ").s(m.fstype.as_bytes()).s(b" ").s(&m.source);
                t.s(if m.readonly() { b" ro\n" } else { b" rw\n" });
            }
        }
        PidFile::Cgroup => {
            t.s(b"0::/\n");
        }
        PidFile::Limits => {
            const NAMES: [&[u8]; 16] = [
                b"Max cpu time",
                b"Max file size",
                b"Max data size",
                b"Max stack size",
                b"Max core file size",
                b"Max resident set",
                b"Max processes",
                b"Max open files",
                b"Max locked memory",
                b"Max address space",
                b"Max file locks",
                b"Max pending signals",
                b"Max msgqueue size",
                b"Max nice priority",
                b"Max realtime priority",
                b"Max realtime timeout",
            ];
            const UNITS: [&[u8]; 16] = [
                b"seconds",
                b"bytes",
                b"bytes",
                b"bytes",
                b"bytes",
                b"bytes",
                b"processes",
                b"files",
                b"bytes",
                b"bytes",
                b"locks",
                b"signals",
                b"bytes",
                b"",
                b"",
                b"us",
            ];
            t.s(b"Limit                     Soft Limit           Hard Limit           Units     \n");
            let lim = *p.rlimits.lock();
            for (i, l) in lim.iter().enumerate() {
                let mut row = Text::default();
                row.s(NAMES[i]);
                while row.0.len() < 26 {
                    row.s(b" ");
                }
                for v in [l.cur, l.max] {
                    let start = row.0.len();
                    if v == u64::MAX {
                        row.s(b"unlimited");
                    } else {
                        row.n(v);
                    }
                    while row.0.len() < start + 21 {
                        row.s(b" ");
                    }
                }
                row.s(UNITS[i]);
                t.s(&row.0).nl();
            }
        }
        PidFile::Oom => {
            t.s(b"0\n");
        }
        PidFile::Fdinfo => return Err(Errno::EISDIR),
    }
    Ok(t.0)
}

fn fdinfo(p: &Arc<Process>, fd: u64) -> Result<Vec<u8>, Errno> {
    let files = p.files.lock().clone();
    let file = files.lock().get(fd).map_err(|_| Errno::ENOENT)?;
    let mut t = Text::default();
    t.s(b"pos:\t").n(*file.pos.lock()).nl();
    t.s(b"flags:\t0").x(file.flags() as u64, 7).nl();
    t.s(b"mnt_id:\t").n(file.path.as_ref().map(|p| p.mnt.id).unwrap_or(0) as u64).nl();
    Ok(t.0)
}

fn mount_point(m: &Arc<super::mount::Mount>) -> Vec<u8> {
    match &m.parent {
        None => b"/".to_vec(),
        Some((pm, d)) => {
            let root = super::mount::root_path();
            Path { mnt: pm.clone(), dentry: d.clone() }.absolute(&root)
        }
    }
}
