//! User and group identity.

use super::SysResult;
use crate::arch::x86_64::frame::TrapFrame;
use crate::arch::x86_64::usercopy::write_user;
use crate::task;

fn creds() -> crate::task::Creds {
    *task::current().process.creds.lock()
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

pub fn getgroups(_: &mut TrapFrame) -> SysResult {
    // No supplementary groups yet.
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
