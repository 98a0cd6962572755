//! Events the host posts for the guest: today, signals for the sandbox's
//! init (SIGINT, SIGTERM, SIGHUP, SIGQUIT forwarded by `quark run`). The
//! VMM's handler sets the signal's bit in the guest's `HostEvents` word and
//! interrupts vCPU 0 (KVM_SIGNAL_MSI with the wake vector); the guest takes
//! the bits and signals init as from outside the sandbox.

use crate::kvm::ioctl::{Msi, KVM_SIGNAL_MSI};
use crate::sys;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Signals forwarded to the guest's init.
pub const FORWARDED: [u32; 4] = [1, 2, 3, 15];
/// qkernel's wake vector (`apic::WAKE_VECTOR`).
const WAKE_VECTOR: u32 = 0x21;

static VM_FD: AtomicI32 = AtomicI32::new(-1);
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// Interrupts vCPU 0 with the wake vector.
pub fn kick_guest() {
    let _ = interrupt(0, WAKE_VECTOR);
}

/// Injects `vector` into vCPU `vcpu` (APIC id = vCPU index) with
/// KVM_SIGNAL_MSI: a fixed-mode, edge-triggered MSI to that local APIC. Safe
/// from a signal handler and from any thread; a halted vCPU wakes up.
pub fn interrupt(vcpu: u32, vector: u32) -> Result<(), sys::Errno> {
    let fd = VM_FD.load(Ordering::Acquire);
    if fd < 0 {
        return Err(sys::Errno::EBADF);
    }
    let msi = Msi { address_lo: 0xfee0_0000 | ((vcpu & 0xff) << 12), data: vector, ..Msi::default() };
    // SAFETY: `msi` is a valid kvm_msi; the VM descriptor stays open while
    // the sandbox runs (the handler is removed with the process).
    unsafe { sys::ioctl(fd, KVM_SIGNAL_MSI, &msi as *const Msi as u64) }.map(|_| ())
}

extern "C" fn on_signal(sig: i32) {
    let at = EVENTS.load(Ordering::Acquire);
    if at != 0 && (1..=64).contains(&sig) {
        // SAFETY: `at` is the host address of the guest's HostEvents word,
        // inside the guest memory mapping, 8-byte aligned.
        unsafe { (*(at as *const AtomicU64)).fetch_or(1 << (sig - 1), Ordering::AcqRel) };
        kick_guest();
    }
}

/// Routes the forwarded signals into the guest (`events_hva`: host address
/// of `HostEvents::signals`).
pub fn install(vm_fd: i32, events_hva: u64) -> Result<(), sys::Errno> {
    VM_FD.store(vm_fd, Ordering::Release);
    EVENTS.store(events_hva, Ordering::Release);
    for s in FORWARDED {
        sys::set_signal_handler(s, on_signal)?;
    }
    Ok(())
}
