//! User FPU/SSE state. The kernel itself never touches FPU registers, so a
//! task's state lives in the registers while it runs and is saved to its area
//! at every context switch (FXSAVE on hosts that emulate supervisor code,
//! where XSAVE cannot run; XSAVE with the host-chosen XCR0 on VMX/SVM hosts).

use super::cpu;
use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use qlib::boot::flags::USE_XSAVE;

/// A task's saved FPU state.
pub struct FpuState {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the area is owned by one task; only its vCPU touches it.
unsafe impl Send for FpuState {}
// SAFETY: as above.
unsafe impl Sync for FpuState {}

fn size_and_xsave() -> (usize, bool) {
    let p = crate::boot::params();
    let xsave = p.flags & USE_XSAVE != 0;
    ((p.fpu_state_size as usize).max(512), xsave)
}

impl FpuState {
    /// The state a fresh program starts with: FCW 0x37f, MXCSR 0x1f80.
    pub fn new_initial() -> Option<FpuState> {
        let (size, _) = size_and_xsave();
        let layout = Layout::from_size_align(size, 64).ok()?;
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: the area is at least 512 bytes.
        unsafe {
            (ptr as *mut u16).write(0x037f);
            (ptr.add(24) as *mut u32).write(0x1f80);
            (ptr.add(28) as *mut u32).write(0xffff);
        }
        Some(FpuState { ptr, layout })
    }

    /// A copy of the current vCPU's registers (fork/clone of the running task).
    pub fn from_current() -> Option<FpuState> {
        let s = Self::new_initial()?;
        s.save();
        Some(s)
    }

    /// Saves the vCPU's registers into this area.
    #[inline]
    pub fn save(&self) {
        let (_, xsave) = size_and_xsave();
        // SAFETY: the area is 64-byte aligned and large enough for the
        // format the host selected.
        unsafe {
            if xsave {
                cpu::xsave(self.ptr, crate::boot::params().xcr0)
            } else {
                cpu::fxsave(self.ptr)
            }
        }
    }

    /// Loads this area into the vCPU's registers.
    #[inline]
    pub fn restore(&self) {
        let (_, xsave) = size_and_xsave();
        // SAFETY: the area holds a valid image (initial, or saved by `save`,
        // or validated by sigreturn).
        unsafe {
            if xsave {
                cpu::xrstor(self.ptr, crate::boot::params().xcr0)
            } else {
                cpu::fxrstor(self.ptr)
            }
        }
    }

    /// The first 512 bytes (the FXSAVE image) for signal frames.
    pub fn legacy(&self) -> &[u8] {
        // SAFETY: the area is at least 512 bytes and owned by self.
        unsafe { core::slice::from_raw_parts(self.ptr, 512) }
    }

    /// Replaces the FXSAVE image (sigreturn), keeping MXCSR's reserved bits
    /// clear so a later FXRSTOR cannot fault.
    pub fn set_legacy(&mut self, img: &[u8; 512]) {
        // SAFETY: the area is at least 512 bytes and owned by self.
        let a = unsafe { core::slice::from_raw_parts_mut(self.ptr, 512) };
        a.copy_from_slice(img);
        let mxcsr = u32::from_le_bytes([a[24], a[25], a[26], a[27]]) & 0xffff;
        a[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        if size_and_xsave().1 {
            // XSTATE_BV: x87 and SSE come from the legacy area.
            // SAFETY: XSAVE areas are larger than 520 bytes.
            unsafe { (self.ptr.add(512) as *mut u64).write(0b11) };
        }
    }
}

impl Drop for FpuState {
    fn drop(&mut self) {
        // SAFETY: allocated in new_initial with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}
