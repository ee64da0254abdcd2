//! Error codes shared by every part of the engine.
//!
//! The engine reports failures with the name of the Linux errno the kernel's
//! sockmap, sk_msg and strparser code return in the same situation, so that
//! anyone who knows the kernel recognises them (`EINVAL`, `ENOSPC`, `EPROTO`...).

use std::fmt;

/// A kernel-style error code.
///
/// [`Errno::name`] gives the symbolic name (`"EINVAL"`), which is what the
/// JavaScript API exposes as `err.code`; [`Errno::raw`] gives the Linux number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Errno {
    /// Invalid argument.
    Inval,
    /// No space left: a ring is full or a range lies outside the data.
    NoSpc,
    /// Argument list too long: index beyond a map's size, or a full map.
    TooBig,
    /// The entry already exists.
    Exist,
    /// No such entry.
    NoEnt,
    /// Resource busy: a socket already carries programs of another map.
    Busy,
    /// Operation not supported: the socket is not connected.
    OpNotSupp,
    /// Message too long.
    MsgSize,
    /// Protocol error: the stream is not well-formed.
    Proto,
    /// Timed out.
    TimedOut,
    /// Broken pipe: the target socket is gone.
    Pipe,
    /// Permission denied: a verdict dropped the data.
    Acces,
    /// Connection reset by peer.
    ConnReset,
    /// Connection refused.
    ConnRefused,
    /// No data: a hand-back happened after part of a message was consumed.
    NoData,
    /// Stream pipe error: the parser handed the stream back to the application.
    StrPipe,
    /// Out of memory.
    NoMem,
    /// Bad file descriptor.
    BadF,
    /// Input/output error.
    Io,
    /// Try again.
    Again,
    /// The socket is not connected.
    NotConn,
    /// Operation not permitted (e.g. io_uring refused by a sandbox).
    Perm,
    /// Function not implemented (e.g. a kernel without io_uring).
    NoSys,
    /// The process has no free descriptor.
    MFile,
    /// The system has no free descriptor.
    NFile,
    /// No buffer space available.
    NoBufs,
    /// The address is already in use.
    AddrInUse,
    /// The address is not available on this host.
    AddrNotAvail,
    /// The network is unreachable.
    NetUnreach,
    /// No route to the host.
    HostUnreach,
    /// The network is down.
    NetDown,
    /// The connection was aborted.
    ConnAborted,
    /// The address family is not supported.
    AfNoSupport,
}

impl Errno {
    /// The symbolic name, e.g. `"EINVAL"`.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::Inval => "EINVAL",
            Errno::NoSpc => "ENOSPC",
            Errno::TooBig => "E2BIG",
            Errno::Exist => "EEXIST",
            Errno::NoEnt => "ENOENT",
            Errno::Busy => "EBUSY",
            Errno::OpNotSupp => "EOPNOTSUPP",
            Errno::MsgSize => "EMSGSIZE",
            Errno::Proto => "EPROTO",
            Errno::TimedOut => "ETIMEDOUT",
            Errno::Pipe => "EPIPE",
            Errno::Acces => "EACCES",
            Errno::ConnReset => "ECONNRESET",
            Errno::ConnRefused => "ECONNREFUSED",
            Errno::NoData => "ENODATA",
            Errno::StrPipe => "ESTRPIPE",
            Errno::NoMem => "ENOMEM",
            Errno::BadF => "EBADF",
            Errno::Io => "EIO",
            Errno::Again => "EAGAIN",
            Errno::NotConn => "ENOTCONN",
            Errno::Perm => "EPERM",
            Errno::NoSys => "ENOSYS",
            Errno::MFile => "EMFILE",
            Errno::NFile => "ENFILE",
            Errno::NoBufs => "ENOBUFS",
            Errno::AddrInUse => "EADDRINUSE",
            Errno::AddrNotAvail => "EADDRNOTAVAIL",
            Errno::NetUnreach => "ENETUNREACH",
            Errno::HostUnreach => "EHOSTUNREACH",
            Errno::NetDown => "ENETDOWN",
            Errno::ConnAborted => "ECONNABORTED",
            Errno::AfNoSupport => "EAFNOSUPPORT",
        }
    }

    /// The Linux errno number: the same on every platform, as the kernel's
    /// code returns it (`Parse.HANDBACK` is `-ESTRPIPE`, -86, everywhere).
    pub const fn raw(self) -> i32 {
        match self {
            Errno::Inval => 22,
            Errno::NoSpc => 28,
            Errno::TooBig => 7,
            Errno::Exist => 17,
            Errno::NoEnt => 2,
            Errno::Busy => 16,
            Errno::OpNotSupp => 95,
            Errno::MsgSize => 90,
            Errno::Proto => 71,
            Errno::TimedOut => 110,
            Errno::Pipe => 32,
            Errno::Acces => 13,
            Errno::ConnReset => 104,
            Errno::ConnRefused => 111,
            Errno::NoData => 61,
            Errno::StrPipe => 86,
            Errno::NoMem => 12,
            Errno::BadF => 9,
            Errno::Io => 5,
            Errno::Again => 11,
            Errno::NotConn => 107,
            Errno::Perm => 1,
            Errno::NoSys => 38,
            Errno::MFile => 24,
            Errno::NFile => 23,
            Errno::NoBufs => 105,
            Errno::AddrInUse => 98,
            Errno::AddrNotAvail => 99,
            Errno::NetUnreach => 101,
            Errno::HostUnreach => 113,
            Errno::NetDown => 100,
            Errno::ConnAborted => 103,
            Errno::AfNoSupport => 97,
        }
    }

    /// Maps a raw Linux errno to a code, if it is one the engine names.
    pub fn from_raw(raw: i32) -> Option<Errno> {
        ALL.iter().copied().find(|e| e.raw() == raw)
    }

    /// This platform's errno number for the code, where it has one.
    #[cfg(unix)]
    fn os_raw(self) -> Option<i32> {
        Some(match self {
            Errno::Inval => libc::EINVAL,
            Errno::NoSpc => libc::ENOSPC,
            Errno::TooBig => libc::E2BIG,
            Errno::Exist => libc::EEXIST,
            Errno::NoEnt => libc::ENOENT,
            Errno::Busy => libc::EBUSY,
            Errno::OpNotSupp => libc::EOPNOTSUPP,
            Errno::MsgSize => libc::EMSGSIZE,
            Errno::Proto => libc::EPROTO,
            Errno::TimedOut => libc::ETIMEDOUT,
            Errno::Pipe => libc::EPIPE,
            Errno::Acces => libc::EACCES,
            Errno::ConnReset => libc::ECONNRESET,
            Errno::ConnRefused => libc::ECONNREFUSED,
            Errno::NoData => libc::ENODATA,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Errno::StrPipe => libc::ESTRPIPE,
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Errno::StrPipe => return None,
            Errno::NoMem => libc::ENOMEM,
            Errno::BadF => libc::EBADF,
            Errno::Io => libc::EIO,
            Errno::Again => libc::EAGAIN,
            Errno::NotConn => libc::ENOTCONN,
            Errno::Perm => libc::EPERM,
            Errno::NoSys => libc::ENOSYS,
            Errno::MFile => libc::EMFILE,
            Errno::NFile => libc::ENFILE,
            Errno::NoBufs => libc::ENOBUFS,
            Errno::AddrInUse => libc::EADDRINUSE,
            Errno::AddrNotAvail => libc::EADDRNOTAVAIL,
            Errno::NetUnreach => libc::ENETUNREACH,
            Errno::HostUnreach => libc::EHOSTUNREACH,
            Errno::NetDown => libc::ENETDOWN,
            Errno::ConnAborted => libc::ECONNABORTED,
            Errno::AfNoSupport => libc::EAFNOSUPPORT,
        })
    }

    /// This platform's errno number for the code, where it has one (Windows
    /// reports socket errors as WSA codes, which map through their kind).
    #[cfg(not(unix))]
    fn os_raw(self) -> Option<i32> {
        None
    }

    /// The I/O error kind closest to the code.
    fn kind(self) -> std::io::ErrorKind {
        use std::io::ErrorKind as K;
        match self {
            Errno::Inval => K::InvalidInput,
            Errno::Exist => K::AlreadyExists,
            Errno::NoEnt => K::NotFound,
            Errno::OpNotSupp => K::Unsupported,
            Errno::TimedOut => K::TimedOut,
            Errno::Pipe => K::BrokenPipe,
            Errno::Acces => K::PermissionDenied,
            Errno::ConnReset => K::ConnectionReset,
            Errno::ConnRefused => K::ConnectionRefused,
            Errno::NoMem => K::OutOfMemory,
            Errno::Again => K::WouldBlock,
            Errno::NotConn => K::NotConnected,
            Errno::AddrInUse => K::AddrInUse,
            Errno::AddrNotAvail => K::AddrNotAvailable,
            _ => K::Other,
        }
    }

    /// Maps an I/O error's kind to a code (where the OS number does not name one).
    #[cfg(not(unix))]
    fn from_kind(kind: std::io::ErrorKind) -> Errno {
        use std::io::ErrorKind as K;
        match kind {
            K::InvalidInput => Errno::Inval,
            K::AlreadyExists => Errno::Exist,
            K::NotFound => Errno::NoEnt,
            K::Unsupported => Errno::OpNotSupp,
            K::TimedOut => Errno::TimedOut,
            K::BrokenPipe => Errno::Pipe,
            K::PermissionDenied => Errno::Acces,
            K::ConnectionReset | K::ConnectionAborted => Errno::ConnReset,
            K::ConnectionRefused => Errno::ConnRefused,
            K::OutOfMemory => Errno::NoMem,
            K::WouldBlock => Errno::Again,
            K::NotConnected => Errno::NotConn,
            K::AddrInUse => Errno::AddrInUse,
            K::AddrNotAvailable => Errno::AddrNotAvail,
            _ => Errno::Io,
        }
    }

    /// Every code, in declaration order.
    pub const fn all() -> &'static [Errno] {
        &ALL
    }

    /// Maps an I/O error to a code; unknown OS errors become [`Errno::Io`].
    pub fn from_io(err: &std::io::Error) -> Errno {
        if let Some(e) = err.get_ref().and_then(|e| e.downcast_ref::<Errno>()) {
            return *e;
        }
        let os = err.raw_os_error().and_then(|n| {
            ALL.iter()
                .copied()
                .find(|e| e.os_raw().is_some_and(|m| m == n))
        });
        #[cfg(not(unix))]
        let os = os.or_else(|| Some(Errno::from_kind(err.kind())));
        os.unwrap_or(Errno::Io)
    }
}

const ALL: [Errno; 33] = [
    Errno::Inval,
    Errno::NoSpc,
    Errno::TooBig,
    Errno::Exist,
    Errno::NoEnt,
    Errno::Busy,
    Errno::OpNotSupp,
    Errno::MsgSize,
    Errno::Proto,
    Errno::TimedOut,
    Errno::Pipe,
    Errno::Acces,
    Errno::ConnReset,
    Errno::ConnRefused,
    Errno::NoData,
    Errno::StrPipe,
    Errno::NoMem,
    Errno::BadF,
    Errno::Io,
    Errno::Again,
    Errno::NotConn,
    Errno::Perm,
    Errno::NoSys,
    Errno::MFile,
    Errno::NFile,
    Errno::NoBufs,
    Errno::AddrInUse,
    Errno::AddrNotAvail,
    Errno::NetUnreach,
    Errno::HostUnreach,
    Errno::NetDown,
    Errno::ConnAborted,
    Errno::AfNoSupport,
];

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        match e.os_raw() {
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::new(e.kind(), e),
        }
    }
}

/// Why an engine could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartError {
    /// The errno name the application sees.
    pub code: Errno,
    /// What failed.
    pub detail: String,
}

impl StartError {
    /// An OS error from `what`.
    pub(crate) fn os(what: &str, e: &std::io::Error) -> StartError {
        let code = Errno::from_io(e);
        let name = match e.raw_os_error() {
            Some(raw) if Errno::from_raw(raw).is_none() => format!("errno {raw}"),
            _ => code.name().to_string(),
        };
        StartError {
            code,
            detail: format!("{what} failed with {name} ({e})"),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for StartError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for e in ALL {
            assert_eq!(Errno::from_raw(e.raw()), Some(e));
            assert!(e.name().starts_with('E'));
        }
        assert_eq!(Errno::Inval.raw(), 22);
        assert_eq!(Errno::NoSpc.name(), "ENOSPC");
    }

    #[test]
    fn io_errors_map_to_codes() {
        #[cfg(unix)]
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        #[cfg(not(unix))]
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Errno::from_io(&refused), Errno::ConnRefused);
        let other = std::io::Error::other("x");
        assert_eq!(Errno::from_io(&other), Errno::Io);
    }

    #[test]
    fn codes_survive_a_trip_through_io_errors() {
        for e in ALL {
            assert_eq!(Errno::from_io(&std::io::Error::from(e)), e, "{e}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn raw_numbers_are_the_linux_ones() {
        for e in ALL {
            assert_eq!(Some(e.raw()), e.os_raw(), "{e}");
        }
    }
}
