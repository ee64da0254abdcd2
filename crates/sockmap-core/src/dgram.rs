//! Datagram sockets: UDP over IPv4 or IPv6, and Unix-domain datagram
//! sockets, with their roles and the batched system calls that move them.
//!
//! Invariants:
//! - a datagram socket is one [`DgramSock`] with one [`DgramRole`], fixed
//!   when it is created: *connected* (one peer; what it sends goes there),
//!   *bound* (datagrams from anyone; what it sends names its destination),
//!   or bound with *sessions* (one session socket per client address, read
//!   and written through the bound socket's descriptor);
//! - each datagram is one message: [`recv_batch`] and [`send_batch`] move
//!   whole datagrams (`recvmmsg`/`sendmmsg`), never part of one; a datagram
//!   larger than the receive slot is truncated by the kernel and counted;
//! - a Unix socket bound to a filesystem path owns a
//!   [`SocketFile`](crate::sock::SocketFile), removed when it closes;
//! - UDP offloads keep boundaries: with `UDP_SEGMENT` (GSO) one send carries
//!   several queued datagrams of one size to one destination (the last may
//!   be shorter), which the kernel sends as separate datagrams; with
//!   `UDP_GRO` one receive may hold several datagrams of one size, split
//!   here into one [`Received`] each.

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::net::SocketAddr;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use bytes::Bytes;

use crate::sock::Addr;
#[cfg(target_os = "linux")]
use crate::sock::UnixName;

/// How sessions of a bound datagram socket behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session closes after this long without a datagram either way.
    pub idle_timeout: Duration,
    /// Sessions open at once; a datagram from a new client beyond it is dropped and counted.
    pub max_sessions: usize,
}

/// A session's idle timeout when the application names none: 30 s.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Sessions a bound socket may hold when the application names no bound: 65,536.
pub const DEFAULT_MAX_SESSIONS: usize = 65_536;

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// What a datagram socket is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DgramRole {
    /// Connected to one peer.
    Connected,
    /// Bound; datagrams from anyone, each send names its destination.
    Bound,
    /// Bound, with one session socket per client address.
    Sessions(SessionConfig),
}

/// One datagram waiting to be sent.
#[derive(Clone, Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux backends read datagram sockets
pub(crate) struct Datagram {
    /// The destination (`None`: the socket's connected peer).
    pub(crate) to: Option<Addr>,
    /// The payload.
    pub(crate) data: Bytes,
}

/// What to open a datagram socket as.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux backends read datagram sockets
pub(crate) enum DgramOpen<'a> {
    /// A UDP socket bound on the address (port 0 picks one).
    BindUdp(std::net::SocketAddr),
    /// A UDP socket connected to the peer, bound to the local address if given (else any port of the peer's family).
    ConnectUdp(std::net::SocketAddr, Option<std::net::SocketAddr>),
    /// A Unix datagram socket bound on the name (a path is removed again when it closes).
    BindUnix(&'a crate::sock::UnixName),
    /// A Unix datagram socket connected to the peer, bound to the local name if given (a client must be bound to
    /// receive replies).
    ConnectUnix(&'a crate::sock::UnixName, Option<&'a crate::sock::UnixName>),
}

/// A datagram socket (non-blocking once the engine holds it).
#[derive(Debug)]
#[cfg(target_os = "linux")]
pub struct DgramSock {
    pub(crate) fd: OwnedFd,
    /// The file a Unix socket bound to a path removes when it closes.
    pub(crate) file: Option<crate::sock::SocketFile>,
    /// The kernel's UDP offloads this socket may use.
    pub(crate) offload: Offload,
}

/// What the kernel does for a socket beyond plain datagrams: the UDP
/// offloads (none on a Unix socket), and reports of its drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux backends read datagram sockets
pub(crate) struct Offload {
    /// Sends may carry several datagrams (`UDP_SEGMENT`, Linux 4.18).
    pub(crate) gso: bool,
    /// Receives may hold several datagrams (`UDP_GRO`, Linux 5.0).
    pub(crate) gro: bool,
    /// Receives carry the count of datagrams the kernel dropped for want of
    /// room in the receive buffer (`SO_RXQ_OVFL`).
    pub(crate) drops: bool,
}

/// `UDP_SEGMENT` and `UDP_GRO` (`linux/udp.h`; not in every libc binding).
#[cfg(target_os = "linux")]
const UDP_SEGMENT: libc::c_int = 103;
#[cfg(target_os = "linux")]
const UDP_GRO: libc::c_int = 104;
/// `SO_RXQ_OVFL` (`asm-generic/socket.h`, as on x86 and arm).
#[cfg(target_os = "linux")]
const SO_RXQ_OVFL: libc::c_int = 40;

/// Sets a boolean socket option; whether the kernel took it.
#[cfg(target_os = "linux")]
fn set_flag(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from `on`, on a descriptor this socket owns.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Turns on what the kernel offers: the UDP offloads (`udp`), and the reports of its drops.
#[cfg(target_os = "linux")]
fn kernel_features(fd: &OwnedFd, udp: bool) -> Offload {
    let mut seg: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `seg`, a c_int.
    let gso = udp
        && unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_UDP,
                UDP_SEGMENT,
                (&mut seg as *mut libc::c_int).cast(),
                &mut len,
            ) == 0
        };
    Offload {
        gso,
        gro: udp && set_flag(fd, libc::SOL_UDP, UDP_GRO),
        drops: set_flag(fd, libc::SOL_SOCKET, SO_RXQ_OVFL),
    }
}

/// A datagram socket: none outside Linux, where opening one fails with `EOPNOTSUPP`.
#[derive(Debug)]
#[cfg(not(target_os = "linux"))]
pub enum DgramSock {}

#[cfg(not(target_os = "linux"))]
impl DgramSock {
    pub(crate) fn open(_: DgramOpen<'_>) -> std::io::Result<(DgramSock, Addr)> {
        Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
}

#[cfg(target_os = "linux")]
impl DgramSock {
    /// Opens a datagram socket as `what` says; returns it and its local address.
    ///
    /// # Errors
    /// The bind or connect error (`EADDRINUSE`, `ENOENT`, `ECONNREFUSED`...).
    pub(crate) fn open(what: DgramOpen<'_>) -> io::Result<(DgramSock, Addr)> {
        use std::os::unix::net::UnixDatagram;
        let (fd, file): (OwnedFd, _) = match what {
            DgramOpen::BindUdp(addr) => (std::net::UdpSocket::bind(addr)?.into(), None),
            DgramOpen::ConnectUdp(peer, local) => {
                let local = local.unwrap_or_else(|| match peer {
                    SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
                    SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
                });
                let s = std::net::UdpSocket::bind(local)?;
                s.connect(peer)?;
                (s.into(), None)
            }
            DgramOpen::BindUnix(name) => {
                let s = UnixDatagram::bind_addr(&name.to_addr()?)?;
                (s.into(), socket_file(name)?)
            }
            DgramOpen::ConnectUnix(peer, local) => {
                let (s, file) = match local {
                    Some(l) => (UnixDatagram::bind_addr(&l.to_addr()?)?, socket_file(l)?),
                    None => (UnixDatagram::unbound()?, None),
                };
                s.connect_addr(&peer.to_addr()?)?;
                (s.into(), file)
            }
        };
        let udp = matches!(what, DgramOpen::BindUdp(_) | DgramOpen::ConnectUdp(..));
        let offload = kernel_features(&fd, udp);
        let sock = DgramSock { fd, file, offload };
        let local = sock.local_addr()?;
        // SAFETY: plain fcntl calls on a descriptor this socket owns.
        unsafe {
            let flags = libc::fcntl(sock.fd.as_raw_fd(), libc::F_GETFL);
            if flags < 0
                || libc::fcntl(sock.fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((sock, local))
    }

    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<Addr> {
        let mut st: libc::sockaddr_storage = zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into `st`, a sockaddr_storage of that size.
        let r = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut st as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        decode(&st, len).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
    }
}

/// The file a Unix socket bound to `name` removes when it closes (a path; none for an abstract name).
#[cfg(target_os = "linux")]
fn socket_file(name: &UnixName) -> io::Result<Option<crate::sock::SocketFile>> {
    match name {
        UnixName::Path(p) => Ok(Some(crate::sock::SocketFile::of(p.clone())?)),
        _ => Ok(None),
    }
}

/// Receive slots one `recvmmsg` fills at most.
#[cfg(target_os = "linux")]
pub(crate) const RECV_BATCH: usize = 32;
/// The largest datagram received whole: a UDP datagram's maximum payload.
#[cfg(target_os = "linux")]
pub(crate) const RECV_SLOT: usize = 65_536;
/// Datagrams one `UDP_SEGMENT` send carries at most (the kernel's `UDP_MAX_SEGMENTS`).
#[cfg(target_os = "linux")]
const GSO_SEGMENTS: usize = 64;
/// Bytes one `UDP_SEGMENT` send carries at most (within a UDP datagram's 65,507).
#[cfg(target_os = "linux")]
const GSO_BYTES: usize = 65_000;
/// Datagrams one `sendmmsg` sends at most.
#[cfg(target_os = "linux")]
pub(crate) const SEND_BATCH: usize = 64;

/// A datagram received: its sender (for a bound socket) and payload.
#[derive(Debug)]
#[cfg(target_os = "linux")]
pub(crate) struct Received {
    pub(crate) from: Option<Addr>,
    pub(crate) data: Bytes,
    /// The kernel cut it to the slot's size (`MSG_TRUNC`).
    pub(crate) truncated: bool,
    /// It came in one receive with others (`UDP_GRO`).
    pub(crate) coalesced: bool,
    /// The datagrams the kernel had dropped on this socket so far (`SO_RXQ_OVFL`), when it says.
    pub(crate) kernel_drops: Option<u32>,
}

/// The buffers `recvmmsg` fills, reused by every read of one I/O thread.
#[cfg(target_os = "linux")]
pub(crate) struct RecvSlots {
    bufs: Vec<u8>,
}

#[cfg(target_os = "linux")]
impl Default for RecvSlots {
    fn default() -> RecvSlots {
        RecvSlots {
            bufs: vec![0; RECV_BATCH * RECV_SLOT],
        }
    }
}

#[cfg(target_os = "linux")]
impl std::fmt::Debug for RecvSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecvSlots")
    }
}

#[cfg(target_os = "linux")]
fn zeroed<T>() -> T {
    // SAFETY: used only for plain C structs (sockaddr_storage, msghdr, iovec), for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// Encodes `addr` into `st`; returns its length.
#[cfg(target_os = "linux")]
fn encode(addr: &Addr, st: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        Addr::Inet(SocketAddr::V4(a)) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        Addr::Inet(SocketAddr::V6(a)) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
        Addr::Unix(name) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_un.
            let sun =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
            sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let base = std::mem::size_of::<libc::sa_family_t>();
            let bytes: Vec<u8> = match name {
                UnixName::Path(p) => {
                    use std::os::unix::ffi::OsStrExt;
                    let mut v = p.as_os_str().as_bytes().to_vec();
                    v.push(0);
                    v
                }
                UnixName::Abstract(n) => std::iter::once(0).chain(n.iter().copied()).collect(),
                UnixName::Unnamed => return base as libc::socklen_t,
            };
            let n = bytes.len().min(sun.sun_path.len());
            for (d, s) in sun.sun_path.iter_mut().zip(&bytes[..n]) {
                *d = *s as libc::c_char;
            }
            (base + n) as libc::socklen_t
        }
    }
}

/// Decodes the address the kernel wrote into `st`.
#[cfg(target_os = "linux")]
fn decode(st: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<Addr> {
    match st.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (its family says so).
            let sin =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(Addr::Inet(SocketAddr::from((
                ip,
                u16::from_be(sin.sin_port),
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (its family says so).
            let sin6 =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(Addr::Inet(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            ))))
        }
        libc::AF_UNIX => {
            // SAFETY: the kernel wrote a sockaddr_un (its family says so).
            let sun =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
            let base = std::mem::size_of::<libc::sa_family_t>();
            let n = (len as usize).saturating_sub(base).min(sun.sun_path.len());
            let path: Vec<u8> = sun.sun_path[..n]
                .iter()
                .map(|&c| c as libc::c_uchar)
                .collect();
            Some(Addr::Unix(match path.first() {
                None => UnixName::Unnamed,
                Some(0) => UnixName::Abstract(path[1..].to_vec()),
                Some(_) => {
                    use std::os::unix::ffi::OsStrExt;
                    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                    UnixName::Path(std::ffi::OsStr::from_bytes(&path[..end]).into())
                }
            }))
        }
        _ => None,
    }
}

/// Control-message room for a `UDP_GRO` and an `SO_RXQ_OVFL` value, or a
/// `UDP_SEGMENT` one (aligned for `cmsghdr`).
#[cfg(target_os = "linux")]
type Control = [u64; 8];

/// What a receive's control messages say: the segment size of a `UDP_GRO`
/// receive, and the kernel's drop count (`SO_RXQ_OVFL`).
#[cfg(target_os = "linux")]
fn controls_of(h: &libc::msghdr) -> (Option<usize>, Option<u32>) {
    let (mut seg, mut drops) = (None, None);
    // SAFETY: the CMSG_* walk stays within `msg_control`/`msg_controllen`, which the kernel filled; a UDP_GRO value
    // is one c_int, an SO_RXQ_OVFL value one u32.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_UDP, UDP_GRO) => {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    seg = usize::try_from(v).ok().filter(|&n| n > 0);
                }
                (libc::SOL_SOCKET, SO_RXQ_OVFL) => {
                    drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (seg, drops)
}

/// Receives up to [`RECV_BATCH`] receives in one `recvmmsg`; with `from`,
/// each datagram carries its sender. Each payload is copied out of the
/// reused slots; a receive that `UDP_GRO` coalesced is split into its
/// datagrams. Returns how many receives the call made.
///
/// # Errors
/// `WouldBlock` when none is waiting, or the receive error.
#[cfg(target_os = "linux")]
pub(crate) fn recv_batch(
    fd: std::os::fd::RawFd,
    slots: &mut RecvSlots,
    from: bool,
    offload: Offload,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    let control = offload.gro || offload.drops;
    let mut names: [libc::sockaddr_storage; RECV_BATCH] = zeroed();
    let mut iovs: [libc::iovec; RECV_BATCH] = zeroed();
    let mut hdrs: [libc::mmsghdr; RECV_BATCH] = zeroed();
    let mut controls: [Control; RECV_BATCH] = [[0; 8]; RECV_BATCH];
    for i in 0..RECV_BATCH {
        iovs[i].iov_base = slots.bufs[i * RECV_SLOT..].as_mut_ptr().cast();
        iovs[i].iov_len = RECV_SLOT;
        let h = &mut hdrs[i].msg_hdr;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        if from {
            h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        if control {
            h.msg_control = controls[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<Control>() as _;
        }
    }
    // SAFETY: every header points at a live iovec over its own slot of
    // `slots.bufs` (RECV_SLOT bytes each, in bounds), with `from` at its own
    // sockaddr_storage and with `control` at its own control buffer, each of the
    // length it names; all outlive the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            RECV_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT as _,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for i in 0..n {
        let h = &hdrs[i];
        let len = (h.msg_len as usize).min(RECV_SLOT);
        let buf = &slots.bufs[i * RECV_SLOT..i * RECV_SLOT + len];
        let sender = if from {
            decode(&names[i], h.msg_hdr.msg_namelen)
        } else {
            None
        };
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let (seg, kernel_drops) = match control {
            true => controls_of(&h.msg_hdr),
            false => (None, None),
        };
        let seg = seg.unwrap_or(len.max(1));
        for part in buf.chunks(seg) {
            out.push(Received {
                from: sender.clone(),
                data: Bytes::copy_from_slice(part),
                truncated,
                coalesced: seg < len,
                kernel_drops,
            });
        }
        if len == 0 {
            out.push(Received {
                from: sender,
                data: Bytes::new(),
                truncated,
                coalesced: false,
                kernel_drops,
            });
        }
    }
    Ok(n)
}

/// How a send failed.
#[derive(Debug)]
#[cfg(target_os = "linux")]
pub(crate) struct SendError {
    pub(crate) err: io::Error,
    /// The first datagrams went as one `UDP_SEGMENT` send: the error may be
    /// the offload's (try them one by one).
    pub(crate) segmented: bool,
}

/// Sends the leading datagrams of `queue` in one `sendmmsg`; returns how
/// many datagrams the kernel took (at least one) and how many of those went
/// as segments of `UDP_SEGMENT` sends. With `gso`, consecutive datagrams of
/// one size to one destination (the last of them may be shorter) go as one
/// send, which the kernel sends as separate datagrams.
///
/// # Errors
/// `WouldBlock` when the socket buffer is full, or the first send's error
/// (`EMSGSIZE`, `ECONNREFUSED`...).
#[cfg(target_os = "linux")]
pub(crate) fn send_batch<'a>(
    fd: std::os::fd::RawFd,
    queue: impl Iterator<Item = &'a Datagram>,
    gso: bool,
) -> Result<(usize, usize), SendError> {
    let mut names: [libc::sockaddr_storage; SEND_BATCH] = zeroed();
    let mut iovs: [libc::iovec; SEND_BATCH] = zeroed();
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = zeroed();
    let mut controls: [Control; SEND_BATCH] = [[0; 8]; SEND_BATCH];
    // Per header: its first iovec, its datagrams, their size.
    let mut groups: [(usize, usize, usize); SEND_BATCH] = [(0, 0, 0); SEND_BATCH];
    let (mut n, mut iov) = (0, 0);
    let mut last_to: Option<&Option<Addr>> = None;
    for d in queue.take(SEND_BATCH) {
        let len = d.data.len();
        let joins = n > 0 && gso && {
            let (_, k, size) = groups[n - 1];
            // A full-size segment continues the group; a shorter one ends it.
            last_to == Some(&d.to)
                && len <= size
                && len > 0
                && iovs[iov - 1].iov_len == size
                && k < GSO_SEGMENTS
                && (k + 1) * size <= GSO_BYTES
        };
        iovs[iov].iov_base = d.data.as_ptr() as *mut libc::c_void;
        iovs[iov].iov_len = len;
        if joins {
            groups[n - 1].1 += 1;
        } else {
            groups[n] = (iov, 1, len);
            if let Some(to) = &d.to {
                let nl = encode(to, &mut names[n]);
                hdrs[n].msg_hdr.msg_name = (&mut names[n] as *mut libc::sockaddr_storage).cast();
                hdrs[n].msg_hdr.msg_namelen = nl;
            }
            n += 1;
        }
        last_to = Some(&d.to);
        iov += 1;
    }
    if n == 0 {
        return Ok((0, 0));
    }
    for i in 0..n {
        let (first, k, size) = groups[i];
        let h = &mut hdrs[i].msg_hdr;
        h.msg_iov = &mut iovs[first];
        h.msg_iovlen = k as _;
        if k > 1 {
            h.msg_control = controls[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<Control>() as _;
            // SAFETY: the control buffer holds CMSG_SPACE of a u16 (32 bytes, aligned); the walk starts at its head.
            unsafe {
                let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
                h.msg_controllen = space as _;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size as u16);
            }
        }
    }
    // SAFETY: the first `n` headers point at live iovecs over the queued
    // datagrams' bytes (only read by the kernel), at their encoded
    // destinations and at their control buffers; all outlive the call.
    let r = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if r < 0 {
        return Err(SendError {
            err: io::Error::last_os_error(),
            segmented: groups[0].1 > 1,
        });
    }
    let sent = &groups[..r as usize];
    let datagrams = sent.iter().map(|g| g.1).sum();
    let segmented = sent.iter().filter(|g| g.1 > 1).map(|g| g.1).sum();
    Ok((datagrams, segmented))
}
