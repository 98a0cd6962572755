//! Synchronous VMM calls ("hcalls").
//!
//! The guest fills its vCPU's [`HcallPage`] and executes `out %eax, $HCALL`
//! (port [`crate::layout::port::HCALL`]) with EAX = a [`Call`] number. The host
//! sees `KVM_EXIT_IO` on that vCPU's thread, copies the page's request into its
//! own memory once, validates it, performs the call and writes `ret` (and any
//! output in `data`) before resuming the vCPU. Only the calling vCPU's page is
//! ever read, and every guest-physical range named in a request is
//! bounds-checked against guest RAM by the host before use.
//!
//! Bulk data never travels through the page: requests carry lists of
//! guest-physical ranges ([`GuestIovec`]) and the host reads or writes those
//! frames directly (`preadv`/`pwritev` on the guest memory mapping), so the
//! guest copies no bytes.
//!
//! Return values: `ret >= 0` is a result, `-4095 <= ret < 0` is `-errno`.

use crate::layout::PAGE_SIZE;

/// VMM call numbers (EAX of the `out`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// No operation: measures the round trip.
    Nop = 0,
    /// Append a line to the sandbox log. `args[0]` = level (0 error .. 4 trace),
    /// `args[1]` = byte length of the message in `data`.
    Log = 1,
    /// Guest kernel panic. `args[0]` = message length in `data`,
    /// `args[1]` = RIP, `args[2]` = RSP, `args[3]` = number of return addresses,
    /// stored as u64 at `data[PANIC_FRAMES_OFFSET..]`. Does not return.
    Panic = 2,
    /// The sandbox is over. `args[0]` = [`ExitKind`], `args[1]` = exit code or
    /// signal number. Does not return.
    Exit = 3,
    /// Write to a host stdio descriptor. `args[0]` = 1 or 2, `args[1]` = number
    /// of [`GuestIovec`]s in `data`, `args[2]` = [`IO_NONBLOCK`] or 0. Returns
    /// bytes written (with `IO_NONBLOCK` possibly fewer, or `-EAGAIN` when a
    /// pipe is full: the guest then queues the rest, see `crate::hostq`).
    Write = 4,
    /// Read from host stdin. `args[0]` = 0, `args[1]` = number of
    /// [`GuestIovec`]s in `data`, `args[2]` = [`IO_NONBLOCK`] or 0. Without
    /// the flag it blocks the vCPU; with it, `-EAGAIN` when no data is there
    /// yet. Returns bytes read (0 = EOF).
    Read = 5,
    /// Open a file beneath the container root, read-only. `args[0]` =
    /// guest-physical address of the absolute path, `args[1]` = its length
    /// (no NUL, at most [`MAX_PATH`]). Returns a host handle.
    Open = 6,
    /// `fstat` a host handle. `args[0]` = handle. The host writes a
    /// [`crate::linux::types::Stat`] at `data[0..144]`.
    Fstat = 7,
    /// Read from a host handle at an offset into guest frames. `args[0]` =
    /// handle, `args[1]` = file offset, `args[2]` = number of [`GuestIovec`]s
    /// in `data`. Returns bytes read.
    Pread = 8,
    /// Close a host handle. `args[0]` = handle.
    Close = 9,
    /// Terminal ioctl on a host stdio descriptor. `args[0]` = fd (0..2),
    /// `args[1]` = request (only those in [`TTY_IOCTL_ALLOWLIST`]); the argument
    /// structure is in `data` (in and out).
    TtyIoctl = 10,
    /// Platform facts the guest measured at boot, for `quark check`.
    /// `args[0]` = syscalls that arrived through the compat-mode #PF redirect
    /// during the self-test, `args[1]` = syscalls that arrived directly.
    Report = 11,
    /// Test-only behaviours of the VMM (honoured only when the sandbox runs
    /// with test hooks). `args[0]` = one of [`test_op`].
    Test = 12,
    /// Free guest frames: the host releases their memory (hole punch); they
    /// read as zero afterwards. `args[0]` = number of [`GuestIovec`]s in `data`.
    Discard = 13,
    /// A file-system request of the host file service (`crate::hostfs`):
    /// `args[0..8]` hold the 64 request bytes; the host writes the 32
    /// response bytes at `data[0..32]` and their `ret` as the call's `ret`.
    HostFs = 14,
    /// Fill guest frames with random bytes from the host's `getrandom`
    /// (the guest's `getrandom(2)`: generating them in the guest costs about
    /// a millisecond per 32 bytes where supervisor code is emulated).
    /// `args[0]` = number of [`GuestIovec`]s in `data`. Returns bytes written.
    Random = 15,
    /// A network request of the host socket service (`crate::hostnet`,
    /// docs/hostnet.md). `args[0]` = guest-physical address of the request
    /// message, `args[1]` = its length (at most `hostnet::MAX_REQUEST`),
    /// `args[2]` = guest-physical address of the reply buffer, `args[3]` =
    /// its capacity. Returns the reply's `ret`; `-EMSGSIZE` when the reply
    /// does not fit.
    Net = 20,
}

/// Operations of [`Call::Test`].
pub mod test_op {
    /// The VMM makes a host system call its seccomp filter forbids, proving
    /// the filter is in force (the sandbox must be killed).
    pub const FORBIDDEN_SYSCALL: u64 = 1;
}

impl Call {
    /// Decodes the call number from EAX.
    pub const fn from_raw(v: u32) -> Option<Call> {
        Some(match v {
            0 => Call::Nop,
            1 => Call::Log,
            2 => Call::Panic,
            3 => Call::Exit,
            4 => Call::Write,
            5 => Call::Read,
            6 => Call::Open,
            7 => Call::Fstat,
            8 => Call::Pread,
            9 => Call::Close,
            10 => Call::TtyIoctl,
            11 => Call::Report,
            12 => Call::Test,
            13 => Call::Discard,
            14 => Call::HostFs,
            15 => Call::Random,
            20 => Call::Net,
            _ => return None,
        })
    }
}

/// `Call::Read`/`Call::Write` `args[2]`: do not wait for a pipe, socket or
/// terminal (answer `-EAGAIN` instead).
pub const IO_NONBLOCK: u64 = 1;

/// How the sandbox ended (`Call::Exit` `args[0]`).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// The first process exited with `args[1]` as status.
    Exited = 0,
    /// The first process was killed by signal `args[1]`.
    Signaled = 1,
    /// `quark check`: boot finished without a program.
    CheckDone = 2,
    /// The first program could not be started: `args[1]` = errno,
    /// `args[2]` = length of the path in `data`.
    ExecFailed = 3,
}

/// A range of guest-physical memory named in a request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestIovec {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Bytes before `data` in an [`HcallPage`].
pub const HEADER_SIZE: usize = 128;
/// Bytes of `data` in an [`HcallPage`].
pub const DATA_SIZE: usize = PAGE_SIZE as usize - HEADER_SIZE;
/// Most [`GuestIovec`]s one request can carry.
pub const MAX_IOVECS: usize = DATA_SIZE / core::mem::size_of::<GuestIovec>();
/// Offset of the return addresses in a `Call::Panic` request's `data`.
pub const PANIC_FRAMES_OFFSET: usize = 2048;
/// Most return addresses a `Call::Panic` carries.
pub const PANIC_MAX_FRAMES: usize = (DATA_SIZE - PANIC_FRAMES_OFFSET) / 8;
/// Longest path `Call::Open` accepts (Linux's PATH_MAX, NUL excluded).
pub const MAX_PATH: usize = 4095;

/// Terminal ioctls the host performs on the sandbox's stdio for the guest.
/// Anything else (notably TIOCSTI, which would inject input into the host
/// terminal) is refused with ENOTTY by the host, and the seccomp filter allows
/// no other ioctl on those descriptors.
pub const TTY_IOCTL_ALLOWLIST: [u64; 4] = [
    crate::linux::consts::ioctl::TCGETS,
    crate::linux::consts::ioctl::TIOCGWINSZ,
    crate::linux::consts::ioctl::TCSETS,
    crate::linux::consts::ioctl::TIOCGPGRP,
];

/// One vCPU's VMM-call page.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
pub struct HcallPage {
    /// Request arguments.
    pub args: [u64; 8],
    /// Result written by the host.
    pub ret: i64,
    /// Reserved, zero.
    pub _reserved: [u64; 7],
    /// Call-specific payload.
    pub data: [u8; DATA_SIZE],
}

const _: () = assert!(core::mem::size_of::<HcallPage>() == PAGE_SIZE as usize);
const _: () = assert!(core::mem::offset_of!(HcallPage, data) == HEADER_SIZE);
