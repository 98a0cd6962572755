//! The VMM side of synchronous VMM calls, and the sandbox's shared state
//! (how it ended, watchdog samples).
//!
//! Every request is read from the calling vCPU's VMM-call page into host
//! memory once, then validated: call numbers, counts, descriptors and every
//! guest-physical range. Nothing the guest wrote is trusted.

use crate::kernel_image::KernelImage;
use crate::kvm::ioctl::Regs;
use crate::log::{level_name, Log};
use crate::memory::GuestMemory;
use crate::rootfs::RootFs;
use crate::sys::{self, Errno};
use crate::vcpu::Sample;
use qlib::hcall::{self, Call, ExitKind, GuestIovec, HEADER_SIZE, MAX_IOVECS, MAX_PATH, TTY_IOCTL_ALLOWLIST};
use qlib::layout::{DIRECT_MAP_BASE, KERNEL_VIRT_BASE};
use std::sync::atomic::{AtomicBool, AtomicI32};
use std::sync::{Barrier, Mutex};

/// How the sandbox ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxExit {
    /// The program exited with this status.
    Exited(i32),
    /// The program was killed by this signal.
    Signaled(u32),
    /// `quark check` finished: system calls that arrived through the
    /// compat-mode #PF redirect and directly.
    CheckDone { via_pf: u64, direct: u64 },
    /// The program could not be started.
    ExecFailed { errno: Errno, path: String },
    /// The guest kernel or the VM failed (panic, hang, KVM error).
    Failed(String),
}

/// What the vCPU loop does after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// State shared by the vCPU threads and the supervisor.
pub struct Services {
    pub mem: GuestMemory,
    pub rootfs: RootFs,
    /// The guest's file service over the container root (docs/hostfs.md).
    pub hostfs: crate::hostfs::HostFs,
    /// The guest's host sockets (docs/hostnet.md).
    pub net: crate::hostnet::HostNet,
    pub log: Log,
    pub kernel: KernelImage,
    pub hcall_pa: Vec<u64>,
    pub exit: Mutex<Option<SandboxExit>>,
    pub exit_signal: std::sync::Condvar,
    pub stopping: AtomicBool,
    pub vcpu_tids: Vec<AtomicI32>,
    pub sample_requested: Vec<AtomicBool>,
    pub samples: Vec<Mutex<Sample>>,
    /// vCPU threads wait here until confinement is complete.
    pub ready: Barrier,
    /// What `quark check`'s guest self-test reported.
    pub check_report: Mutex<Option<(u64, u64)>>,
    /// Enables the test-only VMM behaviours (quark_test in the guest).
    pub test_hooks: bool,
    /// The hostq doorbell, when the vCPU threads must relay it (KVM without
    /// ioeventfd); None when KVM signals it directly.
    pub hostq_doorbell: Option<shmq::host::EventFd>,
}

thread_local! {
    /// Per-vCPU-thread buffers of `Call::Net` (request copy, reply).
    static NET_BUFS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        std::cell::RefCell::new((Vec::with_capacity(4096), Vec::with_capacity(4096)));
}

fn errno_ret(e: Errno) -> i64 {
    e.to_ret()
}

impl Services {
    /// Records how the sandbox ended (the first report wins) and wakes the
    /// supervisor.
    pub fn finish(&self, how: SandboxExit) {
        if let Ok(mut e) = self.exit.lock() {
            if e.is_none() {
                *e = Some(how);
            }
        }
        self.exit_signal.notify_all();
    }

    /// A fatal VM-level failure on vCPU `id`.
    pub fn fail_vm(&self, id: u32, what: &str, regs: Option<Regs>) {
        let mut msg = format!("vCPU {id}: {what}");
        if let Some(r) = regs {
            msg.push_str(&format!("; {}", self.describe_regs(&r)));
        }
        self.log.vmm("error", &msg);
        self.finish(SandboxExit::Failed(msg));
    }

    /// Registers and a symbolised stack scan, for failure reports.
    pub fn describe_regs(&self, r: &Regs) -> String {
        let mut s = format!(
            "rip {:#x}{} rsp {:#x} rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x} r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x} rflags {:#x}",
            r.rip,
            self.kernel.symbolize(r.rip).map(|n| format!(" <{n}>")).unwrap_or_default(),
            r.rsp, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rflags
        );
        let frames = self.stack_scan(r.rsp);
        if !frames.is_empty() {
            s.push_str("; return addresses: ");
            s.push_str(&frames.join(" <- "));
        }
        s
    }

    /// Kernel-text addresses found on the kernel stack at `rsp` (likely
    /// return addresses; the kernel is built without frame pointers).
    pub fn stack_scan(&self, rsp: u64) -> Vec<String> {
        let pa = if rsp >= KERNEL_VIRT_BASE {
            rsp - KERNEL_VIRT_BASE
        } else if rsp >= DIRECT_MAP_BASE {
            rsp - DIRECT_MAP_BASE
        } else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Scan to the end of the 32 KiB-aligned stack block, at most 4 KiB.
        let end = ((pa | 0x7fff) + 1).min(pa + 4096);
        let mut a = pa & !7;
        while a + 8 <= end && out.len() < 16 {
            if let Ok(w) = self.mem.read_obj::<u64>(a) {
                if self.kernel.is_text(w) {
                    out.push(self.kernel.symbolize(w).unwrap_or_else(|| format!("{w:#x}")));
                }
            }
            a += 8;
        }
        out
    }

    fn read_iovecs(&self, page: u64, count: u64) -> Result<Vec<GuestIovec>, Errno> {
        if count as usize > MAX_IOVECS {
            return Err(Errno::EINVAL);
        }
        let mut v = Vec::with_capacity(count as usize);
        for i in 0..count {
            let iov: GuestIovec = self.mem.read_obj(page + HEADER_SIZE as u64 + 16 * i).map_err(|_| Errno::EFAULT)?;
            v.push(iov);
        }
        Ok(v)
    }

    /// A guest write to the hostq doorbell port reached the vCPU thread.
    pub fn ring_hostq_doorbell(&self) {
        if let Some(d) = &self.hostq_doorbell {
            let _ = d.notify();
        }
    }

    /// Handles the VMM call `call` from vCPU `vcpu`.
    pub fn handle_hcall(&self, vcpu: u32, call: u32) -> Control {
        let Some(&page) = self.hcall_pa.get(vcpu as usize) else {
            return Control::Stop;
        };
        // Copy the request header out once; everything below uses the copy.
        let Ok(args) = self.mem.read_obj::<[u64; 8]>(page) else {
            return Control::Stop;
        };
        let ret_at = page + std::mem::offset_of!(hcall::HcallPage, ret) as u64;
        let data_at = page + HEADER_SIZE as u64;
        let ret: i64 = match Call::from_raw(call) {
            None => {
                self.log.vmm("warn", &format!("vCPU {vcpu}: unknown VMM call {call}"));
                errno_ret(Errno::ENOSYS)
            }
            Some(Call::Nop) => 0,
            Some(Call::Log) => {
                let len = (args[1] as usize).min(hcall::DATA_SIZE);
                let mut buf = vec![0u8; len];
                if self.mem.read(data_at, &mut buf).is_ok() {
                    self.log.line("guest", level_name(args[0]), &String::from_utf8_lossy(&buf));
                }
                0
            }
            Some(Call::Panic) => {
                let len = (args[0] as usize).min(hcall::PANIC_FRAMES_OFFSET);
                let mut buf = vec![0u8; len];
                let _ = self.mem.read(data_at, &mut buf);
                let msg = String::from_utf8_lossy(&buf).into_owned();
                let report = format!(
                    "guest kernel panic on vCPU {vcpu}: {msg}; rip {:#x}{}; return addresses: {}",
                    args[1],
                    self.kernel.symbolize(args[1]).map(|n| format!(" <{n}>")).unwrap_or_default(),
                    self.stack_scan(args[2]).join(" <- ")
                );
                self.log.vmm("error", &report);
                self.finish(SandboxExit::Failed(report));
                return Control::Stop;
            }
            Some(Call::Exit) => {
                let how = match args[0] {
                    x if x == ExitKind::Exited as u64 => SandboxExit::Exited((args[1] & 0xff) as i32),
                    x if x == ExitKind::Signaled as u64 => SandboxExit::Signaled((args[1] & 0x7f) as u32),
                    x if x == ExitKind::CheckDone as u64 => {
                        let report = self.check_report.lock().ok().and_then(|r| *r).unwrap_or((0, 0));
                        SandboxExit::CheckDone { via_pf: report.0, direct: report.1 }
                    }
                    x if x == ExitKind::ExecFailed as u64 => {
                        let len = (args[2] as usize).min(hcall::DATA_SIZE);
                        let mut buf = vec![0u8; len];
                        let _ = self.mem.read(data_at, &mut buf);
                        SandboxExit::ExecFailed {
                            errno: Errno((args[1] & 0xfff) as u16),
                            path: String::from_utf8_lossy(&buf).into_owned(),
                        }
                    }
                    other => SandboxExit::Failed(format!("guest reported an unknown exit kind {other}")),
                };
                self.log.vmm("info", &format!("sandbox exit: {how:?}"));
                self.finish(how);
                return Control::Stop;
            }
            Some(Call::Write) | Some(Call::Read) => {
                let write = call == Call::Write as u32;
                match (args[0], write) {
                    (1 | 2, true) | (0, false) => {}
                    _ => return self.reply(ret_at, errno_ret(Errno::EBADF)),
                }
                match self.read_iovecs(page, args[1]).and_then(|v| self.mem.host_iovecs(&v).map_err(|_| Errno::EFAULT))
                {
                    Ok(iov) => {
                        match crate::hostq::transfer(args[0] as i32, &iov, write, args[2] & hcall::IO_NONBLOCK != 0) {
                            Ok(n) => n as i64,
                            Err(e) => errno_ret(e),
                        }
                    }
                    Err(e) => {
                        self.log
                            .vmm("warn", &format!("vCPU {vcpu}: refused a VMM call naming memory outside the guest"));
                        errno_ret(e)
                    }
                }
            }
            Some(Call::Open) => {
                let len = args[1] as usize;
                if len > MAX_PATH {
                    errno_ret(Errno::ENAMETOOLONG)
                } else {
                    let mut path = vec![0u8; len];
                    match self.mem.read(args[0], &mut path) {
                        Ok(()) => match self.rootfs.open(&path) {
                            Ok(h) => h as i64,
                            Err(e) => errno_ret(e),
                        },
                        Err(_) => errno_ret(Errno::EFAULT),
                    }
                }
            }
            Some(Call::Fstat) => match self.rootfs.stat(args[0]) {
                Ok(st) => {
                    if self.mem.write_obj(data_at, &st).is_err() {
                        errno_ret(Errno::EFAULT)
                    } else {
                        0
                    }
                }
                Err(e) => errno_ret(e),
            },
            Some(Call::Pread) => {
                match self.read_iovecs(page, args[2]).and_then(|v| self.mem.host_iovecs(&v).map_err(|_| Errno::EFAULT))
                {
                    Ok(iov) => match self.rootfs.pread(args[0], &iov, args[1]) {
                        Ok(n) => n as i64,
                        Err(e) => errno_ret(e),
                    },
                    Err(e) => errno_ret(e),
                }
            }
            Some(Call::Close) => match self.rootfs.close(args[0]) {
                Ok(()) => 0,
                Err(e) => errno_ret(e),
            },
            Some(Call::HostFs) => {
                let mut req = [0u8; qlib::hostfs::REQUEST_SIZE];
                for (i, a) in args.iter().enumerate() {
                    req[8 * i..8 * i + 8].copy_from_slice(&a.to_le_bytes());
                }
                let resp = self.hostfs.handle(&self.mem, &req);
                if self.mem.write(data_at, &resp).is_err() {
                    return Control::Stop;
                }
                i64::from_le_bytes([resp[0], resp[1], resp[2], resp[3], resp[4], resp[5], resp[6], resp[7]])
            }
            Some(Call::Net) => self.net_call(&args),
            Some(Call::TtyIoctl) => self.tty_ioctl(args[0], args[1], data_at),
            Some(Call::Test) => self.test_call(args[0]),
            Some(Call::Discard) => match self.read_iovecs(page, args[0]) {
                Ok(v) => {
                    let mut r = 0;
                    for iov in &v {
                        if self.mem.punch_hole(iov.gpa, iov.len).is_err() {
                            r = errno_ret(Errno::EFAULT);
                            break;
                        }
                    }
                    r
                }
                Err(e) => errno_ret(e),
            },
            Some(Call::Random) => {
                match self.read_iovecs(page, args[0]).and_then(|v| self.mem.host_iovecs(&v).map_err(|_| Errno::EFAULT))
                {
                    Ok(iov) => {
                        let mut total = 0u64;
                        let mut err = None;
                        'fill: for [hva, len] in iov {
                            let mut done = 0;
                            while done < len {
                                // SAFETY: the range was checked to lie inside guest memory;
                                // getrandom only writes bytes there.
                                match unsafe { sys::syscall3(sys::nr::GETRANDOM, hva + done, len - done, 0) } {
                                    Ok(n) => done += n,
                                    Err(Errno::EINTR) => {}
                                    Err(e) => {
                                        err = Some(e);
                                        total += done;
                                        break 'fill;
                                    }
                                }
                            }
                            total += len;
                        }
                        match err {
                            Some(e) if total == 0 => errno_ret(e),
                            _ => total as i64,
                        }
                    }
                    Err(e) => errno_ret(e),
                }
            }
            Some(Call::Report) => {
                if let Ok(mut r) = self.check_report.lock() {
                    *r = Some((args[0], args[1]));
                }
                0
            }
        };
        self.reply(ret_at, ret)
    }

    /// `Call::Net`: copies the request out of guest memory once, serves it,
    /// writes the reply into the guest's buffer.
    fn net_call(&self, args: &[u64; 8]) -> i64 {
        let (req_at, req_len, reply_at, reply_cap) = (args[0], args[1] as usize, args[2], args[3] as usize);
        if !(qlib::hostnet::REQUEST_SIZE..=qlib::hostnet::MAX_REQUEST).contains(&req_len) {
            return errno_ret(Errno::EINVAL);
        }
        NET_BUFS.with(|b| {
            let (req, out) = &mut *b.borrow_mut();
            req.resize(req_len, 0);
            if self.mem.read(req_at, req).is_err() {
                return errno_ret(Errno::EFAULT);
            }
            out.clear();
            self.net.call(&self.mem, req, out);
            if out.len() < qlib::hostnet::REPLY_SIZE {
                return errno_ret(Errno::EIO);
            }
            if out.len() > reply_cap {
                return errno_ret(Errno::EMSGSIZE);
            }
            if self.mem.write(reply_at, out).is_err() {
                return errno_ret(Errno::EFAULT);
            }
            i64::from_le_bytes([out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]])
        })
    }

    /// Test-only behaviours, refused unless the sandbox runs with test hooks.
    fn test_call(&self, op: u64) -> i64 {
        if !self.test_hooks {
            return errno_ret(Errno::ENOSYS);
        }
        match op {
            hcall::test_op::FORBIDDEN_SYSCALL => {
                self.log.vmm("warn", "test hook: making a host system call the seccomp filter forbids (socketpair)");
                let mut fds = [0i32; 2];
                // SAFETY: socketpair(AF_UNIX, SOCK_STREAM, 0, fds) writes two ints
                // into `fds`; the filter should kill us here.
                match unsafe { sys::syscall6(sys::nr::SOCKETPAIR, 1, 1, 0, fds.as_mut_ptr() as u64, 0, 0) } {
                    Ok(_) => {
                        drop(sys::owned(fds[0] as u64));
                        drop(sys::owned(fds[1] as u64));
                        0
                    }
                    Err(e) => errno_ret(e),
                }
            }
            _ => errno_ret(Errno::EINVAL),
        }
    }

    fn reply(&self, ret_at: u64, ret: i64) -> Control {
        if self.mem.write_obj(ret_at, &(ret as u64)).is_err() {
            return Control::Stop;
        }
        Control::Continue
    }

    fn tty_ioctl(&self, fd: u64, req: u64, data_at: u64) -> i64 {
        if fd > 2 {
            return errno_ret(Errno::EBADF);
        }
        if !TTY_IOCTL_ALLOWLIST.contains(&req) {
            self.log.vmm("warn", &format!("refused terminal ioctl {req:#x} on fd {fd}"));
            return errno_ret(Errno::ENOTTY);
        }
        let mut buf = [0u8; 64];
        if req == qlib::linux::consts::ioctl::TCSETS && self.mem.read(data_at, &mut buf[..36]).is_err() {
            return errno_ret(Errno::EFAULT);
        }
        // SAFETY: `buf` is large enough for termios (36), winsize (8) and a pid (4).
        match unsafe { sys::ioctl(fd as i32, req, buf.as_mut_ptr() as u64) } {
            Ok(_) => {
                if self.mem.write(data_at, &buf).is_err() {
                    return errno_ret(Errno::EFAULT);
                }
                0
            }
            Err(e) => errno_ret(e),
        }
    }
}
