//! System information and randomness.

use super::SysResult;
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::write_user;
use alloc::vec::Vec;
use qlib::hcall::GuestIovec;
use qlib::layout::PAGE_SIZE;
use qlib::linux::consts::random::*;
use qlib::linux::types::Utsname;
use qlib::linux::Errno;

/// The kernel release programs see (glibc checks for a minimum version).
pub const RELEASE: &[u8] = b"6.8.0-quark";
/// The kernel version string.
pub const VERSION: &[u8] = b"#1 SMP PREEMPT_DYNAMIC Quark";

fn field(dst: &mut [u8; 65], s: &[u8]) {
    let n = s.len().min(64);
    dst[..n].copy_from_slice(&s[..n]);
}

pub fn uname(f: &mut TrapFrame) -> SysResult {
    let mut u = Utsname {
        sysname: [0; 65],
        nodename: [0; 65],
        release: [0; 65],
        version: [0; 65],
        machine: [0; 65],
        domainname: [0; 65],
    };
    field(&mut u.sysname, b"Linux");
    field(&mut u.nodename, crate::task::hostname());
    field(&mut u.release, RELEASE);
    field(&mut u.version, VERSION);
    field(&mut u.machine, b"x86_64");
    field(&mut u.domainname, b"(none)");
    write_user(f.rdi, &u)?;
    Ok(0)
}

pub fn getrandom(f: &mut TrapFrame) -> SysResult {
    let (buf, len, flags) = (f.rdi, f.rsi, f.rdx);
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == (GRND_RANDOM | GRND_INSECURE)
    {
        return Err(Errno::EINVAL);
    }
    // Linux caps one call at 32 MiB - 1.
    let len = len.min((32 << 20) - 1);
    if len == 0 {
        return Ok(0);
    }
    // The host writes the bytes straight into the frames behind the buffer
    // (generating them here would cost ~1 ms per 32 bytes where supervisor
    // code is emulated). The shared lock stays held until the host is done,
    // so a concurrent munmap cannot free those frames meanwhile.
    let mm = crate::task::mm();
    let r = (|| {
        let space = mm.space.read();
        let mut done = 0u64;
        while done < len {
            // One request: as many bytes as its list of frames can name.
            let mut iovs: Vec<GuestIovec> = Vec::new();
            let mut want = 0u64;
            let mut fault = None;
            while done + want < len && iovs.len() + 1 < qlib::hcall::MAX_IOVECS {
                let at = buf.wrapping_add(done + want);
                let n = (PAGE_SIZE - at % PAGE_SIZE).min(len - done - want);
                if let Err(e) = space.user_frames(at, n, true, &mut iovs) {
                    fault = Some(e);
                    break;
                }
                want += n;
            }
            if want > 0 {
                done += crate::hcall::random(&iovs)?;
            }
            if let Some(e) = fault {
                return if done == 0 { Err(e) } else { Ok(done) };
            }
        }
        Ok(done)
    })();
    mm.finish();
    r
}
