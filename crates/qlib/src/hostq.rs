//! Queued host calls ("hostq"): the ring and completion table shared by the
//! guest kernel and the VMM's host I/O thread.
//!
//! Next to the synchronous VMM call ([`crate::hcall`], one `out` that stops
//! the vCPU until the host answers), a guest task can post a host operation
//! to a ring and park: the vCPU runs other tasks or halts, the host I/O
//! thread executes the operation (waiting for the descriptor to become ready
//! without holding a vCPU) and posts the completion, and the task is woken by
//! the completion interrupt. See docs/architecture.md ("Host calls") for which
//! path each call takes.
//!
//! ```text
//! guest-physical hostq area (BootParams::hostq_pa, hostq_size), one block per vCPU:
//!   block i = hostq_pa + i * BLOCK_SIZE
//!     +0             submission ring: shmq SPSC of Sqe, SQ_SLOTS slots    guest vCPU i -> host I/O thread
//!     +WAIT_OFFSET   completion waiting flag (u32, own cache line)        guest sets, host swaps to 0
//!     +TABLE_OFFSET  completion table: MAX_INFLIGHT Completion entries    host writes, guest reads
//! ```
//!
//! The host creates the ring before boot (shmq `init`), the guest attaches
//! (shmq checks magic, version, kind and slot size). The ring has exactly one
//! producer and one consumer: vCPU `i` is the only guest code that submits to
//! block `i` (the guest kernel runs with interrupts disabled, so a vCPU is a
//! single thread of execution), and one host thread serves all blocks.
//!
//! Completions are posted **in place**: a request's tag names its slot in the
//! vCPU's completion table, and the host writes the 32-byte response there,
//! then `done` = [`done_word`]`(generation)` with release ordering. The waiting
//! task reads its own entry; no completion ring has to be drained first, which
//! keeps the guest's completion path to a few emulated instructions.
//!
//! Wakeups follow shmq's waiting-flag protocol (crates/shmq/README.md):
//! - guest → host: after publishing a submission the guest reads the SQ's
//!   `consumer_waiting`; only if the host thread advertised that it sleeps
//!   does the guest ring the doorbell, a 4-byte `out` to
//!   [`crate::layout::port::HOSTQ_DOORBELL`] (an in-kernel KVM ioeventfd when the
//!   host supports it, so the exit does not even reach the VMM's vCPU thread);
//! - host → guest: after publishing a completion (`done`, release) the host
//!   fences (SeqCst) and reads vCPU `i`'s completion waiting flag; only if a
//!   task advertised that it waits (flag set, SeqCst fence, `done` re-checked
//!   before parking) does it swap the flag to 0 and inject
//!   [`COMPLETION_VECTOR`] into vCPU `i` (KVM_SIGNAL_MSI). The guest's
//!   interrupt handler wakes the tasks whose entries are done and re-arms the
//!   flag while others still wait. These are the two sides of shmq's
//!   `wake_if_waiting` / `wait_until` handshake, with `done` as the published
//!   index (the spin models in crates/shmq/models check that handshake).
//!
//! A request carries 64 bytes of arguments and a response 32 bytes: the
//! message sizes of the hostfs protocol ([`crate::hostfs`]), so hostfs
//! requests can ride this queue unchanged (op [`op::HOSTFS`]).

use crate::layout::PAGE_SIZE;

/// Slots of each submission ring (a power of two).
pub const SQ_SLOTS: u32 = 64;
/// Requests one vCPU may have in flight: entries of its completion table
/// (tags name slots `0..MAX_INFLIGHT`).
pub const MAX_INFLIGHT: u32 = 64;
/// Interrupt vector of the completion interrupt (qkernel's IDT handles it).
pub const COMPLETION_VECTOR: u8 = 0x23;

/// A submission (72 bytes): what to do and the tag naming its completion entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe {
    /// [`tag::make`]: completion table entry and generation. [`op::CANCEL`]
    /// carries the tag of the request to cancel in `req[0]` and has no
    /// completion of its own.
    pub tag: u32,
    /// Operation ([`op`]).
    pub op: u32,
    /// Arguments (a 64-byte request, e.g. a `hostfs::Request`).
    pub req: [u64; 8],
}

/// One entry of a vCPU's completion table (64 bytes, one cache line).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// [`done_word`] of the generation whose response `resp` holds; written
    /// last, with release ordering.
    pub done: u32,
    /// Zero.
    pub _reserved: u32,
    /// Result (a 32-byte response; `resp[0]` is `>= 0` or `-errno` for the
    /// operations below, like a hostfs `Response::ret`).
    pub resp: [u64; 4],
    /// Zero.
    pub _pad: [u64; 3],
}

const _: () = assert!(core::mem::size_of::<Sqe>() == 72);
const _: () = assert!(core::mem::size_of::<Completion>() == 64);
const _: () = assert!(MAX_INFLIGHT <= 256, "a tag's slot field has 8 bits");
const _: () = assert!(crate::layout::MAX_VCPUS <= 256, "a tag's vCPU field has 8 bits");

// SAFETY: integers only, no padding (size asserted above), every bit pattern valid.
unsafe impl shmq::Pod for Sqe {}

/// The `done` word that marks generation `generation` complete (never 0, so
/// a zeroed table has nothing complete).
pub const fn done_word(generation: u32) -> u32 {
    0x1_0000 | (generation & 0xffff)
}

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
    /// A hostfs request (`req` = a `hostfs::Request`, `resp` = its
    /// `Response`), run by one of the host's hostfs workers so that slow host
    /// file I/O neither holds a vCPU nor the I/O thread. Every guest range the
    /// request names (iovec lists, names, stat buffers) must stay valid until
    /// the completion: the guest keeps them in the task's own memory, never in
    /// the per-vCPU VMM-call page. Not cancellable (a regular file read or
    /// write is not interrupted by signals on Linux either): a CANCEL naming it
    /// has no effect.
    pub const HOSTFS: u32 = 16;
}

/// Most iovecs one [`op::STDIO_READ`]/[`op::STDIO_WRITE`] request names.
pub const MAX_IOVECS: u64 = 1024;

/// Bytes of a ring control block plus slots (shmq's SPSC layout).
const fn ring_bytes(slots: u32, slot_size: usize) -> usize {
    shmq::CONTROL_SIZE + slots as usize * ((slot_size + 7) & !7)
}

/// Offset of the completion waiting flag in a vCPU block (own cache line).
pub const WAIT_OFFSET: usize = (ring_bytes(SQ_SLOTS, core::mem::size_of::<Sqe>()) + 63) & !63;
/// Offset in the hostq area (vCPU 0's block, the waiting flag's cache line)
/// of the hostfs path policy: a `u64` limit `L` the host writes before boot
/// and the guest reads once. A hostfs `Read`/`Write` request goes through
/// the queue ([`op::HOSTFS`]) when the bytes its system call has moved so
/// far plus the request's own exceed `L`; everything else, and every
/// metadata request, is a synchronous VMM call. [`HOSTFS_NEVER`] (or a
/// zero-filled word from an older host: see [`hostfs_min_queued`]) keeps
/// everything synchronous. docs/hostfs.md ("Which path") has the
/// measurements behind the default.
pub const HOSTFS_POLICY_OFFSET: usize = WAIT_OFFSET + 8;
/// Policy value: never queue hostfs requests.
pub const HOSTFS_NEVER: u64 = u64::MAX;
/// Policy value for forcing the queue (benchmarks): every data request of
/// more than one byte.
pub const HOSTFS_ALWAYS: u64 = 1;
/// The default policy: a system call's first MiB moves by synchronous
/// calls (one request of at most 1 MiB, the cheapest path on every size
/// measured), the rest through the queue, so a long read or write holds its
/// vCPU for one request at most (docs/hostfs.md, "Which path").
pub const HOSTFS_DEFAULT_MIN_QUEUED: u64 = 1 << 20;

/// The threshold a stored policy word means (0, an unset word, means never).
pub const fn hostfs_min_queued(word: u64) -> u64 {
    if word == 0 {
        HOSTFS_NEVER
    } else {
        word
    }
}
/// Offset of the completion table in a vCPU block.
pub const TABLE_OFFSET: usize = WAIT_OFFSET + 64;
/// Bytes of one vCPU's block (page aligned).
pub const BLOCK_SIZE: u64 = {
    let end = (TABLE_OFFSET + MAX_INFLIGHT as usize * core::mem::size_of::<Completion>()) as u64;
    (end + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
};

/// Offset of vCPU `i`'s submission ring in the hostq area.
pub const fn sq_offset(i: u32) -> usize {
    i as usize * BLOCK_SIZE as usize
}

/// Offset of vCPU `i`'s completion waiting flag in the hostq area.
pub const fn wait_offset(i: u32) -> usize {
    sq_offset(i) + WAIT_OFFSET
}

/// Offset of entry `slot` of vCPU `i`'s completion table in the hostq area.
pub const fn completion_offset(i: u32, slot: u32) -> usize {
    sq_offset(i) + TABLE_OFFSET + slot as usize * core::mem::size_of::<Completion>()
}

/// Offset of the `resp` words inside a [`Completion`].
pub const RESP_OFFSET: usize = 8;

/// Bytes of the hostq area for `vcpus` vCPUs.
pub const fn area_size(vcpus: u32) -> u64 {
    vcpus as u64 * BLOCK_SIZE
}

/// Tag layout: the entry in the vCPU's completion table (low 8 bits), the
/// vCPU (next 8) and a generation that changes with every use of the entry
/// (high 16), so a stale completion never matches a live request.
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
        assert_eq!(WAIT_OFFSET % 64, 0);
        assert_eq!(TABLE_OFFSET % 64, 0);
        assert!(WAIT_OFFSET >= shmq::spsc::ring_size::<Sqe>(SQ_SLOTS).unwrap());
        assert!(completion_offset(0, MAX_INFLIGHT - 1) + 64 <= BLOCK_SIZE as usize);
        assert_eq!(BLOCK_SIZE % PAGE_SIZE, 0);
        assert_eq!(completion_offset(1, 2), BLOCK_SIZE as usize + TABLE_OFFSET + 128);
        assert_eq!(core::mem::offset_of!(Completion, resp), RESP_OFFSET);
        assert!(HOSTFS_POLICY_OFFSET.is_multiple_of(8) && HOSTFS_POLICY_OFFSET + 8 <= TABLE_OFFSET);
        assert_eq!(hostfs_min_queued(0), HOSTFS_NEVER);
    }

    #[test]
    fn tags_round_trip() {
        let t = tag::make(5, 63, 0xbeef);
        assert_eq!((tag::vcpu(t), tag::slot(t), tag::generation(t)), (5, 63, 0xbeef));
        assert_ne!(done_word(0), 0);
        assert_eq!(done_word(0x1_0005), done_word(5));
    }
}
