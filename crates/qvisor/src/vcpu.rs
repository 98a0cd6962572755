//! vCPU configuration (registers, MSRs, CPUID) and the per-vCPU run loop.

use crate::boot::{gdt_limit, GuestLayout};
use crate::cpuid::GuestCpuid;
use crate::kvm::ioctl::{Dtable, Regs, Segment};
use crate::kvm::{Exit, KvmError, Vcpu, MP_STATE_HALTED, MP_STATE_RUNNABLE};
use crate::services::{Control, Services};
use qlib::layout::{phys_to_virt, port, selector, BOOT_PARAMS_PA, GDT_PA, IDT_PA};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The signal that kicks a vCPU thread out of KVM_RUN.
pub const KICK_SIGNAL: u32 = 10; // SIGUSR1

const MSR_APIC_BASE: u32 = 0x1b;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SFMASK: u32 = 0xc000_0084;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const MSR_X2APIC_SVR: u32 = 0x80f;
const MSR_X2APIC_LVTT: u32 = 0x832;
const MSR_X2APIC_TDCR: u32 = 0x83e;

/// RFLAGS bits cleared on SYSCALL: TF DF IF IOPL AC NT (Linux's value).
pub const SFMASK: u64 = 0x47700;
const CR0: u64 = 0x8005_0033; // PG AM WP NE ET MP PE
const CR4_PAE: u64 = 1 << 5;
const CR4_PGE: u64 = 1 << 7;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_UMIP: u64 = 1 << 11;
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_SMEP: u64 = 1 << 20;
const EFER: u64 = 0xd01; // NXE LMA LME SCE

fn segment(sel: u16, code: bool, dpl: u8) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: sel,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl,
        db: if code { 0 } else { 1 },
        s: 1,
        l: code as u8,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Hardening CR4 bits this host's KVM accepts (SMEP, UMIP when the CPU has
/// them); found by trying, since KVM_SET_SREGS refuses unsupported bits.
pub fn optional_cr4(cpuid: &GuestCpuid) -> u64 {
    let leaf7 = cpuid.entries.iter().find(|e| e.function == 7 && e.index == 0);
    let mut bits = 0;
    if let Some(l) = leaf7 {
        if l.ebx & (1 << 7) != 0 {
            bits |= CR4_SMEP;
        }
        if l.ecx & (1 << 2) != 0 {
            bits |= CR4_UMIP;
        }
    }
    bits
}

/// Puts a vCPU in 64-bit supervisor mode at the kernel entry.
pub fn configure(
    v: &Vcpu,
    layout: &GuestLayout,
    vcpus: u32,
    entry: u64,
    syscall_entry: u64,
    cpuid: &GuestCpuid,
) -> Result<(), KvmError> {
    let id = v.id;
    v.set_cpuid(&cpuid.entries)?;
    let mut s = v.sregs()?;
    s.cs = segment(selector::KERNEL_CS, true, 0);
    s.ds = segment(selector::KERNEL_DS, false, 0);
    s.es = s.ds;
    s.fs = s.ds;
    s.gs = s.ds;
    s.ss = s.ds;
    s.tr = Segment {
        base: layout.tss_va(id),
        limit: 0x67,
        selector: selector::TSS_BASE + 16 * id as u16,
        type_: 11,
        present: 1,
        ..Segment::default()
    };
    s.ldt = Segment { type_: 2, present: 1, unusable: 1, ..Segment::default() };
    s.gdt = Dtable { base: phys_to_virt(GDT_PA), limit: gdt_limit(vcpus), padding: [0; 3] };
    s.idt = Dtable { base: phys_to_virt(IDT_PA), limit: 256 * 16 - 1, padding: [0; 3] };
    s.cr0 = CR0;
    s.cr3 = layout.pml4_pa;
    s.efer = EFER;
    let base_cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT | if cpuid.use_xsave { CR4_OSXSAVE } else { 0 };
    s.cr4 = base_cr4 | optional_cr4(cpuid);
    if v.set_sregs(&s).is_err() {
        s.cr4 = base_cr4;
        v.set_sregs(&s)?;
    }
    v.set_regs(&Regs {
        rip: entry,
        rsp: layout.boot_stack_top(id),
        rdi: id as u64,
        rsi: phys_to_virt(BOOT_PARAMS_PA),
        rflags: 2,
        ..Regs::default()
    })?;
    v.set_msrs(&[
        (MSR_EFER, EFER),
        (MSR_STAR, selector::STAR),
        (MSR_LSTAR, syscall_entry),
        (MSR_CSTAR, 0),
        (MSR_SFMASK, SFMASK),
        (MSR_FS_BASE, 0),
        (MSR_GS_BASE, layout.percpu_va(id)),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_APIC_BASE, 0xfee0_0000 | 0x800 | 0x400 | if id == 0 { 0x100 } else { 0 }),
    ])?;
    // x2APIC: software-enabled with spurious vector 0xff; timer one-shot on
    // vector 0x20 (qkernel's TIMER_VECTOR), divide by 1.
    v.set_msrs(&[(MSR_X2APIC_SVR, 0x1ff), (MSR_X2APIC_LVTT, 0x20), (MSR_X2APIC_TDCR, 0xb)])?;
    // RDTSCP's TSC_AUX is the vCPU index: the vDSO's getcpu reads it.
    v.set_msrs(&[(MSR_TSC_AUX, id as u64)])?;
    v.set_mp_state(MP_STATE_RUNNABLE)?;
    Ok(())
}

thread_local! {
    /// Address of this thread's kvm_run, for the kick handler.
    static KVM_RUN: Cell<u64> = const { Cell::new(0) };
}

/// SIGUSR1 handler: make the current or next KVM_RUN return at once.
extern "C" fn on_kick(_sig: i32) {
    KVM_RUN.with(|r| {
        let run = r.get();
        if run != 0 {
            // SAFETY: `run` is this thread's kvm_run mapping; byte 1 is
            // immediate_exit, which the kernel reads at KVM_RUN entry.
            unsafe { ((run + 1) as *mut u8).write_volatile(1) };
        }
    });
}

/// Installs the kick handler (process-wide, once).
pub fn install_kick_handler() -> Result<(), crate::sys::Errno> {
    crate::sys::set_signal_handler(KICK_SIGNAL, on_kick)
}

/// A snapshot the watchdog asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Supervisor mode and not halted.
    pub busy_in_kernel: bool,
    pub regs: Regs,
    pub cr2: u64,
    pub taken_ns: u64,
}

/// Runs a vCPU until the sandbox stops.
pub fn run_loop(mut v: Vcpu, svc: Arc<Services>) {
    KVM_RUN.with(|r| r.set(v.run_addr()));
    let id = v.id;
    let tid = crate::sys::gettid();
    svc.vcpu_tids[id as usize].store(tid, Ordering::SeqCst);
    svc.ready.wait();
    loop {
        if svc.stopping.load(Ordering::SeqCst) {
            break;
        }
        let exit = v.run();
        v.set_immediate_exit(false);
        match exit {
            Ok(Exit::Io { port: port::HCALL, write: true, size: 4, data }) => {
                if svc.handle_hcall(id, data) == Control::Stop {
                    break;
                }
            }
            Ok(Exit::Io { port: port::HOSTQ_DOORBELL, write: true, .. }) => svc.ring_hostq_doorbell(),
            Err(KvmError { errno: crate::sys::Errno::EINTR, .. }) | Ok(Exit::Interrupted) => {
                if svc.sample_requested[id as usize].swap(false, Ordering::SeqCst) {
                    let sample = take_sample(&v);
                    if let Ok(mut s) = svc.samples[id as usize].lock() {
                        *s = sample;
                    }
                }
            }
            Ok(other) => {
                let detail = describe_fatal(&v, other);
                svc.fail_vm(id, &detail, v.regs().ok());
                break;
            }
            Err(e) => {
                svc.fail_vm(id, &e.to_string(), None);
                break;
            }
        }
    }
    KVM_RUN.with(|r| r.set(0));
}

fn take_sample(v: &Vcpu) -> Sample {
    let regs = v.regs().unwrap_or_default();
    let sregs = v.sregs().unwrap_or_default();
    let halted = v.mp_state().map(|s| s == MP_STATE_HALTED).unwrap_or(false);
    Sample {
        busy_in_kernel: sregs.cs.dpl == 0 && sregs.cs.selector & 3 == 0 && !halted,
        regs,
        cr2: sregs.cr2,
        taken_ns: crate::sys::clock_ns(crate::sys::CLOCK_MONOTONIC),
    }
}

fn describe_fatal(v: &Vcpu, exit: Exit) -> String {
    match exit {
        Exit::Shutdown => "the guest triple-faulted (KVM_EXIT_SHUTDOWN)".to_string(),
        Exit::InternalError { suberror } => format!(
            "KVM could not emulate a guest instruction (KVM_EXIT_INTERNAL_ERROR, suberror {suberror}); \
             on kvm_pvm hosts this is usually an SSE/x87 instruction in supervisor code (see `dmesg | grep kvm-pvm`)"
        ),
        Exit::FailEntry { reason } => format!("KVM refused to enter the guest (hardware entry failure {reason:#x})"),
        Exit::Hlt => "the guest halted without an interrupt controller".to_string(),
        Exit::Io { port, write, .. } => {
            format!("unexpected port {} {port:#x} from the guest kernel", if write { "write to" } else { "read from" })
        }
        Exit::Mmio { addr, .. } => format!("unexpected MMIO access at guest-physical {addr:#x}"),
        other => format!("unexpected exit {other:?} on vCPU {}", v.id),
    }
}
