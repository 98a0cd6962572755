//! The guest end of the host socket service (docs/hostnet.md): one request
//! message, one reply, over the synchronous VMM call `Call::Net`.
//!
//! Small requests (almost all: a header, a message header and a few
//! iovecs) are built in the first half of this vCPU's VMM-call page and the
//! reply lands in its second half, so a call allocates nothing. Larger
//! requests (many iovecs) go in a heap buffer (physically contiguous: the
//! heap hands out whole frame blocks above 2 KiB). The kernel is not
//! preempted between building the request and reading the reply
//! (interrupts are off in the kernel), so the page stays ours.

use crate::hcall;
use alloc::vec::Vec;
use qlib::hcall::{Call, HEADER_SIZE};
use qlib::hostnet::{encode_request, Op, Reply, Request, Wire, Writer, REPLY_EVENTS, REPLY_SIZE, REQUEST_SIZE};
use qlib::layout::virt_to_phys;
use qlib::linux::Errno;

/// Bytes of the page's data area used for requests.
const REQ_ROOM: usize = 2048;
/// Offset of the reply in the data area, and its room.
const REPLY_OFF: usize = REQ_ROOM;
const REPLY_ROOM: usize = qlib::hcall::DATA_SIZE - REQ_ROOM;
/// A value the host never writes as `ret`: marks "no reply written".
const NO_REPLY: i64 = i64::MIN;

/// Largest reply payload that fits (RecvMmsg batches are sized by it).
pub const MAX_REPLY_PAYLOAD: usize = REPLY_ROOM - REPLY_SIZE;

/// Performs one request: `payload_len` is the exact size `payload` writes.
/// `on_reply` sees the reply header and payload while they are still in
/// the page. Transport failures (the host refused the message) are errors.
pub fn call<R>(
    op: Op,
    flags: u32,
    handle: u64,
    args: [u64; 5],
    payload_len: usize,
    payload: impl FnOnce(&mut Writer),
    on_reply: impl FnOnce(&Reply, &[u8]) -> R,
) -> Result<R, Errno> {
    let header = Request { op: op as u32, flags, handle, args, payload_len: 0, _reserved: 0 };
    let page = hcall::page();
    let page_pa = virt_to_phys(page as *mut _ as u64);
    let data_pa = page_pa + HEADER_SIZE as u64;
    let total = REQUEST_SIZE + payload_len;
    let mut heap: Vec<u8> = Vec::new();
    let (req_pa, len) = if total <= REQ_ROOM {
        let n = encode_request(&mut page.data[..REQ_ROOM], header, payload).ok_or(Errno::EINVAL)?;
        (data_pa, n)
    } else {
        heap.resize(total, 0);
        let n = encode_request(&mut heap, header, payload).ok_or(Errno::EINVAL)?;
        (virt_to_phys(heap.as_ptr() as u64), n)
    };
    page.data[REPLY_OFF..REPLY_OFF + 8].copy_from_slice(&NO_REPLY.to_le_bytes());
    page.args[0] = req_pa;
    page.args[1] = len as u64;
    page.args[2] = data_pa + REPLY_OFF as u64;
    page.args[3] = REPLY_ROOM as u64;
    let ret = hcall::call(Call::Net);
    // The host wrote the reply during the exit; the VMM call's `asm!` is a
    // compiler barrier for memory, so plain reads see it.
    let reply_area = &page.data[REPLY_OFF..];
    let Some(reply) = Reply::read_from(&reply_area[..REPLY_SIZE]) else {
        return Err(Errno::EIO);
    };
    if reply.ret == NO_REPLY {
        return Err(Errno::from_ret(ret).unwrap_or(Errno::EIO));
    }
    let plen = (reply.payload_len as usize).min(REPLY_ROOM - REPLY_SIZE);
    drop(heap);
    let r = on_reply(&reply, &reply_area[REPLY_SIZE..REPLY_SIZE + plen]);
    if reply._reserved & REPLY_EVENTS != 0 {
        // The request made sockets ready (an in-sandbox peer of a send):
        // wake them now, not at the next interrupt. (A new socket's first
        // events are kept until the caller registers its handle.)
        super::events::drain_now();
    }
    Ok(r)
}

/// A request whose reply matters only as a result.
pub fn simple(op: Op, handle: u64, args: [u64; 5]) -> Result<u64, Errno> {
    call(op, 0, handle, args, 0, |_| {}, |r, _| r.result())?
}

/// A request with a byte payload; returns the result and `vals[0]`.
pub fn with_bytes(op: Op, handle: u64, args: [u64; 5], bytes: &[u8]) -> Result<u64, Errno> {
    call(
        op,
        0,
        handle,
        args,
        bytes.len(),
        |w| {
            w.bytes(bytes);
        },
        |r, _| r.result(),
    )?
}
