//! Queued host calls ("hostq"): the rings and messages shared by the guest
//! kernel and the VMM's host I/O thread.
//!
//! Next to the synchronous VMM call ([`crate::hcall`], one `out` that stops
//! the vCPU until the host answers), a guest task can post a host operation
//! to a ring and park: the vCPU runs other tasks or halts, the host I/O
//! thread executes the operation (waiting for the descriptor to become ready
//! without holding a vCPU) and posts a completion, and the task is woken by
//! the completion interrupt. See docs/architecture.md ("Host calls") for which
//! path each call takes.
//!
//! ```text
//! guest-physical hostq area (BootParams::hostq_pa, hostq_size), one block per vCPU:
//!   block i = hostq_pa + i * BLOCK_SIZE
//!     +0           submission ring: shmq SPSC of Sqe, SQ_SLOTS slots   guest vCPU i -> host I/O thread
//!     +CQ_OFFSET   completion ring: shmq SPSC of Cqe, CQ_SLOTS slots   host I/O thread -> guest vCPU i
//! ```
//!
//! The host creates both rings before boot (shmq `init`), the guest attaches
//! (shmq checks magic, version, kind and slot size). Each ring has exactly one
//! producer and one consumer: vCPU `i` is the only guest code that touches
//! block `i` (the guest kernel runs with interrupts disabled, so a vCPU is a
//! single thread of execution), and one host thread serves all blocks.
//!
//! Wakeups follow shmq's waiting-flag protocol (crates/shmq/README.md):
//! - guest → host: after publishing a submission the guest reads the SQ's
//!   `consumer_waiting`; only if the host thread advertised that it sleeps
//!   does the guest ring the doorbell, a 4-byte `out` to
//!   [`crate::layout::port::HOSTQ_DOORBELL`] (an in-kernel KVM ioeventfd when the
//!   host supports it, so the exit does not even reach the VMM's vCPU thread);
//! - host → guest: after publishing a completion the host reads the CQ's
//!   `consumer_waiting`; only if vCPU `i` advertised that a task waits does
//!   it inject [`COMPLETION_VECTOR`] into vCPU `i` (KVM_SIGNAL_MSI).
//!
//! A request carries 64 bytes of arguments and a response 32 bytes: the
//! message sizes of the hostfs protocol ([`crate::hostfs`]), so hostfs
//! requests can ride these rings unchanged (op [`op::HOSTFS`]).

use crate::layout::PAGE_SIZE;

/// Slots of each submission ring (a power of two).
pub const SQ_SLOTS: u32 = 64;
/// Slots of each completion ring (a power of two).
pub const CQ_SLOTS: u32 = 64;
/// Requests one vCPU may have in flight (tags are `0..MAX_INFLIGHT` per vCPU;
/// never more than the completion ring holds, so the host never has to hold
/// back a completion for lack of room while the guest keeps up).
pub const MAX_INFLIGHT: u32 = CQ_SLOTS;
/// Interrupt vector of the completion interrupt (qkernel's IDT handles it).
pub const COMPLETION_VECTOR: u8 = 0x23;

/// A submission (72 bytes): what to do and the tag the completion carries back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe {
    /// Chosen by the guest; returned in the [`Cqe`]. [`op::CANCEL`] carries
    /// the tag of the request to cancel in `req[0]` and has no completion of
    /// its own.
    pub tag: u32,
    /// Operation ([`op`]).
    pub op: u32,
    /// Arguments (a 64-byte request, e.g. a `hostfs::Request`).
    pub req: [u64; 8],
}

/// A completion (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cqe {
    /// The submission's tag.
    pub tag: u32,
    /// Zero.
    pub _reserved: u32,
    /// Result (a 32-byte response; `resp[0]` is `>= 0` or `-errno` for the
    /// operations below, like a hostfs `Response::ret`).
    pub resp: [u64; 4],
}

const _: () = assert!(core::mem::size_of::<Sqe>() == 72);
const _: () = assert!(MAX_INFLIGHT <= 256, "a tag's slot field has 8 bits");
const _: () = assert!(crate::layout::MAX_VCPUS <= 256, "a tag's vCPU field has 8 bits");
const _: () = assert!(core::mem::size_of::<Cqe>() == 40);

// SAFETY: integers only, no padding (sizes asserted above), every bit pattern valid.
unsafe impl shmq::Pod for Sqe {}
// SAFETY: as above.
unsafe impl shmq::Pod for Cqe {}

/// Operations.
pub mod op {
    /// Does nothing; `resp[0] = 0`. Measures the round trip.
    pub const NOP: u32 = 0;
    /// Read from a host stdio descriptor into guest frames, waiting (in the
    /// host, not on a vCPU) until data or end of file is there. `req[0]` = fd
    /// (0), `req[1]` = number of [`crate::hcall::GuestIovec`]s, `req[2]` =
    /// guest-physical address of that list (contiguous; at most
    /// [`super::MAX_IOVECS`] entries). `resp[0]` = bytes read (0 = end of file)
    /// or `-errno`.
    pub const STDIO_READ: u32 = 1;
    /// Write guest frames to a host stdio descriptor (1 or 2), completing when
    /// everything is written or an error ends it (then `resp[0]` is the bytes
    /// written so far if any, else `-errno`). Arguments as for [`STDIO_READ`].
    pub const STDIO_WRITE: u32 = 2;
    /// Cancel the waiting request with tag `req[0]`: it completes at once
    /// with what it did so far (`-EINTR` if nothing). No completion of its own.
    /// A request that already completed is not affected.
    pub const CANCEL: u32 = 3;
    /// Reserved for hostfs requests (`req` = a `hostfs::Request`, `resp` = its
    /// `Response`).
    pub const HOSTFS: u32 = 16;
}

/// Most iovecs one [`op::STDIO_READ`]/[`op::STDIO_WRITE`] request names.
pub const MAX_IOVECS: u64 = 1024;

/// Bytes of a ring control block plus slots (shmq's SPSC layout).
const fn ring_bytes(slots: u32, slot_size: usize) -> usize {
    shmq::CONTROL_SIZE + slots as usize * ((slot_size + 7) & !7)
}

/// Offset of the completion ring in a vCPU block (64-byte aligned).
pub const CQ_OFFSET: usize = (ring_bytes(SQ_SLOTS, core::mem::size_of::<Sqe>()) + 63) & !63;
/// Bytes of one vCPU's block (page aligned).
pub const BLOCK_SIZE: u64 = {
    let end = (CQ_OFFSET + ring_bytes(CQ_SLOTS, core::mem::size_of::<Cqe>())) as u64;
    (end + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
};

/// Offset of vCPU `i`'s submission ring in the hostq area.
pub const fn sq_offset(i: u32) -> usize {
    i as usize * BLOCK_SIZE as usize
}

/// Offset of vCPU `i`'s completion ring in the hostq area.
pub const fn cq_offset(i: u32) -> usize {
    sq_offset(i) + CQ_OFFSET
}

/// Bytes of the hostq area for `vcpus` vCPUs.
pub const fn area_size(vcpus: u32) -> u64 {
    vcpus as u64 * BLOCK_SIZE
}

/// Tag layout: the slot in the vCPU's in-flight table (low 8 bits), the vCPU
/// (next 8) and a generation that changes with every use of the slot (high 16),
/// so a stale or forged completion never matches a live request.
pub mod tag {
    /// Builds a tag.
    pub const fn make(vcpu: u32, slot: u32, generation: u32) -> u32 {
        (generation << 16) | ((vcpu & 0xff) << 8) | (slot & 0xff)
    }
    /// The slot.
    pub const fn slot(tag: u32) -> u32 {
        tag & 0xff
    }
    /// The vCPU.
    pub const fn vcpu(tag: u32) -> u32 {
        (tag >> 8) & 0xff
    }
    /// The generation.
    pub const fn generation(tag: u32) -> u32 {
        tag >> 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_shmq_ring_sizes() {
        assert_eq!(ring_bytes(SQ_SLOTS, 72), shmq::spsc::ring_size::<Sqe>(SQ_SLOTS).unwrap());
        assert_eq!(ring_bytes(CQ_SLOTS, 40), shmq::spsc::ring_size::<Cqe>(CQ_SLOTS).unwrap());
        assert_eq!(CQ_OFFSET % 64, 0);
        assert!(CQ_OFFSET + shmq::spsc::ring_size::<Cqe>(CQ_SLOTS).unwrap() <= BLOCK_SIZE as usize);
        assert_eq!(BLOCK_SIZE % PAGE_SIZE, 0);
        assert_eq!(cq_offset(1), BLOCK_SIZE as usize + CQ_OFFSET);
    }

    #[test]
    fn tags_round_trip() {
        let t = tag::make(5, 63, 0xbeef);
        assert_eq!((tag::vcpu(t), tag::slot(t), tag::generation(t)), (5, 63, 0xbeef));
    }
}
