//! KVM request numbers and structure layouts (x86-64), transcribed from
//! `<linux/kvm.h>`; sizes are asserted against the C definitions.
#![allow(missing_docs)]

pub const KVM_GET_API_VERSION: u64 = 0xae00;
pub const KVM_CREATE_VM: u64 = 0xae01;
pub const KVM_GET_MSR_INDEX_LIST: u64 = 0xc004_ae02;
pub const KVM_CHECK_EXTENSION: u64 = 0xae03;
pub const KVM_GET_VCPU_MMAP_SIZE: u64 = 0xae04;
pub const KVM_GET_SUPPORTED_CPUID: u64 = 0xc008_ae05;
pub const KVM_CREATE_VCPU: u64 = 0xae41;
pub const KVM_SET_USER_MEMORY_REGION: u64 = 0x4020_ae46;
pub const KVM_SET_TSS_ADDR: u64 = 0xae47;
pub const KVM_CREATE_IRQCHIP: u64 = 0xae60;
pub const KVM_RUN: u64 = 0xae80;
pub const KVM_GET_REGS: u64 = 0x8090_ae81;
pub const KVM_SET_REGS: u64 = 0x4090_ae82;
pub const KVM_GET_SREGS: u64 = 0x8138_ae83;
pub const KVM_SET_SREGS: u64 = 0x4138_ae84;
pub const KVM_GET_MSRS: u64 = 0xc008_ae88;
pub const KVM_SET_MSRS: u64 = 0x4008_ae89;
pub const KVM_SET_SIGNAL_MASK: u64 = 0x4004_ae8b;
pub const KVM_SET_CPUID2: u64 = 0x4008_ae90;
pub const KVM_GET_MP_STATE: u64 = 0x8004_ae98;
pub const KVM_SET_MP_STATE: u64 = 0x4004_ae99;
pub const KVM_ENABLE_CAP: u64 = 0x4068_aea3;
pub const KVM_GET_TSC_KHZ: u64 = 0xaea3;
pub const KVM_GET_STATS_FD: u64 = 0xaece;
pub const KVM_SIGNAL_MSI: u64 = 0x4020_aea5;

/// `struct kvm_msi`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Msi {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
    pub flags: u32,
    pub devid: u32,
    pub pad: [u8; 12],
}

pub const KVM_EXIT_IO: u32 = 2;
pub const KVM_EXIT_HLT: u32 = 5;
pub const KVM_EXIT_MMIO: u32 = 6;
pub const KVM_EXIT_SHUTDOWN: u32 = 8;
pub const KVM_EXIT_FAIL_ENTRY: u32 = 9;
pub const KVM_EXIT_INTR: u32 = 10;
pub const KVM_EXIT_INTERNAL_ERROR: u32 = 17;
pub const KVM_EXIT_SYSTEM_EVENT: u32 = 24;

pub const KVM_CAP_IRQCHIP: u64 = 0;
pub const KVM_CAP_GET_TSC_KHZ: u64 = 0x3d;
pub const KVM_CAP_TSC_DEADLINE_TIMER: u64 = 0x48;
pub const KVM_CAP_IMMEDIATE_EXIT: u64 = 0x88;
pub const KVM_CAP_BINARY_STATS_FD: u64 = 0xcb;
/// KVM_CAP_DISABLE_QUIRKS2; bit 5 = KVM_X86_QUIRK_FIX_HYPERCALL_INSN.
pub const KVM_CAP_DISABLE_QUIRKS2: u32 = 213;
pub const KVM_X86_QUIRK_FIX_HYPERCALL_INSN: u64 = 1 << 5;

/// `KVM_IOEVENTFD`: signal an eventfd on a guest port/MMIO write, in the kernel.
pub const KVM_IOEVENTFD: u64 = 0x4040_ae79;
/// `KVM_CAP_IOEVENTFD`.
pub const KVM_CAP_IOEVENTFD: u64 = 36;
/// `kvm_ioeventfd.flags`: the address is an I/O port.
pub const KVM_IOEVENTFD_FLAG_PIO: u32 = 1 << 1;

/// `struct kvm_ioeventfd`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IoEventFd {
    pub datamatch: u64,
    pub addr: u64,
    pub len: u32,
    pub fd: i32,
    pub flags: u32,
    pub pad: [u8; 36],
}

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
pub struct UserspaceMemoryRegion {
    pub slot: u32,
    pub flags: u32,
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
}

/// `struct kvm_enable_cap`.
#[repr(C)]
pub struct EnableCap {
    pub cap: u32,
    pub flags: u32,
    pub args: [u64; 4],
    pub pad: [u8; 64],
}

/// `struct kvm_signal_mask` with an 8-byte sigset.
#[repr(C, packed)]
pub struct SignalMask {
    pub len: u32,
    pub mask: u64,
}

/// `struct kvm_regs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// `struct kvm_segment`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    pub db: u8,
    pub s: u8,
    pub l: u8,
    pub g: u8,
    pub avl: u8,
    pub unusable: u8,
    pub padding: u8,
}

/// `struct kvm_dtable`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Dtable {
    pub base: u64,
    pub limit: u16,
    pub padding: [u16; 3],
}

/// `struct kvm_sregs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Sregs {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldt: Segment,
    pub gdt: Dtable,
    pub idt: Dtable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
    pub interrupt_bitmap: [u64; 4],
}

/// `struct kvm_cpuid_entry2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    pub function: u32,
    pub index: u32,
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
    pub padding: [u32; 3],
}

/// Most CPUID entries we exchange with KVM.
pub const MAX_CPUID_ENTRIES: usize = 256;

/// `struct kvm_cpuid2` with room for MAX_CPUID_ENTRIES entries.
#[repr(C)]
pub struct CpuidBuf {
    nent: u32,
    padding: u32,
    entries: [CpuidEntry; MAX_CPUID_ENTRIES],
}

impl CpuidBuf {
    pub fn new() -> Box<CpuidBuf> {
        Box::new(CpuidBuf {
            nent: MAX_CPUID_ENTRIES as u32,
            padding: 0,
            entries: [CpuidEntry::default(); MAX_CPUID_ENTRIES],
        })
    }
    pub fn as_mut_ptr(&mut self) -> u64 {
        self as *mut CpuidBuf as u64
    }
    pub fn entries(&self) -> Vec<CpuidEntry> {
        self.entries[..(self.nent as usize).min(MAX_CPUID_ENTRIES)].to_vec()
    }
    pub fn set_entries(&mut self, e: &[CpuidEntry]) {
        let n = e.len().min(MAX_CPUID_ENTRIES);
        self.entries[..n].copy_from_slice(&e[..n]);
        self.nent = n as u32;
    }
}

/// `struct kvm_msrs` followed by entries.
pub struct MsrBuf {
    words: Vec<u64>,
}

impl MsrBuf {
    pub fn new(msrs: &[(u32, u64)]) -> MsrBuf {
        // header: nmsrs u32 + pad u32; entry: index u32 + reserved u32 + data u64.
        let mut words = vec![msrs.len() as u64];
        for &(i, v) in msrs {
            words.push(i as u64);
            words.push(v);
        }
        MsrBuf { words }
    }
    pub fn as_ptr(&self) -> u64 {
        self.words.as_ptr() as u64
    }
    pub fn as_mut_ptr(&mut self) -> u64 {
        self.words.as_mut_ptr() as u64
    }
    pub fn value(&self, i: usize) -> u64 {
        self.words[2 + 2 * i]
    }
}

/// `kvm_run.io`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RunIo {
    pub direction: u8,
    pub size: u8,
    pub port: u16,
    pub count: u32,
    pub data_offset: u64,
}

/// `kvm_run.mmio`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RunMmio {
    pub phys_addr: u64,
    pub data: [u8; 8],
    pub len: u32,
    pub is_write: u8,
}

/// The exit-specific union of `kvm_run`.
#[repr(C)]
pub union RunUnion {
    pub io: RunIo,
    pub mmio: RunMmio,
    pub fail_entry: [u64; 2],
    pub internal: [u64; 17],
    pub pad: [u8; 256],
}

/// The head of `struct kvm_run`.
#[repr(C)]
pub struct KvmRun {
    pub request_interrupt_window: u8,
    pub immediate_exit: u8,
    pub padding1: [u8; 6],
    pub exit_reason: u32,
    pub ready_for_interrupt_injection: u8,
    pub if_flag: u8,
    pub flags: u16,
    pub cr8: u64,
    pub apic_base: u64,
    pub u: RunUnion,
}

const _: () = {
    assert!(core::mem::size_of::<Regs>() == 0x90);
    assert!(core::mem::size_of::<Sregs>() == 0x138);
    assert!(core::mem::size_of::<Segment>() == 0x18);
    assert!(core::mem::size_of::<CpuidEntry>() == 0x28);
    assert!(core::mem::size_of::<EnableCap>() == 0x68);
    assert!(core::mem::size_of::<UserspaceMemoryRegion>() == 0x20);
    assert!(core::mem::size_of::<IoEventFd>() == 0x40);
    assert!(core::mem::size_of::<Msi>() == 0x20);
    assert!(core::mem::size_of::<SignalMask>() == 12);
    assert!(core::mem::offset_of!(KvmRun, exit_reason) == 8);
    assert!(core::mem::offset_of!(KvmRun, u) == 0x20);
    assert!(core::mem::offset_of!(Sregs, gdt) == 0xc0);
    assert!(core::mem::offset_of!(Sregs, cr0) == 0xe0);
    assert!(core::mem::offset_of!(Sregs, interrupt_bitmap) == 0x118);
};
