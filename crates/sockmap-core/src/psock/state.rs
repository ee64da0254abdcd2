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
//! - **Partner**: a copy of the registry's pair ([`crate::partner`]), taken
//!   at relink; the registry is the truth when the socket closes.
//! - **Requests** (`exchange`): a client in requests mode is not read while
//!   it has its maximum of requests awaiting replies (`psock/exchange.rs`).
//! - `blocked` counts the targets whose waiter lists hold this socket; each
//!   list holds a socket at most once; plus one while `remote_blocked`
//!   (too many bytes unacknowledged by other shards).
//!
//! The queues it owns ([`SendRing`], [`AppQueue`], [`AwaitQueue`]) live in
//! `queue.rs`, each with its own invariants. The state of each concern a
//! psock takes part in lives below this module, in `state/`: its parser
//! ([`RxParser`], `state/parse.rs`), its sk_msg state ([`SendState`],
//! `state/send.rs`), its request/response pairing ([`Exchange`],
//! `state/exchange.rs`) and a datagram socket's queue and sessions
//! ([`DgramState`], `state/dgram.rs`); each is changed by the concern's own
//! `impl Core` block (`psock/parse.rs`, `psock/send.rs`...). None of them
//! imports this module or the behaviour above it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use crate::id::SockId;
use crate::partner::Partner;
use crate::program::Programs;
use crate::stats::{DropReason, Stats};
use crate::verdict::RouteCache;

use super::handoff::Remote;
use super::queue::{AppQueue, AwaitQueue, SendRing};

pub(super) mod dgram;
pub(super) mod exchange;
pub(super) mod parse;
pub(super) mod send;

use dgram::DgramState;
use exchange::Exchange;
use parse::RxParser;
use send::SendState;

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
    /// The client has its maximum of requests awaiting replies.
    Requests,
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
    /// Bytes redirected to sockets of other shards and not yet acknowledged.
    remote_unacked: usize,
    /// Stopped because `remote_unacked` went above the high watermark.
    remote_blocked: bool,
    /// Acknowledgements owed to sources on other shards, held while this socket is full.
    remote_acks: Vec<Remote>,
    hold_awaiting: bool,
    hold_parser: bool,
    hold_requests: bool,
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
    /// Request/response pairing: a client's reply slots, an upstream's pending requests.
    pub(crate) exchange: Exchange,
    /// Bytes the application read before the engine adopted the socket.
    initial: Bytes,
    /// The declared partner, as of the last relink.
    partner: Option<Partner>,
    /// TLS: the record layer between the socket's bytes and its plaintext (`psock/tls.rs`).
    pub(crate) tls: Option<Box<crate::tls::session::Session>>,
    /// A datagram socket's queue and sessions (`psock/dgram.rs`).
    pub(crate) dgram: Option<Box<DgramState>>,
    /// The server name the socket's stream asked for, lowercased: its
    /// handshake's when the engine terminates TLS, else its ClientHello's
    /// (`parsers.tlsRecords()`). What `KeySource::Sni` reads.
    pub(crate) sni: Option<bytes::Bytes>,
}

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
            remote_unacked: 0,
            remote_blocked: false,
            remote_acks: Vec::new(),
            hold_awaiting: false,
            hold_parser: false,
            hold_requests: false,
            stats,
            map_stats: None,
            progs: Programs::default(),
            route: RouteCache::default(),
            ring: SendRing::default(),
            app_queue: AppQueue::default(),
            awaiting: AwaitQueue::default(),
            parser: RxParser::default(),
            send: SendState::default(),
            exchange: Exchange::default(),
            initial: Bytes::new(),
            partner: None,
            tls: None,
            dgram: None,
            sni: None,
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

    /// Whether the socket should be read now: for its application, or for
    /// its TLS handshake (whose plaintext waits as initial bytes).
    pub(crate) fn wants_read(&self) -> bool {
        self.reads_for_app()
            || (self.tls.as_ref().is_some_and(|t| t.is_handshaking())
                && self.rx == Rx::Open
                && self.life == Life::Open)
    }

    /// Whether what the socket reads goes to its programs and application now.
    pub(crate) fn reads_for_app(&self) -> bool {
        self.app_enabled()
            && self.blocked == 0
            && !self.hold_awaiting
            && !self.hold_parser
            && !self.hold_requests
            && self.rx == Rx::Open
            && self.life == Life::Open
    }

    /// Whether the application or the socket's programs take what it receives (holds and
    /// backpressure aside: they stop reads, not bytes already read).
    pub(crate) fn app_enabled(&self) -> bool {
        match self.app {
            AppRead::Initial => self.has_rx_programs(),
            AppRead::Resumed => true,
            AppRead::Paused => false,
        }
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
            Hold::Requests => &mut self.hold_requests,
        };
        std::mem::replace(flag, on) != on
    }

    pub(crate) fn is_held(&self, hold: Hold) -> bool {
        match hold {
            Hold::Awaiting => self.hold_awaiting,
            Hold::Parser => self.hold_parser,
            Hold::Requests => self.hold_requests,
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

    /// `len` bytes left for another shard: above `high` unacknowledged, stop reading.
    pub(crate) fn remote_sent(&mut self, len: usize, high: usize) {
        self.remote_unacked += len;
        self.gauge(|s| &s.remote_bytes, self.remote_unacked);
        if self.remote_unacked > high && !self.remote_blocked {
            self.remote_blocked = true;
            self.block();
        }
    }

    /// Holds an acknowledgement for a source on another shard until this socket drains.
    pub(crate) fn defer_remote_ack(&mut self, ack: Remote) {
        self.remote_acks.push(ack);
    }

    /// The acknowledgements held (see [`Psock::defer_remote_ack`]).
    pub(crate) fn take_remote_acks(&mut self) -> Vec<Remote> {
        std::mem::take(&mut self.remote_acks)
    }

    /// Another shard acknowledged `len` bytes; true when that lets the socket read again.
    pub(crate) fn remote_acked(&mut self, len: usize, low: usize) -> bool {
        self.remote_unacked = self.remote_unacked.saturating_sub(len);
        self.gauge(|s| &s.remote_bytes, self.remote_unacked);
        if self.remote_blocked && self.remote_unacked <= low {
            self.remote_blocked = false;
            self.unblock();
            return true;
        }
        false
    }

    /// Bytes read before adoption, to be received first.
    pub(crate) fn set_initial(&mut self, data: Bytes) {
        self.initial = data;
    }

    /// Appends plaintext a TLS socket decrypted before its application reads.
    pub(crate) fn add_initial(&mut self, data: Bytes) {
        if self.initial.is_empty() {
            self.initial = data;
        } else {
            let mut v = Vec::with_capacity(self.initial.len() + data.len());
            v.extend_from_slice(&self.initial);
            v.extend_from_slice(&data);
            self.initial = Bytes::from(v);
        }
    }

    /// Whether bytes wait to be received first.
    pub(crate) fn has_initial(&self) -> bool {
        !self.initial.is_empty()
    }

    /// Discards the adopted bytes not received yet (close): how many.
    pub(crate) fn discard_initial(&mut self) -> usize {
        std::mem::take(&mut self.initial).len()
    }

    /// The bytes held back, whatever holds the socket's reads (they were read already).
    pub(crate) fn take_initial_now(&mut self) -> Option<Bytes> {
        (!self.initial.is_empty()).then(|| std::mem::take(&mut self.initial))
    }

    /// The adopted bytes, once the socket reads.
    pub(crate) fn take_initial(&mut self) -> Option<Bytes> {
        (!self.initial.is_empty() && self.reads_for_app())
            .then(|| std::mem::take(&mut self.initial))
    }

    // ---- partner --------------------------------------------------------------------------

    /// The declared partner.
    pub(crate) fn partner(&self) -> Option<Partner> {
        self.partner
    }

    /// Takes the registry's pair; true when the partner changed to a new socket.
    pub(crate) fn set_partner(&mut self, partner: Option<Partner>) -> bool {
        let old = std::mem::replace(&mut self.partner, partner);
        partner.is_some_and(|p| old.map(|o| o.peer) != Some(p.peer))
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
        self.tx == Tx::Ending
            && self.ring.is_empty()
            && self.life == Life::Open
            && self.tls.as_ref().map_or(true, |t| t.may_shut())
    }

    /// Whether the application asked to end and the write side is not shut yet.
    pub(crate) fn is_ending(&self) -> bool {
        self.tx == Tx::Ending
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
        self.exchange.programs_changed();
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
