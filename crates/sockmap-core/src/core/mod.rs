//! The sans-IO core: every socket's psock, verdicts, redirects and backpressure.
//!
//! [`Core`] performs no I/O and reads no clock. A backend drives it: it reports
//! what the kernel did through the `handle_*` methods (bytes received, bytes
//! sent, end of stream, errors, accepted and connected sockets, application
//! commands) and carries out what the core asks through [`Core::poll_op`]
//! (read a socket now, write its send ring, shut down its write side, close
//! it). Events for the application come out of [`Core::poll_event`].
//!
//! A turn of a backend's loop: feed completions and commands, then drain
//! `poll_op` until empty, then `handle_timeout(now)`, then drain
//! `poll_event`, then wait at most until [`Core::poll_timeout`].

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::config::EngineConfig;
use crate::conn::{AppRead, Conn, RouteCache};
use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::framer::MessageMeta;
use crate::id::SockId;
use crate::key::Key;
use crate::program::VerdictKind;
use crate::registry::{Shared, SockState};
use crate::rules::{DerivedKey, KeySource, MessageView, Rule, Verdict};
use crate::stats::{DropReason, Stats};
use crate::timer::{Timer, TimerTable};

mod boundary;
mod external;
mod parse;
mod send;

/// What the core asks its backend to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read the socket now, even without a readiness report (reading was just enabled).
    Read(SockId),
    /// Write the socket's send ring ([`Core::fill_iovec`], then [`Core::handle_sent`]).
    Flush(SockId),
    /// Shut down the write side, then call [`Core::handle_write_shut`].
    ShutdownWrite(SockId),
    /// Close the socket's I/O object, then call [`Core::handle_closed`].
    Close(SockId),
}

/// A kind of socket a backend registers with the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewSock {
    /// A listening socket.
    Listener,
    /// A connected socket.
    Established,
    /// A socket whose connect is in progress.
    Connecting,
}

/// A verdict with its target resolved to a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    Pass,
    Drop(DropReason),
    Redirect { target: SockId, ingress: bool },
}

/// The bytes of one message: fragments, or a range of the current chunk.
#[derive(Debug)]
pub(crate) enum Body {
    /// Fragments of received buffers.
    Frags(Frags),
    /// `start..end` of [`Core`]'s current chunk.
    Chunk { start: usize, end: usize },
}

impl Body {
    fn into_frags(self, chunk: &Bytes) -> Frags {
        match self {
            Body::Frags(f) => f,
            Body::Chunk { start, end } => smallvec::smallvec![chunk.slice(start..end)],
        }
    }
}

/// Consecutive bytes of the current chunk redirected to one target's egress,
/// pushed as one fragment.
#[derive(Clone, Copy, Debug)]
struct Run {
    src: usize,
    target: usize,
    start: usize,
    end: usize,
}

/// The sans-IO engine core. See the module documentation for the contract.
pub struct Core {
    shared: Arc<Shared>,
    cfg: EngineConfig,
    conns: Vec<Option<Conn>>,
    events: VecDeque<Event>,
    ops: VecDeque<Op>,
    timers: TimerTable,
    /// The chunk being processed, and the run of it heading to one egress.
    chunk: Bytes,
    run: Option<Run>,
    /// Lengths of the messages of a block taken by boundaries (reused).
    lens: Vec<usize>,
    /// External verdicts, when installed.
    ext: Option<external::ExternalState>,
    /// The time of the latest input.
    now: Instant,
}

impl Core {
    pub(crate) fn new(shared: Arc<Shared>, cfg: EngineConfig) -> Core {
        Core {
            shared,
            cfg,
            conns: Vec::new(),
            events: VecDeque::new(),
            ops: VecDeque::new(),
            timers: TimerTable::default(),
            chunk: Bytes::new(),
            run: None,
            lens: Vec::new(),
            ext: None,
            now: Instant::now(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn slot_of(&self, id: SockId) -> Option<usize> {
        let s = id.slot();
        match self.conns.get(s) {
            Some(Some(c)) if c.id == id => Some(s),
            _ => None,
        }
    }

    fn conn(&self, id: SockId) -> Option<&Conn> {
        self.slot_of(id).and_then(|s| self.conns[s].as_ref())
    }

    fn at(&mut self, slot: usize) -> &mut Conn {
        self.conns[slot].as_mut().expect("slot checked by slot_of")
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next thing the backend must do.
    pub fn poll_op(&mut self) -> Option<Op> {
        self.ops.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether events are waiting.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The earliest time [`Core::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether the socket should be read now.
    pub fn wants_read(&self, id: SockId) -> bool {
        self.conn(id).is_some_and(Conn::wants_read)
    }

    /// Whether the socket has bytes waiting to be written.
    pub fn has_tx(&self, id: SockId) -> bool {
        self.conn(id)
            .is_some_and(|c| !c.tx.is_empty() && !c.closing)
    }

    /// Whether the socket is a connect in progress.
    pub fn is_connecting(&self, id: SockId) -> bool {
        self.conn(id).is_some_and(|c| c.connecting)
    }

    /// Fills `iov` with the socket's queued bytes; returns how many entries.
    pub fn fill_iovec<'a>(&'a self, id: SockId, iov: &mut [IoSlice<'a>]) -> usize {
        match self.conn(id) {
            Some(c) if !c.closing && !c.connecting => c.tx.fill_iovec(iov),
            _ => 0,
        }
    }

    /// Number of live sockets.
    pub fn socket_count(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    // ---- sockets appearing and going ---------------------------------------------------

    /// Registers a socket whose id the registry already allocated.
    pub fn handle_new_socket(
        &mut self,
        id: SockId,
        kind: NewSock,
        connect_deadline: Option<Instant>,
    ) {
        let stats = match self.shared.lock().sock(id) {
            Some(e) => e.stats.clone(),
            None => return,
        };
        let mut c = Conn::new(id, stats);
        c.listener = kind == NewSock::Listener;
        c.connecting = kind == NewSock::Connecting;
        let slot = id.slot();
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        self.conns[slot] = Some(c);
        if let Some(at) = connect_deadline {
            self.timers.set(at, Timer::Connect(id));
        }
    }

    /// A listener accepted a connection: allocates its id (the socket starts paused).
    pub fn handle_accepted(&mut self, listener: SockId, peer: SocketAddr) -> SockId {
        let id = self.shared.lock().alloc(SockState::Established);
        self.handle_new_socket(id, NewSock::Established, None);
        self.events.push_back(Event::Accepted {
            listener,
            sock: id,
            peer,
        });
        id
    }

    /// A connect finished.
    pub fn handle_connected(&mut self, id: SockId, result: Result<(), Errno>) {
        let Some(slot) = self.slot_of(id) else { return };
        if !self.at(slot).connecting {
            return;
        }
        match result {
            Ok(()) => {
                self.shared.lock().set_state(id, SockState::Established);
                let c = self.at(slot);
                c.connecting = false;
                let flush = !c.tx.is_empty();
                self.events.push_back(Event::Connected {
                    sock: id,
                    result: Ok(()),
                });
                if flush {
                    self.ops.push_back(Op::Flush(id));
                }
                self.kick_read(slot);
            }
            Err(e) => {
                self.events.push_back(Event::Connected {
                    sock: id,
                    result: Err(e),
                });
                self.close(slot, Some(e));
            }
        }
    }

    /// Bytes the application read from an adopted socket before the engine
    /// took it: once the socket starts reading (programs, or `resume()`),
    /// they are received first, before anything read from the socket.
    pub fn handle_adopted_bytes(&mut self, id: SockId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if let Some(slot) = self.slot_of(id) {
            let c = self.at(slot);
            c.initial = data;
            self.take_initial(slot);
        }
    }

    /// Receives the adopted socket's initial bytes once it reads.
    fn take_initial(&mut self, slot: usize) {
        let c = self.at(slot);
        if c.initial.is_empty() || !c.wants_read() {
            return;
        }
        let (id, data) = (c.id, std::mem::take(&mut c.initial));
        let now = self.now;
        self.handle_received(id, data, now);
    }

    /// The backend closed the socket's I/O object: forget the socket.
    pub fn handle_closed(&mut self, id: SockId) {
        if let Some(slot) = self.slot_of(id) {
            self.conns[slot] = None;
            self.shared.lock().release(id);
        }
    }

    /// The write side is shut down.
    pub fn handle_write_shut(&mut self, id: SockId) {
        let Some(slot) = self.slot_of(id) else { return };
        let c = self.at(slot);
        c.write_shut = true;
        if c.read_done {
            self.close(slot, None);
        }
    }

    /// A read or write failed: the socket closes with `err`.
    pub fn handle_error(&mut self, id: SockId, err: Errno) {
        if let Some(slot) = self.slot_of(id) {
            self.close(slot, Some(err));
        }
    }

    /// The peer shut down its write side (a read returned 0).
    pub fn handle_eof(&mut self, id: SockId) {
        let Some(slot) = self.slot_of(id) else { return };
        let c = self.at(slot);
        if c.read_eof {
            return;
        }
        c.read_eof = true;
        self.finish_read(slot);
    }

    /// Ends the read side once the peer's FIN was read and every message
    /// received before it was judged and queued: the application is told
    /// ([`Event::ReadEnd`]), the FIN goes on to the socket's partner (see
    /// [`StreamVerdictProg::propagate_fin`](crate::program::StreamVerdictProg::propagate_fin))
    /// after the bytes queued for it, and a socket whose write side is
    /// already shut closes.
    pub(super) fn finish_read(&mut self, slot: usize) {
        let c = self.at(slot);
        if !c.read_eof || c.read_done || c.closing || !c.rx_settled() {
            return;
        }
        c.read_done = true;
        let id = c.id;
        let write_shut = c.write_shut;
        let partner = self.fin_partner(slot);
        self.flush_run();
        self.events.push_back(Event::ReadEnd { sock: id });
        if let Some(ps) = partner.and_then(|p| self.slot_of(p)) {
            if ps != slot {
                self.end(ps);
            }
        }
        if write_shut {
            self.close(slot, None);
        }
    }

    /// The partner a socket's FIN is forwarded to: the target of a native
    /// egress redirect keyed by the socket's own id (a proxy pairing), when
    /// its stream verdict propagates FIN. Targets a socket merely sent
    /// messages to (a shared upstream, a target chosen per message) are
    /// never ended by it.
    fn fin_partner(&self, slot: usize) -> Option<SockId> {
        let c = self.conns[slot].as_ref()?;
        let prog = c.progs.verdict.as_deref().filter(|v| v.propagate_fin)?;
        let VerdictKind::Rule(
            rule @ Rule::Redirect {
                key: KeySource::Socket,
                ingress: false,
                ..
            },
        ) = &prog.kind
        else {
            return None;
        };
        let view = MessageView {
            sock: c.id,
            frags: &[],
            len: 0,
            meta: &MessageMeta::None,
        };
        match eval_rule(&self.shared, rule, &view).0 {
            Resolved::Redirect { target, .. } => Some(target),
            _ => None,
        }
    }

    /// Closes a socket: it leaves every map, its queued bytes are discarded,
    /// the sources it stopped resume, and the backend is asked to close it.
    fn close(&mut self, slot: usize, error: Option<Errno>) {
        self.flush_run();
        let c = self.at(slot);
        if c.closing {
            return;
        }
        c.closing = true;
        let id = c.id;
        let lost = c.tx.len();
        if lost > 0 {
            c.count(|s| &s.discarded_bytes, lost as u64);
            c.tx.clear();
            Stats::set(&c.stats.queued_bytes, 0);
        }
        let acks = std::mem::take(&mut c.send_acks);
        let mut waiters = std::mem::take(&mut c.waiters);
        waiters.extend(std::mem::take(&mut c.app_waiters));
        c.app_queued = 0;
        Stats::set(&c.stats.app_queued_bytes, 0);
        let unread = std::mem::take(&mut c.initial).len();
        if unread > 0 {
            c.count(|s| &s.discarded_bytes, unread as u64);
        }
        let c_cork = c.msg.cork.take().map(|m| m.size());
        let awaited = std::mem::take(&mut c.awaiting_bytes);
        c.awaiting.clear();
        if awaited > 0 {
            c.count(|s| &s.discarded_bytes, awaited as u64);
            Stats::set(&c.stats.pending_bytes, 0);
        }
        {
            let mut reg = self.shared.lock();
            if reg.remove_links(id) {
                self.shared.bump();
            }
            reg.set_state(id, SockState::Closed);
        }
        for a in acks {
            self.events.push_back(Event::SendDone {
                sock: a.sock,
                req: a.req,
                result: Err(Errno::Pipe),
            });
        }
        if let Some(cork) = c_cork {
            self.at(slot).count(|s| &s.discarded_bytes, cork as u64);
        }
        self.drop_parser(slot);
        self.fail_parked_sends(slot);
        self.release_waiters(waiters);
        self.events.push_back(Event::Closed { sock: id, error });
        self.ops.push_back(Op::Close(id));
    }

    // ---- application commands ------------------------------------------------------------

    /// The registry changed the socket's maps: take its programs afresh.
    pub fn handle_relink(&mut self, id: SockId) {
        let Some(slot) = self.slot_of(id) else { return };
        let (progs, map_stats) = {
            let reg = self.shared.lock();
            let Some(e) = reg.sock(id) else { return };
            let map_stats = e
                .verdict_map
                .and_then(|m| reg.map(m).ok())
                .map(|m| m.stats.clone());
            (e.programs.clone(), map_stats)
        };
        let c = self.at(slot);
        c.progs = progs;
        c.map_stats = map_stats;
        c.route.epoch = u64::MAX;
        self.relink_parser(slot);
        self.end_chunk();
        self.take_initial(slot);
        self.finish_read(slot);
        self.kick_read(slot);
    }

    /// `resume()`: read and deliver.
    pub fn handle_resume(&mut self, id: SockId) {
        if let Some(slot) = self.slot_of(id) {
            let c = self.at(slot);
            c.app = AppRead::Resumed;
            if let Some(s) = c.strp.as_mut() {
                if s.is_paused() {
                    s.unpause();
                    self.run_parser(slot);
                    self.end_chunk();
                }
            }
            self.take_initial(slot);
            self.finish_read(slot);
            self.kick_read(slot);
        }
    }

    /// `pause()`: stop reading.
    pub fn handle_pause(&mut self, id: SockId) {
        if let Some(slot) = self.slot_of(id) {
            let c = self.at(slot);
            c.app = AppRead::Paused;
            if let Some(s) = c.strp.as_mut() {
                s.pause();
            }
        }
    }

    /// `end()`: write what is queued, then shut down the write side.
    pub fn handle_end(&mut self, id: SockId) {
        if let Some(slot) = self.slot_of(id) {
            self.end(slot);
        }
    }

    /// `destroy()`: close at once.
    pub fn handle_destroy(&mut self, id: SockId) {
        if let Some(slot) = self.slot_of(id) {
            self.close(slot, None);
        }
    }

    /// Closes every socket (engine shutdown): listeners at once, others after their queues drain.
    pub fn handle_shutdown(&mut self) {
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_ref() else {
                continue;
            };
            if c.listener || c.connecting {
                self.close(slot, None);
            } else {
                self.end(slot);
                let c = self.at(slot);
                if c.write_shut {
                    self.close(slot, None);
                } else {
                    c.read_eof = true;
                    c.read_done = true;
                }
            }
        }
    }

    fn end(&mut self, slot: usize) {
        let c = self.at(slot);
        if c.closing || c.end_requested {
            return;
        }
        c.end_requested = true;
        if c.listener {
            self.close(slot, None);
        } else if c.tx.is_empty() && !c.connecting {
            let id = c.id;
            self.ops.push_back(Op::ShutdownWrite(id));
        }
    }

    fn kick_read(&mut self, slot: usize) {
        let c = self.at(slot);
        if c.wants_read() {
            let id = c.id;
            self.ops.push_back(Op::Read(id));
        }
    }

    // ---- timers --------------------------------------------------------------------------

    /// The backend has no more ready work this turn: hand off the open
    /// external batch rather than let it wait for its timer.
    pub fn handle_idle(&mut self) {
        self.dispatch();
    }

    /// Runs the deadlines that have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::Connect(id) => {
                    if self.is_connecting(id) {
                        self.handle_connected(id, Err(Errno::TimedOut));
                    }
                }
                Timer::Batch => self.handle_batch_timer(now),
                Timer::Parser(id) => self.handle_parser_timer(id),
            }
        }
    }

    // ---- the send side -------------------------------------------------------------------

    /// `n` bytes of the send ring were written.
    pub fn handle_sent(&mut self, id: SockId, n: usize) {
        let Some(slot) = self.slot_of(id) else { return };
        let low = self.cfg.send_low_watermark;
        let c = self.at(slot);
        c.tx.consume(n);
        c.count(|s| &s.bytes_out, n as u64);
        Stats::set(&c.stats.queued_bytes, c.tx.len() as u64);
        let empty = c.tx.is_empty();
        if empty {
            c.flush_pending = false;
        }
        if c.tx.len() <= low {
            let waiters = std::mem::take(&mut c.waiters);
            let acks = std::mem::take(&mut c.send_acks);
            let drained = std::mem::replace(&mut c.above_high, false);
            for a in acks {
                self.events.push_back(Event::SendDone {
                    sock: a.sock,
                    req: a.req,
                    result: a.result,
                });
            }
            if drained {
                self.events.push_back(Event::Drained { sock: id });
            }
            self.release_waiters(waiters);
        }
        let c = self.at(slot);
        if empty && c.end_requested && !c.write_shut {
            self.ops.push_back(Op::ShutdownWrite(id));
        }
    }

    fn release_waiters(&mut self, waiters: smallvec::SmallVec<[SockId; 2]>) {
        for w in waiters {
            if let Some(ws) = self.slot_of(w) {
                let c = self.at(ws);
                c.blocked = c.blocked.saturating_sub(1);
                self.kick_read(ws);
            }
        }
    }

    fn tx_push(&mut self, slot: usize, frag: Bytes) {
        let c = self.at(slot);
        if let Err(full) = c.tx.push(frag) {
            // The ring holds the most fragments it may: coalesce what it has
            // into one fragment (rare: only many tiny unmerged fragments).
            let merged = Bytes::from(c.tx.to_vec());
            let total = merged.len();
            c.tx.consume(total);
            let _ = c.tx.push(merged);
            let _ = c.tx.push(full.0);
        }
    }

    /// Accounts a push into `target`'s ring from `src` (None: the socket's own app).
    fn after_push(&mut self, src: Option<usize>, target: usize) {
        let high = self.cfg.send_high_watermark;
        let t = self.at(target);
        Stats::set(&t.stats.queued_bytes, t.tx.len() as u64);
        if !t.flush_pending && !t.connecting {
            t.flush_pending = true;
            let id = t.id;
            self.ops.push_back(Op::Flush(id));
        }
        let t = self.at(target);
        if t.tx.len() <= high {
            return;
        }
        t.above_high = true;
        if let Some(src) = src {
            self.block_on(src, target, false);
        }
    }

    /// Stops reading `src` until `target`'s send ring drains (or, with
    /// `app`, until its application acknowledges enough bytes).
    fn block_on(&mut self, src: usize, target: usize, app: bool) {
        let src_id = self.at(src).id;
        let t = self.at(target);
        let list = if app {
            &mut t.app_waiters
        } else {
            &mut t.waiters
        };
        if !list.contains(&src_id) {
            list.push(src_id);
            let s = self.at(src);
            s.blocked += 1;
            s.count(|s| &s.backpressure_stalls, 1);
        }
    }

    /// Queues a message for `target`'s application; with a bounded
    /// application queue, `src` stops being read above the high watermark.
    fn queue_for_app(&mut self, src: Option<usize>, target: usize, data: Frags, len: usize) {
        let high = self.cfg.app_high_watermark;
        let t = self.at(target);
        let sock = t.id;
        if let Some(high) = high {
            t.app_queued += len;
            Stats::set(&t.stats.app_queued_bytes, t.app_queued as u64);
            if t.app_queued > high {
                if let Some(src) = src {
                    self.block_on(src, target, true);
                }
            }
        }
        self.events.push_back(Event::Message { sock, data });
    }

    /// The application consumed `bytes` of the messages delivered to it.
    pub fn handle_ack(&mut self, id: SockId, bytes: usize) {
        let Some(high) = self.cfg.app_high_watermark else {
            return;
        };
        let Some(slot) = self.slot_of(id) else { return };
        let c = self.at(slot);
        c.app_queued = c.app_queued.saturating_sub(bytes);
        Stats::set(&c.stats.app_queued_bytes, c.app_queued as u64);
        if c.app_queued <= high / 2 && !c.app_waiters.is_empty() {
            let waiters = std::mem::take(&mut c.app_waiters);
            self.release_waiters(waiters);
        }
    }

    // ---- the receive side ----------------------------------------------------------------

    /// Bytes were read from the socket.
    pub fn handle_received(&mut self, id: SockId, data: Bytes, now: Instant) {
        let Some(slot) = self.slot_of(id) else { return };
        self.now = now;
        let len = data.len();
        self.at(slot).count(|s| &s.bytes_in, len as u64);
        self.chunk = data.clone();
        self.ingest(slot, data);
        self.end_chunk();
    }

    /// One message came out of the socket's parser.
    fn deliver(&mut self, slot: usize, frags: Frags, len: usize, meta: &MessageMeta) {
        let c = self.at(slot);
        c.count(|s| &s.messages_in, 1);
        let ext = match c.progs.verdict.as_deref().map(|p| &p.kind) {
            Some(VerdictKind::External { tag, peek_bytes }) => Some((*tag, *peek_bytes)),
            _ => None,
        };
        if ext.is_some() || !c.awaiting.is_empty() {
            let known = ext.is_none().then(|| self.decide(slot, &frags, len, meta));
            return self.await_message(slot, frags, len, ext, known);
        }
        let resolved = self.decide(slot, &frags, len, meta);
        self.apply(slot, resolved, Body::Frags(frags), len);
    }

    /// Runs the socket's stream verdict.
    fn decide(&mut self, slot: usize, frags: &[Bytes], len: usize, meta: &MessageMeta) -> Resolved {
        let epoch = self.shared.epoch();
        let shared = &self.shared;
        let c = self.conns[slot].as_mut().expect("live");
        let Some(prog) = c.progs.verdict.as_ref() else {
            return Resolved::Pass;
        };
        match &prog.kind {
            VerdictKind::Rule(rule) => {
                if c.route.epoch == epoch {
                    if let Some(r) = c.route.resolved {
                        return r;
                    }
                }
                let view = MessageView {
                    sock: c.id,
                    frags,
                    len,
                    meta,
                };
                let (resolved, fixed) = eval_rule(shared, rule, &view);
                if fixed {
                    c.route = RouteCache {
                        epoch,
                        resolved: Some(resolved),
                    };
                }
                resolved
            }
            VerdictKind::External { .. } => Resolved::Drop(DropReason::Verdict),
        }
    }

    /// Carries out a verdict.
    fn apply(&mut self, slot: usize, resolved: Resolved, body: Body, len: usize) {
        match resolved {
            Resolved::Pass => {
                self.at(slot).count(|s| &s.passed, 1);
                let frags = body.into_frags(&self.chunk);
                self.queue_for_app(Some(slot), slot, frags, len);
            }
            Resolved::Drop(reason) => self.count_drop(slot, reason, len),
            Resolved::Redirect { target, ingress } => {
                let Some(ts) = self.slot_of(target) else {
                    return self.count_drop(slot, DropReason::DeadTarget, len);
                };
                let t = self.at(ts);
                if ingress {
                    if t.listener || t.closing {
                        return self.count_drop(slot, DropReason::DeadTarget, len);
                    }
                    self.at(slot).count(|s| &s.redirected_ingress, 1);
                    let frags = body.into_frags(&self.chunk);
                    self.queue_for_app(Some(slot), ts, frags, len);
                } else {
                    if !t.is_egress_target() {
                        return self.count_drop(slot, DropReason::DeadTarget, len);
                    }
                    self.redirect_egress(slot, ts, 1, body);
                }
            }
        }
    }

    /// Counts `messages` messages of `slot` redirected to `target`'s egress
    /// (a live egress target) and appends their bytes to its send ring.
    fn redirect_egress(&mut self, slot: usize, target: usize, messages: u64, body: Body) {
        self.at(slot).count(|s| &s.redirected_egress, messages);
        self.push_egress(slot, target, body);
    }

    fn count_drop(&mut self, slot: usize, reason: DropReason, len: usize) {
        self.count_drops(slot, reason, 1, len);
    }

    /// Counts `messages` dropped messages of `bytes` in all.
    fn count_drops(&mut self, slot: usize, reason: DropReason, messages: u64, bytes: usize) {
        let c = self.at(slot);
        c.stats.count_drop(reason, messages, bytes);
        if let Some(m) = &c.map_stats {
            m.count_drop(reason, messages, bytes);
        }
    }

    /// Appends bytes to a target's send ring, merging them with the previous
    /// ones when both are adjacent bytes of the chunk being processed.
    fn push_egress(&mut self, src: usize, target: usize, body: Body) {
        let range = match &body {
            Body::Chunk { start, end } => Some((*start, *end)),
            Body::Frags(frags) => match frags.as_slice() {
                [f] => offset_in(&self.chunk, f).map(|off| (off, off + f.len())),
                _ => None,
            },
        };
        if let Some((off, end)) = range {
            match &mut self.run {
                Some(r) if r.src == src && r.target == target && r.end == off => r.end = end,
                _ => {
                    self.flush_run();
                    self.run = Some(Run {
                        src,
                        target,
                        start: off,
                        end,
                    });
                }
            }
            return;
        }
        let frags = body.into_frags(&self.chunk);
        self.flush_run();
        for f in frags {
            self.tx_push(target, f);
        }
        self.after_push(Some(src), target);
    }

    /// Ends the processing of received bytes: the open run goes out and the
    /// chunk is released.
    fn end_chunk(&mut self) {
        self.flush_run();
        self.chunk = Bytes::new();
    }

    fn flush_run(&mut self) {
        if let Some(r) = self.run.take() {
            let frag = self.chunk.slice(r.start..r.end);
            self.tx_push(r.target, frag);
            self.after_push(Some(r.src), r.target);
        }
    }
}

/// Where `part` starts inside `whole`, if it lies within it.
fn offset_in(whole: &Bytes, part: &Bytes) -> Option<usize> {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    (p >= w && p + part.len() <= w + whole.len() && !part.is_empty()).then(|| p - w)
}

/// Evaluates a native rule; the flag says the result holds for every message
/// of the socket until the maps change.
pub(crate) fn eval_rule(shared: &Shared, rule: &Rule, view: &MessageView<'_>) -> (Resolved, bool) {
    match rule {
        Rule::Func(f) => match catch_unwind(AssertUnwindSafe(|| f(view))) {
            Ok(v) => (resolve(shared, &v), false),
            Err(_) => (Resolved::Drop(DropReason::Verdict), false),
        },
        _ => eval_keyed(shared, rule, |key| key.derive(view)),
    }
}

/// Evaluates a native rule other than [`Rule::Func`], taking its key (when
/// it has one) from `derive`; the flag as for [`eval_rule`].
pub(crate) fn eval_keyed<'a>(
    shared: &Shared,
    rule: &'a Rule,
    derive: impl FnOnce(&'a KeySource) -> Option<DerivedKey<'a>>,
) -> (Resolved, bool) {
    match rule {
        Rule::Pass => (Resolved::Pass, true),
        Rule::Drop => (Resolved::Drop(DropReason::Verdict), true),
        Rule::Redirect { map, key, ingress } => {
            let r = match derive(key) {
                None => Resolved::Drop(DropReason::NoKey),
                Some(k) => lookup(shared, *map, &k, *ingress),
            };
            (r, key.is_per_socket())
        }
        Rule::HashRoute { map, key, ingress } => {
            let r = match derive(key) {
                None => Resolved::Drop(DropReason::NoKey),
                Some(k) => match shared.lock().route(*map, k.raw().hash()) {
                    Some(target) => Resolved::Redirect {
                        target,
                        ingress: *ingress,
                    },
                    None => Resolved::Drop(DropReason::NoKey),
                },
            };
            (r, key.is_per_socket())
        }
        Rule::Func(_) => (Resolved::Drop(DropReason::Verdict), false),
    }
}

fn lookup(shared: &Shared, map: crate::id::MapId, key: &DerivedKey<'_>, ingress: bool) -> Resolved {
    redirect_to(shared.lock().lookup_raw(map, key.raw()), ingress)
}

/// A redirect to the socket a key was found under (a missing key drops).
pub(crate) fn redirect_to(found: Option<SockId>, ingress: bool) -> Resolved {
    match found {
        Some(target) => Resolved::Redirect { target, ingress },
        None => Resolved::Drop(DropReason::NoKey),
    }
}

/// A PASS or DROP verdict (`None` for a redirect, which needs a lookup).
pub(crate) fn resolve_local(v: &Verdict) -> Option<Resolved> {
    match v {
        Verdict::Pass => Some(Resolved::Pass),
        Verdict::Drop => Some(Resolved::Drop(DropReason::Verdict)),
        Verdict::Redirect { .. } => None,
    }
}

/// Resolves a verdict's redirect key to a socket.
pub(crate) fn resolve(shared: &Shared, v: &Verdict) -> Resolved {
    match v {
        Verdict::Redirect { map, key, ingress } => {
            lookup(shared, *map, &DerivedKey::from_key(key), *ingress)
        }
        _ => resolve_local(v).unwrap_or(Resolved::Drop(DropReason::Verdict)),
    }
}

impl From<Key> for DerivedKey<'static> {
    fn from(k: Key) -> DerivedKey<'static> {
        match k {
            Key::Num(n) => DerivedKey::Num(n),
            Key::Bytes(b) => DerivedKey::Owned(smallvec::SmallVec::from_slice(&b)),
        }
    }
}
