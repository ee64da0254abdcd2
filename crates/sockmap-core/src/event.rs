//! What the engine reports to the application.

use bytes::Bytes;
use smallvec::SmallVec;

use crate::error::Errno;
use crate::id::SockId;
use crate::sock::Addr;

/// The bytes of one message, as fragments that share the buffers they were read into.
pub type Frags = SmallVec<[Bytes; 2]>;

/// Copies fragments into one contiguous vector.
pub fn frags_to_vec(frags: &[Bytes]) -> Vec<u8> {
    let mut v = Vec::with_capacity(frags.iter().map(Bytes::len).sum());
    for f in frags {
        v.extend_from_slice(f);
    }
    v
}

/// An event from the engine, in the order it happened for each socket.
#[derive(Debug)]
pub enum Event {
    /// A listener accepted a connection. The new socket starts paused.
    Accepted {
        /// The listening socket.
        listener: SockId,
        /// The new socket.
        sock: SockId,
        /// The peer's address (a Unix client is usually [`UnixName::Unnamed`](crate::sock::UnixName::Unnamed)).
        peer: Addr,
    },
    /// A connect finished: `Ok` when established, else the error (then `Closed` follows).
    Connected {
        /// The connecting socket.
        sock: SockId,
        /// The outcome.
        result: Result<(), Errno>,
    },
    /// A message for the socket's application: passed by its verdict, or
    /// redirected to it with ingress, or read while it has no verdict.
    Message {
        /// The socket whose application receives it.
        sock: SockId,
        /// The bytes.
        data: Frags,
    },
    /// A datagram a bound datagram socket passed to its application, with its sender.
    Datagram {
        /// The bound socket.
        sock: SockId,
        /// The payload.
        data: Frags,
        /// Who sent it.
        from: Addr,
    },
    /// The peer shut down its write side (FIN): no more messages will come.
    ReadEnd {
        /// The socket.
        sock: SockId,
    },
    /// An application send finished: bytes accepted, or why it failed
    /// (`EACCES` dropped by the msg verdict, `EPIPE` target or socket gone).
    SendDone {
        /// The sending socket.
        sock: SockId,
        /// The request number the application gave.
        req: u64,
        /// Bytes accepted, or the error.
        result: Result<usize, Errno>,
    },
    /// The send ring drained below its low watermark after being above the high one.
    Drained {
        /// The socket.
        sock: SockId,
    },
    /// The socket is closed and has left every map; its id is dead.
    Closed {
        /// The socket.
        sock: SockId,
        /// The error that closed it, if any (`ECONNRESET`, `EPIPE`, `EPROTO`...).
        error: Option<Errno>,
    },
    /// A TLS socket's handshake finished (before its `Accepted` or
    /// `Connected`), or its connection failed (before its `Closed`).
    Tls {
        /// The socket.
        sock: SockId,
        /// The listener that accepted it (server side).
        listener: Option<SockId>,
        /// What was negotiated, or why it failed.
        result: Result<crate::tls::TlsInfo, crate::tls::Failure>,
    },
    /// Something went wrong that the application should hear about; the
    /// engine keeps running (see [`Event::Fatal`] for when it cannot).
    Error {
        /// The socket concerned, if any.
        sock: Option<SockId>,
        /// The code.
        code: Errno,
        /// A human-readable explanation.
        detail: String,
    },
    /// The I/O thread stopped: every later call fails with `EIO`. The last
    /// event the engine sends.
    Fatal {
        /// Why it stopped.
        cause: Fatal,
        /// The code (`EIO` for a panic, the OS error's code otherwise).
        code: Errno,
        /// A human-readable explanation.
        detail: String,
    },
}

/// Why the I/O thread stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// It panicked (a bug in the engine); the panic was caught.
    Panic,
    /// The I/O loop failed with an OS error.
    Io,
}
