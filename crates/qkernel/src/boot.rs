//! Access to the boot parameters the host wrote.

use crate::sync::Once;
use qlib::boot::{BootParams, InitBlock};
use qlib::layout::{phys_to_virt, INIT_BLOCK_PA, INIT_BLOCK_SIZE};

static PARAMS: Once<&'static BootParams> = Once::new();

/// Records the boot parameters (boot vCPU, before anything else).
///
/// # Safety
/// `p` must be the direct-map address of the host-written BootParams; call once.
pub unsafe fn init(p: u64) {
    // SAFETY: upheld by the caller; the page is never written again.
    unsafe { PARAMS.init(&*(p as *const BootParams)) };
}

/// The boot parameters.
#[inline(always)]
pub fn params() -> &'static BootParams {
    PARAMS.get()
}

/// The first process's argv, envp, cwd and hostname, read from the init block.
pub struct InitArgs {
    pub header: InitBlock,
    strings: &'static [u8],
}

impl InitArgs {
    /// Reads the init block. The host is trusted, but the block is still
    /// parsed defensively: lengths are clamped to the block.
    pub fn read() -> InitArgs {
        // SAFETY: the init block lies in guest RAM below the kernel, mapped
        // by the direct map; the host wrote it before boot.
        let header = unsafe { *(phys_to_virt(INIT_BLOCK_PA) as *const InitBlock) };
        let hdr = core::mem::size_of::<InitBlock>() as u64;
        let len = (header.strings_len as u64).min(INIT_BLOCK_SIZE - hdr);
        // SAFETY: as above; `len` is clamped to the block.
        let strings =
            unsafe { core::slice::from_raw_parts(phys_to_virt(INIT_BLOCK_PA + hdr) as *const u8, len as usize) };
        InitArgs { header, strings }
    }

    /// All strings in order: argv, envp, cwd, hostname.
    pub fn strings(&self) -> impl Iterator<Item = &'static [u8]> {
        self.strings.split(|&c| c == 0)
    }

    /// argv.
    pub fn argv(&self) -> impl Iterator<Item = &'static [u8]> {
        self.strings().take(self.header.argc as usize)
    }

    /// envp.
    pub fn envp(&self) -> impl Iterator<Item = &'static [u8]> {
        self.strings().skip(self.header.argc as usize).take(self.header.envc as usize)
    }

    /// The initial working directory.
    pub fn cwd(&self) -> &'static [u8] {
        self.strings().nth((self.header.argc + self.header.envc) as usize).unwrap_or(b"/")
    }

    /// The sandbox hostname.
    pub fn hostname(&self) -> &'static [u8] {
        self.strings().nth((self.header.argc + self.header.envc + 1) as usize).unwrap_or(b"quark")
    }
}
