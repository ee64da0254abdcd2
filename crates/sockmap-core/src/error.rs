//! Error codes shared by every part of the engine.
//!
//! The engine reports failures with the name of the Linux errno the kernel's
//! sockmap, sk_msg and strparser code return in the same situation, so that
//! anyone who knows the kernel recognises them (`EINVAL`, `ENOSPC`, `EPROTO`...),
//! and an error the operating system returns with the name of its errno:
//! [`Errno`] has every errno Linux defines, so none arrives as `EIO` unless
//! it is `EIO`.

use std::fmt;

/// Whether this platform's errno numbers are Linux's asm-generic ones.
const LINUX_NUMBERS: bool = cfg!(all(
    any(target_os = "linux", target_os = "android"),
    not(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    ))
));

/// Declares [`Errno`] from its table: variant, Linux number, name.
macro_rules! errnos {
    ($($(#[$doc:meta])* $v:ident = $raw:literal, $name:literal;)*) => {
        /// A kernel-style error code: every errno Linux defines (the
        /// asm-generic numbers), by its name.
        ///
        /// [`Errno::name`] gives the symbolic name (`"EINVAL"`), which is what the
        /// JavaScript API exposes as `err.code`; [`Errno::raw`] gives the Linux number.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Errno {
            $($(#[$doc])* $v,)*
        }

        impl Errno {
            /// The symbolic name, e.g. `"EINVAL"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Errno::$v => $name,)*
                }
            }

            /// The Linux errno number: the same on every platform, as the kernel's
            /// code returns it (`Parse.HANDBACK` is `-ESTRPIPE`, -86, everywhere).
            pub const fn raw(self) -> i32 {
                match self {
                    $(Errno::$v => $raw,)*
                }
            }
        }

        /// Every code: the ones the engine makes itself first, then the rest by number.
        const ALL: &[Errno] = &[$(Errno::$v,)*];
    };
}

errnos! {
    /// Invalid argument.
    Inval = 22, "EINVAL";
    /// No space left: a ring is full or a range lies outside the data.
    NoSpc = 28, "ENOSPC";
    /// Argument list too long: index beyond a map's size, or a full map.
    TooBig = 7, "E2BIG";
    /// The entry already exists.
    Exist = 17, "EEXIST";
    /// No such entry.
    NoEnt = 2, "ENOENT";
    /// Resource busy: a socket already carries programs of another map.
    Busy = 16, "EBUSY";
    /// Operation not supported: the socket is not connected.
    OpNotSupp = 95, "EOPNOTSUPP";
    /// Message too long.
    MsgSize = 90, "EMSGSIZE";
    /// Protocol error: the stream is not well-formed.
    Proto = 71, "EPROTO";
    /// Timed out.
    TimedOut = 110, "ETIMEDOUT";
    /// Broken pipe: the target socket is gone.
    Pipe = 32, "EPIPE";
    /// Permission denied: a verdict dropped the data.
    Acces = 13, "EACCES";
    /// Connection reset by peer.
    ConnReset = 104, "ECONNRESET";
    /// Connection refused.
    ConnRefused = 111, "ECONNREFUSED";
    /// No data: a hand-back happened after part of a message was consumed.
    NoData = 61, "ENODATA";
    /// Stream pipe error: the parser handed the stream back to the application.
    StrPipe = 86, "ESTRPIPE";
    /// Out of memory.
    NoMem = 12, "ENOMEM";
    /// Bad file descriptor.
    BadF = 9, "EBADF";
    /// Input/output error.
    Io = 5, "EIO";
    /// Try again.
    Again = 11, "EAGAIN";
    /// The socket is not connected.
    NotConn = 107, "ENOTCONN";
    /// Operation not permitted (e.g. io_uring refused by a sandbox).
    Perm = 1, "EPERM";
    /// Function not implemented (e.g. a kernel without io_uring).
    NoSys = 38, "ENOSYS";
    /// The process has no free descriptor.
    MFile = 24, "EMFILE";
    /// The system has no free descriptor.
    NFile = 23, "ENFILE";
    /// No buffer space available.
    NoBufs = 105, "ENOBUFS";
    /// The address is already in use.
    AddrInUse = 98, "EADDRINUSE";
    /// The address is not available on this host.
    AddrNotAvail = 99, "EADDRNOTAVAIL";
    /// The network is unreachable.
    NetUnreach = 101, "ENETUNREACH";
    /// No route to the host.
    HostUnreach = 113, "EHOSTUNREACH";
    /// The network is down.
    NetDown = 100, "ENETDOWN";
    /// The connection was aborted.
    ConnAborted = 103, "ECONNABORTED";
    /// The address family is not supported.
    AfNoSupport = 97, "EAFNOSUPPORT";
    /// No such process.
    Srch = 3, "ESRCH";
    /// Interrupted system call.
    Intr = 4, "EINTR";
    /// No such device or address.
    Nxio = 6, "ENXIO";
    /// Exec format error.
    Noexec = 8, "ENOEXEC";
    /// No child processes.
    Child = 10, "ECHILD";
    /// Bad address.
    Fault = 14, "EFAULT";
    /// Block device required.
    Notblk = 15, "ENOTBLK";
    /// Invalid cross-device link.
    Xdev = 18, "EXDEV";
    /// No such device.
    Nodev = 19, "ENODEV";
    /// Not a directory.
    Notdir = 20, "ENOTDIR";
    /// Is a directory.
    Isdir = 21, "EISDIR";
    /// Inappropriate ioctl for device.
    Notty = 25, "ENOTTY";
    /// Text file busy.
    Txtbsy = 26, "ETXTBSY";
    /// File too large.
    Fbig = 27, "EFBIG";
    /// Illegal seek.
    Spipe = 29, "ESPIPE";
    /// Read-only file system.
    Rofs = 30, "EROFS";
    /// Too many links.
    Mlink = 31, "EMLINK";
    /// Numerical argument out of domain.
    Dom = 33, "EDOM";
    /// Numerical result out of range.
    Range = 34, "ERANGE";
    /// Resource deadlock avoided.
    Deadlk = 35, "EDEADLK";
    /// File name too long.
    Nametoolong = 36, "ENAMETOOLONG";
    /// No locks available.
    Nolck = 37, "ENOLCK";
    /// Directory not empty.
    Notempty = 39, "ENOTEMPTY";
    /// Too many levels of symbolic links.
    Loop = 40, "ELOOP";
    /// No message of desired type.
    Nomsg = 42, "ENOMSG";
    /// Identifier removed.
    Idrm = 43, "EIDRM";
    /// Channel number out of range.
    Chrng = 44, "ECHRNG";
    /// Level 2 not synchronized.
    L2nsync = 45, "EL2NSYNC";
    /// Level 3 halted.
    L3hlt = 46, "EL3HLT";
    /// Level 3 reset.
    L3rst = 47, "EL3RST";
    /// Link number out of range.
    Lnrng = 48, "ELNRNG";
    /// Protocol driver not attached.
    Unatch = 49, "EUNATCH";
    /// No CSI structure available.
    Nocsi = 50, "ENOCSI";
    /// Level 2 halted.
    L2hlt = 51, "EL2HLT";
    /// Invalid exchange.
    Bade = 52, "EBADE";
    /// Invalid request descriptor.
    Badr = 53, "EBADR";
    /// Exchange full.
    Xfull = 54, "EXFULL";
    /// No anode.
    Noano = 55, "ENOANO";
    /// Invalid request code.
    Badrqc = 56, "EBADRQC";
    /// Invalid slot.
    Badslt = 57, "EBADSLT";
    /// Bad font file format.
    Bfont = 59, "EBFONT";
    /// Device not a stream.
    Nostr = 60, "ENOSTR";
    /// Timer expired.
    Time = 62, "ETIME";
    /// Out of streams resources.
    Nosr = 63, "ENOSR";
    /// Machine is not on the network.
    Nonet = 64, "ENONET";
    /// Package not installed.
    Nopkg = 65, "ENOPKG";
    /// Object is remote.
    Remote = 66, "EREMOTE";
    /// Link has been severed.
    Nolink = 67, "ENOLINK";
    /// Advertise error.
    Adv = 68, "EADV";
    /// Srmount error.
    Srmnt = 69, "ESRMNT";
    /// Communication error on send.
    Comm = 70, "ECOMM";
    /// Multihop attempted.
    Multihop = 72, "EMULTIHOP";
    /// RFS specific error.
    Dotdot = 73, "EDOTDOT";
    /// Bad message.
    Badmsg = 74, "EBADMSG";
    /// Value too large for defined data type.
    Overflow = 75, "EOVERFLOW";
    /// Name not unique on network.
    Notuniq = 76, "ENOTUNIQ";
    /// File descriptor in bad state.
    Badfd = 77, "EBADFD";
    /// Remote address changed.
    Remchg = 78, "EREMCHG";
    /// Can not access a needed shared library.
    Libacc = 79, "ELIBACC";
    /// Accessing a corrupted shared library.
    Libbad = 80, "ELIBBAD";
    /// .lib section in a.out corrupted.
    Libscn = 81, "ELIBSCN";
    /// Attempting to link in too many shared libraries.
    Libmax = 82, "ELIBMAX";
    /// Cannot exec a shared library directly.
    Libexec = 83, "ELIBEXEC";
    /// Invalid or incomplete multibyte or wide character.
    Ilseq = 84, "EILSEQ";
    /// Interrupted system call should be restarted.
    Restart = 85, "ERESTART";
    /// Too many users.
    Users = 87, "EUSERS";
    /// Socket operation on non-socket.
    Notsock = 88, "ENOTSOCK";
    /// Destination address required.
    Destaddrreq = 89, "EDESTADDRREQ";
    /// Protocol wrong type for socket.
    Prototype = 91, "EPROTOTYPE";
    /// Protocol not available.
    Noprotoopt = 92, "ENOPROTOOPT";
    /// Protocol not supported.
    Protonosupport = 93, "EPROTONOSUPPORT";
    /// Socket type not supported.
    Socktnosupport = 94, "ESOCKTNOSUPPORT";
    /// Protocol family not supported.
    Pfnosupport = 96, "EPFNOSUPPORT";
    /// Network dropped connection on reset.
    Netreset = 102, "ENETRESET";
    /// Transport endpoint is already connected.
    Isconn = 106, "EISCONN";
    /// Cannot send after transport endpoint shutdown.
    Shutdown = 108, "ESHUTDOWN";
    /// Too many references: cannot splice.
    Toomanyrefs = 109, "ETOOMANYREFS";
    /// Host is down.
    Hostdown = 112, "EHOSTDOWN";
    /// Operation already in progress.
    Already = 114, "EALREADY";
    /// Operation now in progress.
    Inprogress = 115, "EINPROGRESS";
    /// Stale file handle.
    Stale = 116, "ESTALE";
    /// Structure needs cleaning.
    Uclean = 117, "EUCLEAN";
    /// Not a XENIX named type file.
    Notnam = 118, "ENOTNAM";
    /// No XENIX semaphores available.
    Navail = 119, "ENAVAIL";
    /// Is a named type file.
    Isnam = 120, "EISNAM";
    /// Remote I/O error.
    Remoteio = 121, "EREMOTEIO";
    /// Disk quota exceeded.
    Dquot = 122, "EDQUOT";
    /// No medium found.
    Nomedium = 123, "ENOMEDIUM";
    /// Wrong medium type.
    Mediumtype = 124, "EMEDIUMTYPE";
    /// Operation canceled.
    Canceled = 125, "ECANCELED";
    /// Required key not available.
    Nokey = 126, "ENOKEY";
    /// Key has expired.
    Keyexpired = 127, "EKEYEXPIRED";
    /// Key has been revoked.
    Keyrevoked = 128, "EKEYREVOKED";
    /// Key was rejected by service.
    Keyrejected = 129, "EKEYREJECTED";
    /// Owner died.
    Ownerdead = 130, "EOWNERDEAD";
    /// State not recoverable.
    Notrecoverable = 131, "ENOTRECOVERABLE";
    /// Operation not possible due to RF-kill.
    Rfkill = 132, "ERFKILL";
    /// Memory page has hardware error.
    Hwpoison = 133, "EHWPOISON";
}

impl Errno {
    /// Maps a raw Linux errno to its code (`None` for a number Linux does not define).
    pub fn from_raw(raw: i32) -> Option<Errno> {
        ALL.iter().copied().find(|e| e.raw() == raw)
    }

    /// This platform's errno number for the code: the Linux number itself
    /// where the platform uses the asm-generic numbers, else where it has
    /// one (the codes the engine makes itself and the socket calls' usual
    /// errors).
    #[cfg(unix)]
    fn os_raw(self) -> Option<i32> {
        if LINUX_NUMBERS {
            return Some(self.raw());
        }
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
            _ => return None,
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

    /// Every code: the ones the engine makes itself first, then the rest by number.
    pub const fn all() -> &'static [Errno] {
        ALL
    }

    /// Maps an I/O error to a code; an error with no OS number (or one this
    /// platform's table lacks) becomes [`Errno::Io`].
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
        for &e in ALL {
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
        for &e in ALL {
            assert_eq!(Errno::from_io(&std::io::Error::from(e)), e, "{e}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn every_linux_errno_has_its_name() {
        // 1..=133 are every errno Linux defines, but for 41 and 58 (unused).
        for n in (1..=133).filter(|n| ![41, 58].contains(n)) {
            let e = Errno::from_raw(n).unwrap_or_else(|| panic!("errno {n} has no name"));
            assert_eq!(Errno::from_io(&std::io::Error::from_raw_os_error(n)), e);
            assert_eq!(Some(e.raw()), e.os_raw(), "{e}");
        }
        assert_eq!(Errno::from_raw(41), None);
        assert_eq!(ALL.len(), 131);
        let names: std::collections::HashSet<_> = ALL.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), ALL.len());
        for (n, name) in [
            (libc::ESRCH, "ESRCH"),
            (libc::EROFS, "EROFS"),
            (libc::ENOTSOCK, "ENOTSOCK"),
            (libc::EINPROGRESS, "EINPROGRESS"),
            (libc::EISCONN, "EISCONN"),
            (libc::ECANCELED, "ECANCELED"),
            (libc::EOWNERDEAD, "EOWNERDEAD"),
            (libc::EHWPOISON, "EHWPOISON"),
            (libc::ESTRPIPE, "ESTRPIPE"),
            (libc::E2BIG, "E2BIG"),
        ] {
            assert_eq!(Errno::from_raw(n).map(Errno::name), Some(name));
        }
    }
}
