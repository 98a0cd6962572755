//! /dev: a tmpfs populated with the devices a container expects, and the
//! virtual devices behind character-device numbers (wherever the node lives,
//! the guest kernel serves it; the host never opens device nodes).

use super::file::File;
use super::iobuf::IoBuf;
use super::{tmpfs, FileOps, InodeRef};
use crate::task::Creds;
use alloc::sync::Arc;
use qlib::linux::consts::mode::S_IFCHR;
use qlib::linux::Errno;

/// `makedev(major, minor)` in Linux's encoding.
pub const fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

/// Major and minor of a device number.
pub const fn split(dev: u64) -> (u64, u64) {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff), (dev & 0xff) | ((dev >> 12) & !0xff))
}

const DEVICES: [(&[u8], u64, u64, u32); 8] = [
    (b"null", 1, 3, 0o666),
    (b"zero", 1, 5, 0o666),
    (b"full", 1, 7, 0o666),
    (b"random", 1, 8, 0o666),
    (b"urandom", 1, 9, 0o666),
    (b"tty", 5, 0, 0o666),
    (b"console", 5, 1, 0o620),
    (b"ptmx", 5, 2, 0o666),
];

/// Builds the /dev tree.
pub fn root() -> InodeRef {
    let r = tmpfs::new_root(0o755);
    let root = Creds::initial(0, 0);
    for (name, major, minor, mode) in DEVICES {
        let _ = r.mknod(name, S_IFCHR | mode, makedev(major, minor), &root);
    }
    for (name, target) in [
        (&b"fd"[..], &b"/proc/self/fd"[..]),
        (b"stdin", b"/proc/self/fd/0"),
        (b"stdout", b"/proc/self/fd/1"),
        (b"stderr", b"/proc/self/fd/2"),
    ] {
        let _ = r.symlink(name, target, &root);
    }
    let _ = r.mkdir(b"shm", 0o1777, &root);
    let _ = r.mkdir(b"pts", 0o755, &root);
    let _ = r.mkdir(b"mqueue", 0o1777, &root);
    r
}

/// What a device does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Null,
    Zero,
    Full,
    Random,
    Tty,
}

/// An open virtual device.
pub struct Device {
    kind: Kind,
}

/// Opens the virtual device with number `rdev`.
pub fn open(rdev: u64) -> Result<Arc<dyn FileOps>, Errno> {
    let kind = match split(rdev) {
        (1, 3) => Kind::Null,
        (1, 5) => Kind::Zero,
        (1, 7) => Kind::Full,
        (1, 8) | (1, 9) => Kind::Random,
        (5, 0) | (5, 1) => Kind::Tty,
        _ => return Err(Errno::ENXIO),
    };
    Ok(Arc::new(Device { kind }))
}

static ZEROS: [u8; 4096] = [0; 4096];

fn fill_zero(buf: &mut IoBuf) -> Result<usize, Errno> {
    let mut n = 0;
    while buf.remaining() > 0 {
        let chunk = buf.remaining().min(4096) as usize;
        let w = buf.write_from(&ZEROS[..chunk])?;
        n += w;
        if w < chunk {
            break;
        }
    }
    Ok(n)
}

impl FileOps for Device {
    fn read(&self, f: &File, buf: &mut IoBuf, o: u64) -> Result<usize, Errno> {
        match self.kind {
            Kind::Null => Ok(0),
            Kind::Zero | Kind::Full => fill_zero(buf),
            Kind::Random => {
                let mut chunk = [0u8; 256];
                let mut n = 0;
                while buf.remaining() > 0 {
                    let c = buf.remaining().min(256) as usize;
                    crate::random::fill(&mut chunk[..c]);
                    let w = match buf.write_from(&chunk[..c]) {
                        Ok(w) => w,
                        Err(e) if n == 0 => return Err(e),
                        Err(_) => break,
                    };
                    n += w;
                    if w < c {
                        break;
                    }
                }
                Ok(n)
            }
            Kind::Tty => super::stdio::Stdio { fd: 0 }.read(f, buf, o),
        }
    }

    fn write(&self, f: &File, buf: &mut IoBuf, o: u64) -> Result<usize, Errno> {
        match self.kind {
            Kind::Full => Err(Errno::ENOSPC),
            Kind::Tty => super::stdio::Stdio { fd: 1 }.write(f, buf, o),
            _ => {
                let n = buf.remaining() as usize;
                buf.consume(n as u64);
                Ok(n)
            }
        }
    }

    fn seekable(&self) -> bool {
        self.kind != Kind::Tty
    }

    fn ioctl(&self, f: &File, req: u64, arg: u64) -> Result<u64, Errno> {
        match self.kind {
            Kind::Tty => super::stdio::Stdio { fd: 1 }.ioctl(f, req, arg),
            _ => Err(Errno::ENOTTY),
        }
    }
}
