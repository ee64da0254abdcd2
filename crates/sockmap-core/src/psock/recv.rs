//! The receive path: bytes read from a socket, through its stream parser and
//! stream verdict, to PASS, DROP or REDIRECT.
//!
//! ```text
//! handle_received ─ ingest ─ run_parser ─┬─ deliver_block (whole messages by boundary)
//!                                        └─ deliver (one message)
//!                     verdict::decide ── apply / apply_run ── Egress::push (egress.rs)
//! ```
//!
//! A message's body is a value that carries its bytes: its own fragments,
//! or a range of an explicit block ([`Body::Range`]). Bytes redirected to
//! egresses while one read is handled are gathered by an [`Egress`] value
//! created for that read and flushed before it returns.
//!
//! **Boundary-only delivery**: when a socket's framer finds whole messages
//! from their bytes alone ([`Framer::scan_whole`](crate::framer::Framer::scan_whole))
//! and its stream verdict is a native rule other than a function (or none),
//! the messages lying whole in a read are taken as one block with their
//! lengths ([`StrParser::take_whole`](crate::strparser::StrParser::take_whole)):
//! no per-message buffer, fragment list or event is built. Each message is
//! judged on its bytes in place by the same [`decide`] as any other; once the
//! verdict holds for every message of the socket, the rest of the block is
//! judged once and counted in bulk ([`Core::apply_run`]). Under an external
//! stream verdict the block's messages await their verdicts as ranges of
//! the block. Bytes, order, counters and backpressure are those of the
//! per-message path.

use bytes::Bytes;
use smallvec::smallvec;

use super::body::Body;
use super::egress::Egress;
use super::slot::SlotIdx;
use super::Core;
use crate::event::Frags;
use crate::framer::MessageMeta;
use crate::id::SockId;
use crate::program::VerdictKind;
use crate::rules::MsgBytes;
use crate::rules::Rule;
use crate::stats::DropReason;
use crate::strparser::Event as StrpEvent;
use crate::timer::Timer;
use crate::verdict::{decide, Message, Resolved};

impl Core {
    /// Bytes were read from the socket at `now`.
    pub fn handle_received(&mut self, id: SockId, data: Bytes, now: std::time::Instant) {
        let Some(slot) = self.slot_of(id) else { return };
        self.now = now;
        if self.at_ref(slot).tls.is_some() {
            // TLS: ciphertext; its plaintext comes back through `receive_plain` (psock/tls.rs).
            return self.tls_received(slot, &data);
        }
        self.receive_plain(slot, data);
    }

    /// Plaintext received: counted, through the parser and verdict.
    pub(super) fn receive_plain(&mut self, slot: SlotIdx, data: Bytes) {
        self.at(slot).count(|s| &s.bytes_in, data.len() as u64);
        let mut out = Egress::new(slot, data.clone());
        self.ingest(slot, data, &mut out);
        out.flush(self);
    }

    /// Routes received bytes: through the socket's parser, to its
    /// application (after a hand-back), or on as one message.
    pub(super) fn ingest(&mut self, slot: SlotIdx, data: Bytes, out: &mut Egress) {
        let now = self.now;
        let p = self.at(slot);
        let len = data.len();
        if p.parser.handed_back {
            return self.queue_for_app(Some(self.at_ref(slot).id()), slot, smallvec![data], len);
        }
        match p.parser.strp.as_mut() {
            Some(s) => {
                s.handle_data(data, now);
                self.run_parser(slot, out);
            }
            None => self.deliver(slot, smallvec![data], len, &MessageMeta::None, out),
        }
    }

    /// Delivers every message the socket's parser can frame now.
    pub(super) fn run_parser(&mut self, slot: SlotIdx, out: &mut Egress) {
        let now = self.now;
        let Some(mut strp) = self.at(slot).parser.strp.take() else {
            return;
        };
        let by_boundary = self.judges_by_boundary(slot);
        loop {
            loop {
                self.hold_requests(slot, &mut strp);
                if by_boundary {
                    if let Some(block) = strp.take_whole(&mut self.lens) {
                        self.deliver_block(slot, block, out);
                    }
                }
                let Some(ev) = strp.poll_event(now) else {
                    break;
                };
                match ev {
                    StrpEvent::Message(m) => self.deliver(slot, m.frags, m.len, &m.meta, out),
                    StrpEvent::Skipped(n) => {
                        let p = self.at(slot);
                        p.count(|s| &s.skipped_frames, 1);
                        p.count(|s| &s.skipped_bytes, n as u64);
                    }
                    StrpEvent::Handback { rest, .. } => {
                        let p = self.at(slot);
                        p.parser.handed_back = true;
                        p.set_hold(super::state::Hold::Parser, false);
                        p.count(|s| &s.handbacks, 1);
                        for b in rest {
                            let len = b.len();
                            self.queue_for_app(
                                Some(self.at_ref(slot).id()),
                                slot,
                                smallvec![b],
                                len,
                            );
                        }
                        self.kick_read(slot);
                        return;
                    }
                    StrpEvent::Error(e) => {
                        self.at(slot).count(|s| &s.parser_errors, 1);
                        self.close(slot, Some(e));
                        return;
                    }
                }
            }
            if !(strp.is_pending() && self.feed_external(slot, &mut strp)) {
                break;
            }
        }
        if strp.is_pending() {
            self.ask_external(slot, &strp);
        }
        let max_pending = self.cfg.max_pending_bytes;
        let deadline = strp.poll_timeout();
        let buffered = strp.buffered_bytes();
        let p = self.at(slot);
        let id = p.id();
        p.parser.strp = Some(strp);
        self.tell_forwarded(slot);
        let p = self.at(slot);
        if let Some(d) = deadline {
            if p.parser.timer.map_or(true, |t| d < t) {
                p.parser.timer = Some(d);
                self.timers.set(d, Timer::Parser(id));
            }
        }
        let p = self.at(slot);
        let full = p.parser.is_asking() && buffered > max_pending;
        if p.set_hold(super::state::Hold::Parser, full) && !full {
            self.kick_read(slot);
        }
    }

    /// Whether the messages of `slot` may be judged by their boundaries: its
    /// stream verdict is external (every message awaits its verdict in
    /// order anyway), or a native rule other than a function (or none) with
    /// no earlier message waiting for an external verdict.
    fn judges_by_boundary(&self, slot: SlotIdx) -> bool {
        let p = self.at_ref(slot);
        if p.is_closing() {
            return false;
        }
        match p.progs.verdict.as_deref().map(|v| &v.kind) {
            Some(VerdictKind::External { .. }) => true,
            Some(VerdictKind::Rule(Rule::Func(_))) => false,
            None | Some(VerdictKind::Rule(_)) => p.awaiting.is_empty(),
        }
    }

    /// Runs the socket's stream verdict on one message.
    pub(super) fn decide(&mut self, slot: SlotIdx, msg: &Message<'_>) -> (Resolved, bool) {
        let Core { socks, maps, .. } = self;
        let p = socks[slot.get()].as_mut().expect("live");
        let id = p.id();
        let sni = p.sni.as_deref();
        decide(p.progs.verdict.as_deref(), &mut p.route, maps, id, sni, msg)
    }

    /// One message came out of the socket's parser (or one datagram was received).
    pub(super) fn deliver(
        &mut self,
        slot: SlotIdx,
        frags: Frags,
        len: usize,
        meta: &MessageMeta,
        out: &mut Egress,
    ) {
        let p = self.at(slot);
        p.count(|s| &s.messages_in, 1);
        let msg = Message {
            bytes: MsgBytes::Frags(&frags),
            len,
            meta,
        };
        if let MessageMeta::Tls { sni: Some(r) } = meta {
            // The ClientHello of a passed-through stream: its name routes every later record.
            if p.sni.is_none() {
                p.sni = msg
                    .bytes
                    .meta_range(r)
                    .map(|k| Bytes::from(k.bytes().to_ascii_lowercase()));
            }
        }
        let external = self.external_verdict(slot);
        if external.is_none()
            && self.at(slot).awaiting.is_empty()
            && self.is_client(slot)
            && self.plan_request(slot, &frags, len, meta, out)
        {
            return;
        }
        if external.is_some() || !self.at(slot).awaiting.is_empty() {
            let known = external.is_none().then(|| self.decide(slot, &msg).0);
            return self.await_message(slot, frags, len, meta, external, known, out);
        }
        let (resolved, _) = self.decide(slot, &msg);
        self.apply(slot, resolved, Body::Frags(frags), len, out);
    }

    /// Delivers the whole messages of `block`, one after the other, whose
    /// lengths are `self.lens` (filled by the strparser).
    fn deliver_block(&mut self, slot: SlotIdx, block: Bytes, out: &mut Egress) {
        let lens = std::mem::take(&mut self.lens);
        match self.external_verdict(slot) {
            Some(ext) => self.await_block(slot, block, &lens, ext),
            None => {
                self.at(slot).count(|s| &s.messages_in, lens.len() as u64);
                let mut start = 0;
                for (i, &len) in lens.iter().enumerate() {
                    let msg = Message {
                        bytes: MsgBytes::Range(&block, start, start + len),
                        len,
                        meta: &MessageMeta::None,
                    };
                    let (resolved, fixed) = self.decide(slot, &msg);
                    if fixed {
                        self.apply_run(slot, resolved, &block, start, &lens[i..], out);
                        break;
                    }
                    let body = Body::Range(&block, start, start + len);
                    self.apply(slot, resolved, body, len, out);
                    start += len;
                }
            }
        }
        self.lens = lens;
    }

    /// The external stream verdict's tag and peek size of `slot`, if it has one.
    pub(super) fn external_verdict(&self, slot: SlotIdx) -> Option<(u32, usize)> {
        match self.at_ref(slot).progs.verdict.as_deref().map(|v| &v.kind) {
            Some(VerdictKind::External { tag, peek_bytes }) => Some((*tag, *peek_bytes)),
            _ => None,
        }
    }

    /// `target`'s slot, if it can take redirected bytes now: on its egress
    /// (open for writing) or, with `ingress`, for its application.
    pub(super) fn live_target(&self, target: SockId, ingress: bool) -> Option<SlotIdx> {
        self.slot_of(target).filter(|&ts| {
            let t = self.at_ref(ts);
            if ingress {
                t.is_ingress_target()
            } else {
                t.is_egress_target()
            }
        })
    }

    /// Carries out a verdict on one message of `slot`.
    pub(super) fn apply(
        &mut self,
        slot: SlotIdx,
        resolved: Resolved,
        body: Body<'_>,
        len: usize,
        out: &mut Egress,
    ) {
        let (resolved, body) = match self.is_client(slot) {
            true => match self.request(slot, resolved, body, len, out) {
                Some(r) => r,
                None => return,
            },
            false => (resolved, body),
        };
        let from = match self.is_dgram(slot) {
            true => self.take_rx_from(slot),
            false => None,
        };
        match resolved {
            Resolved::Reply => self.take_reply(slot, body, len, out),
            Resolved::Pass => {
                self.at(slot).count(|s| &s.passed, 1);
                let src = Some(self.at_ref(slot).id());
                match from {
                    Some(from) => {
                        self.queue_datagram_for_app(src, slot, body.into_frags(), len, from)
                    }
                    None => self.queue_for_app(src, slot, body.into_frags(), len),
                }
            }
            Resolved::Drop(reason) => self.at(slot).count_drops(reason, 1, len),
            Resolved::Redirect { target, ingress } if self.is_remote(target) => {
                self.push_remote(slot, target, ingress, 1, body.into_frags());
            }
            Resolved::Redirect { target, ingress } => {
                let Some(ts) = self.live_target(target, ingress) else {
                    return self.at(slot).count_drops(DropReason::DeadTarget, 1, len);
                };
                if ingress {
                    self.at(slot).count(|s| &s.redirected_ingress, 1);
                    self.queue_for_app(Some(self.at_ref(slot).id()), ts, body.into_frags(), len);
                } else {
                    out.push(self, ts, 1, body);
                }
            }
        }
    }

    /// Carries out one verdict for consecutive messages of `block` starting
    /// at `start`, with lengths `lens`: counted in bulk, and moved as one
    /// range when they go to one egress.
    fn apply_run(
        &mut self,
        slot: SlotIdx,
        resolved: Resolved,
        block: &Bytes,
        start: usize,
        lens: &[usize],
        out: &mut Egress,
    ) {
        if self.is_client(slot) {
            return self.apply_requests_run(slot, resolved, block, start, lens, out);
        }
        let count = lens.len() as u64;
        let total: usize = lens.iter().sum();
        match resolved {
            Resolved::Drop(reason) => self.at(slot).count_drops(reason, count, total),
            Resolved::Redirect {
                target,
                ingress: false,
            } if self.is_remote(target) => {
                let frags = smallvec![block.slice(start..start + total)];
                self.push_remote(slot, target, false, count, frags);
            }
            Resolved::Redirect {
                target,
                ingress: false,
            } => match self.slot_of(target) {
                // Each message one datagram: not moved as one range.
                Some(ts) if self.is_dgram(ts) => {
                    self.apply_each(slot, resolved, block, start, lens, out)
                }
                Some(ts) if self.at_ref(ts).is_egress_target() => {
                    out.push(self, ts, count, Body::Range(block, start, start + total));
                }
                _ => self
                    .at(slot)
                    .count_drops(DropReason::DeadTarget, count, total),
            },
            Resolved::Pass | Resolved::Reply | Resolved::Redirect { ingress: true, .. } => {
                self.apply_each(slot, resolved, block, start, lens, out);
            }
        }
    }

    /// [`Core::apply_run`] for a client in requests mode: a run forwarded to
    /// an upstream that answers requests moves as one range (each request
    /// with its slot); any other verdict is carried out message by message.
    fn apply_requests_run(
        &mut self,
        slot: SlotIdx,
        resolved: Resolved,
        block: &Bytes,
        start: usize,
        lens: &[usize],
        out: &mut Egress,
    ) {
        let total: usize = lens.iter().sum();
        if let Resolved::Redirect {
            target,
            ingress: false,
        } = resolved
        {
            if let Some(ts) = self.local_request_target(target) {
                let p = self.at(slot);
                if !p.is_closing() {
                    let body = Body::Range(block, start, start + total);
                    return self.forward(slot, ts, lens, body, out);
                }
            }
        }
        self.apply_each(slot, resolved, block, start, lens, out);
    }

    /// Carries out one verdict for consecutive messages of `block`, one at a time.
    fn apply_each(
        &mut self,
        slot: SlotIdx,
        resolved: Resolved,
        block: &Bytes,
        start: usize,
        lens: &[usize],
        out: &mut Egress,
    ) {
        let mut at = start;
        for &len in lens {
            self.apply(slot, resolved, Body::Range(block, at, at + len), len, out);
            at += len;
        }
    }
}
