//! The sandbox's standard streams: host descriptors 0, 1 and 2 served by
//! the VMM. Data moves between the host descriptor and the guest frames
//! behind the user buffer (no guest copy). Terminal ioctls are limited to
//! the allowlist the VMM enforces (no TIOCSTI).

use super::file::File;
use super::iobuf::IoBuf;
use super::FileOps;
use crate::arch::x86_64::usercopy::{copy_to_user, read_user, write_user};
use crate::hcall;
use crate::task;
use qlib::hcall::{Call, TTY_IOCTL_ALLOWLIST};
use qlib::linux::consts::ioctl::*;
use qlib::linux::types::{Termios, Winsize};
use qlib::linux::Errno;

/// One host stdio stream.
pub struct Stdio {
    pub fd: u8,
}

fn transfer(fd: u8, buf: &mut IoBuf, write: bool) -> Result<usize, Errno> {
    let mut total = 0usize;
    while buf.remaining() > 0 {
        let iovs = match buf.frames(u64::MAX, !write) {
            Ok(v) => v,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        let mut progressed = false;
        for chunk in iovs.chunks(qlib::hcall::MAX_IOVECS) {
            // A task that must wait for the host parks; the vCPU stays free.
            match crate::hostq::stdio(fd, chunk, write) {
                Ok(got) => {
                    buf.consume(got);
                    total += got as usize;
                    progressed = got > 0;
                    let want: u64 = chunk.iter().map(|v| v.len).sum();
                    if got < want {
                        return Ok(total);
                    }
                }
                Err(e) if total == 0 => {
                    if e == Errno::EPIPE {
                        // Writing to a pipe nobody reads raises SIGPIPE.
                        let t = task::current_arc();
                        let sig = qlib::linux::consts::signal::SIGPIPE;
                        task::signal::send_to_task(&t, sig, task::signal::SigInfo::kernel(sig));
                    }
                    return Err(e);
                }
                Err(_) => return Ok(total),
            }
        }
        // A read returns what is available; reads of 0 mean end of file.
        if !write || !progressed {
            break;
        }
    }
    Ok(total)
}

impl FileOps for Stdio {
    fn stat(&self, _f: &File) -> Result<qlib::linux::types::Stat, Errno> {
        stat(self.fd)
    }

    fn anon_name(&self) -> &'static str {
        "pipe"
    }

    fn read(&self, _f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if self.fd != 0 {
            return Err(Errno::EBADF);
        }
        transfer(self.fd, buf, false)
    }

    fn write(&self, _f: &File, buf: &mut IoBuf, _offset: u64) -> Result<usize, Errno> {
        if self.fd == 0 {
            return Err(Errno::EBADF);
        }
        transfer(self.fd, buf, true)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn ioctl(&self, _f: &File, req: u64, arg: u64) -> Result<u64, Errno> {
        if !TTY_IOCTL_ALLOWLIST.contains(&req) {
            return Err(Errno::ENOTTY);
        }
        let p = hcall::page();
        if req == TCSETS {
            let t: Termios = read_user(arg)?;
            // SAFETY: Termios is plain data; the page's data area is larger.
            unsafe { core::ptr::copy_nonoverlapping(&t as *const Termios as *const u8, p.data.as_mut_ptr(), 36) };
        }
        p.args[0] = self.fd as u64;
        p.args[1] = req;
        hcall::call_result(Call::TtyIoctl)?;
        let p = hcall::page();
        match req {
            TCGETS => copy_to_user(arg, &p.data[..core::mem::size_of::<Termios>()])?,
            TIOCGWINSZ => copy_to_user(arg, &p.data[..core::mem::size_of::<Winsize>()])?,
            // The host's process group means nothing here: the terminal's
            // foreground group is the sandbox's first process group.
            TIOCGPGRP => write_user(arg, &1i32)?,
            _ => {}
        }
        Ok(0)
    }
}

/// fstat of a host stdio stream.
pub fn stat(fd: u8) -> Result<qlib::linux::types::Stat, Errno> {
    crate::hostfile::stat_handle(fd as u64)
}
