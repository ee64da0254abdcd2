//! External verdicts answered: messages awaiting a TypeScript verdict, and
//! the answers applied to them in order.
//!
//! A socket with an external stream verdict queues every message in its
//! [`AwaitQueue`](super::state::AwaitQueue) and hands it to the
//! [`Batcher`](crate::batcher::Batcher); a socket with a native verdict
//! queues there too while earlier messages await, so its messages keep their
//! order. A batch comes back as one [`Answers`]: each distinct target is
//! looked up once, then each item's code is recorded for its message and
//! the answered messages are applied from the front of the queue, as far as
//! they go, through the same [`Core::apply`] as every other verdict;
//! messages of a shared block are applied as ranges of it.

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::body::Body;
use super::egress::{offset_in, Egress};
use super::queue::Answered;
use super::slot::SlotIdx;
use super::state::Hold;
use super::Core;
use crate::batch::{Answers, BatchItem, ItemData, ItemKind};
use crate::batcher::{BatchAnswer, Batcher, ItemRef};
use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::framer::{MessageMeta, Parse};
use crate::id::SockId;
use crate::program::ErrorVerdict;
use crate::stats::DropReason;
use crate::timer::Timer;
use crate::verdict::{resolve_route, resolve_target, Resolved};

/// The entries of a side stream (`items`: the item index of each, sorted)
/// that belong to item `i`, from the cursor `at` on; moves the cursor past them.
fn item_span(items: &[u32], at: &mut usize, i: usize) -> Range<usize> {
    while items.get(*at).is_some_and(|&k| (k as usize) < i) {
        *at += 1;
    }
    let start = *at;
    while items.get(*at).is_some_and(|&k| k as usize == i) {
        *at += 1;
    }
    start..*at
}

/// What an item gets when its external verdict fails.
pub(super) fn error_verdict(on_error: ErrorVerdict) -> Resolved {
    match on_error {
        ErrorVerdict::Drop => Resolved::Drop(DropReason::Verdict),
        ErrorVerdict::Pass => Resolved::Pass,
    }
}

impl Core {
    /// Queues a message behind the socket's awaited ones. `resolved` is set
    /// when its verdict is already known (a native verdict behind external
    /// ones); `external` is the external verdict's tag and peek size, and
    /// `meta` the framer's metadata its item carries.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn await_message(
        &mut self,
        slot: SlotIdx,
        frags: Frags,
        len: usize,
        meta: &MessageMeta,
        external: Option<(u32, usize)>,
        resolved: Option<Resolved>,
        out: &mut Egress,
    ) {
        let p = self.at(slot);
        let sock = p.id();
        let seq = p.awaiting.next_seq();
        // A message lying in the read's chunk points into it: the batch
        // holds the chunk once, not a reference per message.
        let in_chunk = match frags.as_slice() {
            [f] if f.len() == len => offset_in(out.chunk(), f),
            _ => None,
        };
        let item = external.map(|(tag, peek_bytes)| BatchItem {
            sock,
            tag,
            kind: ItemKind::StreamVerdict,
            len,
            peek_bytes,
            data: match in_chunk {
                Some(offset) => ItemData::Block { block: 0, offset },
                None => ItemData::Frags(frags.clone()),
            },
            meta: meta.clone(),
        });
        p.awaiting.push_frags(frags, len, resolved);
        self.after_await(slot);
        match item {
            Some(item) => {
                let block = in_chunk.map(|_| out.chunk());
                self.batch_item(ItemRef::Verdict(sock, seq), item, block);
            }
            None => self.drain_awaited(slot, out),
        }
    }

    /// Queues a block of whole messages (lengths `lens`, back to back) of a
    /// socket with an external stream verdict `(tag, peek_bytes)`: each
    /// message is one batch item pointing into the shared block.
    pub(super) fn await_block(
        &mut self,
        slot: SlotIdx,
        block: Bytes,
        lens: &[usize],
        (tag, peek_bytes): (u32, usize),
    ) {
        let p = self.at(slot);
        p.count(|s| &s.messages_in, lens.len() as u64);
        let sock = p.id();
        let first_seq = p.awaiting.next_seq();
        p.awaiting.push_block(block.clone(), lens);
        self.after_await(slot);
        let now = self.now;
        let Some(b) = self.batcher.as_mut() else {
            for seq in first_seq..first_seq + lens.len() as u64 {
                self.answer_missing(ItemRef::Verdict(sock, seq));
            }
            return;
        };
        let at = b.add_block(sock, (tag, peek_bytes), &block, lens, first_seq, now);
        self.batch_timers(at);
    }

    /// Arms the batch timer at `at` (when given) and, when a batch was
    /// handed off and no answer deadline is armed, the answer deadline.
    pub(super) fn batch_timers(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.timers.set(at, Timer::Batch);
        }
        if let Some(at) = self.batcher.as_mut().and_then(Batcher::answer_deadline) {
            self.timers.set(at, Timer::Answers);
        }
    }

    /// The answer deadline fired: every batch unanswered for the verdict
    /// timeout gives its items the error verdict (parse items `ETIMEDOUT`),
    /// in item order, counted on their sockets and reported once per batch.
    pub(super) fn expire_batches(&mut self, now: Instant) {
        let expired = self
            .batcher
            .as_mut()
            .map(|b| b.expire(now))
            .unwrap_or_default();
        for (batch, refs) in expired {
            let items = refs.len();
            let mut socks: SmallVec<[SockId; 8]> = SmallVec::new();
            for r in refs {
                let sock = r.sock();
                if let Some(slot) = self.slot_of(sock) {
                    self.at(slot).count(|s| &s.verdict_timeouts, 1);
                }
                match r {
                    ItemRef::Parse(sock, req) => {
                        self.handle_parse_answer(sock, req, &[Parse::Error(Errno::TimedOut)]);
                    }
                    r => self.answer_missing(r),
                }
                if !socks.contains(&sock) {
                    socks.push(sock);
                }
            }
            for sock in socks {
                self.settle(Some(sock));
            }
            let ms = self.cfg.batch.verdict_timeout.as_millis();
            self.events.push_back(Event::Error {
                sock: None,
                code: Errno::TimedOut,
                detail: format!(
                    "batch {batch}: no answer within {ms} ms; its {items} items got the error verdict"
                ),
            });
        }
        self.handle_idle();
    }

    /// Publishes the awaited bytes and stops reading above the bound.
    fn after_await(&mut self, slot: SlotIdx) {
        let max_pending = self.cfg.max_pending_bytes;
        let p = self.at(slot);
        let bytes = p.awaiting.bytes();
        p.gauge(|s| &s.pending_bytes, bytes);
        if bytes > max_pending {
            p.set_hold(Hold::Awaiting, true);
        }
    }

    /// Hands an item to the batcher (arming its timer when asked); without
    /// one installed, the item gets the error answer at once.
    pub(super) fn batch_item(&mut self, r: ItemRef, item: BatchItem, block: Option<&Bytes>) {
        let now = self.now;
        let Some(b) = self.batcher.as_mut() else {
            return self.answer_missing(r);
        };
        let at = b.add(r, item, block, now);
        self.batch_timers(at);
    }

    /// Answers came back for a batch: one code per item, each distinct
    /// redirect target looked up once.
    pub fn handle_answers(&mut self, batch: u64, answers: Answers) {
        let refs = match self.batcher.as_mut().map(|b| b.answered(batch)) {
            Some(BatchAnswer::InTime(refs)) => refs,
            Some(BatchAnswer::Late(refs)) => {
                for r in refs {
                    if let Some(slot) = self.slot_of(r.sock()) {
                        self.at(slot).count(|s| &s.verdicts_late, 1);
                    }
                }
                return;
            }
            _ => return,
        };
        let targets: SmallVec<[Resolved; 16]> = answers
            .targets
            .iter()
            .map(|t| resolve_target(&self.maps, t))
            .collect();
        let (mut missing, mut invalid) = (0usize, 0usize);
        let (mut parse_at, mut edit_at) = (0usize, 0usize);
        // Consecutive verdicts of one socket are recorded, then applied together.
        let mut settle: Option<SockId> = None;
        for (i, r) in refs.into_iter().enumerate() {
            let next = match r {
                ItemRef::Verdict(sock, _) => Some(sock),
                _ => None,
            };
            if settle.is_some() && settle != next {
                self.settle(settle.take());
            }
            settle = next;
            let Some(&code) = answers.codes.get(i) else {
                missing += 1;
                self.answer_missing(r);
                continue;
            };
            let mut reply = None;
            let verdict = match code {
                Answers::DROP => Some(Resolved::Drop(DropReason::Verdict)),
                Answers::PASS => Some(Resolved::Pass),
                Answers::INVALID => None,
                c if c >= Answers::ROUTE => {
                    match (answers.routes.get((c - Answers::ROUTE) as usize), r) {
                        (Some(t), ItemRef::Verdict(sock, _) | ItemRef::Msg(sock, _)) => {
                            Some(resolve_route(&mut self.maps, t, sock))
                        }
                        _ => None,
                    }
                }
                c if c >= Answers::REPLY => {
                    match (answers.replies.get((c - Answers::REPLY) as usize), r) {
                        (Some(b), ItemRef::Verdict(..)) => {
                            reply = Some(b.clone());
                            Some(Resolved::Pass)
                        }
                        _ => None,
                    }
                }
                c => c
                    .checked_sub(Answers::REDIRECT)
                    .and_then(|t| targets.get(t as usize))
                    .copied(),
            };
            let Some(verdict) = verdict else {
                invalid += 1;
                self.answer_missing(r);
                continue;
            };
            match r {
                ItemRef::Verdict(sock, seq) => match reply {
                    Some(b) => {
                        if let Some(slot) = self.slot_of(sock) {
                            self.at(slot).awaiting.answer_reply(seq, b);
                        }
                    }
                    None => self.answer_one(sock, seq, verdict),
                },
                ItemRef::Parse(sock, req) => {
                    let span = item_span(&answers.parse_items, &mut parse_at, i);
                    self.handle_parse_answer(sock, req, &answers.parse[span]);
                }
                ItemRef::Msg(sock, seq) => {
                    let span = item_span(&answers.edit_items, &mut edit_at, i);
                    let edits = &answers.edits[span];
                    self.handle_msg_answer(sock, seq, Some((edits, verdict)));
                }
            }
        }
        self.settle(settle);
        if missing > 0 {
            self.events.push_back(Event::Error {
                sock: None,
                code: Errno::Inval,
                detail: format!(
                    "batch {batch}: {missing} messages had no answer and got the error verdict"
                ),
            });
        }
        if invalid > 0 {
            self.events.push_back(Event::Error {
                sock: None,
                code: Errno::Inval,
                detail: format!(
                    "batch {batch}: {invalid} answers were invalid and got the error verdict"
                ),
            });
        }
        self.handle_idle();
    }

    /// An item got no answer: the error answer (its program's error verdict).
    fn answer_missing(&mut self, r: ItemRef) {
        match r {
            ItemRef::Verdict(sock, seq) => {
                let on_error = self.slot_of(sock).and_then(|slot| {
                    let prog = self.at_ref(slot).progs.verdict.as_deref()?;
                    Some(prog.on_error)
                });
                self.answer_one(sock, seq, error_verdict(on_error.unwrap_or_default()));
            }
            ItemRef::Parse(sock, req) => self.handle_parse_answer(sock, req, &[]),
            ItemRef::Msg(sock, seq) => self.handle_msg_answer(sock, seq, None),
        }
    }

    /// Records the answer of message `seq` of `sock` (applied by `settle`).
    fn answer_one(&mut self, sock: SockId, seq: u64, resolved: Resolved) {
        if let Some(slot) = self.slot_of(sock) {
            self.at(slot).awaiting.answer(seq, resolved);
        }
    }

    /// Applies what the answers recorded for `sock` allow, in order, and
    /// finishes its read side if everything it read is judged.
    fn settle(&mut self, sock: Option<SockId>) {
        if let Some(slot) = sock.and_then(|s| self.slot_of(s)) {
            let mut out = Egress::new(slot, Bytes::new());
            self.drain_awaited(slot, &mut out);
            out.flush(self);
            self.finish_read(slot);
        }
    }

    /// Applies the socket's answered messages from the front, in order.
    fn drain_awaited(&mut self, slot: SlotIdx, out: &mut Egress) {
        let mut block = Bytes::new();
        loop {
            let reply = self.at(slot).awaiting.take_reply();
            let Some(a) = self.at(slot).awaiting.pop_answered(&mut block) else {
                break;
            };
            if let Some(reply) = reply {
                self.local_reply(slot, reply, out);
                continue;
            }
            match a {
                Answered::Frags(frags, len, resolved) => {
                    self.apply(slot, resolved, Body::Frags(frags), len, out);
                }
                Answered::InBlock {
                    start,
                    end,
                    resolved,
                } => {
                    let body = Body::Range(&block, start, end);
                    self.apply(slot, resolved, body, end - start, out);
                }
            }
        }
        let max_pending = self.cfg.max_pending_bytes;
        let p = self.at(slot);
        let bytes = p.awaiting.bytes();
        p.gauge(|s| &s.pending_bytes, bytes);
        if p.is_held(Hold::Awaiting) && bytes <= max_pending / 2 {
            p.set_hold(Hold::Awaiting, false);
            self.kick_read(slot);
        }
    }
}
#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::batch::{Answer, Batch, ExternalVerdicts, Replier};
    use crate::config::{BatchConfig, EngineConfig};
    use crate::key::Key;
    use crate::psock::NewSock;
    use crate::rules::Verdict;

    use super::super::egress::STAGE_COPY_MAX;
    use crate::framer::LengthFieldOptions;
    use crate::id::MapId;
    use crate::map::{MapKind, UpdateFlag};
    use crate::program::{ParserKind, ParserProg, Programs, StreamVerdictProg, VerdictKind};
    use crate::registry::{Shared, SockState};

    struct Sink(Sender<Batch>);

    impl ExternalVerdicts for Sink {
        fn submit(&mut self, batch: Batch) {
            let _ = self.0.send(batch);
        }
    }

    /// A core with a source socket whose map has an external verdict (and,
    /// with `framed`, a 4-byte length-prefix parser) and two upstream
    /// targets in `ups` under keys 0 and 1.
    struct Rig {
        core: Core,
        shared: Arc<Shared>,
        src: SockId,
        targets: [SockId; 2],
        ups: MapId,
        rx: std::sync::mpsc::Receiver<Batch>,
    }

    fn rig(batch: BatchConfig, framed: bool, peek_bytes: usize) -> Rig {
        rig_with(batch, framed, |_| VerdictKind::External {
            tag: 1,
            peek_bytes,
        })
    }

    /// [`rig`] with the stream verdict `verdict(ups)`.
    fn rig_with(
        batch: BatchConfig,
        framed: bool,
        verdict: impl FnOnce(MapId) -> VerdictKind,
    ) -> Rig {
        let shared = Arc::new(Shared::default());
        let (src, targets, ups) = {
            let mut reg = shared.lock();
            let gw = reg.create_map(MapKind::SockHash, 8).unwrap();
            let ups = reg.create_map(MapKind::SockHash, 8).unwrap();
            let kind = verdict(ups);
            let parser = framed.then(|| {
                Arc::new(ParserProg::new(ParserKind::LengthField(
                    LengthFieldOptions::default(),
                )))
            });
            let progs = Programs {
                parser,
                verdict: Some(Arc::new(StreamVerdictProg {
                    kind,
                    on_error: Default::default(),
                    propagate_fin: true,
                })),
                ..Programs::default()
            };
            reg.attach(gw, progs).unwrap();
            let src = reg.alloc(SockState::Established, 0);
            let targets = [
                reg.alloc(SockState::Established, 0),
                reg.alloc(SockState::Established, 0),
            ];
            reg.update(gw, &Key::Num(0), src, UpdateFlag::Any, &Default::default())
                .unwrap();
            for (i, t) in targets.iter().enumerate() {
                reg.update(
                    ups,
                    &Key::Num(i as u64),
                    *t,
                    UpdateFlag::Any,
                    &Default::default(),
                )
                .unwrap();
            }
            (src, targets, ups)
        };
        let now = Instant::now();
        let cfg = EngineConfig {
            batch,
            ..EngineConfig::default()
        };
        let mut core = Core::new(shared.clone(), cfg, 0, now);
        let (tx, rx) = channel();
        let replier = Replier::new(|_, _| {});
        core.set_external(Box::new(Sink(tx)), replier);
        for id in [src, targets[0], targets[1]] {
            core.handle_new_socket(id, NewSock::Established, None);
        }
        let changes: Vec<_> = shared.lock().take_changes().collect();
        for change in changes {
            core.handle_map_change(change);
        }
        core.handle_relink(src);
        Rig {
            core,
            shared,
            src,
            targets,
            ups,
            rx,
        }
    }

    #[test]
    fn a_batch_of_redirects_takes_no_registry_lock() {
        const N: usize = 1024;
        let batch = BatchConfig {
            max_messages: N,
            max_in_flight: 1,
            ..BatchConfig::default()
        };
        let Rig {
            mut core,
            shared,
            src,
            targets,
            ups,
            rx,
        } = rig(batch, false, 1);
        let now = Instant::now();
        for i in 0..N {
            core.handle_received(src, Bytes::from(vec![(i % 2) as u8]), now);
        }
        let batch = rx.try_recv().expect("a full batch was handed off");
        assert_eq!(batch.items.len(), N);
        let answers: Answers = batch
            .items
            .iter()
            .map(|it| {
                Answer::from(Verdict::Redirect {
                    map: ups,
                    key: Key::Num(u64::from(batch.bytes(it).next().unwrap()[0])),
                    ingress: false,
                })
            })
            .collect();
        let before = shared.locks.load(Ordering::Relaxed);
        core.handle_answers(batch.id, answers);
        let locks = shared.locks.load(Ordering::Relaxed) - before;
        assert_eq!(locks, 0, "{locks} registry locks for {N} answers");
        let reg = shared.lock();
        let s = reg.sock(src).unwrap().stats.snapshot();
        assert_eq!((s.redirected_egress, s.dropped), (N as u64, 0));
        for t in targets {
            let q = reg.sock(t).unwrap().stats.snapshot().queued_bytes;
            assert_eq!(q, (N / 2) as u64);
        }
    }

    /// Frames of a 4-byte big-endian length prefix and a payload whose first
    /// byte says where it goes (0, 1: that target; 2 pass; 3 drop), of
    /// sizes from tiny to above the copy threshold.
    fn frames() -> Vec<Vec<u8>> {
        (0..600usize)
            .map(|i| {
                let len = match i % 7 {
                    0 => 1,
                    3 => STAGE_COPY_MAX + 100,
                    _ => 5 + i % 50,
                };
                let route = match i % 11 {
                    5 => 2,
                    9 => 3,
                    _ => (i / 3 % 2) as u8,
                };
                let mut f = (len as u32).to_be_bytes().to_vec();
                f.push(route);
                f.extend((1..len).map(|j| (i + j) as u8));
                f
            })
            .collect()
    }

    /// Answers every batch handed off so far, in order, by the frame's
    /// route byte; then lets the core hand off its open batch.
    fn answer_all(r: &mut Rig) {
        while let Ok(b) = r.rx.try_recv() {
            let answers = b
                .items
                .iter()
                .map(|it| match b.bytes(it).flatten().nth(4) {
                    Some(&t @ (0 | 1)) => Answer::from(Verdict::Redirect {
                        map: r.ups,
                        key: Key::Num(u64::from(t)),
                        ingress: false,
                    }),
                    Some(2) => Answer::from(Verdict::Pass),
                    _ => Answer::from(Verdict::Drop),
                })
                .collect();
            r.core.handle_answers(b.id, answers);
        }
        r.core.handle_idle();
    }

    #[test]
    fn blocks_of_answered_messages_reach_each_target_byte_exact_in_order() {
        let batch = BatchConfig {
            max_messages: 64,
            max_in_flight: 2,
            ..BatchConfig::default()
        };
        let mut r = rig(batch, true, 1);
        let frames = frames();
        let stream: Vec<u8> = frames.concat();
        let now = Instant::now();
        // Reads of uneven sizes: whole-message blocks and messages split across reads.
        let mut at = 0;
        for (i, size) in [1usize, 3000, 17, 40_000, 5, 9000]
            .iter()
            .cycle()
            .enumerate()
        {
            if at >= stream.len() || i > 10_000 {
                break;
            }
            let end = (at + size).min(stream.len());
            r.core
                .handle_received(r.src, Bytes::copy_from_slice(&stream[at..end]), now);
            at = end;
            answer_all(&mut r);
        }
        for _ in 0..100 {
            answer_all(&mut r);
        }
        let want = |route: u8| -> Vec<u8> {
            frames
                .iter()
                .filter(|f| f[4] == route)
                .flatten()
                .copied()
                .collect()
        };
        for (t, id) in r.targets.iter().enumerate() {
            let slot = r.core.slot_of(*id).unwrap();
            let got = r.core.at(slot).ring.ring().to_vec();
            assert_eq!(got, want(t as u8), "target {t}");
        }
        let mut passed = Vec::new();
        while let Some(ev) = r.core.poll_event() {
            if let Event::Message { sock, data } = ev {
                assert_eq!(sock, r.src);
                passed.extend(data.iter().flat_map(|b| b.iter().copied()));
            }
        }
        assert_eq!(passed, want(2));
        let count = |route: u8| frames.iter().filter(|f| f[4] == route).count() as u64;
        let reg = r.shared.lock();
        let s = reg.sock(r.src).unwrap().stats.snapshot();
        assert_eq!(
            (
                s.messages_in,
                s.redirected_egress,
                s.passed,
                s.dropped_verdict,
                s.pending_bytes
            ),
            (600, count(0) + count(1), count(2), count(3), 0)
        );
    }

    #[test]
    fn native_verdicts_keyed_by_message_bytes_take_no_registry_lock() {
        const N: usize = 1000;
        let mut r = rig_with(BatchConfig::default(), true, |ups| {
            VerdictKind::Rule(crate::rules::Rule::HashRoute {
                map: ups,
                key: crate::rules::KeySource::Range { offset: 4, len: 1 },
                ingress: false,
                hash_tag: None,
            })
        });
        let frames: Vec<u8> = (0..N).flat_map(|i| [0, 0, 0, 2, i as u8, 0xab]).collect();
        let before = r.shared.locks.load(Ordering::Relaxed);
        let now = Instant::now();
        for piece in frames.chunks(999) {
            r.core
                .handle_received(r.src, Bytes::copy_from_slice(piece), now);
        }
        let locks = r.shared.locks.load(Ordering::Relaxed) - before;
        assert_eq!(locks, 0, "{locks} registry locks for {N} messages");
        let reg = r.shared.lock();
        let s = reg.sock(r.src).unwrap().stats.snapshot();
        assert_eq!(
            (s.messages_in, s.redirected_egress, s.dropped),
            (N as u64, N as u64, 0)
        );
        let queued: u64 = r
            .targets
            .iter()
            .map(|t| reg.sock(*t).unwrap().stats.snapshot().queued_bytes)
            .sum();
        assert_eq!(queued, frames.len() as u64);
    }
}
