//! External verdicts on the I/O thread: batching, the in-flight bound,
//! per-socket ordering, answers.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::{Body, Core, Resolved};
use crate::conn::{Awaited, AwaitedBody};
use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::external::{Answer, Batch, BatchItem, ExternalVerdicts, ItemData, ItemKind, Replier};
use crate::id::{MapId, SockId};
use crate::key::Key;
use crate::program::VerdictKind;
use crate::rules::Verdict;
use crate::stats::{DropReason, Stats};
use crate::timer::Timer;

/// Distinct redirect targets remembered while resolving one batch's answers
/// (further ones are looked up per message, under the same lock).
const BATCH_TARGETS: usize = 16;

/// What one batch item refers to: its socket and a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ItemRef {
    /// An awaited stream verdict: the message's number in the socket's queue.
    Verdict(SockId, u64),
    /// A parse request: its number.
    Parse(SockId, u64),
    /// A msg verdict: the parked send's number.
    Msg(SockId, u64),
}

/// A batch being filled (or full, waiting for room among those in flight).
#[derive(Default)]
struct OpenBatch {
    items: Vec<BatchItem>,
    refs: Vec<ItemRef>,
    /// The blocks its block items point into.
    blocks: Vec<Bytes>,
}

impl OpenBatch {
    fn with_capacity(n: usize) -> OpenBatch {
        OpenBatch {
            items: Vec::with_capacity(n),
            refs: Vec::with_capacity(n),
            blocks: Vec::new(),
        }
    }
}

/// The external-verdict state of a core.
pub(crate) struct ExternalState {
    sink: Box<dyn ExternalVerdicts>,
    replier: Replier,
    /// Batches not yet handed off, oldest first: all full but the last
    /// (more than one only while `max_in_flight` batches are out).
    open: VecDeque<OpenBatch>,
    /// When the oldest open batch got its first item.
    open_since: Option<Instant>,
    in_flight: std::collections::HashMap<u64, Vec<ItemRef>>,
    next_id: u64,
    /// Items per batch handed off last: the room a new batch starts with.
    last_len: usize,
}

impl ExternalState {
    pub(crate) fn new(sink: Box<dyn ExternalVerdicts>, replier: Replier) -> ExternalState {
        ExternalState {
            sink,
            replier,
            open: VecDeque::new(),
            open_since: None,
            in_flight: std::collections::HashMap::new(),
            next_id: 1,
            last_len: 0,
        }
    }
}

impl Core {
    /// Installs the application's external verdicts.
    pub(crate) fn set_external(&mut self, sink: Box<dyn ExternalVerdicts>, replier: Replier) {
        self.ext = Some(ExternalState::new(sink, replier));
    }

    /// Queues a message behind the socket's awaited ones. `resolved` is set
    /// when its verdict is already known (a native verdict behind external ones).
    pub(super) fn await_message(
        &mut self,
        slot: usize,
        frags: Frags,
        len: usize,
        ext: Option<(u32, usize)>,
        resolved: Option<Resolved>,
    ) {
        let max_pending = self.cfg.max_pending_bytes;
        let c = self.at(slot);
        let sock = c.id;
        let seq = c.awaiting_base + c.awaiting.len() as u64;
        let item = ext.map(|(tag, peek_bytes)| BatchItem {
            sock,
            tag,
            kind: ItemKind::StreamVerdict,
            len,
            peek_bytes,
            data: ItemData::Frags(frags.clone()),
        });
        c.awaiting.items.push_back(Awaited {
            body: AwaitedBody::Frags(frags),
            len,
            answer: resolved,
        });
        c.awaiting_bytes += len;
        Stats::set(&c.stats.pending_bytes, c.awaiting_bytes as u64);
        if c.awaiting_bytes > max_pending {
            c.ext_full = true;
        }
        match item {
            Some(item) => self.batch_item(ItemRef::Verdict(sock, seq), item),
            None => self.drain_awaited(slot),
        }
    }

    /// The external stream verdict's tag and peek size of `slot`, if it has one.
    pub(super) fn external_verdict(&self, slot: usize) -> Option<(u32, usize)> {
        let c = self.conns[slot].as_ref()?;
        match c.progs.verdict.as_deref().map(|p| &p.kind) {
            Some(VerdictKind::External { tag, peek_bytes }) => Some((*tag, *peek_bytes)),
            _ => None,
        }
    }

    /// Queues a block of whole messages (lengths `lens`, back to back) of a
    /// socket with an external stream verdict `(tag, peek_bytes)`: each
    /// message is one batch item pointing into the shared block.
    pub(super) fn await_block(
        &mut self,
        slot: usize,
        block: Bytes,
        lens: &[usize],
        (tag, peek_bytes): (u32, usize),
    ) {
        let max_pending = self.cfg.max_pending_bytes;
        let c = self.at(slot);
        c.count(|s| &s.messages_in, lens.len() as u64);
        let sock = c.id;
        let first_seq = c.awaiting_base + c.awaiting.len() as u64;
        c.awaiting.blocks.push_back(block.clone());
        c.awaiting.items.extend(lens.iter().map(|&len| Awaited {
            body: AwaitedBody::InBlock,
            len,
            answer: None,
        }));
        c.awaiting_bytes += block.len();
        Stats::set(&c.stats.pending_bytes, c.awaiting_bytes as u64);
        if c.awaiting_bytes > max_pending {
            c.ext_full = true;
        }
        let mut offset = 0;
        for (seq, &len) in (first_seq..).zip(lens) {
            let item = BatchItem {
                sock,
                tag,
                kind: ItemKind::StreamVerdict,
                len,
                peek_bytes,
                data: ItemData::Block { block: 0, offset },
            };
            self.batch_item_in(ItemRef::Verdict(sock, seq), item, Some(&block));
            offset += len;
        }
    }

    /// Adds an item (with its own fragments) to the open batch.
    pub(super) fn batch_item(&mut self, r: ItemRef, item: BatchItem) {
        self.batch_item_in(r, item, None);
    }

    /// Adds an item to the open batch (a new one when it is full). A block
    /// item (`block` given) points into the batch's copy of that block,
    /// added once per batch.
    fn batch_item_in(&mut self, r: ItemRef, mut item: BatchItem, block: Option<&Bytes>) {
        let max = self.cfg.batch.max_messages.max(1);
        let delay = self.cfg.batch.max_delay;
        let now = self.now;
        let Some(ext) = self.ext.as_mut() else {
            // No external side installed: the error answer.
            return self.answer_missing(r);
        };
        if ext.open.is_empty() {
            ext.open_since = Some(now);
            self.timers.set(now + delay, Timer::Batch);
        }
        let ext = self.ext.as_mut().expect("checked");
        if ext.open.back().map_or(true, |b| b.items.len() >= max) {
            ext.open
                .push_back(OpenBatch::with_capacity(ext.last_len.clamp(1, max)));
        }
        let open = ext.open.back_mut().expect("pushed");
        if let (Some(b), ItemData::Block { block: at, .. }) = (block, &mut item.data) {
            let same = open
                .blocks
                .last()
                .is_some_and(|l| l.as_ptr() == b.as_ptr() && l.len() == b.len());
            if !same {
                open.blocks.push(b.clone());
            }
            *at = open.blocks.len() - 1;
        }
        open.items.push(item);
        open.refs.push(r);
        let (full, waiting) = (open.items.len() >= max, ext.open.len());
        if full && waiting == 1 {
            self.dispatch();
        }
    }

    /// Hands the oldest open batch off if fewer than `max_in_flight` are
    /// out, and after it every full one that fits.
    pub(super) fn dispatch(&mut self) {
        let max = self.cfg.batch.max_messages.max(1);
        let k = self.cfg.batch.max_in_flight.max(1);
        let now = self.now;
        let delay = self.cfg.batch.max_delay;
        let Some(ext) = self.ext.as_mut() else { return };
        let mut first = true;
        while ext.in_flight.len() < k {
            let Some(front) = ext.open.front() else { break };
            if !first && front.items.len() < max {
                break;
            }
            first = false;
            let open = ext.open.pop_front().expect("checked");
            let id = ext.next_id;
            ext.next_id += 1;
            ext.last_len = open.items.len();
            ext.in_flight.insert(id, open.refs);
            let batch = Batch {
                id,
                items: open.items,
                blocks: open.blocks,
                replier: ext.replier.clone(),
            };
            ext.sink.submit(batch);
        }
        if first {
            return; // nothing handed off: the oldest batch keeps its age
        }
        ext.open_since = None;
        if !ext.open.is_empty() {
            ext.open_since = Some(now);
            self.timers.set(now + delay, Timer::Batch);
        }
    }

    /// The batch timer fired: hand the open batch off if it is old enough.
    pub(super) fn handle_batch_timer(&mut self, now: Instant) {
        let delay = self.cfg.batch.max_delay;
        if let Some(since) = self.ext.as_ref().and_then(|e| e.open_since) {
            if now >= since + delay {
                self.dispatch();
            }
        }
    }

    /// Answers came back for a batch.
    pub fn handle_answers(&mut self, batch: u64, answers: Vec<Answer>) {
        let Some(refs) = self.ext.as_mut().and_then(|e| e.in_flight.remove(&batch)) else {
            return;
        };
        let resolved = self.resolve_answers(&refs, &answers);
        let mut answers = answers.into_iter().zip(resolved);
        let mut missing = 0usize;
        // Consecutive verdicts of one socket are recorded, then applied together.
        let mut settle: Option<SockId> = None;
        for r in refs {
            let next = match r {
                ItemRef::Verdict(sock, _) => Some(sock),
                _ => None,
            };
            if settle.is_some() && settle != next {
                self.settle(settle.take());
            }
            match answers.next() {
                Some((a, v)) => self.answer_item(r, a, v),
                None => {
                    missing += 1;
                    self.answer_missing(r);
                }
            }
            settle = next;
        }
        self.settle(settle);
        if missing > 0 {
            self.events.push_back(Event::Error {
                sock: None,
                code: Errno::Inval,
                detail: format!("batch {batch}: {missing} messages had no answer and were dropped"),
                fatal: false,
            });
        }
        self.dispatch();
    }

    /// Resolves the verdicts of a batch's answers (`None` for parse items)
    /// under one registry lock, looking each distinct redirect target up
    /// once: a batch redirecting to a few targets costs a lock and a few
    /// lookups, not one of each per message.
    fn resolve_answers(&self, refs: &[ItemRef], answers: &[Answer]) -> Vec<Option<Resolved>> {
        let judged = |r: &ItemRef| !matches!(r, ItemRef::Parse(..));
        let redirects = refs
            .iter()
            .zip(answers)
            .any(|(r, a)| judged(r) && matches!(a.verdict, Verdict::Redirect { .. }));
        let reg = redirects.then(|| self.shared.lock());
        let mut seen: SmallVec<[(MapId, &Key, Option<SockId>); BATCH_TARGETS]> = SmallVec::new();
        refs.iter()
            .zip(answers)
            .map(|(r, a)| {
                let Verdict::Redirect { map, key, ingress } = &a.verdict else {
                    return judged(r)
                        .then(|| super::resolve_local(&a.verdict))
                        .flatten();
                };
                if !judged(r) {
                    return None;
                }
                let found = match seen.iter().find(|(m, k, _)| m == map && *k == key) {
                    Some(&(_, _, found)) => found,
                    None => {
                        let found = reg.as_ref().and_then(|g| {
                            g.lookup_raw(*map, crate::rules::DerivedKey::from_key(key).raw())
                        });
                        if seen.len() < BATCH_TARGETS {
                            seen.push((*map, key, found));
                        }
                        found
                    }
                };
                Some(super::redirect_to(found, *ingress))
            })
            .collect()
    }

    /// Applies one answer; `resolved` is its verdict with the target looked up.
    fn answer_item(&mut self, r: ItemRef, a: Answer, resolved: Option<Resolved>) {
        let resolved = resolved.unwrap_or(Resolved::Drop(DropReason::Verdict));
        match r {
            ItemRef::Verdict(sock, seq) => self.answer_one(sock, seq, resolved),
            ItemRef::Parse(sock, req) => self.handle_parse_answer(sock, req, &a.parse),
            ItemRef::Msg(sock, seq) => self.handle_msg_answer(sock, seq, Some((a, resolved))),
        }
    }

    /// An item got no answer: the error answer.
    fn answer_missing(&mut self, r: ItemRef) {
        match r {
            ItemRef::Verdict(sock, seq) => {
                self.answer_one(sock, seq, Resolved::Drop(DropReason::Verdict));
            }
            ItemRef::Parse(sock, req) => self.handle_parse_answer(sock, req, &[]),
            ItemRef::Msg(sock, seq) => self.handle_msg_answer(sock, seq, None),
        }
    }

    /// Applies what the answers recorded for `sock` allow, in order, and
    /// finishes its read side if everything it read is judged.
    fn settle(&mut self, sock: Option<SockId>) {
        if let Some(slot) = sock.and_then(|s| self.slot_of(s)) {
            self.drain_awaited(slot);
            self.finish_read(slot);
        }
    }

    /// Records the answer of message `seq` of `sock` (applied by `settle`).
    fn answer_one(&mut self, sock: SockId, seq: u64, resolved: Resolved) {
        let Some(slot) = self.slot_of(sock) else {
            return;
        };
        let c = self.at(slot);
        let Some(i) = seq.checked_sub(c.awaiting_base) else {
            return;
        };
        if let Some(a) = c.awaiting.items.get_mut(i as usize) {
            a.answer = Some(resolved);
        }
    }

    /// Applies the socket's answered messages from the front, in order.
    /// Messages of a shared block are applied as ranges of it, and those
    /// redirected to an egress are gathered per target (see [`Staged`]):
    /// a drain of many small messages to a few targets queues a fragment or
    /// two per target, not one per message.
    fn drain_awaited(&mut self, slot: usize) {
        self.flush_run();
        let outer = std::mem::take(&mut self.chunk);
        let mut staged: SmallVec<[Staged; STAGED_TARGETS]> = SmallVec::new();
        loop {
            let c = self.at(slot);
            if !c.awaiting.items.front().is_some_and(|a| a.answer.is_some()) {
                break;
            }
            let a = c.awaiting.items.pop_front().expect("checked");
            c.awaiting_base += 1;
            c.awaiting_bytes -= a.len;
            let resolved = a.answer.expect("checked");
            let body = match a.body {
                AwaitedBody::Frags(frags) => Body::Frags(frags),
                AwaitedBody::InBlock => {
                    let chunk = &self.chunk;
                    let front = self.conns[slot]
                        .as_ref()
                        .and_then(|c| c.awaiting.blocks.front());
                    let current = front
                        .is_some_and(|b| b.as_ptr() == chunk.as_ptr() && b.len() == chunk.len());
                    if !current {
                        let b = front.cloned().unwrap_or_default();
                        self.unstage(slot, &mut staged);
                        self.run_flush_to(b);
                    }
                    match self.at(slot).awaiting.consume_in_block(a.len) {
                        Some((start, end)) => Body::Chunk { start, end },
                        // Unreachable: a block holds its messages.
                        None => Body::Frags(Frags::new()),
                    }
                }
            };
            if let (Body::Chunk { start, end }, Some(ts)) = (&body, self.live_egress(resolved)) {
                self.stage(slot, &mut staged, ts, *start, *end);
                continue;
            }
            self.unstage(slot, &mut staged);
            self.apply(slot, resolved, body, a.len);
        }
        self.unstage(slot, &mut staged);
        let c = self.at(slot);
        Stats::set(&c.stats.pending_bytes, c.awaiting_bytes as u64);
        self.run_flush_to(outer);
        let max_pending = self.cfg.max_pending_bytes;
        let c = self.at(slot);
        if c.ext_full && c.awaiting_bytes <= max_pending / 2 {
            c.ext_full = false;
            self.kick_read(slot);
        }
    }

    /// The slot of an egress redirect's target that can take bytes.
    fn live_egress(&self, resolved: Resolved) -> Option<usize> {
        let Resolved::Redirect {
            target,
            ingress: false,
        } = resolved
        else {
            return None;
        };
        let ts = self.slot_of(target)?;
        self.conns[ts]
            .as_ref()
            .is_some_and(|t| t.is_egress_target())
            .then_some(ts)
    }

    /// Gathers the message at `start..end` of the current chunk, redirected
    /// by `slot` to the live egress `ts`.
    fn stage(
        &mut self,
        slot: usize,
        staged: &mut SmallVec<[Staged; STAGED_TARGETS]>,
        ts: usize,
        start: usize,
        end: usize,
    ) {
        let Some(i) = staged.iter().position(|s| s.target == ts) else {
            if staged.len() == STAGED_TARGETS {
                let oldest = staged.remove(0);
                self.unstage_one(slot, oldest);
            }
            staged.push(Staged {
                target: ts,
                messages: 1,
                bytes: StagedBytes::Range { start, end },
            });
            return;
        };
        let s = &mut staged[i];
        let small = end - start <= STAGE_COPY_MAX;
        match &mut s.bytes {
            StagedBytes::Range { end: e, .. } if *e == start => *e = end,
            StagedBytes::Range { start: s0, end: e } if small && *e - *s0 <= STAGE_COPY_MAX => {
                let mut copy = BytesMut::with_capacity(STAGE_COPY_CAPACITY);
                copy.extend_from_slice(&self.chunk[*s0..*e]);
                copy.extend_from_slice(&self.chunk[start..end]);
                s.bytes = StagedBytes::Copy(copy);
            }
            StagedBytes::Copy(copy) if small && copy.len() < STAGE_FLUSH => {
                copy.extend_from_slice(&self.chunk[start..end]);
            }
            _ => {
                let done = std::mem::replace(
                    s,
                    Staged {
                        target: ts,
                        messages: 0,
                        bytes: StagedBytes::Range { start, end },
                    },
                );
                self.unstage_one(slot, done);
            }
        }
        staged[i].messages += 1;
    }

    /// Queues every gathered message on its target's egress.
    fn unstage(&mut self, slot: usize, staged: &mut SmallVec<[Staged; STAGED_TARGETS]>) {
        for s in staged.drain(..) {
            self.unstage_one(slot, s);
        }
    }

    fn unstage_one(&mut self, slot: usize, s: Staged) {
        let body = match s.bytes {
            StagedBytes::Range { start, end } => Body::Chunk { start, end },
            StagedBytes::Copy(b) => Body::Frags(smallvec::smallvec![b.freeze()]),
        };
        self.redirect_egress(slot, s.target, s.messages, body);
    }
}

/// Distinct egress targets gathered at once while draining a socket's answers.
const STAGED_TARGETS: usize = 4;
/// Messages up to this size, and runs up to it, are copied together when they
/// are not adjacent (a fragment per message costs more than the copy).
const STAGE_COPY_MAX: usize = 1024;
/// The first allocation of a gathered copy.
const STAGE_COPY_CAPACITY: usize = 16 * 1024;
/// A gathered copy goes to its target once it holds this many bytes.
const STAGE_FLUSH: usize = 256 * 1024;

/// Answered messages of one socket headed to one egress (`target`, a live
/// egress), in order: adjacent ones as one range of the current chunk,
/// small scattered ones copied into one buffer.
struct Staged {
    target: usize,
    messages: u64,
    bytes: StagedBytes,
}

enum StagedBytes {
    /// `start..end` of the current chunk.
    Range { start: usize, end: usize },
    /// The messages' bytes, copied.
    Copy(BytesMut),
}

impl Core {
    /// Flushes the pending run and makes `chunk` the current chunk.
    fn run_flush_to(&mut self, chunk: Bytes) {
        self.flush_run();
        self.chunk = chunk;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::config::{BatchConfig, EngineConfig};
    use crate::core::NewSock;
    use crate::engine::{Doorbell, Wake};
    use crate::framer::LengthFieldOptions;
    use crate::map::{MapKind, UpdateFlag};
    use crate::program::{ParserKind, ParserProg, Programs, StreamVerdictProg, VerdictKind};
    use crate::registry::{Shared, SockState};

    struct Sink(Sender<Batch>);

    impl ExternalVerdicts for Sink {
        fn submit(&mut self, batch: Batch) {
            let _ = self.0.send(batch);
        }
    }

    struct NoWake;

    impl Wake for NoWake {
        fn wake(&self) {}
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
        let shared = Arc::new(Shared::default());
        let (src, targets, ups) = {
            let mut reg = shared.lock();
            let gw = reg.create_map(MapKind::SockHash, 8).unwrap();
            let ups = reg.create_map(MapKind::SockHash, 8).unwrap();
            let parser = framed.then(|| {
                Arc::new(ParserProg::new(ParserKind::LengthField(
                    LengthFieldOptions::default(),
                )))
            });
            let progs = Programs {
                parser,
                verdict: Some(Arc::new(StreamVerdictProg {
                    kind: VerdictKind::External { tag: 1, peek_bytes },
                    propagate_fin: true,
                })),
                ..Programs::default()
            };
            reg.attach(gw, progs).unwrap();
            let src = reg.alloc(SockState::Established);
            let targets = [
                reg.alloc(SockState::Established),
                reg.alloc(SockState::Established),
            ];
            reg.update(gw, &Key::Num(0), src, UpdateFlag::Any).unwrap();
            for (i, t) in targets.iter().enumerate() {
                reg.update(ups, &Key::Num(i as u64), *t, UpdateFlag::Any)
                    .unwrap();
            }
            (src, targets, ups)
        };
        let cfg = EngineConfig {
            batch,
            ..EngineConfig::default()
        };
        let mut core = Core::new(shared.clone(), cfg);
        let (tx, rx) = channel();
        let (cmd_tx, _cmd_rx) = channel();
        let replier = Replier {
            tx: cmd_tx,
            bell: Arc::new(Doorbell::new(Box::new(NoWake))),
        };
        core.set_external(Box::new(Sink(tx)), replier);
        for id in [src, targets[0], targets[1]] {
            core.handle_new_socket(id, NewSock::Established, None);
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
    fn a_batch_of_redirects_locks_the_registry_once_not_per_message() {
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
        let answers: Vec<Answer> = batch
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
        assert!(locks <= 2, "{locks} registry locks for {N} answers");
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
            let got = r.core.at(slot).tx.to_vec();
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
}
