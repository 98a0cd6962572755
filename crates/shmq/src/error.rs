//! Errors. Every message says what went wrong and what to do about it.

use core::fmt;

use crate::layout::Kind;

/// Everything that can go wrong with a ring. `Copy`, no allocation: usable in
/// the guest kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A ring (or an access) does not fit in the shared region.
    OutOfBounds { offset: usize, size: usize, region_len: usize },
    /// An offset is not aligned as the layout requires.
    Misaligned { offset: usize, align: usize },
    /// The requested capacity is not a power of two in the supported range.
    BadCapacity { capacity: u32 },
    /// The message type is empty or too large for a slot.
    BadSlotSize { size: usize },
    /// The region holds zeroes where a ring header should be.
    NotInitialized { offset: usize },
    /// The region holds something that is not a shmq ring.
    BadMagic { offset: usize, found: u32 },
    /// The peer was built with another layout version of this crate.
    VersionMismatch { found: u32, expected: u32 },
    /// The ring is of another kind (e.g. attaching a byte stream as an MPMC ring).
    KindMismatch { found: u32, expected: Kind },
    /// The ring's slots have another size than the message type used here.
    SlotMismatch { found: u32, expected: u32 },
    /// A header field is inconsistent (written by a buggy or hostile peer).
    BadHeader { field: &'static str, value: u32 },
    /// Shared state read at run time is impossible for a well-behaved peer
    /// (an index out of range, a sequence number that never advances, ...).
    Corrupt { what: &'static str, value: u32 },
    /// The peer closed its end; nothing more will arrive (or can be sent).
    Closed,
    /// A caller passed an impossible argument (e.g. committing more bytes than the window holds).
    InvalidArgument(&'static str),
    /// The peer process died or hung up the socket the ring was handed over on.
    PeerGone,
    /// A host system call failed.
    Os { op: &'static str, errno: i32 },
    /// The fd handover message was malformed.
    Protocol(&'static str),
}

pub type Result<T, E = Error> = core::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::OutOfBounds { offset, size, region_len } => write!(
                f,
                "shmq: {size} bytes at offset {offset} do not fit in the {region_len}-byte shared region; \
                 map a larger region or use a smaller capacity"
            ),
            Error::Misaligned { offset, align } => write!(
                f,
                "shmq: offset {offset} is not {align}-byte aligned; place rings at multiples of 64 bytes \
                 in a page-aligned mapping"
            ),
            Error::BadCapacity { capacity } => write!(
                f,
                "shmq: capacity {capacity} is not a power of two between 2 and 2^30; round it to a power of two"
            ),
            Error::BadSlotSize { size } => {
                write!(f, "shmq: message type of {size} bytes cannot be stored in a slot (must be 1..=65536 bytes)")
            }
            Error::NotInitialized { offset } => write!(
                f,
                "shmq: no ring at offset {offset} (the header is zero); the creating side must call init() \
                 before the peer attaches, and both sides must use the same offset"
            ),
            Error::BadMagic { offset, found } => write!(
                f,
                "shmq: offset {offset} does not hold a shmq ring (magic {found:#010x}, expected {:#010x}); \
                 check that both sides use the same region and offset",
                crate::layout::MAGIC
            ),
            Error::VersionMismatch { found, expected } => write!(
                f,
                "shmq: the peer uses ring layout version {found} but this build uses version {expected}; \
                 rebuild both sides (guest kernel, sandbox, services) from the same shmq sources"
            ),
            Error::KindMismatch { found, expected } => write!(
                f,
                "shmq: the ring is of kind {} but was attached as {}; both sides must agree on the ring type",
                Kind::name_of(found),
                expected.name()
            ),
            Error::SlotMismatch { found, expected } => write!(
                f,
                "shmq: the ring has {found}-byte slots but this side's message type is {expected} bytes; \
                 both sides must use the same message type"
            ),
            Error::BadHeader { field, value } => write!(
                f,
                "shmq: ring header field `{field}` holds an impossible value {value}; the region was \
                 overwritten by a buggy or hostile peer: tear the ring down"
            ),
            Error::Corrupt { what, value } => write!(
                f,
                "shmq: shared ring state is corrupt ({what}: {value}); the peer is buggy or hostile: stop \
                 using this ring and tear down the peer"
            ),
            Error::Closed => write!(f, "shmq: the peer closed its end of the ring"),
            Error::InvalidArgument(what) => write!(f, "shmq: invalid argument: {what}"),
            Error::PeerGone => write!(
                f,
                "shmq: the peer process died or hung up the handover socket; data in flight may be lost: \
                 tear this ring down"
            ),
            Error::Os { op, errno } => {
                #[cfg(feature = "std")]
                {
                    write!(f, "shmq: {op} failed: {}", std::io::Error::from_raw_os_error(errno))
                }
                #[cfg(not(feature = "std"))]
                {
                    write!(f, "shmq: {op} failed: errno {errno}")
                }
            }
            Error::Protocol(what) => write!(f, "shmq: fd handover protocol error: {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind;
        let kind = match e {
            Error::Os { errno, .. } => return std::io::Error::from_raw_os_error(errno),
            Error::Closed => ErrorKind::BrokenPipe,
            Error::PeerGone => ErrorKind::ConnectionAborted,
            Error::InvalidArgument(_) => ErrorKind::InvalidInput,
            _ => ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}
