//! System information and randomness.

use super::SysResult;
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{copy_to_user, write_user};
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
    // Linux caps one call at 32 MiB - 1; reads of up to 256 bytes are never short.
    let len = len.min((32 << 20) - 1);
    let mut chunk = [0u8; 256];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(256) as usize;
        crate::random::fill(&mut chunk[..n]);
        if let Err(e) = copy_to_user(buf + done, &chunk[..n]) {
            return if done == 0 { Err(e) } else { Ok(done) };
        }
        done += n as u64;
    }
    Ok(done)
}
