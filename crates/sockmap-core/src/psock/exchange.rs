//! Request/response pairing: every message a client socket sends gets
//! exactly one reply, in request order, whichever upstream answers it and
//! however fast.
//!
//! A client is a socket whose map was attached with
//! [`RequestsConfig`](crate::program::RequestsConfig); an upstream is a
//! socket whose stream verdict is [`Rule::Reply`](crate::rules::Rule::Reply).
//!
//! Invariants:
//!
//! - **Client slots**: a client's messages are numbered in order; each one
//!   that was judged has one slot in its queue, in that order: `Waiting`
//!   (forwarded to an upstream), `App` (passed to the application, whose next
//!   send fills it), `Merge` (a Redis command split over several upstreams:
//!   it becomes ready when its last part answered), or `Ready` (a reply: the
//!   upstream's, the application's, a local one, or an error reply the
//!   client's framer made). Only the `Ready` slots at
//!   the head of the queue leave it, onto the client's send ring, through
//!   the [`Egress`] of the input that completed them (the bytes are never
//!   copied; a full client ring stops the upstream that fills it, as a
//!   redirect does). So a client's replies go out in its request order.
//! - **Upstream FIFO**: an upstream answers in order (Redis, HTTP/1), so the
//!   requests forwarded to it wait in a FIFO (client, slot number, deadline);
//!   each message it sends answers the oldest. An entry whose client is gone
//!   (closed, or its slot no longer there) is an orphan: its reply is
//!   discarded and counted.
//! - **Timer**: an upstream with pending requests has at most one armed
//!   [`Timer::Request`]; when it fires, the oldest request past its
//!   deadline gets a timeout error reply and the upstream closes with
//!   `ETIMEDOUT` (its later replies would pair wrongly); otherwise it is
//!   armed again at the oldest request's deadline.
//! - **Failure**: an upstream that closes answers every pending request with
//!   an "upstream closed" error reply. A client that closes drops its slots.
//! - **Bounded**: a client with `max_pending` slots is not read until half of
//!   them left (one read's messages may take it past the bound).
//! - Pairing is shard-local: a request routed to an upstream on another
//!   shard gets a "no upstream" error reply.

use std::time::Instant;

use bytes::Bytes;
use smallvec::{smallvec, SmallVec};

use super::body::Body;
use super::egress::Egress;
use super::slot::SlotIdx;
use super::state::exchange::{Filled, Pending, Slot};
use super::state::{AppRead, Hold, Psock};
use super::Core;
use crate::event::Frags;
use crate::framer::{MessageMeta, ReplyError};
use crate::id::SockId;
use crate::map::RawKey;
use crate::program::VerdictKind;
use crate::redis::{ClientState, Plan, Split};
use crate::rules::{copy_range, Rule};
use crate::stats::{DropReason, Stats};
use crate::strparser::StrParser;
use crate::timer::Timer;
use crate::verdict::Resolved;

/// Bytes of a forwarded request shown to the upstream's framer.
const HEAD_PEEK: usize = 16;

/// The first bytes of a message.
fn head_of(body: &Body<'_>) -> SmallVec<[u8; 32]> {
    match body {
        Body::Range(b, s, e) => SmallVec::from_slice(&b[*s..(*e).min(s + HEAD_PEEK)]),
        Body::Frags(f) => {
            let len = f.iter().map(Bytes::len).sum::<usize>().min(HEAD_PEEK);
            let mut out = SmallVec::new();
            copy_range(f, 0, len, &mut out);
            out
        }
    }
}

fn count_error(p: &Psock, kind: ReplyError) {
    p.count(|s| &s.error_replies, 1);
    p.count(
        |s: &Stats| match kind {
            ReplyError::Timeout => &s.error_timeout,
            ReplyError::UpstreamClosed => &s.error_upstream_closed,
            ReplyError::NoUpstream => &s.error_no_upstream,
            ReplyError::Denied => &s.error_denied,
        },
        1,
    );
}

impl Core {
    /// Whether `slot`'s stream verdict answers requests ([`Rule::Reply`]).
    pub(super) fn answers_requests(&self, slot: SlotIdx) -> bool {
        matches!(
            self.at_ref(slot).progs.verdict.as_deref().map(|v| &v.kind),
            Some(VerdictKind::Rule(Rule::Reply))
        )
    }

    /// `target`'s slot, when it is an upstream on this shard that can take a request now.
    pub(super) fn local_request_target(&self, target: SockId) -> Option<SlotIdx> {
        if self.is_remote(target) {
            return None;
        }
        self.live_target(target, false)
            .filter(|&ts| self.answers_requests(ts))
    }

    /// Whether `slot` is a client in requests mode.
    pub(super) fn is_client(&self, slot: SlotIdx) -> bool {
        self.at_ref(slot).progs.requests.is_some()
    }

    /// A verdict on one request of a client: forwarded to an upstream that
    /// answers requests, answered with an error reply, or given a slot the
    /// application fills. Returns the verdict and body to carry out as
    /// usual when the message needs no more (a PASS, after its slot; a plain
    /// redirect).
    pub(super) fn request<'a>(
        &mut self,
        slot: SlotIdx,
        resolved: Resolved,
        body: Body<'a>,
        len: usize,
        out: &mut Egress,
    ) -> Option<(Resolved, Body<'a>)> {
        if self.at_ref(slot).is_closing() {
            return None;
        }
        match resolved {
            Resolved::Redirect {
                target,
                ingress: false,
            } => {
                let ts = (!self.is_remote(target))
                    .then(|| self.live_target(target, false))
                    .flatten();
                match ts {
                    Some(ts) if self.answers_requests(ts) => {
                        self.forward(slot, ts, &[len], body, out);
                        None
                    }
                    Some(_) => Some((resolved, body)),
                    None => {
                        self.at(slot).count_drops(DropReason::DeadTarget, 1, len);
                        self.error_reply(slot, ReplyError::NoUpstream, out);
                        None
                    }
                }
            }
            Resolved::Drop(reason) => {
                self.at(slot).count_drops(reason, 1, len);
                let kind = match reason {
                    DropReason::Verdict => ReplyError::Denied,
                    _ => ReplyError::NoUpstream,
                };
                self.error_reply(slot, kind, out);
                None
            }
            Resolved::Pass => {
                self.open_slot(slot, Slot::App);
                Some((resolved, body))
            }
            _ => Some((resolved, body)),
        }
    }

    /// Forwards consecutive requests of `slot` (their lengths `lens`, their
    /// bytes `body`) to the upstream `ts`: a slot and a FIFO entry each, the
    /// bytes as one push.
    pub(super) fn forward(
        &mut self,
        slot: SlotIdx,
        ts: SlotIdx,
        lens: &[usize],
        body: Body<'_>,
        out: &mut Egress,
    ) {
        let mut at = 0;
        for &len in lens {
            let seq = self.open_slot(slot, Slot::Waiting);
            let head = match &body {
                Body::Range(b, s, _) => head_of(&Body::Range(b, s + at, s + at + len)),
                frags => head_of(frags),
            };
            self.expect_reply(slot, ts, seq, None, &head);
            at += len;
        }
        out.push(self, ts, lens.len() as u64, body);
    }

    /// Records on the upstream `ts` that the request of `slot`'s slot `seq`
    /// (a split command's `part`) awaits its reply; `head`: its first bytes.
    fn expect_reply(
        &mut self,
        slot: SlotIdx,
        ts: SlotIdx,
        seq: u64,
        part: Option<Box<[usize]>>,
        head: &[u8],
    ) {
        let Some(timeout) = self.at_ref(slot).progs.requests.as_ref().map(|r| r.timeout) else {
            return;
        };
        let client = self.at_ref(slot).id();
        let deadline = self.now + timeout;
        let t = self.at(ts);
        let upstream = t.id();
        match t.parser.strp.as_mut() {
            Some(strp) => strp.framer_mut().request_forwarded(head),
            None if t.progs.parser.is_some() => t
                .exchange
                .upstream
                .get_or_insert_with(Box::default)
                .untold
                .push(SmallVec::from_slice(head)),
            None => {}
        }
        if t.exchange.forwarded(Pending {
            client,
            seq,
            deadline,
            part,
        }) {
            self.timers.set(deadline, Timer::Request(upstream));
        }
        let t = self.at(ts);
        t.gauge(|s| &s.pending_requests, t.exchange.pending());
    }

    /// Runs the Redis planner on a request of a client whose requests carry a
    /// [`RedisConfig`](crate::redis::RedisConfig): a local reply or refusal
    /// takes a slot at once; a multi-key command is split over the servers
    /// its keys hash to. Returns false when the request goes on as it is
    /// (forwarded by the socket's rule).
    pub(super) fn plan_request(
        &mut self,
        slot: SlotIdx,
        frags: &Frags,
        len: usize,
        meta: &MessageMeta,
        out: &mut Egress,
    ) -> bool {
        let p = self.at(slot);
        let Some(cfg) = p.progs.requests.as_ref().and_then(|r| r.redis.as_ref()) else {
            return false;
        };
        let state = p
            .exchange
            .client()
            .redis
            .get_or_insert_with(|| ClientState::new(cfg));
        let (reply, end) = match crate::redis::plan(frags, len, meta, cfg, state) {
            Plan::Forward(_) => return false,
            Plan::Split(split) => return self.split(slot, &split, out),
            Plan::Local(reply) if reply.is_empty() => return true,
            Plan::Local(reply) => (reply, false),
            Plan::End(reply) => (reply, true),
            Plan::Refuse(reply) => (reply, false),
        };
        let refused = reply.first() == Some(&b'-');
        let seq = self.open_slot(slot, Slot::Waiting);
        let p = self.at(slot);
        p.exchange.fill(seq, None, smallvec![reply]);
        if refused {
            count_error(p, ReplyError::Denied);
        } else {
            p.count(|s| &s.local_replies, 1);
        }
        self.drain_replies(slot, out);
        if end && self.at_ref(slot).exchange.slots() == 0 {
            // QUIT: the client ends once its replies are written.
            out.flush_target_of(self, slot);
            self.end(slot);
        }
        true
    }

    /// Sends the parts of a split command to the servers its keys hash to
    /// (by the socket's [`Rule::HashRoute`]), under one merge slot. Returns
    /// false when the socket's rule is another (the command goes on whole).
    fn split(&mut self, slot: SlotIdx, split: &Split, out: &mut Egress) -> bool {
        let rule = self.at_ref(slot).progs.verdict.as_deref().map(|v| &v.kind);
        let Some(VerdictKind::Rule(Rule::HashRoute { map, hash_tag, .. })) = rule else {
            return false;
        };
        let (map, hash_tag) = (*map, *hash_tag);
        let client = self.at_ref(slot).id();
        let mut parts: SmallVec<[(SockId, Vec<usize>); 4]> = SmallVec::new();
        for (i, k) in split.keys().iter().enumerate() {
            let hash = RawKey::Bytes(k).ring_hash(hash_tag);
            let Some(t) = self.maps.route(map, hash, client) else {
                parts.clear();
                break;
            };
            match parts.iter_mut().find(|(s, _)| *s == t) {
                Some((_, keys)) => keys.push(i),
                None => parts.push((t, vec![i])),
            }
        }
        let targets: Option<SmallVec<[SlotIdx; 4]>> = parts
            .iter()
            .map(|(t, _)| self.local_request_target(*t))
            .collect();
        let targets = targets.filter(|t| !t.is_empty());
        let Some(targets) = targets else {
            self.error_reply(slot, ReplyError::NoUpstream, out);
            return true;
        };
        let merger = Box::new(split.merger());
        let seq = self.open_slot(
            slot,
            Slot::Merge {
                merger,
                left: parts.len(),
            },
        );
        for ((_, keys), ts) in parts.into_iter().zip(targets) {
            let sub = split.build(&keys);
            let head = SmallVec::<[u8; 32]>::from_slice(&sub[..sub.len().min(HEAD_PEEK)]);
            self.expect_reply(slot, ts, seq, Some(keys.into_boxed_slice()), &head);
            out.push(self, ts, 1, Body::Frags(smallvec![sub]));
        }
        true
    }

    /// The client's `max_pending`, when it is in requests mode.
    fn max_pending(&self, slot: SlotIdx) -> Option<usize> {
        self.at_ref(slot)
            .progs
            .requests
            .as_ref()
            .map(|r| r.max_pending)
    }

    /// Opens the client's next slot, counted; a client with `max_pending`
    /// slots stops being read.
    fn open_slot(&mut self, slot: SlotIdx, s: Slot) -> u64 {
        let max = self.max_pending(slot);
        let p = self.at(slot);
        let seq = p.exchange.open(s);
        p.count(|s| &s.requests, 1);
        let n = p.exchange.slots();
        p.gauge(|s| &s.pending_requests, n);
        if max.is_some_and(|m| n >= m) {
            p.set_hold(Hold::Requests, true);
        }
        seq
    }

    /// The client's error reply of `kind`, from its framer.
    fn error_bytes(&mut self, slot: SlotIdx, kind: ReplyError) -> Option<Bytes> {
        let p = self.at(slot);
        let prog = p.progs.parser.clone();
        let c = p.exchange.client();
        let replier = c
            .replier
            .get_or_insert_with(|| prog.and_then(|pp| pp.framer().ok().flatten()));
        replier.as_ref().and_then(|f| f.error_reply(kind))
    }

    /// Answers the client's next request with an error reply (a new slot),
    /// or closes it with the errno when its framer has no reply format.
    fn error_reply(&mut self, slot: SlotIdx, kind: ReplyError, out: &mut Egress) {
        let seq = self.open_slot(slot, Slot::Waiting);
        self.fail_slot(slot, seq, None, kind, out);
    }

    /// Fills the client's slot `seq` with an error reply of `kind`, or
    /// closes the client with the errno when its framer has none.
    fn fail_slot(
        &mut self,
        slot: SlotIdx,
        seq: u64,
        part: Option<&[usize]>,
        kind: ReplyError,
        out: &mut Egress,
    ) {
        count_error(self.at_ref(slot), kind);
        match self.error_bytes(slot, kind) {
            Some(reply) => {
                self.at(slot).exchange.fill(seq, part, smallvec![reply]);
                self.drain_replies(slot, out);
            }
            None => self.close(slot, Some(kind.errno())),
        }
    }

    /// [`Core::fail_slot`] outside a read: for the client `client`, if it is still there.
    fn fail_request(&mut self, req: Pending, kind: ReplyError) {
        let Some(cs) = self
            .slot_of(req.client)
            .filter(|&c| !self.at_ref(c).is_closing())
        else {
            return;
        };
        let mut out = Egress::new(cs, Bytes::new());
        self.fail_slot(cs, req.seq, req.part.as_deref(), kind, &mut out);
        out.flush(self);
    }

    /// Sends the ready replies at the head of the client's queue, in order;
    /// a client stopped by `max_pending` reads again once half its slots left.
    fn drain_replies(&mut self, slot: SlotIdx, out: &mut Egress) {
        let mut sent = false;
        while let Some(reply) = self.at(slot).exchange.take_ready() {
            out.push(self, slot, 0, Body::Frags(reply));
            sent = true;
        }
        if !sent {
            return;
        }
        let max = self.max_pending(slot);
        let p = self.at(slot);
        let n = p.exchange.slots();
        p.gauge(|s| &s.pending_requests, n);
        if p.is_held(Hold::Requests) && max.map_or(true, |m| n <= m / 2) {
            p.set_hold(Hold::Requests, false);
            if p.app_read() != AppRead::Paused && p.parser.unpause() {
                let mut more = Egress::new(slot, Bytes::new());
                self.run_parser(slot, &mut more);
                more.flush(self);
            }
            self.kick_read(slot);
        }
    }

    /// Tells the upstream's framer of the requests forwarded while its
    /// parser was running (see [`Core::expect_reply`]), in order.
    pub(super) fn tell_forwarded(&mut self, slot: SlotIdx) {
        let p = self.at(slot);
        let Some(u) = p
            .exchange
            .upstream
            .as_mut()
            .filter(|u| !u.untold.is_empty())
        else {
            return;
        };
        if let Some(strp) = p.parser.strp.as_mut() {
            for head in u.untold.drain(..) {
                strp.framer_mut().request_forwarded(&head);
            }
        }
    }

    /// Keeps a client's parser paused while it has its maximum of requests
    /// awaiting replies (the messages stay buffered in it), and unpaused
    /// again once it has room, unless the application paused it.
    pub(super) fn hold_requests(&self, slot: SlotIdx, strp: &mut StrParser) {
        let p = self.at_ref(slot);
        if p.is_held(Hold::Requests) {
            strp.pause();
        } else if strp.is_paused() && p.app_read() != AppRead::Paused {
            strp.unpause();
        }
    }

    /// A message of the upstream `slot` ([`Resolved::Reply`]): the reply to
    /// its oldest pending request, to that request's client; with none
    /// pending, passed to the application.
    pub(super) fn take_reply(
        &mut self,
        slot: SlotIdx,
        body: Body<'_>,
        len: usize,
        out: &mut Egress,
    ) {
        let p = self.at(slot);
        let Some(req) = p.exchange.pop_pending() else {
            p.count(|s| &s.unsolicited, 1);
            p.count(|s| &s.passed, 1);
            let id = p.id();
            return self.queue_for_app(Some(id), slot, body.into_frags(), len);
        };
        p.gauge(|s| &s.pending_requests, p.exchange.pending());
        let client = self
            .slot_of(req.client)
            .filter(|&c| !self.at_ref(c).is_closing());
        let filled = match client {
            Some(cs) => {
                let frags = body.into_frags();
                self.at(cs)
                    .exchange
                    .fill(req.seq, req.part.as_deref(), frags)
            }
            None => Filled::Gone,
        };
        match (filled, client) {
            (Filled::Ready, Some(cs)) => {
                self.at(cs).count(|s| &s.replies, 1);
                self.drain_replies(cs, out);
            }
            (Filled::Part, _) => {}
            _ => self.at(slot).count(|s| &s.orphan_replies, 1),
        }
    }

    /// A TypeScript verdict answered a message of `slot` with `reply`
    /// (`msg.reply`): a client's next slot takes it, in order; any other
    /// socket writes it out.
    pub(super) fn local_reply(&mut self, slot: SlotIdx, reply: Bytes, out: &mut Egress) {
        self.at(slot).count(|s| &s.local_replies, 1);
        if !self.is_client(slot) || self.at_ref(slot).is_closing() {
            return out.push(self, slot, 0, Body::Frags(smallvec![reply]));
        }
        let seq = self.open_slot(slot, Slot::Waiting);
        self.at(slot).exchange.fill(seq, None, smallvec![reply]);
        self.drain_replies(slot, out);
    }

    /// An application send on `slot`: fills the oldest slot reserved for
    /// the application when the socket is a client with one, else goes to
    /// its send ring as usual.
    pub(super) fn transmit_own(&mut self, slot: SlotIdx, frags: impl IntoIterator<Item = Bytes>) {
        let Some(seq) = self.at_ref(slot).exchange.app_slot() else {
            return self.push_own(slot, frags);
        };
        let p = self.at(slot);
        p.exchange.fill(seq, None, frags.into_iter().collect());
        p.count(|s| &s.local_replies, 1);
        let mut out = Egress::new(slot, Bytes::new());
        self.drain_replies(slot, &mut out);
        out.flush(self);
    }

    /// The upstream's request timer fired.
    pub(super) fn handle_request_timer(&mut self, id: SockId, now: Instant) {
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at(slot);
        match p.exchange.oldest() {
            None => {}
            Some(deadline) if deadline <= now => {
                if let Some(req) = p.exchange.pop_pending() {
                    self.fail_request(req, ReplyError::Timeout);
                }
                self.close(slot, Some(crate::error::Errno::TimedOut));
            }
            Some(deadline) => {
                p.exchange.arm();
                self.timers.set(deadline, Timer::Request(id));
            }
        }
    }

    /// The socket closes: the requests pending on it (an upstream) get
    /// "upstream closed" error replies; its own slots (a client) are dropped.
    pub(super) fn close_exchange(&mut self, slot: SlotIdx) {
        let p = self.at(slot);
        let pending = p.exchange.take_all();
        if p.progs.requests.is_some() || !pending.is_empty() {
            p.gauge(|s| &s.pending_requests, 0);
        }
        for req in pending {
            self.fail_request(req, ReplyError::UpstreamClosed);
        }
    }
}
