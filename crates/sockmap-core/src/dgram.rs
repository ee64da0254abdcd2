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
//!   [`SocketFile`](crate::sock::SocketFile), removed when it closes.

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::net::SocketAddr;
#[cfg(target_os = "linux")]
use std::os::fd::OwnedFd;
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
pub(crate) struct Datagram {
    /// The destination (`None`: the socket's connected peer).
    pub(crate) to: Option<Addr>,
    /// The payload.
    pub(crate) data: Bytes,
}

/// A datagram socket (non-blocking once the engine holds it).
#[derive(Debug)]
pub struct DgramSock {
    #[cfg(target_os = "linux")]
    pub(crate) fd: OwnedFd,
    /// The file a Unix socket bound to a path removes when it closes.
    #[cfg(target_os = "linux")]
    pub(crate) file: Option<crate::sock::SocketFile>,
}

#[cfg(target_os = "linux")]
impl DgramSock {
    /// Binds a UDP socket on `addr` (port 0 picks one); returns it and its address.
    ///
    /// # Errors
    /// The bind error.
    pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<(DgramSock, SocketAddr)> {
        let s = std::net::UdpSocket::bind(addr)?;
        s.set_nonblocking(true)?;
        let local = s.local_addr()?;
        Ok((DgramSock::udp(s), local))
    }

    /// A UDP socket connected to `peer`, bound to `local` (else any port of
    /// the peer's family); returns it and its local address.
    ///
    /// # Errors
    /// The bind or connect error.
    pub(crate) fn connect_udp(
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> io::Result<(DgramSock, SocketAddr)> {
        let local = local.unwrap_or_else(|| match peer {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        });
        let s = std::net::UdpSocket::bind(local)?;
        s.connect(peer)?;
        s.set_nonblocking(true)?;
        let local = s.local_addr()?;
        Ok((DgramSock::udp(s), local))
    }

    fn udp(s: std::net::UdpSocket) -> DgramSock {
        DgramSock {
            fd: s.into(),
            file: None,
        }
    }

    /// Binds a Unix datagram socket on `name`; a path is removed again when it closes.
    ///
    /// # Errors
    /// The bind error (`EADDRINUSE` for a path that exists).
    pub(crate) fn bind_unix(name: &UnixName) -> io::Result<(DgramSock, UnixName)> {
        let s = std::os::unix::net::UnixDatagram::bind_addr(&name.to_addr()?)?;
        let file = match name {
            UnixName::Path(p) => Some(crate::sock::SocketFile::of(p.clone())?),
            _ => None,
        };
        s.set_nonblocking(true)?;
        let local = UnixName::of(&s.local_addr()?);
        Ok((DgramSock { fd: s.into(), file }, local))
    }

    /// A Unix datagram socket connected to `peer`, bound to `local` if given
    /// (a client must be bound to receive replies).
    ///
    /// # Errors
    /// The bind or connect error (`ENOENT`, `ECONNREFUSED`).
    pub(crate) fn connect_unix(peer: &UnixName, local: Option<&UnixName>) -> io::Result<DgramSock> {
        let (s, file) = match local {
            Some(l) => {
                let s = std::os::unix::net::UnixDatagram::bind_addr(&l.to_addr()?)?;
                let file = match l {
                    UnixName::Path(p) => Some(crate::sock::SocketFile::of(p.clone())?),
                    _ => None,
                };
                (s, file)
            }
            None => (std::os::unix::net::UnixDatagram::unbound()?, None),
        };
        s.connect_addr(&peer.to_addr()?)?;
        s.set_nonblocking(true)?;
        Ok(DgramSock { fd: s.into(), file })
    }
}

/// Receive slots one `recvmmsg` fills at most.
#[cfg(target_os = "linux")]
pub(crate) const RECV_BATCH: usize = 32;
/// The largest datagram received whole: a UDP datagram's maximum payload.
#[cfg(target_os = "linux")]
pub(crate) const RECV_SLOT: usize = 65_536;
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
            let path: Vec<u8> = sun.sun_path[..n].iter().map(|c| *c as u8).collect();
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

/// Receives up to [`RECV_BATCH`] datagrams in one `recvmmsg`; with `from`,
/// each carries its sender. Each payload is copied out of the reused slots.
///
/// # Errors
/// `WouldBlock` when none is waiting, or the receive error.
#[cfg(target_os = "linux")]
pub(crate) fn recv_batch(
    fd: std::os::fd::RawFd,
    slots: &mut RecvSlots,
    from: bool,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    let mut names: [libc::sockaddr_storage; RECV_BATCH] = zeroed();
    let mut iovs: [libc::iovec; RECV_BATCH] = zeroed();
    let mut hdrs: [libc::mmsghdr; RECV_BATCH] = zeroed();
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
    }
    // SAFETY: every header points at a live iovec over its own slot of
    // `slots.bufs` (RECV_SLOT bytes each, in bounds) and, with `from`, at its
    // own sockaddr_storage of the length it names; all outlive the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            RECV_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
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
        let data = Bytes::copy_from_slice(&slots.bufs[i * RECV_SLOT..i * RECV_SLOT + len]);
        let from = if from {
            decode(&names[i], h.msg_hdr.msg_namelen)
        } else {
            None
        };
        out.push(Received {
            from,
            data,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        });
    }
    Ok(n)
}

/// Sends the leading datagrams of `queue` in one `sendmmsg`; returns how
/// many the kernel took (at least one, or an error about the first).
///
/// # Errors
/// `WouldBlock` when the socket buffer is full, or the first datagram's error
/// (`EMSGSIZE`, `ECONNREFUSED`...).
#[cfg(target_os = "linux")]
pub(crate) fn send_batch<'a>(
    fd: std::os::fd::RawFd,
    queue: impl Iterator<Item = &'a Datagram>,
) -> io::Result<usize> {
    let mut names: [libc::sockaddr_storage; SEND_BATCH] = zeroed();
    let mut iovs: [libc::iovec; SEND_BATCH] = zeroed();
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = zeroed();
    let mut n = 0;
    for d in queue.take(SEND_BATCH) {
        iovs[n].iov_base = d.data.as_ptr() as *mut libc::c_void;
        iovs[n].iov_len = d.data.len();
        hdrs[n].msg_hdr.msg_iov = &mut iovs[n];
        hdrs[n].msg_hdr.msg_iovlen = 1;
        if let Some(to) = &d.to {
            let len = encode(to, &mut names[n]);
            hdrs[n].msg_hdr.msg_name = (&mut names[n] as *mut libc::sockaddr_storage).cast();
            hdrs[n].msg_hdr.msg_namelen = len;
        }
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` headers point at live iovecs over the queued
    // datagrams' bytes (only read by the kernel) and at their encoded
    // destinations; all outlive the call.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}
