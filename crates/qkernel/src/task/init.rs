//! Creation of the sandbox's first process (PID 1) from the init block.

use super::wait::WaitQueue;
use super::{default_rlimits, fd::FdTable, new_task, pid, sched, signal, Creds, Process, ProcessExit};
use crate::arch::x86_64::fpu::FpuState;
use crate::arch::x86_64::frame::{TrapFrame, RFLAGS_IF};
use crate::arch::x86_64::switch;
use crate::boot::InitArgs;
use crate::loader::{self, StackArgs};
use crate::mm::addrspace::AddressSpace;
use crate::mm::Mm;
use crate::sync::SpinLock;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64};
use qlib::layout::selector::{USER_CS, USER_DS};
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
/// The program's path and its open file.
type Resolved = (Vec<u8>, Arc<crate::fs::file::File>);

fn resolve(
    name: &[u8],
    envp: &[&[u8]],
    cwd: &[u8],
    ctx: &crate::fs::path::FsContext,
    creds: &Creds,
) -> Result<Resolved, (Errno, Vec<u8>)> {
    if name.is_empty() {
        return Err((Errno::ENOENT, Vec::new()));
    }
    if name.contains(&b'/') {
        let path = absolute(cwd, name);
        return match loader::open_executable(ctx, creds, &path) {
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
        match loader::open_executable(ctx, creds, &cand) {
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

/// Builds a process with default state (for init and the platform check).
pub fn new_process(pid: u32, mm: Arc<Mm>, creds: Creds, exe: Vec<u8>, cwd: Vec<u8>) -> Arc<Process> {
    let creds_for_fs = creds.clone();
    Arc::new(Process {
        pid,
        parent: SpinLock::new(Weak::new()),
        pgid: AtomicU32::new(pid),
        sid: AtomicU32::new(pid),
        mm: SpinLock::new(mm),
        files: SpinLock::new(Arc::new(SpinLock::new(FdTable::with_stdio()))),
        sighand: SpinLock::new(Arc::new(SpinLock::new(signal::SigHandlers::default()))),
        shared_pending: SpinLock::new(Default::default()),
        threads: SpinLock::new(Vec::new()),
        children: SpinLock::new(Vec::new()),
        child_wait: WaitQueue::new(),
        exit: SpinLock::new(ProcessExit::default()),
        creds: SpinLock::new(creds),
        rlimits: SpinLock::new(default_rlimits()),
        exe: SpinLock::new(exe),
        exe_file: SpinLock::new(None),
        fs: SpinLock::new(crate::fs::vfs::initial_context(&cwd, &creds_for_fs)),
        exit_signal: AtomicU32::new(0),
        children_cpu_ns: AtomicU64::new(0),
        dead_threads_cpu_ns: AtomicU64::new(0),
        timers: SpinLock::new(Default::default()),
        dumpable: AtomicBool::new(true),
        start_ns: crate::time::uptime_ns(),
        group_exit_code: AtomicI32::new(0),
        did_exec: AtomicBool::new(false),
    })
}

/// Makes `process`'s first thread with user registers `frame` and queues it.
pub fn start(process: Arc<Process>, tid: u32, frame: TrapFrame) -> Result<(), Errno> {
    let task = new_task(tid, process.clone(), FpuState::new_initial().ok_or(Errno::ENOMEM)?).ok_or(Errno::ENOMEM)?;
    let frame = TrapFrame { cs: USER_CS as u64, ss: USER_DS as u64, rflags: RFLAGS_IF | 2, ..frame };
    // The command name is the program's base name, as after an execve.
    {
        let exe = process.exe.lock();
        let base = exe.rsplit(|&c| c == b'/').next().unwrap_or(&exe);
        let n = base.len().min(15);
        task.comm.lock()[..n].copy_from_slice(&base[..n]);
    }
    // SAFETY: the new task's kernel stack is unused.
    let ctx = unsafe { switch::initial_context(task.kstack_top(), &frame) };
    // SAFETY: the task is not running yet.
    unsafe { *task.ctx.get() = ctx };
    pid::register_task(&task);
    pid::register_process(&process);
    process.threads.lock().push(task.clone());
    sched::spawn(task);
    Ok(())
}

/// Builds PID 1 and queues it to run.
pub fn spawn_init(args: &InitArgs) -> Result<(), (Errno, Vec<u8>)> {
    let argv: Vec<&[u8]> = args.argv().collect();
    let envp: Vec<&[u8]> = args.envp().collect();
    let name = *argv.first().ok_or((Errno::EINVAL, Vec::new()))?;
    let h = args.header;
    let creds = Creds::initial(h.uid, h.gid);
    let ctx_ref = crate::fs::vfs::initial_context(args.cwd(), &creds);
    // A copy: resolution may read this context again (/proc/self/cwd...).
    let ctx = crate::fs::vfs::copy_context(&ctx_ref);
    let (path, file) = resolve(name, &envp, args.cwd(), &ctx, &creds)?;
    let fail = |e: Errno| (e, path.clone());

    let (mmap_base, stack_top) = loader::layout_randomised();
    let mut space = AddressSpace::new(mmap_base).ok_or_else(|| fail(Errno::ENOMEM))?;
    let img = loader::load_elf(&mut space, &file, &ctx, &creds).map_err(fail)?;
    space.brk_start = img.brk_start;
    space.brk = img.brk_start;
    let hwcap = core::arch::x86_64::__cpuid(1).edx as u64;
    let vdso = crate::mm::vdso::map(&mut space).map_err(fail)?;
    let sp = loader::build_stack(
        &mut space,
        stack_top,
        &img,
        &StackArgs {
            argv: &argv,
            envp: &envp,
            execfn: name,
            uid: h.uid,
            euid: h.uid,
            gid: h.gid,
            egid: h.gid,
            hwcap,
            vdso,
        },
    )
    .map_err(fail)?;
    let tid = pid::alloc().map_err(fail)?;
    let exe = file.path.as_ref().map(|p| p.absolute(&ctx.root)).unwrap_or_else(|| path.clone());
    let process = new_process(tid, Mm::from_space(space), Creds::initial(h.uid, h.gid), exe, args.cwd().to_vec());
    *process.exe_file.lock() = Some(file);
    start(process.clone(), tid, TrapFrame { rip: img.entry, rsp: sp, ..TrapFrame::default() }).map_err(fail)?;
    // As after an execve: the command name is the base of the path given.
    if let Some(t) = process.threads.lock().first() {
        let base = path.rsplit(|&c| c == b'/').next().unwrap_or(&path);
        let mut comm = [0u8; 16];
        let n = base.len().min(15);
        comm[..n].copy_from_slice(&base[..n]);
        *t.comm.lock() = comm;
    }
    Ok(())
}
