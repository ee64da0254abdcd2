//! The stream sockets the engine holds, whatever their family: TCP over IPv4
//! or IPv6, and Unix-domain stream sockets (on Unix), with their addresses.
//!
//! Invariants:
//! - every stream socket is one [`Stream`] and every listener one
//!   [`Listener`]; the backends hold these (or their descriptors) and branch
//!   on the family only for the calls that differ (the peer address an
//!   accept reports, `TCP_NODELAY`), through the methods here;
//! - a Unix listener bound to a filesystem path owns a [`SocketFile`], which
//!   removes the path when the listener's I/O object is dropped, and only if
//!   the path still names the socket this listener bound (same device and
//!   inode), so a socket file another process bound since is left alone.
//!   Abstract names (Linux) and TCP listeners leave nothing behind.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::fd::OwnedFd;
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// The address of a socket the engine listens on, connects to or accepted from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// An IPv4 or IPv6 address and port (TCP or UDP).
    Inet(SocketAddr),
    /// A Unix-domain socket's name.
    Unix(UnixName),
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Addr {
        Addr::Inet(a)
    }
}

/// The name of a Unix-domain socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnixName {
    /// A filesystem path.
    Path(PathBuf),
    /// A name in Linux's abstract namespace (no file; the bytes after the leading NUL).
    Abstract(Vec<u8>),
    /// No name: the socket was never bound (a connecting client, as its listener sees it).
    Unnamed,
}

#[cfg(unix)]
impl UnixName {
    /// The name of a Unix socket address.
    pub(crate) fn of(a: &std::os::unix::net::SocketAddr) -> UnixName {
        if let Some(p) = a.as_pathname() {
            return UnixName::Path(p.to_path_buf());
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            if let Some(n) = a.as_abstract_name() {
                return UnixName::Abstract(n.to_vec());
            }
        }
        UnixName::Unnamed
    }

    /// The socket address of this name.
    ///
    /// # Errors
    /// `EINVAL` for an unnamed address or a name too long; `EOPNOTSUPP` for
    /// an abstract name outside Linux.
    pub(crate) fn to_addr(&self) -> io::Result<std::os::unix::net::SocketAddr> {
        match self {
            UnixName::Path(p) => std::os::unix::net::SocketAddr::from_pathname(p),
            #[cfg(target_os = "linux")]
            UnixName::Abstract(n) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(n)
            }
            #[cfg(not(target_os = "linux"))]
            UnixName::Abstract(_) => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
            UnixName::Unnamed => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
}

/// The family of a socket: what its accepts produce and its address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// A Unix-domain stream socket.
    #[cfg(unix)]
    Unix,
}

/// A connected or connecting stream socket (non-blocking once the engine holds it).
#[derive(Debug)]
pub enum Stream {
    /// TCP over IPv4 or IPv6.
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    #[cfg(unix)]
    Unix(UnixStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

#[cfg(unix)]
impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

impl Stream {
    /// The peer's address.
    ///
    /// # Errors
    /// `ENOTCONN` when not connected.
    pub(crate) fn peer_addr(&self) -> io::Result<Addr> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(Addr::Inet),
            #[cfg(unix)]
            Stream::Unix(s) => s.peer_addr().map(|a| Addr::Unix(UnixName::of(&a))),
        }
    }

    /// Makes the socket non-blocking.
    ///
    /// # Errors
    /// The `fcntl` error.
    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(true),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_nonblocking(true),
        }
    }

    /// Turns Nagle's algorithm off (TCP; nothing to do on a Unix socket).
    #[cfg(target_os = "linux")] // the io_uring backend's; epoll sets it on mio's stream
    pub(crate) fn set_nodelay(&self) {
        match self {
            Stream::Tcp(s) => drop(s.set_nodelay(true)),
            Stream::Unix(_) => {}
        }
    }

    /// A stream of `family` over a descriptor that is one.
    #[cfg(unix)]
    pub(crate) fn from_fd(family: Family, fd: OwnedFd) -> Stream {
        match family {
            Family::Tcp => Stream::Tcp(TcpStream::from(fd)),
            Family::Unix => Stream::Unix(UnixStream::from(fd)),
        }
    }

    /// A stream over a socket descriptor of any supported family, told by
    /// its `SO_DOMAIN` (`AF_INET`/`AF_INET6`: TCP, `AF_UNIX`: Unix).
    ///
    /// # Errors
    /// `ENOTSOCK` for a descriptor that is not a socket, `EOPNOTSUPP` for a
    /// socket of another family or type (a datagram socket...).
    #[cfg(unix)]
    pub fn from_socket_fd(fd: OwnedFd) -> io::Result<Stream> {
        let (domain, ty) = crate::sys::domain_and_type(&fd)?;
        if ty != libc::SOCK_STREAM {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        match domain {
            libc::AF_INET | libc::AF_INET6 => Ok(Stream::from_fd(Family::Tcp, fd)),
            libc::AF_UNIX => Ok(Stream::from_fd(Family::Unix, fd)),
            _ => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        }
    }
}

#[cfg(unix)]
impl From<Stream> for OwnedFd {
    fn from(s: Stream) -> OwnedFd {
        match s {
            Stream::Tcp(s) => s.into(),
            Stream::Unix(s) => s.into(),
        }
    }
}

/// A listening socket (non-blocking).
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP over IPv4 or IPv6.
    Tcp(TcpListener),
    /// A Unix-domain stream listener, with the file its path names (if any).
    #[cfg(unix)]
    Unix(UnixListener, Option<SocketFile>),
}

impl Listener {
    /// Binds and listens on a TCP address.
    ///
    /// # Errors
    /// The bind or listen error.
    pub(crate) fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<(Listener, SocketAddr)> {
        let l = TcpListener::bind(addr)?;
        crate::sys::set_backlog(&l, backlog)?;
        l.set_nonblocking(true)?;
        let local = l.local_addr()?;
        Ok((Listener::Tcp(l), local))
    }

    /// Binds and listens on a Unix socket name. A filesystem path is
    /// removed again when the listener closes (see [`SocketFile`]); a path
    /// that exists already is `EADDRINUSE`, as `bind` reports it, and is left
    /// alone.
    ///
    /// # Errors
    /// The bind or listen error.
    #[cfg(unix)]
    pub(crate) fn bind_unix(name: &UnixName, backlog: i32) -> io::Result<(Listener, UnixName)> {
        let l = UnixListener::bind_addr(&name.to_addr()?)?;
        let file = match name {
            UnixName::Path(p) => Some(SocketFile::of(p.clone())?),
            _ => None,
        };
        crate::sys::set_backlog(&l, backlog)?;
        l.set_nonblocking(true)?;
        let local = UnixName::of(&l.local_addr()?);
        Ok((Listener::Unix(l, file), local))
    }

    /// The family of the streams this listener accepts.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // read by io_uring only
    pub(crate) fn family(&self) -> Family {
        match self {
            Listener::Tcp(_) => Family::Tcp,
            #[cfg(unix)]
            Listener::Unix(..) => Family::Unix,
        }
    }
}

/// The filesystem entry a Unix listener bound: removed when this drops, if
/// the path still names the same socket (device and inode).
#[derive(Debug)]
#[cfg(unix)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

#[cfg(unix)]
impl SocketFile {
    pub(crate) fn of(path: PathBuf) -> io::Result<SocketFile> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(&path)?;
        Ok(SocketFile {
            path,
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

#[cfg(unix)]
impl Drop for SocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
