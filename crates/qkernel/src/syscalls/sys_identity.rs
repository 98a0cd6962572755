//! User and group identity, and capabilities.

use super::{args, SysResult};
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::{read_user, write_user};
use crate::task::{self, cap, Creds};
use alloc::vec::Vec;
use qlib::linux::Errno;

fn creds() -> Creds {
    task::process().creds.lock().clone()
}

pub fn getuid(_: &mut TrapFrame) -> SysResult {
    Ok(creds().uid as u64)
}
pub fn geteuid(_: &mut TrapFrame) -> SysResult {
    Ok(creds().euid as u64)
}
pub fn getgid(_: &mut TrapFrame) -> SysResult {
    Ok(creds().gid as u64)
}
pub fn getegid(_: &mut TrapFrame) -> SysResult {
    Ok(creds().egid as u64)
}

pub fn getgroups(f: &mut TrapFrame) -> SysResult {
    let [size, list, ..] = args(f);
    let g = creds().groups;
    if size == 0 {
        return Ok(g.len() as u64);
    }
    if (size as usize) < g.len() {
        return Err(Errno::EINVAL);
    }
    for (i, gid) in g.iter().enumerate() {
        write_user(list + 4 * i as u64, gid)?;
    }
    Ok(g.len() as u64)
}

pub fn setgroups(f: &mut TrapFrame) -> SysResult {
    let [size, list, ..] = args(f);
    if size > 65536 {
        return Err(Errno::EINVAL);
    }
    let mut g = Vec::with_capacity(size as usize);
    for i in 0..size {
        g.push(read_user::<u32>(list + 4 * i)?);
    }
    let p = task::process();
    let mut c = p.creds.lock();
    if !c.has(cap::SETGID) {
        return Err(Errno::EPERM);
    }
    c.groups = g;
    Ok(0)
}

pub fn getresuid(f: &mut TrapFrame) -> SysResult {
    let c = creds();
    write_user(f.rdi, &c.uid)?;
    write_user(f.rsi, &c.euid)?;
    write_user(f.rdx, &c.suid)?;
    Ok(0)
}

pub fn getresgid(f: &mut TrapFrame) -> SysResult {
    let c = creds();
    write_user(f.rdi, &c.gid)?;
    write_user(f.rsi, &c.egid)?;
    write_user(f.rdx, &c.sgid)?;
    Ok(0)
}

/// After a uid change: dropping root's identities clears capabilities (the
/// rules of capabilities(7) without SECBIT_KEEP_CAPS).
fn fix_caps(c: &mut Creds, old_uid: u32, old_euid: u32, old_suid: u32) {
    let was_root = old_uid == 0 || old_euid == 0 || old_suid == 0;
    if was_root && c.uid != 0 && c.euid != 0 && c.suid != 0 {
        c.cap_permitted = 0;
        c.cap_effective = 0;
    }
    if old_euid == 0 && c.euid != 0 {
        c.cap_effective = 0;
    }
    if old_euid != 0 && c.euid == 0 {
        c.cap_effective = c.cap_permitted;
    }
    c.fsuid = c.euid;
}

const KEEP: u32 = u32::MAX;

/// setresuid semantics; the other setters are expressed through it.
fn set_uids(r: u32, e: u32, s: u32) -> SysResult {
    let p = task::process();
    let mut c = p.creds.lock();
    let privileged = c.has(cap::SETUID);
    let allowed = |x: u32| x == KEEP || privileged || x == c.uid || x == c.euid || x == c.suid;
    if !(allowed(r) && allowed(e) && allowed(s)) {
        return Err(Errno::EPERM);
    }
    let (ou, oe, os) = (c.uid, c.euid, c.suid);
    if r != KEEP {
        c.uid = r;
    }
    if e != KEEP {
        c.euid = e;
    }
    if s != KEEP {
        c.suid = s;
    }
    fix_caps(&mut c, ou, oe, os);
    Ok(0)
}

fn set_gids(r: u32, e: u32, s: u32) -> SysResult {
    let p = task::process();
    let mut c = p.creds.lock();
    let privileged = c.has(cap::SETGID);
    let allowed = |x: u32| x == KEEP || privileged || x == c.gid || x == c.egid || x == c.sgid;
    if !(allowed(r) && allowed(e) && allowed(s)) {
        return Err(Errno::EPERM);
    }
    if r != KEEP {
        c.gid = r;
    }
    if e != KEEP {
        c.egid = e;
    }
    if s != KEEP {
        c.sgid = s;
    }
    c.fsgid = c.egid;
    Ok(0)
}

pub fn setuid(f: &mut TrapFrame) -> SysResult {
    let uid = f.rdi as u32;
    if creds().has(cap::SETUID) {
        set_uids(uid, uid, uid)
    } else {
        set_uids(KEEP, uid, KEEP)
    }
}

pub fn setgid(f: &mut TrapFrame) -> SysResult {
    let gid = f.rdi as u32;
    if creds().has(cap::SETGID) {
        set_gids(gid, gid, gid)
    } else {
        set_gids(KEEP, gid, KEEP)
    }
}

pub fn setreuid(f: &mut TrapFrame) -> SysResult {
    let (r, e) = (f.rdi as u32, f.rsi as u32);
    let c = creds();
    // The saved uid follows the new effective uid when the real one changes
    // or the effective one becomes different from the old real uid.
    let s = if r != KEEP || (e != KEEP && e != c.uid) {
        if e != KEEP {
            e
        } else {
            c.euid
        }
    } else {
        KEEP
    };
    set_uids(r, e, s)
}

pub fn setregid(f: &mut TrapFrame) -> SysResult {
    let (r, e) = (f.rdi as u32, f.rsi as u32);
    let c = creds();
    let s = if r != KEEP || (e != KEEP && e != c.gid) {
        if e != KEEP {
            e
        } else {
            c.egid
        }
    } else {
        KEEP
    };
    set_gids(r, e, s)
}

pub fn setresuid(f: &mut TrapFrame) -> SysResult {
    set_uids(f.rdi as u32, f.rsi as u32, f.rdx as u32)
}

pub fn setresgid(f: &mut TrapFrame) -> SysResult {
    set_gids(f.rdi as u32, f.rsi as u32, f.rdx as u32)
}

pub fn setfsuid(f: &mut TrapFrame) -> SysResult {
    let p = task::process();
    let mut c = p.creds.lock();
    let old = c.fsuid;
    let u = f.rdi as u32;
    if c.has(cap::SETUID) || u == c.uid || u == c.euid || u == c.suid {
        c.fsuid = u;
    }
    Ok(old as u64)
}

pub fn setfsgid(f: &mut TrapFrame) -> SysResult {
    let p = task::process();
    let mut c = p.creds.lock();
    let old = c.fsgid;
    let g = f.rdi as u32;
    if c.has(cap::SETGID) || g == c.gid || g == c.egid || g == c.sgid {
        c.fsgid = g;
    }
    Ok(old as u64)
}

/// capget/capset use version 3 (two 32-bit words per set).
const CAP_V3: u32 = 0x2008_0522;

pub fn capget(f: &mut TrapFrame) -> SysResult {
    let [hdr, data, ..] = args(f);
    let h: [u32; 2] = read_user(hdr)?;
    if h[0] != CAP_V3 && h[0] != 0x2007_1026 {
        write_user(hdr, &[CAP_V3, h[1]])?;
        return Err(Errno::EINVAL);
    }
    let c = if h[1] == 0 { creds() } else { crate::task::pid::process(h[1]).ok_or(Errno::ESRCH)?.creds.lock().clone() };
    if data != 0 {
        let w = [
            c.cap_effective as u32,
            c.cap_permitted as u32,
            c.cap_inheritable as u32,
            (c.cap_effective >> 32) as u32,
            (c.cap_permitted >> 32) as u32,
            (c.cap_inheritable >> 32) as u32,
        ];
        write_user(data, &w)?;
    }
    Ok(0)
}

pub fn capset(f: &mut TrapFrame) -> SysResult {
    let [hdr, data, ..] = args(f);
    let h: [u32; 2] = read_user(hdr)?;
    if h[0] != CAP_V3 {
        return Err(Errno::EINVAL);
    }
    if h[1] != 0 && h[1] != task::process().pid {
        return Err(Errno::EPERM);
    }
    let w: [u32; 6] = read_user(data)?;
    let eff = w[0] as u64 | ((w[3] as u64) << 32);
    let perm = w[1] as u64 | ((w[4] as u64) << 32);
    let inh = w[2] as u64 | ((w[5] as u64) << 32);
    let p = task::process();
    let mut c = p.creds.lock();
    // Permitted may only shrink; effective must stay within permitted.
    if perm & !c.cap_permitted != 0 || eff & !perm != 0 || inh & !(c.cap_inheritable | c.cap_permitted) != 0 {
        return Err(Errno::EPERM);
    }
    c.cap_permitted = perm;
    c.cap_effective = eff;
    c.cap_inheritable = inh;
    Ok(0)
}

/// Operations gated by CAP_SYS_ADMIN, which the OCI default set lacks and
/// nothing inside a sandbox can gain (the bounding set excludes it): EPERM,
/// as Linux answers a process without it.
fn sys_admin_only() -> SysResult {
    if task::process().creds.lock().has(cap::SYS_ADMIN) {
        // Unreachable in a sandbox; the operations themselves are not offered.
        return Err(Errno::ENOSYS);
    }
    Err(Errno::EPERM)
}

pub fn mount(_: &mut TrapFrame) -> SysResult {
    sys_admin_only()
}

pub fn umount2(_: &mut TrapFrame) -> SysResult {
    sys_admin_only()
}

pub fn sethostname(_: &mut TrapFrame) -> SysResult {
    sys_admin_only()
}

pub fn setdomainname(_: &mut TrapFrame) -> SysResult {
    sys_admin_only()
}
