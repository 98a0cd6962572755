//! Creation of the sandbox's first process (PID 1) from the init block.

use super::{default_rlimits, fd::FdTable, new_task, set_current, Creds, Process};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::frame::{TrapFrame, RFLAGS_IF};
use crate::boot::InitArgs;
use crate::hostfile::HostFile;
use crate::loader::{self, StackArgs};
use crate::mm::addrspace::AddressSpace;
use crate::sync::SpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use qlib::linux::Errno;

/// Docker's default PATH, used when the environment has none.
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Joins `cwd` and a relative `path` (no normalisation: the host resolves
/// `.` and `..` beneath the root).
fn absolute(cwd: &[u8], path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return path.to_vec();
    }
    let mut v = cwd.to_vec();
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(path);
    v
}

/// Finds the program like execvp: a name without `/` is searched in PATH.
fn resolve(name: &[u8], envp: &[&[u8]], cwd: &[u8]) -> Result<(Vec<u8>, HostFile), (Errno, Vec<u8>)> {
    if name.is_empty() {
        return Err((Errno::ENOENT, Vec::new()));
    }
    if name.contains(&b'/') {
        let path = absolute(cwd, name);
        return match loader::open_executable(&path) {
            Ok(f) => Ok((path, f)),
            Err(e) => Err((e, path)),
        };
    }
    let path_var = envp.iter().find_map(|e| e.strip_prefix(b"PATH=")).unwrap_or(DEFAULT_PATH);
    let mut first_error = Errno::ENOENT;
    for dir in path_var.split(|&c| c == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let mut cand = absolute(cwd, dir);
        cand.push(b'/');
        cand.extend_from_slice(name);
        match loader::open_executable(&cand) {
            Ok(f) => return Ok((cand, f)),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
            Err(e) => {
                if first_error == Errno::ENOENT {
                    first_error = e;
                }
            }
        }
    }
    Err((first_error, name.to_vec()))
}

/// Builds PID 1, makes it current, and returns its initial user registers.
pub fn spawn_init(args: &InitArgs) -> Result<TrapFrame, (Errno, Vec<u8>)> {
    let argv: Vec<&[u8]> = args.argv().collect();
    let envp: Vec<&[u8]> = args.envp().collect();
    let name = *argv.first().ok_or((Errno::EINVAL, Vec::new()))?;
    let (path, file) = resolve(name, &envp, args.cwd())?;
    let fail = |e: Errno| (e, path.clone());

    let (mmap_base, stack_top) = loader::layout_randomised();
    let mut mm = AddressSpace::new(mmap_base).ok_or_else(|| fail(Errno::ENOMEM))?;
    let img = loader::load_elf(&mut mm, &file).map_err(fail)?;
    drop(file);
    mm.brk_start = img.brk_start;
    mm.brk = img.brk_start;
    let h = args.header;
    let creds = Creds { uid: h.uid, euid: h.uid, suid: h.uid, gid: h.gid, egid: h.gid, sgid: h.gid };
    // CPUID leaf 1 EDX is what Linux reports as AT_HWCAP.
    let hwcap = core::arch::x86_64::__cpuid(1).edx as u64;
    let sp = loader::build_stack(
        &mut mm,
        stack_top,
        &img,
        &StackArgs { argv: &argv, envp: &envp, execfn: name, uid: h.uid, euid: h.uid, gid: h.gid, egid: h.gid, hwcap },
    )
    .map_err(fail)?;

    let process = Arc::new(Process {
        pid: 1,
        ppid: 0,
        mm: SpinLock::new(mm),
        files: SpinLock::new(FdTable::with_stdio()),
        creds: SpinLock::new(creds),
        rlimits: SpinLock::new(default_rlimits()),
        exe: SpinLock::new(path.clone()),
    });
    let task = new_task(1, process).ok_or_else(|| fail(Errno::ENOMEM))?;
    set_current(task);
    cpu::set_fs_base(0);
    Ok(TrapFrame { rip: img.entry, rsp: sp, rflags: RFLAGS_IF | 2, ..TrapFrame::default() })
}
