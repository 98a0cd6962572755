//! Read-only NETLINK_ROUTE for the guest: a checked RTM_GETLINK/GETADDR/
//! GETROUTE request is performed on a fresh host NETLINK_ROUTE socket in the
//! sandbox's namespace, and the kernel's complete answer is returned as one
//! buffer of netlink messages. The guest's AF_NETLINK sockets (implemented
//! in the guest) hand those messages to the program.

use super::sys as nsys;
use crate::sys::Errno;
use qlib::hostnet::{af, netlink::*, MAX_NETLINK_REPLY};
use std::os::fd::AsRawFd;

/// Bytes received per host `recvmsg` (larger than any dump datagram the
/// kernel builds).
const RECV_BUF: usize = 64 * 1024;

/// Performs `request` (checked with [`check_request`]) and returns every
/// reply message, with `nlmsg_pid` rewritten to `portid` (the guest
/// socket's port id, as the program expects).
pub fn request(request: &[u8], portid: u32) -> Result<Vec<u8>, Errno> {
    check_request(request)?;
    let sock = nsys::socket(af::AF_NETLINK as u64, 3 /* SOCK_RAW */, NETLINK_ROUTE as u64)?;
    let fd = sock.as_raw_fd();
    // struct sockaddr_nl { family, pad, pid 0 (the kernel), groups 0 }.
    let mut kernel = [0u8; 12];
    kernel[0..2].copy_from_slice(&af::AF_NETLINK.to_le_bytes());
    nsys::send_to(fd, request, &kernel, 0)?;
    let dump = u16::from_le_bytes([request[6], request[7]]) & NLM_F_DUMP != 0;
    let mut out = Vec::new();
    let mut buf = vec![0u8; RECV_BUF];
    // The kernel answers synchronously: the first part during sendmsg, the
    // rest of a dump while we receive. EAGAIN therefore means "complete".
    loop {
        let (n, flags) = match nsys::recv_into(fd, &mut buf, 0) {
            Ok(r) => r,
            Err(Errno::EAGAIN) => break,
            Err(e) => return Err(e),
        };
        if flags & qlib::hostnet::msg::MSG_TRUNC as i32 != 0 {
            return Err(Errno::EIO);
        }
        if out.len() + n > MAX_NETLINK_REPLY {
            return Err(Errno::EMSGSIZE);
        }
        let mut last = false;
        for (ty, _, _) in messages(&buf[..n]) {
            if ty == NLMSG_DONE || (dump && ty == NLMSG_ERROR) {
                last = true;
            }
        }
        out.extend_from_slice(&buf[..n]);
        if last {
            break;
        }
    }
    if out.is_empty() {
        return Err(Errno::EIO);
    }
    set_portid(&mut out, portid);
    Ok(out)
}

/// Writes `portid` into the `nlmsg_pid` of every message in `blob`.
fn set_portid(blob: &mut [u8], portid: u32) {
    let mut at = 0;
    while at + NLMSG_HDRLEN <= blob.len() {
        let len = u32::from_le_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]]) as usize;
        if len < NLMSG_HDRLEN {
            break;
        }
        blob[at + 12..at + 16].copy_from_slice(&portid.to_le_bytes());
        at += (len + 3) & !3;
    }
}

/// The messages of a netlink buffer: (type, header, payload after the
/// 16-byte header). Stops at the first malformed message.
pub fn messages(blob: &[u8]) -> impl Iterator<Item = (u16, [u32; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + NLMSG_HDRLEN > blob.len() {
            return None;
        }
        let w = |o: usize| u32::from_le_bytes([blob[at + o], blob[at + o + 1], blob[at + o + 2], blob[at + o + 3]]);
        let (len, tf, seq, pid) = (w(0) as usize, w(4), w(8), w(12));
        if len < NLMSG_HDRLEN || at + len > blob.len() {
            return None;
        }
        let payload = &blob[at + NLMSG_HDRLEN..at + len];
        at += (len + 3) & !3;
        Some(((tf & 0xffff) as u16, [len as u32, tf, seq, pid], payload))
    })
}

/// The route attributes (`struct rtattr`: u16 length, u16 type, data) in
/// `b`: (type, data).
pub fn attributes(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + 4 > b.len() {
            return None;
        }
        let len = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
        let ty = u16::from_le_bytes([b[at + 2], b[at + 3]]);
        if len < 4 || at + len > b.len() {
            return None;
        }
        let data = &b[at + 4..at + len];
        at += (len + 3) & !3;
        Some((ty, data))
    })
}

/// Builds a request message: header (type, flags, seq, pid 0) and body.
pub fn build_request(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_le_bytes());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portids_are_rewritten_in_every_message() {
        let mut blob = build_request(NLMSG_NOOP, 0, 1, &[1, 2, 3]);
        blob.resize(20, 0); // aligned
        blob.extend(build_request(NLMSG_DONE, 0, 1, &[0; 4]));
        set_portid(&mut blob, 0xabcd);
        let all: Vec<_> = messages(&blob).collect();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|(_, h, _)| h[3] == 0xabcd));
        assert_eq!(all[0].2, &[1, 2, 3]);
        assert_eq!(all[1].0, NLMSG_DONE);
    }

    #[test]
    fn malformed_buffers_end_the_walk() {
        let mut blob = build_request(NLMSG_NOOP, 0, 1, &[]);
        blob[0] = 200; // longer than the buffer
        assert_eq!(messages(&blob).count(), 0);
        set_portid(&mut blob, 1); // no panic
        assert_eq!(attributes(&[5, 0, 1, 0]).count(), 0);
        assert_eq!(attributes(&[5, 0, 1, 0, 9, 0, 0, 0]).next(), Some((1, &[9u8][..])));
    }
}
