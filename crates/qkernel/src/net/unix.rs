//! AF_UNIX sockets, entirely in the guest: stream, datagram and seqpacket;
//! names in the VFS (a socket inode made with mknod, found again by its
//! device and inode number) or abstract (a leading NUL); socketpair;
//! SCM_RIGHTS (open files travel with the bytes), SCM_CREDENTIALS (with
//! SO_PASSCRED) and SO_PEERCRED.
//!
//! Each socket has one receive queue of packets. A stream write appends
//! packets to the peer's queue; a read takes bytes across packets but stops
//! before a packet that carries files once it has read something (as
//! Linux). Writers wait on their own wait queue for room in the peer's
//! queue; a reader wakes its peer's queue after taking data.

use super::{block, common_getsockopt, common_setsockopt, raise_sigpipe, Common, RecvOut, SendMsg, Socket};
use super::{AF_UNIX, MSG_CMSG_CLOEXEC, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, MSG_WAITALL};
use super::{
    SCM_CREDENTIALS, SCM_RIGHTS, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, SOL_SOCKET, SO_PASSCRED, SO_PEERCRED,
};
use crate::arch::x86_64::usercopy::write_user;
use crate::fs::file::File;
use crate::fs::iobuf::IoBuf;
use crate::fs::poll::{POLLHUP, POLLIN, POLLOUT, POLLRDHUP, POLLRDNORM, POLLWRNORM};
use crate::fs::vfs;
use crate::fs::{may_access, MAY_EXEC, MAY_WRITE};
use crate::sync::SpinLock;
use crate::task;
use crate::task::wait::WaitQueue;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use qlib::linux::Errno;

/// Bytes a receive queue holds (Linux's default SO_RCVBUF for AF_UNIX).
const QUEUE_BYTES: usize = 212_992;
/// Most files one message may carry (SCM_MAX_FD).
const SCM_MAX_FD: usize = 253;
const FIONREAD: u64 = 0x541b;
const AT_FDCWD: i64 = -100;

/// `struct ucred`.
#[derive(Clone, Copy, Default)]
pub struct Ucred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Ucred {
    fn current() -> Ucred {
        let c = task::process().creds.lock().clone();
        Ucred { pid: task::process().pid as i32, uid: c.euid, gid: c.egid }
    }
    fn bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..8].copy_from_slice(&self.uid.to_le_bytes());
        b[8..12].copy_from_slice(&self.gid.to_le_bytes());
        b
    }
}

struct Packet {
    data: Vec<u8>,
    off: usize,
    from: Vec<u8>,
    rights: Vec<Arc<File>>,
    cred: Ucred,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Abstract(Vec<u8>),
    Path(u64, u64),
}

static NAMES: SpinLock<BTreeMap<Key, Weak<UnixSocket>>> = SpinLock::new(BTreeMap::new());
static AUTOBIND: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
struct State {
    /// Bound address (family + path/abstract name); empty when unbound.
    addr: Vec<u8>,
    key: Option<Key>,
    listening: bool,
    backlog: usize,
    pending: VecDeque<Arc<UnixSocket>>,
    /// Stream/seqpacket: the other end. Datagram: the default destination.
    peer: Option<Arc<UnixSocket>>,
    connected: bool,
    rq: VecDeque<Packet>,
    rq_bytes: usize,
    shut_rd: bool,
    shut_wr: bool,
    /// The peer will send nothing more (closed or shut down writing).
    peer_done: bool,
    /// The peer takes nothing more (closed or shut down reading).
    peer_gone: bool,
    peercred: Option<Ucred>,
    passcred: bool,
    err: Option<Errno>,
    closed: bool,
}

/// An AF_UNIX socket.
pub struct UnixSocket {
    ty: u32,
    st: SpinLock<State>,
    wq: WaitQueue,
    common: Common,
    ino: u64,
    me: Weak<UnixSocket>,
}

/// Two connected sockets (socketpair).
pub type Pair = (Arc<dyn Socket>, Arc<dyn Socket>);

/// What a name in a sockaddr_un refers to.
enum Name {
    Auto,
    Abstract(Vec<u8>),
    Path(Vec<u8>),
}

fn parse_name(addr: &[u8]) -> Result<Name, Errno> {
    if addr.len() < 2 || u16::from_le_bytes([addr[0], addr[1]]) != AF_UNIX {
        return Err(Errno::EINVAL);
    }
    let path = &addr[2..addr.len().min(110)];
    if path.is_empty() {
        return Ok(Name::Auto);
    }
    if path[0] == 0 {
        return Ok(Name::Abstract(path[1..].to_vec()));
    }
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    Ok(Name::Path(path[..end].to_vec()))
}

fn path_key(path: &[u8], write_check: bool) -> Result<Key, Errno> {
    let p = vfs::lookup_at(AT_FDCWD, path, crate::fs::path::Follow::Yes, false)?;
    let st = p.dentry.inode.stat()?;
    if st.st_mode & qlib::linux::consts::mode::S_IFMT != qlib::linux::consts::mode::S_IFSOCK {
        return Err(Errno::ECONNREFUSED);
    }
    if write_check {
        may_access(&st, &task::process().creds.lock().clone(), MAY_WRITE)?;
    }
    Ok(Key::Path(st.st_dev, st.st_ino))
}

fn find(addr: &[u8]) -> Result<Arc<UnixSocket>, Errno> {
    let key = match parse_name(addr)? {
        Name::Auto => return Err(Errno::EINVAL),
        Name::Abstract(n) => Key::Abstract(n),
        Name::Path(p) => path_key(&p, true)?,
    };
    NAMES.lock().get(&key).and_then(Weak::upgrade).ok_or(Errno::ECONNREFUSED)
}

impl UnixSocket {
    fn new(ty: u32) -> Arc<UnixSocket> {
        Arc::new_cyclic(|me| UnixSocket {
            ty,
            st: SpinLock::new(State::default()),
            wq: WaitQueue::new(),
            common: Common::default(),
            ino: super::new_ino(),
            me: me.clone(),
        })
    }

    /// `socket(AF_UNIX, ty, protocol)`.
    pub fn create(ty: u32, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
        match ty {
            SOCK_STREAM | SOCK_DGRAM | SOCK_SEQPACKET => {}
            _ => return Err(Errno::ESOCKTNOSUPPORT),
        }
        if protocol != 0 {
            return Err(Errno::EPROTONOSUPPORT);
        }
        Ok(Self::new(ty))
    }

    /// `socketpair(AF_UNIX, ty, 0)`.
    pub fn pair(ty: u32) -> Result<Pair, Errno> {
        match ty {
            SOCK_STREAM | SOCK_DGRAM | SOCK_SEQPACKET => {}
            _ => return Err(Errno::ESOCKTNOSUPPORT),
        }
        let (a, b) = (Self::new(ty), Self::new(ty));
        let cred = Ucred::current();
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut s = x.st.lock();
            s.peer = Some(y.clone());
            s.connected = true;
            s.peercred = Some(cred);
        }
        Ok((a, b))
    }

    fn arc(&self) -> Arc<UnixSocket> {
        self.me.upgrade().expect("a live socket")
    }

    fn peer(&self) -> Option<Arc<UnixSocket>> {
        self.st.lock().peer.clone()
    }

    /// Room in this socket's receive queue for `n` more bytes.
    fn room(&self, n: usize) -> bool {
        let s = self.st.lock();
        s.rq_bytes == 0 || s.rq_bytes + n <= QUEUE_BYTES
    }

    /// Parses SCM_RIGHTS and SCM_CREDENTIALS from a control buffer.
    fn control(ctl: &[u8]) -> Result<(Vec<Arc<File>>, Option<Ucred>), Errno> {
        let mut rights = Vec::new();
        let mut cred = None;
        let mut off = 0usize;
        while off + 16 <= ctl.len() {
            let len = u64::from_le_bytes(ctl[off..off + 8].try_into().map_err(|_| Errno::EINVAL)?) as usize;
            let level = i32::from_le_bytes(ctl[off + 8..off + 12].try_into().map_err(|_| Errno::EINVAL)?);
            let ty = i32::from_le_bytes(ctl[off + 12..off + 16].try_into().map_err(|_| Errno::EINVAL)?);
            if len < 16 || off + len > ctl.len() {
                return Err(Errno::EINVAL);
            }
            let body = &ctl[off + 16..off + len];
            if level != SOL_SOCKET {
                return Err(Errno::EINVAL);
            }
            match ty {
                SCM_RIGHTS => {
                    let files = task::files();
                    let t = files.lock();
                    for c in body.chunks_exact(4) {
                        let fd = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        if fd < 0 {
                            return Err(Errno::EBADF);
                        }
                        rights.push(t.get(fd as u64)?);
                    }
                    if rights.len() > SCM_MAX_FD {
                        return Err(Errno::EINVAL);
                    }
                }
                SCM_CREDENTIALS => {
                    if body.len() < 12 {
                        return Err(Errno::EINVAL);
                    }
                    let u = Ucred {
                        pid: i32::from_le_bytes([body[0], body[1], body[2], body[3]]),
                        uid: u32::from_le_bytes([body[4], body[5], body[6], body[7]]),
                        gid: u32::from_le_bytes([body[8], body[9], body[10], body[11]]),
                    };
                    let me = Ucred::current();
                    let c = task::process().creds.lock().clone();
                    let admin = c.has(task::cap::SYS_ADMIN);
                    let ok_pid = u.pid == me.pid || admin;
                    let ok_uid = [c.uid, c.euid, c.suid].contains(&u.uid) || c.has(task::cap::SETUID);
                    let ok_gid = [c.gid, c.egid, c.sgid].contains(&u.gid) || c.has(task::cap::SETGID);
                    if !(ok_pid && ok_uid && ok_gid) {
                        return Err(Errno::EPERM);
                    }
                    cred = Some(u);
                }
                _ => return Err(Errno::EINVAL),
            }
            off += (len + 7) & !7;
        }
        Ok((rights, cred))
    }

    fn queue(&self, p: Packet) {
        {
            let mut s = self.st.lock();
            s.rq_bytes += p.data.len();
            s.rq.push_back(p);
        }
        self.wq.wake_all();
    }

    /// Formats the control messages of a received packet.
    fn deliver_control(rights: Vec<Arc<File>>, cred: Option<Ucred>, flags: u32, cap: usize, out: &mut RecvOut) {
        if let Some(c) = cred {
            if cap >= out.control.len() + 32 {
                cmsg(&mut out.control, SCM_CREDENTIALS, &c.bytes());
            } else {
                out.flags |= qlib::hostnet::msg::MSG_CTRUNC;
            }
        }
        if rights.is_empty() {
            return;
        }
        let room = cap.saturating_sub(out.control.len() + 16) / 4;
        if room < rights.len() {
            out.flags |= qlib::hostnet::msg::MSG_CTRUNC;
        }
        let files = task::files();
        let mut fds = Vec::new();
        for f in rights.into_iter().take(room) {
            let limit = task::process().rlimits.lock()[qlib::linux::consts::rlimit::RLIMIT_NOFILE as usize].cur;
            match files.lock().install(f, flags & MSG_CMSG_CLOEXEC != 0, 0, limit) {
                Ok(fd) => fds.extend_from_slice(&(fd as i32).to_le_bytes()),
                Err(_) => {
                    out.flags |= qlib::hostnet::msg::MSG_CTRUNC;
                    break;
                }
            }
        }
        if !fds.is_empty() {
            cmsg(&mut out.control, SCM_RIGHTS, &fds);
        }
    }

    fn send_stream(&self, m: &mut SendMsg, flags: u32, nonblock: bool) -> Result<usize, Errno> {
        let (peer, shut_wr, connected) = {
            let s = self.st.lock();
            (s.peer.clone(), s.shut_wr, s.connected)
        };
        let epipe = || {
            if flags & MSG_NOSIGNAL == 0 {
                raise_sigpipe();
            }
            Errno::EPIPE
        };
        if !connected {
            return Err(Errno::ENOTCONN);
        }
        let Some(peer) = peer else { return Err(Errno::ENOTCONN) };
        if shut_wr {
            return Err(epipe());
        }
        let (mut rights, cred) = Self::control(&m.control)?;
        let cred = cred.unwrap_or_else(Ucred::current);
        let seq = self.ty == SOCK_SEQPACKET;
        let total = m.buf.remaining() as usize;
        if seq && total > QUEUE_BYTES {
            return Err(Errno::EMSGSIZE);
        }
        let mut sent = 0usize;
        loop {
            if peer.st.lock().closed || self.st.lock().peer_gone {
                return if sent > 0 { Ok(sent) } else { Err(epipe()) };
            }
            let want = if seq { total } else { (total - sent).min(64 << 10) };
            if !peer.room(want) {
                if nonblock {
                    return if sent > 0 { Ok(sent) } else { Err(Errno::EAGAIN) };
                }
                let r = block(
                    &self.wq,
                    || peer.room(want) || peer.st.lock().closed || self.st.lock().peer_gone,
                    self.common.sndtimeo.load(Ordering::Relaxed),
                );
                if let Err(e) = r {
                    return if sent > 0 { Ok(sent) } else { Err(e) };
                }
                continue;
            }
            let space = {
                let s = peer.st.lock();
                if s.rq_bytes == 0 {
                    QUEUE_BYTES
                } else {
                    QUEUE_BYTES - s.rq_bytes.min(QUEUE_BYTES)
                }
            };
            let n = if seq { total } else { (total - sent).min(space) };
            let mut data = alloc::vec![0u8; n];
            let got = m.buf.read_into(&mut data)?;
            data.truncate(got);
            sent += got;
            let from = self.st.lock().addr.clone();
            peer.queue(Packet { data, off: 0, from, rights: core::mem::take(&mut rights), cred });
            if seq || sent >= total || got == 0 {
                return Ok(sent);
            }
        }
    }

    fn send_dgram(&self, m: &mut SendMsg, flags: u32, nonblock: bool) -> Result<usize, Errno> {
        let _ = flags;
        let target = match &m.addr {
            Some(a) => find(a)?,
            None => self.peer().ok_or(Errno::ENOTCONN)?,
        };
        if target.ty != SOCK_DGRAM {
            return Err(Errno::EPROTOTYPE);
        }
        if let Some(p) = target.st.lock().peer.as_ref() {
            if !Arc::ptr_eq(p, &self.arc()) && m.addr.is_some() {
                return Err(Errno::EPERM);
            }
        }
        let total = m.buf.remaining() as usize;
        if total > QUEUE_BYTES {
            return Err(Errno::EMSGSIZE);
        }
        let (rights, cred) = Self::control(&m.control)?;
        let cred = cred.unwrap_or_else(Ucred::current);
        while !target.room(total) {
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            block(
                &target.wq,
                || target.room(total) || target.st.lock().closed,
                self.common.sndtimeo.load(Ordering::Relaxed),
            )?;
        }
        if target.st.lock().closed {
            return Err(Errno::ECONNREFUSED);
        }
        let mut data = alloc::vec![0u8; total];
        let got = m.buf.read_into(&mut data)?;
        data.truncate(got);
        // Linux names an unbound sender only when it asked for credentials.
        let (unbound, passcred) = {
            let s = self.st.lock();
            (s.addr.is_empty(), s.passcred)
        };
        if unbound && passcred {
            let _ = self.autobind();
        }
        let from = self.st.lock().addr.clone();
        target.queue(Packet { data, off: 0, from, rights, cred });
        Ok(got)
    }

    fn autobind(&self) -> Result<(), Errno> {
        loop {
            let n = AUTOBIND.fetch_add(1, Ordering::Relaxed);
            let mut name = Vec::new();
            for i in (0..5).rev() {
                name.push(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]);
            }
            match self.bind_key(Key::Abstract(name.clone()), {
                let mut a = AF_UNIX.to_le_bytes().to_vec();
                a.push(0);
                a.extend_from_slice(&name);
                a
            }) {
                Err(Errno::EADDRINUSE) => continue,
                r => return r,
            }
        }
    }

    fn bind_key(&self, key: Key, addr: Vec<u8>) -> Result<(), Errno> {
        let mut names = NAMES.lock();
        if names.get(&key).is_some_and(|w| w.strong_count() > 0) {
            return Err(Errno::EADDRINUSE);
        }
        let mut s = self.st.lock();
        if !s.addr.is_empty() {
            return Err(Errno::EINVAL);
        }
        names.insert(key.clone(), self.me.clone());
        s.key = Some(key);
        s.addr = addr;
        Ok(())
    }
}

/// Appends one control message.
fn cmsg(out: &mut Vec<u8>, ty: i32, body: &[u8]) {
    out.extend_from_slice(&((16 + body.len()) as u64).to_le_bytes());
    out.extend_from_slice(&SOL_SOCKET.to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(body);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

impl Socket for UnixSocket {
    fn family(&self) -> u16 {
        AF_UNIX
    }
    fn sock_type(&self) -> u32 {
        self.ty
    }
    fn common(&self) -> &Common {
        &self.common
    }
    fn ino(&self) -> u64 {
        self.ino
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        if !self.st.lock().addr.is_empty() {
            return Err(Errno::EINVAL);
        }
        match parse_name(addr)? {
            Name::Auto => self.autobind(),
            Name::Abstract(n) => {
                let a = addr[..addr.len().min(110)].to_vec();
                self.bind_key(Key::Abstract(n), a)
            }
            Name::Path(p) => {
                let (dir, name) = vfs::lookup_parent_at(AT_FDCWD, &p)?;
                let c = task::process().creds.lock().clone();
                may_access(&dir.dentry.inode.stat()?, &c, MAY_WRITE | MAY_EXEC)?;
                vfs::check_writable_mount(&dir)?;
                if dir.dentry.child(&name).is_ok() {
                    return Err(Errno::EADDRINUSE);
                }
                let umask = vfs::snapshot().2;
                let inode =
                    dir.dentry.inode.mknod(&name, qlib::linux::consts::mode::S_IFSOCK | (0o777 & !umask), 0, &c)?;
                let st = inode.stat()?;
                dir.dentry.insert(&name, inode);
                let mut a = AF_UNIX.to_le_bytes().to_vec();
                a.extend_from_slice(&p);
                a.push(0);
                self.bind_key(Key::Path(st.st_dev, st.st_ino), a)
            }
        }
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        if self.ty == SOCK_DGRAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut s = self.st.lock();
        if s.connected {
            return Err(Errno::EINVAL);
        }
        if s.addr.is_empty() {
            drop(s);
            self.autobind()?;
            s = self.st.lock();
        }
        s.listening = true;
        s.backlog = backlog.clamp(1, 4096) as usize;
        s.peercred = Some(Ucred::current());
        Ok(())
    }

    fn accept(&self, nonblock: bool) -> Result<(Arc<dyn Socket>, Vec<u8>), Errno> {
        loop {
            {
                let mut s = self.st.lock();
                if !s.listening {
                    return Err(Errno::EINVAL);
                }
                if let Some(c) = s.pending.pop_front() {
                    drop(s);
                    let peer_addr = c.peer().map(|p| p.st.lock().addr.clone()).unwrap_or_default();
                    // Room in the backlog for a waiting connector.
                    self.wq.wake_all();
                    let addr = if peer_addr.is_empty() { AF_UNIX.to_le_bytes().to_vec() } else { peer_addr };
                    return Ok((c, addr));
                }
            }
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            block(&self.wq, || !self.st.lock().pending.is_empty(), self.common.rcvtimeo.load(Ordering::Relaxed))?;
        }
    }

    fn connect(&self, addr: &[u8], nonblock: bool) -> Result<(), Errno> {
        if self.ty == SOCK_DGRAM {
            if addr.len() >= 2 && u16::from_le_bytes([addr[0], addr[1]]) == super::AF_UNSPEC {
                let mut s = self.st.lock();
                s.peer = None;
                s.connected = false;
                return Ok(());
            }
            let t = find(addr)?;
            if t.ty != SOCK_DGRAM {
                return Err(Errno::EPROTOTYPE);
            }
            let mut s = self.st.lock();
            s.peer = Some(t);
            s.connected = true;
            return Ok(());
        }
        {
            let s = self.st.lock();
            if s.connected {
                return Err(Errno::EISCONN);
            }
            if s.listening {
                return Err(Errno::EINVAL);
            }
        }
        let target = find(addr)?;
        if target.ty != self.ty {
            return Err(Errno::EPROTOTYPE);
        }
        loop {
            {
                let mut ts = target.st.lock();
                if !ts.listening || ts.closed {
                    return Err(Errno::ECONNREFUSED);
                }
                if ts.pending.len() < ts.backlog {
                    let server = UnixSocket::new(self.ty);
                    {
                        let mut ss = server.st.lock();
                        ss.peer = Some(self.arc());
                        ss.connected = true;
                        ss.addr = ts.addr.clone();
                        ss.peercred = Some(Ucred::current());
                    }
                    let listener_cred = ts.peercred;
                    ts.pending.push_back(server.clone());
                    drop(ts);
                    {
                        let mut s = self.st.lock();
                        s.peer = Some(server);
                        s.connected = true;
                        s.peercred = listener_cred;
                    }
                    target.wq.wake_all();
                    return Ok(());
                }
            }
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            block(
                &target.wq,
                || {
                    let ts = target.st.lock();
                    ts.pending.len() < ts.backlog || !ts.listening
                },
                self.common.sndtimeo.load(Ordering::Relaxed),
            )?;
        }
    }

    fn sendmsg(&self, m: &mut SendMsg, flags: u32, nonblock: bool) -> Result<usize, Errno> {
        if self.ty == SOCK_DGRAM {
            self.send_dgram(m, flags, nonblock)
        } else {
            if m.addr.is_some() && self.ty == SOCK_STREAM && !self.st.lock().connected {
                return Err(Errno::EOPNOTSUPP);
            }
            self.send_stream(m, flags, nonblock)
        }
    }

    fn recvmsg(
        &self,
        buf: &mut IoBuf,
        flags: u32,
        nonblock: bool,
        ctl_cap: usize,
        out: &mut RecvOut,
    ) -> Result<usize, Errno> {
        let stream = self.ty == SOCK_STREAM;
        let peek = flags & MSG_PEEK != 0;
        let waitall = stream && flags & MSG_WAITALL != 0 && !peek;
        let mut total = 0usize;
        loop {
            let mut got_rights = Vec::new();
            let mut got_cred = None;
            let progressed;
            {
                let mut s = self.st.lock();
                if let Some(e) = s.err.take() {
                    return if total > 0 { Ok(total) } else { Err(e) };
                }
                if !s.rq.is_empty() {
                    let passcred = s.passcred;
                    if stream {
                        let mut i = 0;
                        let mut copied = 0usize;
                        while i < s.rq.len() && buf.remaining() > 0 {
                            let has_rights = !s.rq[i].rights.is_empty();
                            if has_rights && (copied > 0 || total > 0) {
                                break;
                            }
                            let p = &mut s.rq[i];
                            let n = buf.write_from(&p.data[p.off..])?;
                            if passcred && got_cred.is_none() {
                                got_cred = Some(p.cred);
                            }
                            if !peek {
                                got_rights.append(&mut p.rights);
                                p.off += n;
                            }
                            copied += n;
                            if !peek && p.off < p.data.len() {
                                break;
                            }
                            i += 1;
                            if has_rights {
                                break;
                            }
                        }
                        if !peek {
                            while s.rq.front().is_some_and(|p| p.off >= p.data.len()) {
                                s.rq.pop_front();
                            }
                            s.rq_bytes -= copied.min(s.rq_bytes);
                        }
                        total += copied;
                        progressed = copied > 0;
                    } else {
                        let mut popped = if peek { None } else { s.rq.pop_front() };
                        if let Some(p) = &popped {
                            s.rq_bytes -= p.data.len().min(s.rq_bytes);
                        }
                        let Some(p) = popped.as_mut().or(s.rq.front_mut()) else { return Err(Errno::EAGAIN) };
                        let n = buf.write_from(&p.data)?;
                        if n < p.data.len() {
                            out.flags |= MSG_TRUNC;
                        }
                        total = if flags & MSG_TRUNC != 0 { p.data.len() } else { n };
                        if self.ty == SOCK_DGRAM {
                            out.addr = p.from.clone();
                        }
                        if passcred {
                            got_cred = Some(p.cred);
                        }
                        if !peek {
                            got_rights.append(&mut p.rights);
                        }
                        progressed = true;
                    }
                } else if s.shut_rd || s.peer_done {
                    return Ok(total);
                } else if self.ty != SOCK_DGRAM && !s.connected {
                    return if total > 0 {
                        Ok(total)
                    } else {
                        Err(if s.listening { Errno::EINVAL } else { Errno::ENOTCONN })
                    };
                } else {
                    progressed = false;
                }
            }
            if progressed {
                if !peek {
                    if let Some(p) = self.peer() {
                        p.wq.wake_all();
                    }
                    // Datagram senders wait on the receiver's queue.
                    self.wq.wake_all();
                }
                Self::deliver_control(got_rights, got_cred, flags, ctl_cap, out);
                if !waitall || buf.remaining() == 0 {
                    return Ok(total);
                }
                continue;
            }
            if nonblock {
                return if total > 0 { Ok(total) } else { Err(Errno::EAGAIN) };
            }
            let r = block(
                &self.wq,
                || {
                    let s = self.st.lock();
                    !s.rq.is_empty() || s.shut_rd || s.peer_done || s.err.is_some()
                },
                self.common.rcvtimeo.load(Ordering::Relaxed),
            );
            if let Err(e) = r {
                return if total > 0 { Ok(total) } else { Err(e) };
            }
        }
    }

    fn shutdown(&self, how: u64) -> Result<(), Errno> {
        if how > 2 {
            return Err(Errno::EINVAL);
        }
        let peer = {
            let mut s = self.st.lock();
            if !s.connected && self.ty != SOCK_DGRAM {
                return Err(Errno::ENOTCONN);
            }
            if how == 0 || how == 2 {
                s.shut_rd = true;
            }
            if how == 1 || how == 2 {
                s.shut_wr = true;
            }
            s.peer.clone()
        };
        if let Some(p) = peer {
            if self.ty != SOCK_DGRAM {
                let mut ps = p.st.lock();
                if how == 1 || how == 2 {
                    ps.peer_done = true;
                }
                if how == 0 || how == 2 {
                    ps.peer_gone = true;
                }
            }
            p.wq.wake_all();
        }
        self.wq.wake_all();
        Ok(())
    }

    fn getsockname(&self) -> Result<Vec<u8>, Errno> {
        let a = self.st.lock().addr.clone();
        Ok(if a.is_empty() { AF_UNIX.to_le_bytes().to_vec() } else { a })
    }

    fn getpeername(&self) -> Result<Vec<u8>, Errno> {
        let s = self.st.lock();
        if !s.connected {
            return Err(Errno::ENOTCONN);
        }
        let p = s.peer.clone();
        drop(s);
        let a = p.map(|p| p.st.lock().addr.clone()).unwrap_or_default();
        Ok(if a.is_empty() { AF_UNIX.to_le_bytes().to_vec() } else { a })
    }

    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        if let Some(r) = common_setsockopt(self, level, name, val) {
            return r;
        }
        if level != SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        match name {
            SO_PASSCRED => {
                self.st.lock().passcred = super::opt_int(val)? != 0;
                Ok(())
            }
            // Accepted and ignored (buffer sizes are fixed here).
            qlib::hostnet::so::SO_SNDBUF | qlib::hostnet::so::SO_RCVBUF | qlib::hostnet::so::SO_REUSEADDR => {
                super::opt_int(val).map(|_| ())
            }
            _ => Err(Errno::ENOPROTOOPT),
        }
    }

    fn getsockopt(&self, level: i32, name: i32, _cap: usize) -> Result<Vec<u8>, Errno> {
        if let Some(r) = common_getsockopt(self, level, name) {
            return r;
        }
        if level != SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        match name {
            SO_PEERCRED => {
                let c = self.st.lock().peercred.unwrap_or(Ucred { pid: 0, uid: u32::MAX, gid: u32::MAX });
                Ok(c.bytes().to_vec())
            }
            SO_PASSCRED => int(self.st.lock().passcred as i32),
            qlib::hostnet::so::SO_ERROR => int(self.st.lock().err.take().map(|e| e.0 as i32).unwrap_or(0)),
            qlib::hostnet::so::SO_ACCEPTCONN => int(self.st.lock().listening as i32),
            qlib::hostnet::so::SO_SNDBUF | qlib::hostnet::so::SO_RCVBUF => int(QUEUE_BYTES as i32),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }

    fn poll(&self) -> u32 {
        let s = self.st.lock();
        let mut ev = 0;
        if s.listening {
            if !s.pending.is_empty() {
                ev |= POLLIN | POLLRDNORM;
            }
            return ev;
        }
        if !s.rq.is_empty() {
            ev |= POLLIN | POLLRDNORM;
        }
        if s.shut_rd || s.peer_done {
            ev |= POLLIN | POLLRDNORM | POLLRDHUP;
        }
        if s.err.is_some() {
            ev |= crate::fs::poll::POLLERR;
        }
        let stream = self.ty != SOCK_DGRAM;
        if stream && s.peer_done && (s.shut_wr || s.peer_gone) {
            ev |= POLLHUP;
        }
        let peer = s.peer.clone();
        let connected = s.connected;
        let shut_wr = s.shut_wr;
        drop(s);
        if stream && !connected {
            return ev | POLLOUT | POLLWRNORM;
        }
        let writable = match peer {
            Some(p) if stream => !shut_wr && (p.room(1) || p.st.lock().closed),
            Some(p) => p.room(1),
            None => true,
        };
        if writable {
            ev |= POLLOUT | POLLWRNORM;
        }
        ev
    }

    fn wait_queue(&self) -> &WaitQueue {
        &self.wq
    }

    fn ioctl(&self, req: u64, arg: u64) -> Result<u64, Errno> {
        if req == FIONREAD {
            let s = self.st.lock();
            let n = if self.ty == SOCK_STREAM { s.rq_bytes } else { s.rq.front().map(|p| p.data.len()).unwrap_or(0) };
            drop(s);
            write_user(arg, &(n as i32))?;
            return Ok(0);
        }
        Err(Errno::ENOTTY)
    }

    fn release(&self) {
        let (peer, key, pending, unread) = {
            let mut s = self.st.lock();
            s.closed = true;
            let unread = !s.rq.is_empty();
            s.rq.clear();
            (s.peer.take(), s.key.take(), core::mem::take(&mut s.pending), unread)
        };
        if let Some(k) = key {
            let mut names = NAMES.lock();
            if names.get(&k).is_some_and(|w| w.as_ptr() == self.me.as_ptr()) {
                names.remove(&k);
            }
        }
        for c in pending {
            c.release();
        }
        if let Some(p) = peer {
            if self.ty != SOCK_DGRAM {
                let mut ps = p.st.lock();
                ps.peer_done = true;
                ps.peer_gone = true;
                if unread && self.ty == SOCK_STREAM {
                    ps.err = Some(Errno::ECONNRESET);
                }
            }
            p.wq.wake_all();
        }
        self.wq.wake_all();
    }
}
