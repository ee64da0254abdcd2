//! Framers: the message parsers a [`StrParser`](crate::strparser::StrParser) drives.
//!
//! A framer plays the role of the kernel strparser's `parse_msg` callback. It is
//! called at the start of the current message with every byte buffered so far
//! (a [`Chunks`] view, never copied) and answers with a [`Parse`]:
//!
//! | Answer | Kernel equivalent | The strparser then... |
//! |---|---|---|
//! | `Length(n)` | `> 0` | waits for `n` bytes (parse is not called again) and delivers them |
//! | `NeedMore { hint }` | `0` | calls parse again when more bytes (at least `hint` in all) are buffered |
//! | `Handback` | `-ESTRPIPE` | stops and gives every unconsumed byte back |
//! | `Skip(n)` | — | discards `n` bytes (streaming, nothing buffered), counts them, goes on |
//! | `Pending` | — | waits for [`StrParser::handle_deferred`](crate::strparser::StrParser::handle_deferred) |
//! | `Error(e)` | `< 0` | aborts with `e` |
//!
//! After the message is complete the strparser asks [`Framer::trim`] which
//! leading/trailing bytes to leave out of the delivered message (a stripped
//! header, a delimiter) and [`Framer::meta`] for routing metadata, then calls
//! [`Framer::reset`].
//!
//! Native framers: [`LengthField`], [`Delimiter`], [`Fixed`], [`Resp`],
//! [`Http1`], [`TlsRecords`] and [`Raw`] (`parsers.none()`).

mod chunks;
mod delimiter;
mod fixed;
mod http1;
mod length;
mod none;
mod resp;
mod tls_records;

use std::ops::Range;

pub use chunks::Chunks;
pub use delimiter::{Delimiter, DelimiterOptions};
pub use fixed::Fixed;
pub use http1::{Http1, Http1Options, Http1Role, RequestLog};
pub use length::{ByteOrder, LengthField, LengthFieldOptions};
pub use none::Raw;
pub use resp::{Resp, RespOptions};
pub use tls_records::TlsRecords;

use crate::error::Errno;

/// A message parser driven by a [`StrParser`](crate::strparser::StrParser).
///
/// See the [module documentation](self) for the protocol.
pub trait Framer: Send + 'static {
    /// Called at the start of the current message with every byte buffered for
    /// it so far (and possibly bytes of following messages).
    ///
    /// A framer may keep incremental scan state between calls for the same
    /// message (it is called again only with more bytes, starting at the same
    /// message start); [`reset`](Framer::reset) clears it.
    fn parse(&mut self, data: &Chunks<'_>) -> Parse;

    /// Routing metadata of the message just completed. Ranges index the
    /// delivered message bytes (after [`trim`](Framer::trim)).
    /// Default: [`MessageMeta::None`].
    fn meta(&self) -> MessageMeta {
        MessageMeta::None
    }

    /// Bytes of the message just completed to leave out of the delivered
    /// message (a stripped header, a delimiter). Default: none.
    fn trim(&self) -> Trim {
        Trim::NONE
    }

    /// Called after each completed message, hand-back or error so incremental
    /// state restarts.
    ///
    /// Not called after [`Parse::Skip`]: a framer that skips restarts its own
    /// scan state and may keep "discarding" state across skips.
    fn reset(&mut self) {}

    /// [`trim`](Framer::trim), [`meta`](Framer::meta) then
    /// [`reset`](Framer::reset) in one call: what the strparser does after a
    /// complete message. Override only to do the same thing faster.
    #[inline]
    fn finish(&mut self) -> (Trim, MessageMeta) {
        let trim = self.trim();
        let meta = self.meta();
        self.reset();
        (trim, meta)
    }

    /// Whether [`scan_whole`](Framer::scan_whole) may find messages: the
    /// framer answers for a message from its bytes alone, keeps no state
    /// between messages, trims nothing and gives no metadata. Default: false.
    fn can_scan(&self) -> bool {
        false
    }

    /// Boundary-only framing. `data` starts at a fresh message; appends to
    /// `lens` the wire length of each consecutive message lying whole in
    /// `data` that [`parse`](Framer::parse) would answer `Length(n)` for
    /// with `0 < n <= max`, and returns the bytes those messages cover. It
    /// stops at the first message that is incomplete or that gets any other
    /// answer (the caller then goes on with `parse`). Leaves the framer as
    /// [`reset`](Framer::reset) would. Default: finds nothing.
    fn scan_whole(&self, data: &[u8], max: usize, lens: &mut Vec<usize>) -> usize {
        let _ = (data, max, lens);
        0
    }

    /// Whether the end of a datagram also ends a message it cut short, as a
    /// delimiter would (a statsd or syslog datagram's last line has none).
    /// Default: false, and the cut message is dropped.
    fn ends_at_boundary(&self) -> bool {
        false
    }

    /// The reply a gateway sends in place of an upstream's when it cannot
    /// forward a request or its upstream failed (request/response pairing):
    /// a message of this framer's protocol. Default: none, and the client
    /// is closed with [`ReplyError::errno`] instead.
    fn error_reply(&self, kind: ReplyError) -> Option<bytes::Bytes> {
        let _ = kind;
        None
    }

    /// A request was forwarded on the connection whose replies this framer
    /// reads; `head` is its first bytes (at most 16). A responses framer
    /// that must know the request (an HTTP/1 `HEAD`'s response has no body)
    /// records it. Default: nothing.
    fn request_forwarded(&mut self, head: &[u8]) {
        let _ = head;
    }
}

/// Why a request gets an error reply instead of its upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The upstream did not answer within the request timeout.
    Timeout,
    /// The upstream closed or failed before answering.
    UpstreamClosed,
    /// No upstream could take the request (no key, no route, a dead target,
    /// an upstream on another shard).
    NoUpstream,
    /// The verdict dropped the request.
    Denied,
}

impl ReplyError {
    /// The errno a client without an error reply format is closed with.
    pub fn errno(self) -> Errno {
        match self {
            ReplyError::Timeout => Errno::TimedOut,
            ReplyError::UpstreamClosed => Errno::ConnReset,
            ReplyError::NoUpstream => Errno::HostUnreach,
            ReplyError::Denied => Errno::Acces,
        }
    }

    /// A short reason, for error replies.
    pub fn reason(self) -> &'static str {
        match self {
            ReplyError::Timeout => "upstream timed out",
            ReplyError::UpstreamClosed => "upstream closed",
            ReplyError::NoUpstream => "no upstream",
            ReplyError::Denied => "denied",
        }
    }
}

/// A framer's answer for the current message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// The full message length on the wire, trimmed bytes included. Must be
    /// greater than 0 and than the bytes the framer had seen when it last
    /// answered `NeedMore` for this message (else `EPROTO`).
    Length(usize),
    /// The message is not complete. `hint`: total bytes needed before parse is
    /// worth calling again (the kernel's `need_bytes`); `None` = any more byte.
    NeedMore {
        /// Total buffered bytes needed before the next call.
        hint: Option<usize>,
    },
    /// The kernel's `-ESTRPIPE`: stop parsing and give the stream back with
    /// every unconsumed byte intact.
    Handback,
    /// Discard this many bytes and continue (oversize-frame recovery); counted.
    Skip(usize),
    /// The answer comes later (an external parser); the strparser waits for
    /// [`handle_deferred`](crate::strparser::StrParser::handle_deferred).
    Pending,
    /// Abort the stream with this error.
    Error(Errno),
}

/// Leading and trailing bytes of a message that are not delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trim {
    /// Bytes dropped from the start (e.g. a length header).
    pub head: usize,
    /// Bytes dropped from the end (e.g. a delimiter).
    pub tail: usize,
}

impl Trim {
    /// Nothing trimmed.
    pub const NONE: Trim = Trim { head: 0, tail: 0 };
}

/// Routing metadata of a message: byte ranges into the delivered message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MessageMeta {
    /// No metadata.
    #[default]
    None,
    /// A RESP request.
    Resp {
        /// The command name (first element).
        command: Range<usize>,
        /// The first key (second element), if any.
        key: Option<Range<usize>>,
    },
    /// An HTTP/1 request.
    Http {
        /// The method token.
        method: Range<usize>,
        /// The request target.
        path: Range<usize>,
        /// The value of the `Host` header, if present.
        host: Option<Range<usize>>,
    },
    /// The first record of a TLS stream (`parsers.tlsRecords()`).
    Tls {
        /// The ClientHello's server name (as sent), if it has one.
        sni: Option<Range<usize>>,
    },
}
