//! Per-socket state: the user-space psock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use crate::framer::Parse;
use crate::id::SockId;
use crate::msg::SkMsg;
use crate::program::ParserProg;
use crate::program::Programs;
use crate::ring::SgRing;
use crate::stats::Stats;
use crate::strparser::StrParser;

/// Whether the application wants the socket read (`strp_pause`/`strp_unpause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppRead {
    /// Never resumed nor paused: read only once the socket has programs.
    Initial,
    /// Resumed by the application: read.
    Resumed,
    /// Paused by the application: don't read.
    Paused,
}

/// The verdict a socket's rule gave for every message, valid while the map
/// epoch is unchanged (only for rules whose key does not depend on the bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteCache {
    pub(crate) epoch: u64,
    pub(crate) resolved: Option<crate::core::Resolved>,
}

/// One socket's state on the I/O thread.
pub(crate) struct Conn {
    pub(crate) id: SockId,
    pub(crate) listener: bool,
    pub(crate) connecting: bool,
    pub(crate) stats: Arc<Stats>,
    pub(crate) map_stats: Option<Arc<Stats>>,
    pub(crate) progs: Programs,
    pub(crate) route: RouteCache,
    pub(crate) app: AppRead,
    /// How many full targets this socket is waiting on.
    pub(crate) blocked: u32,
    /// The peer's FIN was read.
    pub(crate) read_eof: bool,
    /// Every message received before the FIN was judged and queued: the
    /// application was told, the FIN forwarded to the partner.
    pub(crate) read_done: bool,
    pub(crate) closing: bool,
    /// Bytes waiting to be written.
    pub(crate) tx: SgRing,
    /// A flush is queued or waits for the socket to become writable.
    pub(crate) flush_pending: bool,
    /// The ring went above its high watermark; `Drained` is owed.
    pub(crate) above_high: bool,
    /// Sources stopped until this ring drains.
    pub(crate) waiters: SmallVec<[SockId; 2]>,
    pub(crate) end_requested: bool,
    pub(crate) write_shut: bool,
    /// Outcomes of application sends (of this or another socket) whose bytes
    /// went into this ring while it was full: reported once it drains.
    pub(crate) send_acks: VecDeque<SendAck>,
    /// The sk_msg state: corked data, cached verdict.
    pub(crate) msg: MsgState,
    /// Messages awaiting external verdicts (and any behind them), oldest first.
    pub(crate) awaiting: AwaitQueue,
    /// Sequence number of `awaiting`'s front.
    pub(crate) awaiting_base: u64,
    pub(crate) awaiting_bytes: usize,
    /// Too many bytes await verdicts: stop reading.
    pub(crate) ext_full: bool,
    /// The stream parser, when the socket's parser program frames messages.
    pub(crate) strp: Option<Box<StrParser>>,
    /// The parser program `strp` runs.
    pub(crate) strp_prog: Option<Arc<ParserProg>>,
    /// The parser handed the stream back: later bytes go to the application as they come.
    pub(crate) handed_back: bool,
    /// The deadline a parser timer is set for.
    pub(crate) strp_timer: Option<Instant>,
    /// The parser holds too many bytes (an external answer is awaited): stop reading.
    pub(crate) rx_full: bool,
    /// The external parser's state.
    pub(crate) xparse: ExternalParse,
    /// Bytes delivered to the application and not yet acknowledged.
    pub(crate) app_queued: usize,
    /// Sources stopped until the application acknowledges enough bytes.
    pub(crate) app_waiters: SmallVec<[SockId; 2]>,
    /// The send waiting for an external msg verdict.
    pub(crate) send_parked: Option<Box<ParkedSend>>,
    /// Numbers parked sends.
    pub(crate) send_seq: u64,
    /// Sends behind the parked one, in order.
    pub(crate) send_backlog: VecDeque<(bytes::Bytes, u64)>,
    /// Bytes the application read before the engine adopted the socket:
    /// received first, once the socket starts reading.
    pub(crate) initial: bytes::Bytes,
}

/// A socket's conversation with its external parser.
#[derive(Debug, Default)]
pub(crate) struct ExternalParse {
    /// The request in flight: its number and the bytes it carried.
    pub(crate) asked: Option<(u64, usize)>,
    /// Numbers requests (answers to older ones are ignored).
    pub(crate) next_req: u64,
    /// Answers not yet given to the strparser, with the bytes the parser
    /// had seen for each (for `NeedMore`).
    pub(crate) answers: VecDeque<(Parse, usize)>,
    /// After a `NeedMore`: ask again once this many bytes are buffered.
    pub(crate) wait_for: Option<usize>,
}

/// A message whose verdict is awaited (or known, but behind awaited ones).
#[derive(Debug)]
pub(crate) struct Awaited {
    pub(crate) body: AwaitedBody,
    pub(crate) len: usize,
    pub(crate) answer: Option<crate::core::Resolved>,
}

/// Where an awaited message's bytes are.
#[derive(Debug)]
pub(crate) enum AwaitedBody {
    /// In these fragments.
    Frags(crate::event::Frags),
    /// The next `len` bytes of the queue's front block.
    InBlock,
}

/// A socket's awaited messages, oldest first. Messages read together as a
/// block of whole messages share that block: each costs a length and an
/// answer, not a buffer reference of its own.
#[derive(Debug, Default)]
pub(crate) struct AwaitQueue {
    pub(crate) items: VecDeque<Awaited>,
    /// The blocks `InBlock` messages lie in, in order.
    pub(crate) blocks: VecDeque<bytes::Bytes>,
    /// Where the front block's first unconsumed message starts.
    pub(crate) block_off: usize,
}

impl AwaitQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.blocks.clear();
        self.block_off = 0;
    }

    /// Consumes the front block's next `len` bytes: their range in it
    /// (`None` if it doesn't hold them). The block leaves the queue with its
    /// last message: look at it with `blocks.front()` first.
    pub(crate) fn consume_in_block(&mut self, len: usize) -> Option<(usize, usize)> {
        let start = self.block_off;
        let end = start.checked_add(len)?;
        let block_len = self.blocks.front()?.len();
        if end > block_len {
            return None;
        }
        if end == block_len {
            self.blocks.pop_front();
            self.block_off = 0;
        } else {
            self.block_off = end;
        }
        Some((start, end))
    }
}

/// What became of one application send.
#[derive(Debug, Default)]
pub(crate) struct SendOutcome {
    /// Bytes transmitted, redirected or parked by a cork.
    pub(crate) accepted: usize,
    /// Bytes refused.
    pub(crate) refused: usize,
    /// The refusal was a dead redirect target (EPIPE) rather than a DROP (EACCES).
    pub(crate) pipe: bool,
    /// The ring the last accepted bytes went to (the send is acknowledged when it drains).
    pub(crate) ring: Option<usize>,
}

/// A send going through the msg verdict loop.
#[derive(Debug)]
pub(crate) struct SendJob {
    /// What is left to judge.
    pub(crate) msg: SkMsg,
    /// The ring filled up: the cork is forced open.
    pub(crate) forced: bool,
    pub(crate) out: SendOutcome,
    /// Bytes of the application's send.
    pub(crate) len: usize,
    pub(crate) req: u64,
}

/// A send waiting for its external msg verdict.
#[derive(Debug)]
pub(crate) struct ParkedSend {
    pub(crate) seq: u64,
    pub(crate) job: SendJob,
}

/// A send outcome waiting for a ring to drain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendAck {
    pub(crate) sock: SockId,
    pub(crate) req: u64,
    pub(crate) result: Result<usize, crate::error::Errno>,
}

/// The psock's sk_msg state (`psock->cork`, `cork_bytes`, `apply_bytes`,
/// `eval`, `sk_redir`).
#[derive(Debug, Default)]
pub(crate) struct MsgState {
    /// Data parked by `cork_bytes`, with the size that releases it.
    pub(crate) cork: Option<SkMsg>,
    pub(crate) cork_bytes: usize,
    /// Bytes still covered by the cached verdict.
    pub(crate) apply_left: usize,
    pub(crate) cached: Option<crate::core::Resolved>,
}

/// Fragments a send ring holds before it coalesces.
pub(crate) const TX_MAX_FRAGS: usize = 1024;

impl Conn {
    pub(crate) fn new(id: SockId, stats: Arc<Stats>) -> Conn {
        Conn {
            id,
            listener: false,
            connecting: false,
            stats,
            map_stats: None,
            progs: Programs::default(),
            route: RouteCache {
                epoch: u64::MAX,
                resolved: None,
            },
            app: AppRead::Initial,
            blocked: 0,
            read_eof: false,
            read_done: false,
            closing: false,
            tx: SgRing::with_max_frags(TX_MAX_FRAGS),
            flush_pending: false,
            above_high: false,
            waiters: SmallVec::new(),
            end_requested: false,
            write_shut: false,
            send_acks: VecDeque::new(),
            msg: MsgState::default(),
            awaiting: AwaitQueue::default(),
            awaiting_base: 0,
            awaiting_bytes: 0,
            ext_full: false,
            strp: None,
            strp_prog: None,
            handed_back: false,
            strp_timer: None,
            rx_full: false,
            xparse: ExternalParse::default(),
            app_queued: 0,
            app_waiters: SmallVec::new(),
            send_parked: None,
            send_seq: 0,
            send_backlog: VecDeque::new(),
            initial: bytes::Bytes::new(),
        }
    }

    /// Whether the socket's programs make it read without the application.
    pub(crate) fn has_rx_programs(&self) -> bool {
        self.progs.parser.is_some() || self.progs.verdict.is_some()
    }

    /// Whether the socket should be read now.
    pub(crate) fn wants_read(&self) -> bool {
        let enabled = match self.app {
            AppRead::Initial => self.has_rx_programs(),
            AppRead::Resumed => true,
            AppRead::Paused => false,
        };
        enabled
            && self.blocked == 0
            && !self.rx_full
            && !self.ext_full
            && !self.read_eof
            && !self.closing
            && !self.listener
            && !self.connecting
    }

    /// Whether every message received so far was judged and queued: none
    /// awaits an external verdict or parse, and the parser holds no complete
    /// message it was kept from delivering (paused). Bytes of a message the
    /// parser has not completed can never complete after end of stream.
    pub(crate) fn rx_settled(&self) -> bool {
        self.awaiting.is_empty()
            && self.xparse.asked.is_none()
            && self.xparse.answers.is_empty()
            && !self
                .strp
                .as_ref()
                .is_some_and(|s| s.is_paused() && s.buffered_bytes() > 0)
    }

    /// Whether the socket can take redirected bytes on its egress.
    pub(crate) fn is_egress_target(&self) -> bool {
        !self.listener && !self.closing && !self.end_requested
    }

    /// Adds to one counter of the socket and of its verdict map.
    #[inline]
    pub(crate) fn count(&self, field: impl Fn(&Stats) -> &std::sync::atomic::AtomicU64, n: u64) {
        Stats::add(field(&self.stats), n);
        if let Some(m) = &self.map_stats {
            Stats::add(field(m), n);
        }
    }
}
