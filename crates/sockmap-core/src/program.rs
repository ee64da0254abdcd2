//! Programs attached to a map and taken by the sockets inserted into it:
//! a parser, a stream verdict and a msg verdict (the kernel's
//! `STREAM_PARSER`, `STREAM_VERDICT` and `SK_MSG_VERDICT`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Errno;
use crate::id::SockId;
use crate::msg::SkMsg;
use crate::rules::{Rule, Verdict};

/// How a socket's received bytes are cut into messages.
pub enum ParserKind {
    /// No parser: each chunk read is one message (the kernel's `read_skb` mode).
    None,
    /// An external parser, answered asynchronously in batches; `tag` tells the
    /// external side which of its parsers to run.
    External {
        /// Chosen by the application; returned in every batch item.
        tag: u32,
    },
}

/// A parser program with its strparser limits.
pub struct ParserProg {
    /// The framing.
    pub kind: ParserKind,
    /// A message longer than this aborts the socket with `EMSGSIZE`.
    pub max_message_bytes: usize,
    /// A message not completed within this time aborts the socket with `ETIMEDOUT`.
    pub message_timeout: Option<Duration>,
}

impl ParserProg {
    /// A parser of the given kind with default limits (8 MiB, no timeout).
    pub fn new(kind: ParserKind) -> ParserProg {
        ParserProg {
            kind,
            max_message_bytes: 8 << 20,
            message_timeout: None,
        }
    }
}

impl fmt::Debug for ParserProg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            ParserKind::None => "none".to_string(),
            ParserKind::External { tag } => format!("external({tag})"),
        };
        f.debug_struct("ParserProg")
            .field("kind", &kind)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
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

/// A stream verdict program: judges each message a socket receives.
#[derive(Debug)]
pub struct StreamVerdictProg {
    /// The verdict.
    pub kind: VerdictKind,
    /// When the socket reads end of stream, shut down the write side of the
    /// sockets it redirected to (after their queued bytes), so a proxy pair
    /// carries half-closes both ways.
    pub propagate_fin: bool,
}

impl StreamVerdictProg {
    /// A program running `rule`, propagating FIN.
    pub fn rule(rule: Rule) -> StreamVerdictProg {
        StreamVerdictProg {
            kind: VerdictKind::Rule(rule),
            propagate_fin: true,
        }
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
        self.parser.is_none() && self.verdict.is_none() && self.msg_verdict.is_none()
    }

    /// Checks that `other` can be merged in without replacing a different program.
    ///
    /// # Errors
    /// `EBUSY` when a program of some kind differs from the one already held.
    pub(crate) fn check_link(&self, other: &Programs) -> Result<(), Errno> {
        check_one(&self.parser, &other.parser)?;
        check_one(&self.verdict, &other.verdict)?;
        check_one(&self.msg_verdict, &other.msg_verdict)
    }

    /// Takes the programs of `other` this set lacks; true if anything changed.
    pub(crate) fn link(&mut self, other: &Programs) -> bool {
        self.check_link(other).is_ok()
            && (link_one(&mut self.parser, &other.parser).unwrap_or(false)
                | link_one(&mut self.verdict, &other.verdict).unwrap_or(false)
                | link_one(&mut self.msg_verdict, &other.msg_verdict).unwrap_or(false))
    }
}
