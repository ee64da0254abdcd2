//! Programs attached to a map and taken by the sockets inserted into it:
//! a parser, a stream verdict and a msg verdict (the kernel's
//! `STREAM_PARSER`, `STREAM_VERDICT` and `SK_MSG_VERDICT`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Errno;
use crate::framer::{
    Chunks, Delimiter, DelimiterOptions, Fixed, Framer, Http1, Http1Options, LengthField,
    LengthFieldOptions, Parse, Resp, RespOptions, TlsRecords,
};
use crate::id::SockId;
use crate::msg::SkMsg;
use crate::rules::{Rule, Verdict};
use crate::strparser::StrParserConfig;

/// Builds a fresh framer for each socket that takes a parser program.
pub type FramerFactory = Arc<dyn Fn() -> Box<dyn Framer> + Send + Sync>;

/// How a socket's received bytes are cut into messages.
#[derive(Clone)]
pub enum ParserKind {
    /// No parser: each chunk read is one message (the kernel's `read_skb` mode).
    None,
    /// `parsers.lengthField(...)`.
    LengthField(LengthFieldOptions),
    /// `parsers.delimiter(...)` and `parsers.lines(...)`.
    Delimiter(DelimiterOptions),
    /// `parsers.fixed(n)`.
    Fixed(usize),
    /// `parsers.resp(...)`: also gives rules the command's first key.
    Resp(RespOptions),
    /// `parsers.http1(...)`: also gives rules the request's Host.
    Http1(Http1Options),
    /// `parsers.tlsRecords()`: TLS records, undecrypted; gives `rules.key.sni`
    /// the server name of the ClientHello.
    TlsRecords,
    /// A Rust framer, built once per socket.
    Custom(FramerFactory),
    /// An external parser, answered asynchronously in batches; `tag` tells the
    /// external side which of its parsers to run.
    External {
        /// Chosen by the application; returned in every batch item.
        tag: u32,
    },
}

impl fmt::Debug for ParserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParserKind::None => f.write_str("None"),
            ParserKind::LengthField(o) => write!(f, "LengthField({o:?})"),
            ParserKind::Delimiter(o) => write!(f, "Delimiter({o:?})"),
            ParserKind::Fixed(n) => write!(f, "Fixed({n})"),
            ParserKind::Resp(o) => write!(f, "Resp({o:?})"),
            ParserKind::Http1(o) => write!(f, "Http1({:?})", o.role),
            ParserKind::TlsRecords => f.write_str("TlsRecords"),
            ParserKind::Custom(_) => f.write_str("Custom"),
            ParserKind::External { tag } => write!(f, "External({tag})"),
        }
    }
}

/// A parser program with its strparser limits.
#[derive(Clone, Debug)]
pub struct ParserProg {
    /// The framing.
    pub kind: ParserKind,
    /// A message longer than this aborts the socket with `EMSGSIZE`.
    pub max_message_bytes: usize,
    /// A message not completed within this time aborts the socket with `ETIMEDOUT`.
    pub message_timeout: Option<Duration>,
}

/// The longest message a parser program accepts by default: 8 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 << 20;

/// How many leading bytes of each message an external verdict sees by default: 64 KiB.
pub const DEFAULT_PEEK_BYTES: usize = 65536;

impl ParserProg {
    /// A parser of the given kind with default limits
    /// ([`DEFAULT_MAX_MESSAGE_BYTES`], no timeout).
    pub fn new(kind: ParserKind) -> ParserProg {
        ParserProg {
            kind,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_timeout: None,
        }
    }

    /// The socket-side framer this program runs, or `None` when each chunk
    /// read is a message ([`ParserKind::None`]). An external parser runs a
    /// framer that always answers [`Parse::Pending`].
    ///
    /// # Errors
    /// `EINVAL` for options the framer rejects (a length field width other
    /// than 1, 2, 3, 4 or 8, an empty delimiter, a fixed size of 0).
    pub fn framer(&self) -> Result<Option<Box<dyn Framer>>, Errno> {
        Ok(Some(match &self.kind {
            ParserKind::None => return Ok(None),
            ParserKind::LengthField(o) => Box::new(LengthField::new(o.clone())?),
            ParserKind::Delimiter(o) => Box::new(Delimiter::new(o.clone())?),
            ParserKind::Fixed(n) => Box::new(Fixed::new(*n)?),
            ParserKind::Resp(o) => Box::new(Resp::new(*o)),
            ParserKind::Http1(o) => Box::new(Http1::new(o.clone())),
            ParserKind::TlsRecords => Box::new(TlsRecords::new()),
            ParserKind::Custom(f) => f(),
            ParserKind::External { .. } => Box::new(Deferred),
        }))
    }

    /// The strparser settings of this program.
    pub fn strparser_config(&self) -> StrParserConfig {
        StrParserConfig {
            max_message_bytes: self.max_message_bytes,
            message_timeout: self.message_timeout,
        }
    }

    /// The external parser's tag, if this program is external.
    pub fn external_tag(&self) -> Option<u32> {
        match self.kind {
            ParserKind::External { tag } => Some(tag),
            _ => None,
        }
    }
}

/// The framer of an external parser: every answer comes later, through
/// [`StrParser::handle_deferred`](crate::strparser::StrParser::handle_deferred).
struct Deferred;

impl Framer for Deferred {
    fn parse(&mut self, _data: &Chunks<'_>) -> Parse {
        Parse::Pending
    }
}

/// Who decides a verdict.
#[derive(Debug)]
pub enum VerdictKind {
    /// A native rule, evaluated inline on the I/O thread.
    Rule(Rule),
    /// An external verdict, answered asynchronously in batches.
    External {
        /// Chosen by the application; returned in every batch item.
        tag: u32,
        /// How many leading bytes of each message the external side needs to see.
        peek_bytes: usize,
    },
}

/// The verdict a message gets when its external verdict fails: no answer
/// before the batch's deadline, a missing or an invalid answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorVerdict {
    /// Drop the message (counted as dropped by the verdict).
    #[default]
    Drop,
    /// Pass it on as the verdict PASS would.
    Pass,
}

/// A stream verdict program: judges each message a socket receives.
#[derive(Debug)]
pub struct StreamVerdictProg {
    /// The verdict.
    pub kind: VerdictKind,
    /// What a message gets when an external verdict fails.
    pub on_error: ErrorVerdict,
    /// Forward the peer's FIN to the socket's partner, so a proxy pair
    /// carries half-closes both ways. The kernel's sockmap does not propagate
    /// FIN. A partner declared with `EngineHandle::pair` ([`crate::partner`])
    /// gets it whatever the verdict; without one, the partner is the target of a native egress
    /// [`Rule::Redirect`] keyed by [`KeySource::Socket`](crate::rules::KeySource::Socket)
    /// (the 1:1 pairing), and only it: sockets the source merely redirected
    /// messages to (a shared upstream, a fixed key, a target chosen per
    /// message or by an external verdict) are never ended by it. The FIN goes
    /// on only after every message the source received before it was judged
    /// and queued (none awaits an external verdict or parse), and the
    /// partner shuts its write side only after writing everything queued
    /// before it.
    pub propagate_fin: bool,
}

impl StreamVerdictProg {
    /// A program running `kind`, propagating FIN (the default).
    pub fn new(kind: VerdictKind) -> StreamVerdictProg {
        StreamVerdictProg {
            kind,
            on_error: ErrorVerdict::default(),
            propagate_fin: true,
        }
    }

    /// A program running `rule`, propagating FIN.
    pub fn rule(rule: Rule) -> StreamVerdictProg {
        StreamVerdictProg::new(VerdictKind::Rule(rule))
    }
}

/// A Rust function used as a msg verdict: it may edit the message
/// (`pull`/`push`/`pop`) and set `apply_bytes`/`cork_bytes` on it.
pub type MsgVerdictFn = Arc<dyn Fn(SockId, &mut SkMsg) -> Verdict + Send + Sync>;

/// Who decides a msg verdict.
pub enum MsgVerdictKind {
    /// A native rule (keys from the message bytes see the message as sent).
    Rule(Rule),
    /// A Rust function, run inline.
    Func(MsgVerdictFn),
    /// An external verdict, answered asynchronously in batches.
    External {
        /// Chosen by the application; returned in every batch item.
        tag: u32,
        /// How many leading bytes of each message the external side needs to see.
        peek_bytes: usize,
    },
}

impl fmt::Debug for MsgVerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgVerdictKind::Rule(r) => write!(f, "Rule({r:?})"),
            MsgVerdictKind::Func(_) => f.write_str("Func"),
            MsgVerdictKind::External { tag, peek_bytes } => {
                write!(f, "External({tag}, peek {peek_bytes})")
            }
        }
    }
}

/// A msg verdict program: judges the data the application sends.
#[derive(Debug)]
pub struct MsgVerdictProg {
    /// The verdict.
    pub kind: MsgVerdictKind,
    /// What a message gets when an external verdict fails.
    pub on_error: ErrorVerdict,
}

impl MsgVerdictProg {
    /// A program running `kind`, dropping on errors (the default).
    pub fn new(kind: MsgVerdictKind) -> MsgVerdictProg {
        MsgVerdictProg {
            kind,
            on_error: ErrorVerdict::default(),
        }
    }
}

/// Request/response pairing on the client sockets of a map
/// (`map.attach({ requests })`): every message a client sends gets exactly
/// one reply, in request order (see `psock::exchange`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestsConfig {
    /// An upstream that leaves its oldest request unanswered this long is
    /// closed with `ETIMEDOUT`, the request answered with a timeout error
    /// reply. Default: [`DEFAULT_REQUEST_TIMEOUT`](crate::config::DEFAULT_REQUEST_TIMEOUT).
    pub timeout: Duration,
    /// A client with this many requests awaiting replies is not read until
    /// half of them were answered (bounded memory). Default:
    /// [`DEFAULT_MAX_PENDING_REQUESTS`](crate::config::DEFAULT_MAX_PENDING_REQUESTS).
    pub max_pending: usize,
    /// The Redis command planner ([`crate::redis`]), for RESP clients routed
    /// by [`Rule::HashRoute`]: local replies, refusals, `AUTH`, and multi-key
    /// commands split over the servers their keys hash to. `None`: every
    /// request is routed as it is.
    pub redis: Option<crate::redis::RedisConfig>,
}

impl Default for RequestsConfig {
    fn default() -> RequestsConfig {
        RequestsConfig {
            timeout: crate::config::DEFAULT_REQUEST_TIMEOUT,
            max_pending: crate::config::DEFAULT_MAX_PENDING_REQUESTS,
            redis: None,
        }
    }
}

/// The programs of a map, or the ones a socket has taken.
///
/// Each program is shared by `Arc`: a socket already holding a program of one
/// kind can only be inserted into maps carrying that same program (or none of
/// that kind), as in the kernel's `sock_map_link`.
#[derive(Clone, Debug, Default)]
pub struct Programs {
    /// The parser.
    pub parser: Option<Arc<ParserProg>>,
    /// The stream verdict.
    pub verdict: Option<Arc<StreamVerdictProg>>,
    /// The msg verdict.
    pub msg_verdict: Option<Arc<MsgVerdictProg>>,
    /// Request/response pairing of the sockets' messages.
    pub requests: Option<Arc<RequestsConfig>>,
}

fn link_one<T>(mine: &mut Option<Arc<T>>, theirs: &Option<Arc<T>>) -> Result<bool, Errno> {
    match (mine.as_ref(), theirs) {
        (_, None) => Ok(false),
        (None, Some(t)) => {
            *mine = Some(t.clone());
            Ok(true)
        }
        (Some(m), Some(t)) if Arc::ptr_eq(m, t) => Ok(false),
        (Some(_), Some(_)) => Err(Errno::Busy),
    }
}

fn check_one<T>(mine: &Option<Arc<T>>, theirs: &Option<Arc<T>>) -> Result<(), Errno> {
    match (mine, theirs) {
        (Some(m), Some(t)) if !Arc::ptr_eq(m, t) => Err(Errno::Busy),
        _ => Ok(()),
    }
}

impl Programs {
    /// True when no program is set.
    pub fn is_empty(&self) -> bool {
        self.parser.is_none()
            && self.verdict.is_none()
            && self.msg_verdict.is_none()
            && self.requests.is_none()
    }

    /// Checks that `other` can be merged in without replacing a different program.
    ///
    /// # Errors
    /// `EBUSY` when a program of some kind differs from the one already held.
    pub(crate) fn check_link(&self, other: &Programs) -> Result<(), Errno> {
        check_one(&self.parser, &other.parser)?;
        check_one(&self.verdict, &other.verdict)?;
        check_one(&self.msg_verdict, &other.msg_verdict)?;
        check_one(&self.requests, &other.requests)
    }

    /// Takes the programs of `other` this set lacks; true if anything changed.
    pub(crate) fn link(&mut self, other: &Programs) -> bool {
        self.check_link(other).is_ok()
            && (link_one(&mut self.parser, &other.parser).unwrap_or(false)
                | link_one(&mut self.verdict, &other.verdict).unwrap_or(false)
                | link_one(&mut self.msg_verdict, &other.msg_verdict).unwrap_or(false)
                | link_one(&mut self.requests, &other.requests).unwrap_or(false))
    }
}
