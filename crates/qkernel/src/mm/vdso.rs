//! The vDSO and its time page, mapped into every process.
//!
//! The vDSO image (built from `vdso/vdso.c` by build.rs) is embedded
//! page-aligned in the kernel image, so its frame is mapped into user space
//! as is: no copy. The time page (vvar) holds the TSC calibration the host
//! measured at boot; the vDSO converts `rdtsc` with it, so `clock_gettime`,
//! `gettimeofday`, `time` and `getcpu` never enter the kernel.

use super::addrspace::{AddressSpace, Backing, Vma};
use super::frame::{self, Zero};
use crate::sync::Once;
use qlib::layout::{kernel_va_to_pa, phys_to_virt, PAGE_SIZE};
use qlib::linux::consts::mman::{PROT_EXEC, PROT_READ};
use qlib::linux::Errno;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

const fn page(bytes: &[u8]) -> Page {
    let mut p = [0u8; 4096];
    let mut i = 0;
    while i < bytes.len() {
        p[i] = bytes[i];
        i += 1;
    }
    Page(p)
}

static IMAGE: Page = page(include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so")));

/// Layout of the time page (must match `struct vvar` in vdso.c).
#[repr(C)]
struct Vvar {
    tsc_base: u64,
    mult: u64,
    shift: u64,
    mono_base: u64,
    real_base: u64,
    getcpu_rdtscp: u64,
}

struct Frames {
    vvar: u64,
    image: u64,
}

static FRAMES: Once<Frames> = Once::new();

/// Fills the time page (boot vCPU, once).
pub fn init() {
    let p = crate::boot::params();
    let vvar = frame::alloc_frame(Zero::Yes).expect("a frame for the vDSO time page");
    // SAFETY: a fresh frame, mapped by the direct map, large enough for Vvar.
    unsafe {
        (phys_to_virt(vvar) as *mut Vvar).write(Vvar {
            tsc_base: p.tsc_base,
            mult: p.tsc_mult,
            shift: p.tsc_shift as u64,
            mono_base: p.monotonic_base_ns,
            real_base: p.realtime_base_ns,
            getcpu_rdtscp: (qlib::boot::Flavour::from_raw(p.flavour) != qlib::boot::Flavour::Pvm) as u64,
        })
    };
    let image = kernel_va_to_pa(&IMAGE as *const Page as u64);
    // The kernel keeps one reference, so the frames are never freed.
    frame::ref_init(vvar);
    frame::ref_init(image);
    // SAFETY: boot vCPU, before any process exists.
    unsafe { FRAMES.init(Frames { vvar, image }) };
}

/// Maps the time page and the vDSO below the mmap base; returns the vDSO's
/// address (AT_SYSINFO_EHDR).
pub fn map(space: &mut AddressSpace) -> Result<u64, Errno> {
    let f = FRAMES.get();
    let base = space.find_free(2 * PAGE_SIZE).ok_or(Errno::ENOMEM)?;
    space.insert(Vma {
        start: base,
        end: base + PAGE_SIZE,
        prot: PROT_READ,
        backing: Backing::Anon,
        grows_down: false,
    });
    space.insert(Vma {
        start: base + PAGE_SIZE,
        end: base + 2 * PAGE_SIZE,
        prot: PROT_READ | PROT_EXEC,
        backing: Backing::Anon,
        grows_down: false,
    });
    space.map_shared_frame(base, f.vvar, PROT_READ)?;
    space.map_shared_frame(base + PAGE_SIZE, f.image, PROT_READ | PROT_EXEC)?;
    Ok(base + PAGE_SIZE)
}
