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
        }
    }

    /// The Linux errno number.
    pub const fn raw(self) -> i32 {
        match self {
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
            Errno::StrPipe => libc::ESTRPIPE,
            Errno::NoMem => libc::ENOMEM,
            Errno::BadF => libc::EBADF,
            Errno::Io => libc::EIO,
            Errno::Again => libc::EAGAIN,
            Errno::NotConn => libc::ENOTCONN,
            Errno::Perm => libc::EPERM,
            Errno::NoSys => libc::ENOSYS,
        }
    }

    /// Maps a raw Linux errno to a code, if it is one the engine names.
    pub fn from_raw(raw: i32) -> Option<Errno> {
        ALL.iter().copied().find(|e| e.raw() == raw)
    }

    /// Every code, in declaration order.
    pub const fn all() -> &'static [Errno] {
        &ALL
    }

    /// Maps an I/O error to a code; unknown OS errors become [`Errno::Io`].
    pub fn from_io(err: &std::io::Error) -> Errno {
        err.raw_os_error()
            .and_then(Errno::from_raw)
            .unwrap_or(Errno::Io)
    }
}

const ALL: [Errno; 23] = [
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
];

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.raw())
    }
}

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
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(Errno::from_io(&refused), Errno::ConnRefused);
        let other = std::io::Error::other("x");
        assert_eq!(Errno::from_io(&other), Errno::Io);
    }
}
