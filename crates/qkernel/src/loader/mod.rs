//! Loading ELF programs into an address space and building the initial
//! stack (argv, envp, auxv) the Linux ABI specifies.
//!
//! The guest parses the file (the host never does); the host only reads file
//! bytes straight into the frames the loader allocated, so loading copies no
//! bytes in the guest. Static executables (ET_EXEC), PIEs (ET_DYN) and
//! dynamically linked programs (PT_INTERP: the interpreter is loaded too and
//! started first, with AT_BASE) are supported.

use crate::fs::file::File;
use crate::fs::{self, FileType};
use crate::mm::addrspace::{AddressSpace, Backing, Vma};
use crate::mm::frame::{self, Zero};
use crate::mm::pagetable::page_of;
use crate::mm::Mm;
use alloc::vec;
use alloc::vec::Vec;
use qlib::elf::{self, Header, ProgramHeader, PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD, PT_PHDR};
use qlib::hcall::GuestIovec;
use qlib::layout::{align_up, phys_to_virt, PAGE_SIZE, USER_END};
use qlib::linux::consts::auxv::*;
use qlib::linux::consts::mman::{PROT_EXEC, PROT_READ, PROT_WRITE};
use qlib::linux::consts::mode::{S_IFMT, S_IFREG};
use qlib::linux::Errno;

/// Top of the user stack before randomisation (one page below USER_END).
const STACK_TOP_MAX: u64 = USER_END;
/// Size reserved for the main thread's stack.
pub const STACK_SIZE: u64 = 8 << 20;
/// Gap between the stack and the mmap area.
const STACK_GAP: u64 = 128 << 20;
/// Random range of the stack top (16 GiB, as Linux).
const STACK_RANDOM_PAGES: u64 = 1 << 22;
/// Random range of the mmap base (1 TiB).
const MMAP_RANDOM_PAGES: u64 = 1 << 28;
/// Where ET_EXEC programs' brk begins: right after the image (plus random pages).
const BRK_RANDOM_PAGES: u64 = 1 << 13;

/// What the loader learned about a loaded program.
pub struct Loaded {
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
    pub load_bias: u64,
    pub brk_start: u64,
    /// The program's own entry (AT_ENTRY); `entry` is the interpreter's
    /// when there is one.
    pub prog_entry: u64,
    /// Where the interpreter was loaded (AT_BASE), 0 without one.
    pub interp_base: u64,
}

fn prot_of(flags: u32) -> u64 {
    let mut p = 0;
    if flags & PF_R != 0 {
        p |= PROT_READ;
    }
    if flags & PF_W != 0 {
        p |= PROT_WRITE;
    }
    if flags & PF_X != 0 {
        p |= PROT_EXEC;
    }
    p
}

/// Chooses the mmap base and stack top of a new address space.
pub fn layout_randomised() -> (u64, u64) {
    let stack_top = STACK_TOP_MAX - (crate::random::u64() % STACK_RANDOM_PAGES) * PAGE_SIZE;
    let mmap_base = stack_top - STACK_SIZE - STACK_GAP - (crate::random::u64() % MMAP_RANDOM_PAGES) * PAGE_SIZE;
    (mmap_base, stack_top)
}

/// Opens `path` (resolved in the calling context `ctx`) and checks it is
/// an executable regular file on a mount that allows execution.
pub fn open_executable(
    ctx: &fs::path::FsContext,
    creds: &crate::task::Creds,
    path: &[u8],
) -> Result<alloc::sync::Arc<File>, Errno> {
    let p = fs::path::resolve(&ctx.root, &ctx.cwd, path, fs::path::Follow::Yes, creds)?;
    if p.dentry.inode.file_type() != FileType::Regular {
        return Err(Errno::EACCES);
    }
    if p.mnt.noexec() {
        return Err(Errno::EACCES);
    }
    let st = p.dentry.inode.stat()?;
    if st.st_mode & S_IFMT != S_IFREG || st.st_mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    fs::may_access(&st, creds, fs::MAY_EXEC)?;
    fs::vfs::open_path(&p, qlib::linux::consts::fcntl::O_RDONLY as u32, creds)
}

/// Loads the ELF program in `file` into `mm`, and its interpreter if it
/// names one (resolved from `ctx`'s root).
pub fn load_elf(
    mm: &mut AddressSpace,
    file: &File,
    ctx: &fs::path::FsContext,
    creds: &crate::task::Creds,
) -> Result<Loaded, Errno> {
    let img = load_one(mm, file, false)?;
    let Some(interp) = img.1 else { return Ok(img.0) };
    let ifile =
        open_executable(ctx, creds, &interp).map_err(|e| if e == Errno::EACCES { Errno::ELIBBAD } else { e })?;
    let (i, nested) = load_one(mm, &ifile, true)?;
    if nested.is_some() {
        return Err(Errno::ELIBBAD);
    }
    Ok(Loaded { entry: i.entry, interp_base: i.load_bias, ..img.0 })
}

/// Loads one ELF file; returns it and the interpreter path it names.
fn load_one(mm: &mut AddressSpace, file: &File, is_interp: bool) -> Result<(Loaded, Option<Vec<u8>>), Errno> {
    let mut head = vec![0u8; PAGE_SIZE as usize];
    let n = fs::read_kernel(file, 0, &mut head)?;
    let hdr = Header::parse(&head[..n]).map_err(|e| {
        crate::klog!(crate::log::level::DEBUG, "exec: ", e.message());
        Errno::ENOEXEC
    })?;
    let (ph_start, ph_end) = hdr.phdr_range().map_err(|_| Errno::ENOEXEC)?;
    let table: Vec<u8> = if ph_end <= n as u64 {
        head[ph_start as usize..ph_end as usize].to_vec()
    } else {
        let mut t = vec![0u8; (ph_end - ph_start) as usize];
        if fs::read_kernel(file, ph_start, &mut t)? != t.len() {
            return Err(Errno::ENOEXEC);
        }
        t
    };
    let phdrs: Vec<ProgramHeader> = (0..hdr.phnum as usize)
        .map(|i| ProgramHeader::parse(&table, i))
        .collect::<Result<_, _>>()
        .map_err(|_| Errno::ENOEXEC)?;
    let interp = match phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        Some(_) if is_interp => return Err(Errno::ELIBBAD),
        Some(p) => {
            if p.filesz < 2 || p.filesz > 4096 {
                return Err(Errno::ENOEXEC);
            }
            let mut path = vec![0u8; p.filesz as usize];
            if fs::read_kernel(file, p.offset, &mut path)? != path.len() {
                return Err(Errno::ENOEXEC);
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            path.truncate(end);
            Some(path)
        }
        None => None,
    };

    // Extent of the loadable segments.
    let loads = || phdrs.iter().filter(|p| p.p_type == PT_LOAD);
    let lo = loads().map(|p| page_of(p.vaddr)).min().ok_or(Errno::ENOEXEC)?;
    let hi = loads()
        .map(|p| p.vaddr.checked_add(p.memsz).and_then(|e| align_up(e, PAGE_SIZE)))
        .try_fold(0u64, |m, e| e.map(|e| m.max(e)))
        .ok_or(Errno::ENOEXEC)?;
    if hi <= lo {
        return Err(Errno::ENOEXEC);
    }
    let bias = if hdr.e_type == elf::ET_DYN {
        // Static PIE: placed in the mmap area, like Linux.
        let start = mm.find_free(hi - lo).ok_or(Errno::ENOMEM)?;
        start - lo
    } else {
        0
    };
    if lo.checked_add(bias).is_none() || hi.checked_add(bias).is_none_or(|e| e > USER_END) {
        return Err(Errno::ENOEXEC);
    }

    for p in loads() {
        map_segment(mm, file, p, bias)?;
    }

    let phdr = match phdrs.iter().find(|p| p.p_type == PT_PHDR) {
        Some(p) => p.vaddr + bias,
        None => loads().find(|p| p.offset == 0).map(|p| p.vaddr + bias + hdr.phoff).unwrap_or(0),
    };
    let brk_start = hi + bias + (crate::random::u64() % BRK_RANDOM_PAGES) * PAGE_SIZE;
    let entry = hdr.entry + bias;
    Ok((
        Loaded { entry, phdr, phnum: hdr.phnum as u64, load_bias: bias, brk_start, prog_entry: entry, interp_base: 0 },
        interp,
    ))
}

/// Maps one PT_LOAD segment: one VMA over its pages; the pages holding file
/// bytes are allocated now and filled by the host, the rest (bss) are
/// demand-zero.
fn map_segment(mm: &mut AddressSpace, file: &File, p: &ProgramHeader, bias: u64) -> Result<(), Errno> {
    if p.filesz > p.memsz || p.offset % PAGE_SIZE != p.vaddr % PAGE_SIZE {
        return Err(Errno::ENOEXEC);
    }
    let vaddr = p.vaddr + bias;
    let start = page_of(vaddr);
    let mem_end = align_up(vaddr + p.memsz, PAGE_SIZE).ok_or(Errno::ENOEXEC)?;
    let file_end = vaddr + p.filesz;
    let file_pages_end = align_up(file_end, PAGE_SIZE).ok_or(Errno::ENOEXEC)?;
    let prot = prot_of(p.flags);

    // A later segment replaces an earlier one on a shared page, as Linux's
    // MAP_FIXED mappings do; the file bytes of that page include both.
    if !mm.is_free(start, mem_end) {
        mm.unmap(start, mem_end - start)?;
    }
    mm.insert(Vma { start, end: mem_end, prot, backing: Backing::Anon, grows_down: false });

    let mut iovs: Vec<GuestIovec> = Vec::new();
    let mut va = start;
    while va < file_pages_end {
        let pa = frame::alloc_frame(Zero::Yes).ok_or(Errno::ENOMEM)?;
        mm.map_frame(va, pa, prot)?;
        match iovs.last_mut() {
            Some(last) if last.gpa + last.len == pa => last.len += PAGE_SIZE,
            _ => iovs.push(GuestIovec { gpa: pa, len: PAGE_SIZE }),
        }
        va += PAGE_SIZE;
    }
    // Read from the start of the first page's file bytes up to filesz; the
    // rest of the last page stays zero (fresh frames), which is bss.
    let file_start = p.offset - (vaddr - start);
    let want = file_end - start;
    let mut remaining = want;
    for v in iovs.iter_mut() {
        v.len = v.len.min(remaining);
        remaining -= v.len;
    }
    iovs.retain(|v| v.len > 0);
    if want > 0 && fs::read_frames(file, file_start, &iovs)? != want {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// Inputs of the initial stack.
pub struct StackArgs<'a> {
    pub argv: &'a [&'a [u8]],
    pub envp: &'a [&'a [u8]],
    pub execfn: &'a [u8],
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub hwcap: u64,
    /// Address of the vDSO (AT_SYSINFO_EHDR), 0 for none.
    pub vdso: u64,
}

/// Creates the main stack VMA below `stack_top` and writes argc, argv, envp
/// and the auxiliary vector; returns the initial RSP.
pub fn build_stack(mm: &mut AddressSpace, stack_top: u64, img: &Loaded, a: &StackArgs) -> Result<u64, Errno> {
    mm.insert(Vma {
        start: stack_top - STACK_SIZE,
        end: stack_top,
        prot: PROT_READ | PROT_WRITE,
        backing: Backing::Anon,
        grows_down: true,
    });

    // Strings go at the top: execfn, envp, argv, platform, random bytes.
    let platform = b"x86_64\0";
    let strings_len: u64 = a.argv.iter().chain(a.envp.iter()).map(|s| s.len() as u64 + 1).sum::<u64>()
        + a.execfn.len() as u64
        + 1
        + platform.len() as u64
        + 16;
    let auxv_count = 21u64;
    let words = 1 + (a.argv.len() as u64 + 1) + (a.envp.len() as u64 + 1) + 2 * auxv_count;
    let total = strings_len + words * 8 + 16;
    if total > STACK_SIZE / 4 {
        return Err(Errno::E2BIG);
    }
    let block_start = (stack_top - total) & !15;
    let mut block = vec![0u8; (stack_top - block_start) as usize];
    let base = block_start;

    // Lay strings down from the top.
    let mut top = block.len();
    let put_str = |block: &mut Vec<u8>, top: &mut usize, s: &[u8]| -> u64 {
        *top -= s.len() + 1;
        block[*top..*top + s.len()].copy_from_slice(s);
        block[*top + s.len()] = 0;
        base + *top as u64
    };
    let execfn_addr = put_str(&mut block, &mut top, a.execfn);
    // argv then envp strings, ascending and contiguous (as Linux lays them:
    // /proc/<pid>/cmdline and environ read these ranges).
    let seq_len: usize = a.argv.iter().chain(a.envp.iter()).map(|s| s.len() + 1).sum();
    top -= seq_len;
    let mut at = top;
    let mut seq = |block: &mut Vec<u8>, s: &[u8]| -> u64 {
        block[at..at + s.len()].copy_from_slice(s);
        block[at + s.len()] = 0;
        at += s.len() + 1;
        base + (at - s.len() - 1) as u64
    };
    let arg_addrs: Vec<u64> = a.argv.iter().map(|s| seq(&mut block, s)).collect();
    let env_addrs: Vec<u64> = a.envp.iter().map(|s| seq(&mut block, s)).collect();
    let args_end = base + top as u64 + a.argv.iter().map(|s| s.len() as u64 + 1).sum::<u64>();
    (mm.arg_start, mm.arg_end) = (base + top as u64, args_end);
    (mm.env_start, mm.env_end) = (args_end, base + (top + seq_len) as u64);
    let platform_addr = put_str(&mut block, &mut top, &platform[..platform.len() - 1]);
    top -= 16;
    crate::random::fill(&mut block[top..top + 16]);
    let random_addr = base + top as u64;

    // Pointer area from the bottom: argc, argv, NULL, envp, NULL, auxv.
    let mut w: Vec<u64> = Vec::with_capacity(words as usize);
    w.push(a.argv.len() as u64);
    w.extend_from_slice(&arg_addrs);
    w.push(0);
    w.extend_from_slice(&env_addrs);
    w.push(0);
    let aux = [
        (AT_HWCAP, a.hwcap),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_CLKTCK, 100),
        (AT_PHDR, img.phdr),
        (AT_PHENT, elf::PHDR_SIZE as u64),
        (AT_PHNUM, img.phnum),
        (AT_BASE, img.interp_base),
        (AT_FLAGS, 0),
        (AT_ENTRY, img.prog_entry),
        (AT_UID, a.uid as u64),
        (AT_EUID, a.euid as u64),
        (AT_GID, a.gid as u64),
        (AT_EGID, a.egid as u64),
        (AT_SECURE, (a.uid != a.euid || a.gid != a.egid) as u64),
        (AT_RANDOM, random_addr),
        (AT_HWCAP2, 0),
        (AT_EXECFN, execfn_addr),
        (AT_PLATFORM, platform_addr),
        (AT_MINSIGSTKSZ, 2048),
        (AT_SYSINFO_EHDR, a.vdso),
        (AT_NULL, 0),
    ];
    debug_assert!(aux.len() as u64 == auxv_count);
    for (k, v) in aux {
        w.push(k);
        w.push(v);
    }
    let sp = block_start;
    for (i, word) in w.iter().enumerate() {
        block[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    debug_assert!((w.len() * 8) <= top);
    write_space_pages(mm, block_start, &block)?;
    Ok(sp)
}

/// Writes `data` at user address `va` of an address space that is in use
/// (not necessarily the current one), faulting pages in. Call `mm.finish()`
/// afterwards.
pub fn write_user_pages(mm: &Mm, va: u64, data: &[u8]) -> Result<(), Errno> {
    write_space_pages(&mm.space.read(), va, data)
}

/// Writes `data` at user address `va` of `mm` through the direct map,
/// faulting pages in (breaking copy-on-write sharing).
pub fn write_space_pages(mm: &AddressSpace, va: u64, data: &[u8]) -> Result<(), Errno> {
    mm.populate(va, data.len() as u64, true)?;
    let mut done = 0usize;
    while done < data.len() {
        let addr = va + done as u64;
        let in_page = (addr % PAGE_SIZE) as usize;
        let n = (PAGE_SIZE as usize - in_page).min(data.len() - done);
        let pa = mm.frame_at(addr).ok_or(Errno::EFAULT)?;
        // SAFETY: `pa` is a frame of this address space (just populated),
        // mapped by the direct map; we write within the page.
        unsafe {
            core::ptr::copy_nonoverlapping(data[done..].as_ptr(), (phys_to_virt(pa) + in_page as u64) as *mut u8, n)
        };
        done += n;
    }
    Ok(())
}
