//! execve.

use super::{current_arc, exit, fd::FdTable, sched, signal, Process, State};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::fpu::FpuState;
use crate::arch::x86_64::frame::{TrapFrame, RFLAGS_IF};
use crate::arch::x86_64::usercopy::{get_user_u64, strncpy_from_user};
use crate::loader::{self, StackArgs};
use crate::mm::addrspace::AddressSpace;
use crate::mm::Mm;
use crate::sync::SpinLock;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use qlib::layout::selector::{USER_CS, USER_DS};
use qlib::linux::Errno;

/// Longest argument or environment string (Linux's MAX_ARG_STRLEN).
const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Most bytes of arguments plus environment (a quarter of the 8 MiB stack).
const MAX_ARG_TOTAL: usize = 2 << 20;

/// Copies a NULL-terminated array of string pointers from user memory.
pub fn copy_strings(mut ptr: u64, total: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if ptr == 0 {
        return Ok(out);
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let s = get_user_u64(ptr)?;
        if s == 0 {
            return Ok(out);
        }
        let n = loop {
            match strncpy_from_user(&mut buf, s) {
                Ok(n) => break n,
                Err(Errno::ENAMETOOLONG) if buf.len() < MAX_ARG_STRLEN => buf.resize(buf.len() * 2, 0),
                Err(Errno::ENAMETOOLONG) => return Err(Errno::E2BIG),
                Err(e) => return Err(e),
            }
        };
        *total += n + 1 + 8;
        if *total > MAX_ARG_TOTAL {
            return Err(Errno::E2BIG);
        }
        out.push(buf[..n].to_vec());
        ptr += 8;
    }
}

/// The absolute path of `path` (resolved from the process's working
/// directory), for /proc/self/exe and the command name.
pub fn absolute(p: &Process, path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return path.to_vec();
    }
    let r = p.fs.lock().clone();
    let c = r.lock();
    let mut v = c.cwd.absolute(&c.root);
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(path);
    v
}

/// Most `#!` interpreters followed in one execve (Linux: 4 in 5.x+).
const MAX_SCRIPT_DEPTH: usize = 4;

/// Parses a `#!` line: the interpreter and its optional single argument.
fn parse_shebang(head: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let line = head.strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let line = &line[..end];
    let trim = |s: &[u8]| -> Vec<u8> {
        let a = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
        let b = s.iter().rposition(|&b| b != b' ' && b != b'\t').map(|i| i + 1).unwrap_or(a);
        s[a..b.max(a)].to_vec()
    };
    let line = trim(line);
    if line.is_empty() {
        return None;
    }
    match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => {
            let arg = trim(&line[i..]);
            Some((line[..i].to_vec(), if arg.is_empty() { None } else { Some(arg) }))
        }
        None => Some((line, None)),
    }
}

/// Replaces the calling process's program. On success the user frame holds
/// the new program's entry state.
pub fn execve(path: &[u8], argv: &[Vec<u8>], envp: &[Vec<u8>], frame: &mut TrapFrame) -> Result<(), Errno> {
    let t = current_arc();
    let p = t.process.clone();
    let creds = p.creds.lock().clone();
    let fs_ref = p.fs.lock().clone();
    // A copy: resolution may read this context again (/proc/self/cwd...).
    let ctx = crate::fs::vfs::copy_context(&fs_ref);
    // `#!` scripts: the interpreter runs with the script's path as argument.
    let mut argv: Vec<Vec<u8>> = argv.to_vec();
    let mut prog: Vec<u8> = path.to_vec();
    let mut file = loader::open_executable(&ctx, &creds, &prog)?;
    for depth in 0.. {
        let mut head = [0u8; 256];
        let n = crate::fs::read_kernel(&file, 0, &mut head)?;
        let Some((interp, arg)) = parse_shebang(&head[..n]) else { break };
        if depth == MAX_SCRIPT_DEPTH {
            return Err(Errno::ELOOP);
        }
        let mut new_argv = alloc::vec![interp.clone()];
        new_argv.extend(arg);
        new_argv.push(prog.clone());
        new_argv.extend(argv.iter().skip(1).cloned());
        argv = new_argv;
        prog = interp;
        file = loader::open_executable(&ctx, &creds, &prog)?;
    }
    // /proc/self/exe names the file itself (not the path used to reach it).
    let abs = file.path.as_ref().map(|fp| fp.absolute(&ctx.root)).unwrap_or_else(|| absolute(&p, &prog));

    // Build the new image completely before touching the process: a failure
    // up to here leaves the caller running its old program.
    let (mmap_base, stack_top) = loader::layout_randomised();
    let mut space = AddressSpace::new(mmap_base).ok_or(Errno::ENOMEM)?;
    let img = loader::load_elf(&mut space, &file, &ctx, &creds)?;
    let exe_file = file;
    space.brk_start = img.brk_start;
    space.brk = img.brk_start;
    let argv_refs: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
    let envp_refs: Vec<&[u8]> = envp.iter().map(|a| a.as_slice()).collect();
    let hwcap = core::arch::x86_64::__cpuid(1).edx as u64;
    let vdso = crate::mm::vdso::map(&mut space)?;
    let sp = loader::build_stack(
        &mut space,
        stack_top,
        &img,
        &StackArgs {
            argv: &argv_refs,
            envp: &envp_refs,
            execfn: path,
            uid: creds.uid,
            euid: creds.euid,
            gid: creds.gid,
            egid: creds.egid,
            hwcap,
            vdso,
        },
    )?;

    // Point of no return.
    dethread(&t);
    let mm = Mm::from_space(space);
    let old = core::mem::replace(&mut *p.mm.lock(), mm.clone());
    sched::switch_mm(mm);
    drop(old);

    // Caught signals revert to their default; ignored ones stay ignored.
    let handlers = p.sighand.lock().lock().actions;
    let mut fresh = signal::SigHandlers::default();
    for (i, a) in handlers.iter().enumerate() {
        if a.handler == signal::SIG_IGN {
            fresh.actions[i].handler = signal::SIG_IGN;
        }
    }
    *p.sighand.lock() = Arc::new(SpinLock::new(fresh));
    t.sig.lock().altstack = (0, 0, signal::SS_DISABLE);
    let mut files: FdTable = p.files.lock().lock().clone();
    let closed = files.close_on_exec();
    *p.files.lock() = Arc::new(SpinLock::new(files));
    drop(closed);
    *p.exe.lock() = abs.clone();
    let old_exe = p.exe_file.lock().replace(exe_file);
    drop(old_exe);
    p.did_exec.store(true, Ordering::Relaxed);
    // The command name comes from the path given to execve (a symlink's
    // name, the script's name), /proc/self/exe from the file itself.
    let base = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    let mut comm = [0u8; 16];
    let n = base.len().min(15);
    comm[..n].copy_from_slice(&base[..n]);
    *t.comm.lock() = comm;

    // Like mm_release: a vfork parent resumes, and CLONE_CHILD_CLEARTID fires.
    let ctid = t.clear_child_tid.swap(0, Ordering::AcqRel);
    if ctid != 0 {
        super::futex::wake_address(&p, ctid, 1);
    }
    exit::complete_vfork(&t);
    t.robust_list.store(0, Ordering::Relaxed);

    let fpu = FpuState::new_initial().ok_or(Errno::ENOMEM)?;
    fpu.restore();
    *t.fpu() = fpu;
    t.fs_base.store(0, Ordering::Relaxed);
    t.gs_base.store(0, Ordering::Relaxed);
    cpu::set_fs_base(0);
    cpu::set_user_gs_base(0);
    *frame = TrapFrame {
        rip: img.entry,
        rsp: sp,
        rflags: RFLAGS_IF | 2,
        cs: USER_CS as u64,
        ss: USER_DS as u64,
        vector: frame.vector,
        error: u64::MAX,
        ..TrapFrame::default()
    };
    t.frame_rewritten.store(true, Ordering::Release);
    Ok(())
}

/// Makes the caller the only thread of its process (the others exit).
fn dethread(t: &Arc<super::Task>) {
    let p = &t.process;
    let others: Vec<_> = p.threads.lock().iter().filter(|x| !Arc::ptr_eq(x, t)).cloned().collect();
    if others.is_empty() {
        return;
    }
    p.exit.lock().dethread_by = Some(t.tid);
    for o in &others {
        o.sig_flag.store(true, Ordering::Release);
        sched::wake(o);
        sched::resume_stopped(o);
    }
    p.child_wait.wait_until(|| others.iter().all(|o| o.state() == State::Dead), false, None);
    p.exit.lock().dethread_by = None;
}
