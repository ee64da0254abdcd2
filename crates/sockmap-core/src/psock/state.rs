//! The psock: one socket's state on the I/O thread (the kernel's `struct sk_psock`).
//!
//! A [`Psock`] keeps its state private and changes it only through methods
//! that keep these invariants:
//!
//! - **Life** only moves forward: `Connecting → Open → Closing`, or
//!   `Listener → Closing`. A closing psock holds no queued bytes (its send
//!   ring, application queue, awaited messages, cork and parked sends were
//!   discarded and counted when it began closing) and takes none.
//! - **Receive side**: `Open → Eof → Done`. `Eof`: the peer's FIN was read,
//!   nothing more is read. `Done`: every message received before the FIN was
//!   judged and queued, the application was told and the FIN forwarded to the
//!   partner. `Done` is reached only from `Eof`, and only once
//!   [`Psock::rx_settled`] holds.
//! - **Transmit side**: `Open → Ending → Shut`. `Ending`: the application (or
//!   a forwarded FIN) asked to end; the ring is written out, nothing new is
//!   redirected to it. `Shut`: the write side is shut down. A socket whose
//!   receive side is `Done` and transmit side `Shut` closes.
//! - **Reading**: the socket is read only while [`Psock::wants_read`]: open,
//!   its receive side open, the application wants it read (or, before the
//!   application said anything, it has receive programs), and nothing holds
//!   it back (a full target, too many bytes awaiting answers or held by an
//!   external parser).
//! - `blocked` counts the targets whose waiter lists hold this socket; each
//!   list holds a socket at most once.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::event::Frags;
use crate::id::SockId;
use crate::program::Programs;
use crate::ring::SgRing;
use crate::stats::{DropReason, Stats};
use crate::verdict::RouteCache;

use super::parse::RxParser;
use super::send::SendState;

/// Where a psock lives in the core's table: an index, distinct from the
/// [`SockId`] that names the socket to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotIdx(usize);

impl SlotIdx {
    /// The slot an id points at (the id may be stale: check the psock's id).
    pub(crate) fn of(id: SockId) -> SlotIdx {
        SlotIdx(id.slot())
    }

    /// The index into the table.
    pub(crate) fn get(self) -> usize {
        self.0
    }
}

/// A socket's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Listener,
    Connecting,
    Open,
    Closing,
}

/// The receive side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rx {
    Open,
    Eof,
    Done,
}

/// The transmit side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tx {
    Open,
    Ending,
    Shut,
}

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

/// What can hold a socket's reads back besides its life and receive side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Too many bytes await external verdicts.
    Awaiting,
    /// The external parser holds too many unframed bytes.
    Parser,
}

/// The kind of socket a psock is created as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewSock {
    /// A listening socket.
    Listener,
    /// A connected socket.
    Established,
    /// A socket whose connect is in progress.
    Connecting,
}

/// One socket's state on the I/O thread.
pub(crate) struct Psock {
    id: SockId,
    life: Life,
    rx: Rx,
    tx: Tx,
    app: AppRead,
    /// How many full targets this socket waits on.
    blocked: u32,
    hold_awaiting: bool,
    hold_parser: bool,
    /// Counters of the socket, and of the map whose stream verdict it took.
    stats: Arc<Stats>,
    map_stats: Option<Arc<Stats>>,
    /// The programs taken from the socket's maps.
    pub(crate) progs: Programs,
    /// The stream verdict cached while the maps are unchanged.
    pub(crate) route: RouteCache,
    /// Bytes waiting to be written, and who waits for them to drain.
    pub(crate) ring: SendRing,
    /// Messages delivered to the application and not yet acknowledged.
    pub(crate) app_queue: AppQueue,
    /// Messages awaiting external verdicts (and any behind them).
    pub(crate) awaiting: AwaitQueue,
    /// The stream parser between read and verdict.
    pub(crate) parser: RxParser,
    /// The sk_msg state of data the application sends.
    pub(crate) send: SendState,
    /// Bytes the application read before the engine adopted the socket.
    initial: Bytes,
}

/// Fragments a send ring holds before it coalesces.
const TX_MAX_FRAGS: usize = 1024;

impl Psock {
    pub(crate) fn new(id: SockId, kind: NewSock, stats: Arc<Stats>) -> Psock {
        Psock {
            id,
            life: match kind {
                NewSock::Listener => Life::Listener,
                NewSock::Established => Life::Open,
                NewSock::Connecting => Life::Connecting,
            },
            rx: Rx::Open,
            tx: Tx::Open,
            app: AppRead::Initial,
            blocked: 0,
            hold_awaiting: false,
            hold_parser: false,
            stats,
            map_stats: None,
            progs: Programs::default(),
            route: RouteCache::default(),
            ring: SendRing::default(),
            app_queue: AppQueue::default(),
            awaiting: AwaitQueue::default(),
            parser: RxParser::default(),
            send: SendState::default(),
            initial: Bytes::new(),
        }
    }

    /// The socket's id.
    pub(crate) fn id(&self) -> SockId {
        self.id
    }

    // ---- life -----------------------------------------------------------------------------

    pub(crate) fn is_listener(&self) -> bool {
        self.life == Life::Listener
    }

    pub(crate) fn is_connecting(&self) -> bool {
        self.life == Life::Connecting
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.life == Life::Closing
    }

    /// A connect finished: the socket is open.
    pub(crate) fn connected(&mut self) {
        if self.life == Life::Connecting {
            self.life = Life::Open;
        }
    }

    /// Starts closing; false if it already was.
    pub(crate) fn begin_close(&mut self) -> bool {
        let was = self.life;
        self.life = Life::Closing;
        was != Life::Closing
    }

    /// Whether the socket can take redirected bytes on its egress.
    pub(crate) fn is_egress_target(&self) -> bool {
        matches!(self.life, Life::Open | Life::Connecting) && self.tx == Tx::Open
    }

    /// Whether the socket's application can take messages (ingress).
    pub(crate) fn is_ingress_target(&self) -> bool {
        matches!(self.life, Life::Open | Life::Connecting)
    }

    /// Whether the application may send on it.
    pub(crate) fn can_send(&self) -> bool {
        self.is_egress_target()
    }

    /// Whether the send ring may be written now.
    pub(crate) fn can_write(&self) -> bool {
        self.life == Life::Open
    }

    // ---- receive side ---------------------------------------------------------------------

    /// The peer's FIN was read; false if it already had been.
    pub(crate) fn mark_eof(&mut self) -> bool {
        if self.rx != Rx::Open {
            return false;
        }
        self.rx = Rx::Eof;
        true
    }

    /// Whether the read side may be finished now: the FIN was read, it is
    /// not finished yet, the socket is not closing and everything read is settled.
    pub(crate) fn can_finish_read(&self) -> bool {
        self.rx == Rx::Eof && self.life != Life::Closing && self.rx_settled()
    }

    /// Marks the read side finished (after [`Psock::can_finish_read`]).
    pub(crate) fn finish_read(&mut self) {
        self.rx = Rx::Done;
    }

    /// Stops the receive side for good (engine shutdown).
    pub(crate) fn stop_reading(&mut self) {
        self.rx = Rx::Done;
    }

    pub(crate) fn is_read_done(&self) -> bool {
        self.rx == Rx::Done
    }

    /// Whether every message received so far was judged and queued: none
    /// awaits an external verdict or parse, and the parser holds no complete
    /// message it was kept from delivering (paused). Bytes of a message the
    /// parser has not completed can never complete after end of stream.
    pub(crate) fn rx_settled(&self) -> bool {
        self.awaiting.is_empty() && self.parser.is_settled()
    }

    /// Whether the socket's programs make it read without the application.
    fn has_rx_programs(&self) -> bool {
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
            && !self.hold_awaiting
            && !self.hold_parser
            && self.rx == Rx::Open
            && self.life == Life::Open
    }

    pub(crate) fn app_read(&self) -> AppRead {
        self.app
    }

    pub(crate) fn set_app_read(&mut self, app: AppRead) {
        self.app = app;
    }

    /// Sets or lifts a hold; true when it changed.
    pub(crate) fn set_hold(&mut self, hold: Hold, on: bool) -> bool {
        let flag = match hold {
            Hold::Awaiting => &mut self.hold_awaiting,
            Hold::Parser => &mut self.hold_parser,
        };
        std::mem::replace(flag, on) != on
    }

    pub(crate) fn is_held(&self, hold: Hold) -> bool {
        match hold {
            Hold::Awaiting => self.hold_awaiting,
            Hold::Parser => self.hold_parser,
        }
    }

    /// This socket now waits on one more full target.
    pub(crate) fn block(&mut self) {
        self.blocked += 1;
        self.count(|s| &s.backpressure_stalls, 1);
    }

    /// A target it waited on drained.
    pub(crate) fn unblock(&mut self) {
        self.blocked = self.blocked.saturating_sub(1);
    }

    /// Bytes read before adoption, to be received first.
    pub(crate) fn set_initial(&mut self, data: Bytes) {
        self.initial = data;
    }

    /// Discards the adopted bytes not received yet (close): how many.
    pub(crate) fn discard_initial(&mut self) -> usize {
        std::mem::take(&mut self.initial).len()
    }

    /// The adopted bytes, once the socket reads.
    pub(crate) fn take_initial(&mut self) -> Option<Bytes> {
        (!self.initial.is_empty() && self.wants_read()).then(|| std::mem::take(&mut self.initial))
    }

    // ---- transmit side --------------------------------------------------------------------

    /// The application asked to end; false if ending or closing already.
    pub(crate) fn request_end(&mut self) -> bool {
        if self.life == Life::Closing || self.tx != Tx::Open {
            return false;
        }
        self.tx = Tx::Ending;
        true
    }

    /// Whether the write side should be shut now: ending, written out, not shut yet.
    pub(crate) fn should_shut(&self) -> bool {
        self.tx == Tx::Ending && self.ring.is_empty() && self.life == Life::Open
    }

    /// The write side is shut down.
    pub(crate) fn write_shut(&mut self) {
        self.tx = Tx::Shut;
    }

    pub(crate) fn is_write_shut(&self) -> bool {
        self.tx == Tx::Shut
    }

    // ---- counters -------------------------------------------------------------------------

    /// Sets the map whose stream verdict the socket took.
    pub(crate) fn set_programs(&mut self, progs: Programs, map_stats: Option<Arc<Stats>>) {
        self.progs = progs;
        self.map_stats = map_stats;
        self.route = RouteCache::default();
    }

    /// Adds to one counter of the socket and of its verdict map.
    #[inline]
    pub(crate) fn count(&self, field: impl Fn(&Stats) -> &AtomicU64, n: u64) {
        Stats::add(field(&self.stats), n);
        if let Some(m) = &self.map_stats {
            Stats::add(field(m), n);
        }
    }

    /// Counts `messages` dropped messages of `bytes` in all.
    pub(crate) fn count_drops(&self, reason: DropReason, messages: u64, bytes: usize) {
        self.stats.count_drop(reason, messages, bytes);
        if let Some(m) = &self.map_stats {
            m.count_drop(reason, messages, bytes);
        }
    }

    /// Sets a gauge of the socket.
    pub(crate) fn gauge(&self, field: impl Fn(&Stats) -> &AtomicU64, n: usize) {
        Stats::set(field(&self.stats), n as u64);
    }
}

/// A socket's send ring with its watermark state.
///
/// Invariants: `flush_queued` is set from the moment bytes are queued until
/// the ring is empty (one `Flush` op per write-out); `above_high` says a
/// `Drained` event is owed; `waiters` holds each stopped source once.
pub(crate) struct SendRing {
    ring: SgRing,
    flush_queued: bool,
    above_high: bool,
    /// Sources stopped until this ring drains.
    waiters: SmallVec<[SockId; 2]>,
    /// Outcomes of application sends whose bytes went into this ring while
    /// it was full: reported once it drains.
    acks: VecDeque<SendAck>,
}

/// A send outcome waiting for a ring to drain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendAck {
    pub(crate) sock: SockId,
    pub(crate) req: u64,
    pub(crate) result: Result<usize, crate::error::Errno>,
}

impl Default for SendRing {
    fn default() -> SendRing {
        SendRing {
            ring: SgRing::with_max_frags(TX_MAX_FRAGS),
            flush_queued: false,
            above_high: false,
            waiters: SmallVec::new(),
            acks: VecDeque::new(),
        }
    }
}

impl SendRing {
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The queued bytes, for `writev`.
    pub(crate) fn ring(&self) -> &SgRing {
        &self.ring
    }

    /// Appends a fragment; a ring holding the most fragments it may
    /// coalesces what it has into one (rare: only many tiny unmerged fragments).
    pub(crate) fn push(&mut self, frag: Bytes) {
        if let Err(full) = self.ring.push(frag) {
            let merged = Bytes::from(self.ring.to_vec());
            let total = merged.len();
            self.ring.advance(total);
            let _ = self.ring.push(merged);
            let _ = self.ring.push(full.0);
        }
    }

    /// `n` bytes were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.ring.advance(n);
        if self.ring.is_empty() {
            self.flush_queued = false;
        }
    }

    /// Marks a flush queued; false if one already was.
    pub(crate) fn queue_flush(&mut self) -> bool {
        !std::mem::replace(&mut self.flush_queued, true)
    }

    /// Records that the ring went above its high watermark.
    pub(crate) fn mark_above_high(&mut self) {
        self.above_high = true;
    }

    /// Adds a stopped source; false if it already waits.
    pub(crate) fn add_waiter(&mut self, src: SockId) -> bool {
        if self.waiters.contains(&src) {
            return false;
        }
        self.waiters.push(src);
        true
    }

    /// Whether a send reported now would overtake one still waiting.
    pub(crate) fn must_defer_ack(&self, high: usize) -> bool {
        self.ring.len() > high || !self.acks.is_empty()
    }

    pub(crate) fn defer_ack(&mut self, ack: SendAck) {
        self.acks.push_back(ack);
    }

    /// The ring drained to its low watermark: the sources to release, the
    /// send outcomes to report, and whether a `Drained` is owed.
    pub(crate) fn drained(&mut self) -> Drain {
        Drain {
            waiters: std::mem::take(&mut self.waiters),
            acks: std::mem::take(&mut self.acks),
            owed: std::mem::replace(&mut self.above_high, false),
        }
    }

    /// Discards everything (close): the bytes lost, and what `drained` would give.
    pub(crate) fn discard(&mut self) -> (usize, Drain) {
        let lost = self.ring.len();
        self.ring.clear();
        self.flush_queued = false;
        (lost, self.drained())
    }
}

/// What a ring draining (or discarded) releases.
pub(crate) struct Drain {
    pub(crate) waiters: SmallVec<[SockId; 2]>,
    pub(crate) acks: VecDeque<SendAck>,
    pub(crate) owed: bool,
}

/// Bytes delivered to a socket's application and not yet acknowledged.
///
/// Invariant: `waiters` is non-empty only while `queued` is above half the
/// high watermark (sources stopped by this queue).
#[derive(Default)]
pub(crate) struct AppQueue {
    queued: usize,
    waiters: SmallVec<[SockId; 2]>,
}

impl AppQueue {
    /// Accounts `len` more bytes; true when above `high`.
    pub(crate) fn add(&mut self, len: usize, high: usize) -> bool {
        self.queued += len;
        self.queued > high
    }

    /// The application consumed `bytes`: the sources to release once at or under half of `high`.
    pub(crate) fn ack(&mut self, bytes: usize, high: usize) -> SmallVec<[SockId; 2]> {
        self.queued = self.queued.saturating_sub(bytes);
        if self.queued <= high / 2 {
            std::mem::take(&mut self.waiters)
        } else {
            SmallVec::new()
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Adds a stopped source; false if it already waits.
    pub(crate) fn add_waiter(&mut self, src: SockId) -> bool {
        if self.waiters.contains(&src) {
            return false;
        }
        self.waiters.push(src);
        true
    }

    /// Forgets everything (close): the sources to release.
    pub(crate) fn clear(&mut self) -> SmallVec<[SockId; 2]> {
        self.queued = 0;
        std::mem::take(&mut self.waiters)
    }
}

/// A message whose verdict is awaited (or known, but behind awaited ones).
#[derive(Debug)]
struct Awaited {
    body: AwaitedBody,
    len: usize,
    answer: Option<crate::verdict::Resolved>,
}

/// Where an awaited message's bytes are.
#[derive(Debug)]
enum AwaitedBody {
    /// In these fragments.
    Frags(Frags),
    /// The next `len` bytes of the queue's front block.
    InBlock,
}

/// A socket's awaited messages, oldest first, numbered from `base`.
///
/// Messages read together as a block of whole messages share that block:
/// each costs a length and an answer, not a buffer reference of its own.
/// Invariants: `bytes` is the sum of the items' lengths; the `InBlock`
/// items, in order, tile `blocks` from `block_off` on, each block ending
/// exactly with its last message.
#[derive(Debug, Default)]
pub(crate) struct AwaitQueue {
    items: VecDeque<Awaited>,
    blocks: VecDeque<Bytes>,
    block_off: usize,
    base: u64,
    bytes: usize,
}

/// An answered message taken from the front of an [`AwaitQueue`].
pub(crate) enum Answered {
    /// Its own fragments.
    Frags(Frags, usize, crate::verdict::Resolved),
    /// `start..end` of the block [`AwaitQueue::pop_answered`] left in `cur`.
    InBlock {
        start: usize,
        end: usize,
        resolved: crate::verdict::Resolved,
    },
}

impl AwaitQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The sequence number the next message queued gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.base + self.items.len() as u64
    }

    /// Bytes awaiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues a message with its own fragments; `answer` when already known.
    pub(crate) fn push_frags(
        &mut self,
        frags: Frags,
        len: usize,
        answer: Option<crate::verdict::Resolved>,
    ) {
        self.items.push_back(Awaited {
            body: AwaitedBody::Frags(frags),
            len,
            answer,
        });
        self.bytes += len;
    }

    /// Queues the messages of a block (lengths `lens`, back to back, tiling it).
    pub(crate) fn push_block(&mut self, block: Bytes, lens: &[usize]) {
        self.bytes += block.len();
        self.blocks.push_back(block);
        self.items.extend(lens.iter().map(|&len| Awaited {
            body: AwaitedBody::InBlock,
            len,
            answer: None,
        }));
    }

    /// Records the answer of message `seq` (ignored if it is gone).
    pub(crate) fn answer(&mut self, seq: u64, resolved: crate::verdict::Resolved) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        if let Some(a) = self.items.get_mut(i as usize) {
            a.answer = Some(resolved);
        }
    }

    /// Takes the front message if it is answered. For a message of a block,
    /// `cur` is made that block (cloned only when it changes).
    pub(crate) fn pop_answered(&mut self, cur: &mut Bytes) -> Option<Answered> {
        let resolved = self.items.front()?.answer?;
        let a = self.items.pop_front().expect("front checked");
        self.base += 1;
        self.bytes -= a.len;
        Some(match a.body {
            AwaitedBody::Frags(frags) => Answered::Frags(frags, a.len, resolved),
            AwaitedBody::InBlock => {
                match self.blocks.front() {
                    Some(b) if b.as_ptr() == cur.as_ptr() && b.len() == cur.len() => {}
                    front => *cur = front.cloned().unwrap_or_default(),
                }
                let start = self.block_off;
                let end = (start + a.len).min(cur.len());
                if end == cur.len() {
                    self.blocks.pop_front();
                    self.block_off = 0;
                } else {
                    self.block_off = end;
                }
                Answered::InBlock {
                    start,
                    end,
                    resolved,
                }
            }
        })
    }

    /// Forgets everything (close): the bytes discarded.
    pub(crate) fn clear(&mut self) -> usize {
        self.base += self.items.len() as u64;
        self.items.clear();
        self.blocks.clear();
        self.block_off = 0;
        std::mem::take(&mut self.bytes)
    }
}
