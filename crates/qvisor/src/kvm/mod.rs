//! Our own KVM ioctl wrappers (no registry crates). `ioctl.rs` holds the
//! request numbers and structure layouts (checked against `<linux/kvm.h>`);
//! this module wraps them in owned types: [`Kvm`], [`Vm`], [`Vcpu`].

pub mod ioctl;

use crate::sys::{self, Errno};
use ioctl::*;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// An error from a KVM operation: which operation, and the kernel's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvmError {
    pub op: &'static str,
    pub errno: Errno,
}

impl std::fmt::Display for KvmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {} ({})", self.op, self.errno.description(), self.errno.name())
    }
}

impl std::error::Error for KvmError {}

fn op<T>(op: &'static str, r: Result<T, Errno>) -> Result<T, KvmError> {
    r.map_err(|errno| KvmError { op, errno })
}

/// The `/dev/kvm` system handle.
pub struct Kvm {
    fd: OwnedFd,
}

impl Kvm {
    /// Opens `/dev/kvm`.
    pub fn open() -> Result<Kvm, std::io::Error> {
        let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm")?;
        Ok(Kvm { fd: f.into() })
    }

    /// Wraps an already open `/dev/kvm` descriptor.
    pub fn from_fd(fd: OwnedFd) -> Kvm {
        Kvm { fd }
    }

    /// KVM_GET_API_VERSION (12 on every supported kernel).
    pub fn api_version(&self) -> Result<u64, KvmError> {
        // SAFETY: KVM_GET_API_VERSION takes no argument.
        op("KVM_GET_API_VERSION", unsafe { sys::ioctl(self.fd.as_raw_fd(), KVM_GET_API_VERSION, 0) })
    }

    /// KVM_CHECK_EXTENSION.
    pub fn check_extension(&self, cap: u64) -> u64 {
        // SAFETY: KVM_CHECK_EXTENSION takes an integer.
        unsafe { sys::ioctl(self.fd.as_raw_fd(), KVM_CHECK_EXTENSION, cap) }.unwrap_or(0)
    }

    /// Size of each vCPU's `kvm_run` mapping.
    pub fn vcpu_mmap_size(&self) -> Result<u64, KvmError> {
        // SAFETY: no argument.
        op("KVM_GET_VCPU_MMAP_SIZE", unsafe { sys::ioctl(self.fd.as_raw_fd(), KVM_GET_VCPU_MMAP_SIZE, 0) })
    }

    /// The CPUID leaves KVM can virtualise.
    pub fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>, KvmError> {
        let mut buf = CpuidBuf::new();
        // SAFETY: `buf` is a kvm_cpuid2 header followed by MAX_CPUID_ENTRIES entries.
        op("KVM_GET_SUPPORTED_CPUID", unsafe {
            sys::ioctl(self.fd.as_raw_fd(), KVM_GET_SUPPORTED_CPUID, buf.as_mut_ptr())
        })?;
        Ok(buf.entries())
    }

    /// MSR indices KVM supports (to check for vendor MSRs).
    pub fn msr_index_list(&self) -> Result<Vec<u32>, KvmError> {
        let mut buf = vec![0u32; 1025];
        buf[0] = 1024;
        // SAFETY: `buf` is a kvm_msr_list with room for 1024 indices.
        op("KVM_GET_MSR_INDEX_LIST", unsafe {
            sys::ioctl(self.fd.as_raw_fd(), KVM_GET_MSR_INDEX_LIST, buf.as_mut_ptr() as u64)
        })?;
        let n = buf[0] as usize;
        Ok(buf[1..1 + n.min(1024)].to_vec())
    }

    /// KVM_CREATE_VM.
    pub fn create_vm(&self) -> Result<Vm, KvmError> {
        // SAFETY: machine type 0.
        let fd = op("KVM_CREATE_VM", unsafe { sys::ioctl(self.fd.as_raw_fd(), KVM_CREATE_VM, 0) })?;
        Ok(Vm { fd: sys::owned(fd) })
    }
}

/// A virtual machine.
pub struct Vm {
    fd: OwnedFd,
}

impl Vm {
    /// The VM descriptor.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Registers guest memory slot `slot` at `gpa` backed by host memory at `hva`.
    pub fn set_memory(&self, slot: u32, gpa: u64, size: u64, hva: u64) -> Result<(), KvmError> {
        let r = UserspaceMemoryRegion { slot, flags: 0, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva };
        // SAFETY: `r` is a valid kvm_userspace_memory_region; the host memory
        // it names stays mapped as long as the VM lives (GuestMemory owns it).
        op("KVM_SET_USER_MEMORY_REGION", unsafe {
            sys::ioctl(self.raw_fd(), KVM_SET_USER_MEMORY_REGION, &r as *const _ as u64)
        })
        .map(|_| ())
    }

    /// Creates the in-kernel interrupt controller (LAPICs, IOAPIC, PIC).
    pub fn create_irqchip(&self) -> Result<(), KvmError> {
        // SAFETY: no argument.
        op("KVM_CREATE_IRQCHIP", unsafe { sys::ioctl(self.raw_fd(), KVM_CREATE_IRQCHIP, 0) }).map(|_| ())
    }

    /// KVM_SET_TSS_ADDR (needed by Intel VMX for real-mode emulation; three
    /// pages that must not overlap guest RAM).
    pub fn set_tss_addr(&self, addr: u64) -> Result<(), KvmError> {
        // SAFETY: integer argument.
        op("KVM_SET_TSS_ADDR", unsafe { sys::ioctl(self.raw_fd(), KVM_SET_TSS_ADDR, addr) }).map(|_| ())
    }

    /// KVM_ENABLE_CAP on the VM.
    pub fn enable_cap(&self, cap: u32, arg0: u64) -> Result<(), KvmError> {
        let mut c = EnableCap { cap, flags: 0, args: [0; 4], pad: [0; 64] };
        c.args[0] = arg0;
        // SAFETY: `c` is a valid kvm_enable_cap.
        op("KVM_ENABLE_CAP", unsafe { sys::ioctl(self.raw_fd(), KVM_ENABLE_CAP, &c as *const _ as u64) }).map(|_| ())
    }

    /// KVM_IOEVENTFD: a 4-byte guest write to I/O port `port` signals
    /// `fd` (an eventfd) inside the kernel, without an exit to the VMM.
    pub fn ioeventfd(&self, port: u16, fd: RawFd) -> Result<(), KvmError> {
        let a = IoEventFd { datamatch: 0, addr: port as u64, len: 4, fd, flags: KVM_IOEVENTFD_FLAG_PIO, pad: [0; 36] };
        // SAFETY: `a` is a valid kvm_ioeventfd; KVM takes its own reference
        // to the eventfd.
        op("KVM_IOEVENTFD", unsafe { sys::ioctl(self.raw_fd(), KVM_IOEVENTFD, &a as *const _ as u64) }).map(|_| ())
    }

    /// KVM_CHECK_EXTENSION on the VM.
    pub fn check_extension(&self, cap: u64) -> u64 {
        // SAFETY: integer argument.
        unsafe { sys::ioctl(self.raw_fd(), KVM_CHECK_EXTENSION, cap) }.unwrap_or(0)
    }

    /// KVM_CREATE_VCPU with its `kvm_run` mapping.
    pub fn create_vcpu(&self, id: u32, mmap_size: u64) -> Result<Vcpu, KvmError> {
        // SAFETY: integer argument.
        let fd = sys::owned(op("KVM_CREATE_VCPU", unsafe { sys::ioctl(self.raw_fd(), KVM_CREATE_VCPU, id as u64) })?);
        let run = op("mmap(kvm_run)", sys::Mapping::new(fd.as_raw_fd(), mmap_size, sys::PROT_RW, false))?;
        Ok(Vcpu { fd, run, id })
    }
}

/// One virtual CPU.
pub struct Vcpu {
    fd: OwnedFd,
    run: sys::Mapping,
    pub id: u32,
}

// SAFETY: a vCPU is used by one thread at a time (its own); the kvm_run
// mapping is per-vCPU shared memory with the kernel.
unsafe impl Send for Vcpu {}

impl Vcpu {
    /// The vCPU descriptor.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Address of the `kvm_run` structure (for the kick signal handler).
    pub fn run_addr(&self) -> u64 {
        self.run.addr()
    }

    fn run_struct(&self) -> &KvmRun {
        // SAFETY: the mapping is at least sizeof(kvm_run) and lives with self.
        unsafe { &*(self.run.addr() as *const KvmRun) }
    }

    /// KVM_RUN: runs until the next exit. `Err(EINTR)` after a kick.
    pub fn run(&mut self) -> Result<Exit, KvmError> {
        // SAFETY: KVM_RUN takes no argument; kvm_run is mapped.
        op("KVM_RUN", unsafe { sys::ioctl(self.raw_fd(), KVM_RUN, 0) })?;
        let r = self.run_struct();
        Ok(match r.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: exit_reason IO selects the io member of the union.
                let io = unsafe { r.u.io };
                // The data lives at run + data_offset; bounded by the mapping.
                let off = io.data_offset.min(self.run.len() - 8);
                // SAFETY: offset clamped inside the mapping; 4 bytes read.
                let data = unsafe { ((self.run.addr() + off) as *const u32).read_unaligned() };
                Exit::Io { port: io.port, write: io.direction == 1, size: io.size, data }
            }
            KVM_EXIT_HLT => Exit::Hlt,
            KVM_EXIT_MMIO => {
                // SAFETY: exit_reason MMIO selects the mmio member.
                let m = unsafe { r.u.mmio };
                Exit::Mmio { addr: m.phys_addr, write: m.is_write != 0, len: m.len }
            }
            KVM_EXIT_SHUTDOWN => Exit::Shutdown,
            KVM_EXIT_FAIL_ENTRY => {
                // SAFETY: FAIL_ENTRY selects fail_entry.
                let reason = unsafe { r.u.fail_entry[0] };
                Exit::FailEntry { reason }
            }
            KVM_EXIT_INTERNAL_ERROR => {
                // SAFETY: INTERNAL_ERROR selects internal (suberror first).
                let suberror = unsafe { r.u.internal[0] } as u32;
                Exit::InternalError { suberror }
            }
            KVM_EXIT_INTR => Exit::Interrupted,
            KVM_EXIT_SYSTEM_EVENT => Exit::SystemEvent,
            other => Exit::Other(other),
        })
    }

    /// Asks the next (or current) KVM_RUN to return at once (EINTR).
    pub fn set_immediate_exit(&self, on: bool) {
        // SAFETY: immediate_exit is a byte at offset 1 of kvm_run, written by
        // the owning thread or its own signal handler.
        unsafe { ((self.run.addr() + 1) as *mut u8).write_volatile(on as u8) };
    }

    /// KVM_GET_REGS.
    pub fn regs(&self) -> Result<Regs, KvmError> {
        let mut r = Regs::default();
        // SAFETY: `r` is a kvm_regs.
        op("KVM_GET_REGS", unsafe { sys::ioctl(self.raw_fd(), KVM_GET_REGS, &mut r as *mut _ as u64) })?;
        Ok(r)
    }

    /// KVM_SET_REGS.
    pub fn set_regs(&self, r: &Regs) -> Result<(), KvmError> {
        // SAFETY: `r` is a kvm_regs.
        op("KVM_SET_REGS", unsafe { sys::ioctl(self.raw_fd(), KVM_SET_REGS, r as *const _ as u64) }).map(|_| ())
    }

    /// KVM_GET_SREGS.
    pub fn sregs(&self) -> Result<Sregs, KvmError> {
        let mut s = Sregs::default();
        // SAFETY: `s` is a kvm_sregs.
        op("KVM_GET_SREGS", unsafe { sys::ioctl(self.raw_fd(), KVM_GET_SREGS, &mut s as *mut _ as u64) })?;
        Ok(s)
    }

    /// KVM_SET_SREGS.
    pub fn set_sregs(&self, s: &Sregs) -> Result<(), KvmError> {
        // SAFETY: `s` is a kvm_sregs.
        op("KVM_SET_SREGS", unsafe { sys::ioctl(self.raw_fd(), KVM_SET_SREGS, s as *const _ as u64) }).map(|_| ())
    }

    /// KVM_SET_MSRS for several MSRs; fails unless all were set.
    pub fn set_msrs(&self, msrs: &[(u32, u64)]) -> Result<(), KvmError> {
        let buf = MsrBuf::new(msrs);
        // SAFETY: `buf` is a kvm_msrs header followed by msrs.len() entries.
        let n = op("KVM_SET_MSRS", unsafe { sys::ioctl(self.raw_fd(), KVM_SET_MSRS, buf.as_ptr()) })?;
        if n as usize != msrs.len() {
            let bad = msrs.get(n as usize).map(|m| m.0).unwrap_or(0);
            return Err(KvmError {
                op: if bad == 0 { "KVM_SET_MSRS" } else { "KVM_SET_MSRS (an MSR was refused)" },
                errno: Errno::EINVAL,
            });
        }
        Ok(())
    }

    /// KVM_GET_MSRS of one MSR.
    pub fn msr(&self, index: u32) -> Result<u64, KvmError> {
        let mut buf = MsrBuf::new(&[(index, 0)]);
        // SAFETY: as in set_msrs.
        let n = op("KVM_GET_MSRS", unsafe { sys::ioctl(self.raw_fd(), KVM_GET_MSRS, buf.as_mut_ptr()) })?;
        if n != 1 {
            return Err(KvmError { op: "KVM_GET_MSRS", errno: Errno::EINVAL });
        }
        Ok(buf.value(0))
    }

    /// KVM_SET_CPUID2.
    pub fn set_cpuid(&self, entries: &[CpuidEntry]) -> Result<(), KvmError> {
        let mut buf = CpuidBuf::new();
        buf.set_entries(entries);
        // SAFETY: `buf` is a valid kvm_cpuid2.
        op("KVM_SET_CPUID2", unsafe { sys::ioctl(self.raw_fd(), KVM_SET_CPUID2, buf.as_mut_ptr()) }).map(|_| ())
    }

    /// KVM_SET_MP_STATE.
    pub fn set_mp_state(&self, state: u32) -> Result<(), KvmError> {
        // SAFETY: `state` is a kvm_mp_state (one u32).
        op("KVM_SET_MP_STATE", unsafe { sys::ioctl(self.raw_fd(), KVM_SET_MP_STATE, &state as *const u32 as u64) })
            .map(|_| ())
    }

    /// KVM_GET_MP_STATE.
    pub fn mp_state(&self) -> Result<u32, KvmError> {
        let mut state = 0u32;
        // SAFETY: `state` is a kvm_mp_state.
        op("KVM_GET_MP_STATE", unsafe { sys::ioctl(self.raw_fd(), KVM_GET_MP_STATE, &mut state as *mut u32 as u64) })?;
        Ok(state)
    }

    /// KVM_GET_TSC_KHZ.
    pub fn tsc_khz(&self) -> Result<u64, KvmError> {
        // SAFETY: no argument.
        op("KVM_GET_TSC_KHZ", unsafe { sys::ioctl(self.raw_fd(), KVM_GET_TSC_KHZ, 0) })
    }

    /// KVM_SET_SIGNAL_MASK: the signal mask in effect while the guest runs.
    pub fn set_signal_mask(&self, blocked: u64) -> Result<(), KvmError> {
        let m = SignalMask { len: 8, mask: blocked };
        // SAFETY: `m` is a kvm_signal_mask with an 8-byte sigset.
        op("KVM_SET_SIGNAL_MASK", unsafe { sys::ioctl(self.raw_fd(), KVM_SET_SIGNAL_MASK, &m as *const _ as u64) })
            .map(|_| ())
    }

    /// Opens the binary statistics descriptor (KVM_GET_STATS_FD).
    pub fn stats(&self) -> Result<Stats, KvmError> {
        // SAFETY: no argument.
        let fd = op("KVM_GET_STATS_FD", unsafe { sys::ioctl(self.raw_fd(), KVM_GET_STATS_FD, 0) })?;
        Stats::new(sys::owned(fd)).map_err(|errno| KvmError { op: "reading KVM statistics", errno })
    }
}

/// Why KVM_RUN returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Io { port: u16, write: bool, size: u8, data: u32 },
    Mmio { addr: u64, write: bool, len: u32 },
    Hlt,
    Shutdown,
    FailEntry { reason: u64 },
    InternalError { suberror: u32 },
    Interrupted,
    SystemEvent,
    Other(u32),
}

/// Guest MP states.
pub const MP_STATE_RUNNABLE: u32 = 0;
/// The vCPU is halted (HLT with the in-kernel irqchip).
pub const MP_STATE_HALTED: u32 = 3;

/// A vCPU's binary statistics (KVM_GET_STATS_FD), read by name.
pub struct Stats {
    fd: OwnedFd,
    names: Vec<(String, u64)>,
    data_offset: u64,
}

fn pread_exact(fd: RawFd, buf: &mut [u8], off: u64) -> Result<(), Errno> {
    // SAFETY: `buf` is valid for writes of its length.
    let n =
        unsafe { sys::syscall6(sys::nr::PREAD64, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, off, 0, 0) }?;
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(Errno::EIO)
    }
}

impl Stats {
    fn new(fd: OwnedFd) -> Result<Stats, Errno> {
        let mut h = [0u8; 24];
        pread_exact(fd.as_raw_fd(), &mut h, 0)?;
        let word = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let name_size = word(&h, 4) as usize;
        let num_desc = word(&h, 8) as usize;
        let desc_offset = word(&h, 16) as u64;
        let data_offset = word(&h, 20) as u64;
        let dsz = 16 + name_size;
        let mut d = vec![0u8; dsz * num_desc];
        pread_exact(fd.as_raw_fd(), &mut d, desc_offset)?;
        let mut names = Vec::new();
        for i in 0..num_desc {
            let e = &d[i * dsz..(i + 1) * dsz];
            let offset = word(e, 8) as u64;
            let name = &e[16..];
            let n = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            names.push((String::from_utf8_lossy(&name[..n]).into_owned(), offset));
        }
        Ok(Stats { fd, names, data_offset })
    }

    /// Current value of the statistic `name` (e.g. "insn_emulation", "exits").
    /// Only pread(2): usable under the seccomp filter.
    pub fn get(&self, name: &str) -> Option<u64> {
        let (_, off) = self.names.iter().find(|(n, _)| n == name)?;
        let mut v = [0u8; 8];
        pread_exact(self.fd.as_raw_fd(), &mut v, self.data_offset + off).ok()?;
        Some(u64::from_le_bytes(v))
    }
}
