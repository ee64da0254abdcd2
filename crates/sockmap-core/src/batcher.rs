//! The batcher: collects the items that await an external answer (a
//! TypeScript verdict, msg verdict or parse) into batches and hands them to
//! the application's [`ExternalVerdicts`].
//!
//! Inputs: [`Batcher::add`] (an item and what it refers to), [`Batcher::dispatch`]
//! (the loop is idle, or a batch filled), [`Batcher::handle_timer`] and
//! [`Batcher::answered`] (a batch's answers came back). Outputs: batches
//! submitted to the sink, deadlines for the core's timer table, and, for an
//! answered batch, the [`ItemRef`]s its answers belong to, in item order.
//! [`Batcher::expire`] times out the batches handed off longer than
//! `verdict_timeout` ago: their items get the error verdict, and an answer
//! that comes for one later is reported as late, not applied.
//!
//! Invariants: at most `max_in_flight` batches await answers; a batch holds
//! at most `max_messages` items; open batches are handed off oldest first
//! (all but the newest are full), so the items of one socket reach the
//! application in the order they were added; the oldest open batch is
//! handed off at the latest `max_delay` after its first item (when room
//! allows); a batch is answered or timed out exactly once; at most one
//! answer deadline is armed at a time (the oldest in-flight batch's, or an
//! earlier one), and the late table keeps at most [`LATE_KEPT`] batches.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::batch::{Batch, BatchItem, ExternalVerdicts, ItemData, ItemKind, Replier};
use crate::config::BatchConfig;
use crate::framer::MessageMeta;
use crate::id::SockId;

/// What one batch item refers to: its socket and a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ItemRef {
    /// An awaited stream verdict: the message's number in the socket's queue.
    Verdict(SockId, u64),
    /// A parse request: its number.
    Parse(SockId, u64),
    /// A msg verdict: the parked send's number.
    Msg(SockId, u64),
}

/// Timed-out batches whose items a late answer is matched against (older
/// ones are forgotten: their late answers are ignored uncounted).
pub(crate) const LATE_KEPT: usize = 16;

/// What an answer for a batch found.
pub(crate) enum BatchAnswer {
    /// The batch was in flight: its items, in order.
    InTime(Vec<ItemRef>),
    /// The batch had timed out: its items, in order (not to be applied).
    Late(Vec<ItemRef>),
    /// No such batch in flight or remembered.
    Unknown,
}

impl ItemRef {
    /// The socket the item belongs to.
    pub(crate) fn sock(self) -> SockId {
        match self {
            ItemRef::Verdict(s, _) | ItemRef::Parse(s, _) | ItemRef::Msg(s, _) => s,
        }
    }
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
    /// The index of `block` among the batch's blocks, added once.
    fn block_index(&mut self, block: &Bytes) -> usize {
        let same = self
            .blocks
            .last()
            .is_some_and(|l| l.as_ptr() == block.as_ptr() && l.len() == block.len());
        if !same {
            self.blocks.push(block.clone());
        }
        self.blocks.len() - 1
    }
}

/// Batches of external items on their way to the application and back.
pub(crate) struct Batcher {
    sink: Box<dyn ExternalVerdicts>,
    replier: Replier,
    cfg: BatchConfig,
    /// Batches not yet handed off, oldest first.
    open: VecDeque<OpenBatch>,
    /// When the oldest open batch got its first item.
    open_since: Option<Instant>,
    in_flight: HashMap<u64, Vec<ItemRef>>,
    /// The answer deadline of each batch handed off, in hand-off order
    /// (answered ones are dropped from the front).
    deadlines: VecDeque<(Instant, u64)>,
    /// The answer deadline the core's timer table holds, if any.
    armed: Option<Instant>,
    /// Timed-out batches, oldest first, at most [`LATE_KEPT`].
    late: VecDeque<(u64, Vec<ItemRef>)>,
    next_id: u64,
    /// Items per batch handed off last: the room a new batch starts with.
    last_len: usize,
}

impl Batcher {
    pub(crate) fn new(
        sink: Box<dyn ExternalVerdicts>,
        replier: Replier,
        cfg: BatchConfig,
    ) -> Batcher {
        Batcher {
            sink,
            replier,
            cfg,
            open: VecDeque::new(),
            open_since: None,
            in_flight: HashMap::new(),
            deadlines: VecDeque::new(),
            armed: None,
            late: VecDeque::new(),
            next_id: 1,
            last_len: 0,
        }
    }

    fn max_messages(&self) -> usize {
        self.cfg.max_messages.max(1)
    }

    /// Adds an item. A block item (`block` given) points into the batch's
    /// copy of that block, added once per batch. Returns a deadline for the
    /// batch timer when one must be armed.
    pub(crate) fn add(
        &mut self,
        r: ItemRef,
        mut item: BatchItem,
        block: Option<&Bytes>,
        now: Instant,
    ) -> Option<Instant> {
        let max = self.max_messages();
        let mut deadline = None;
        let open = self.open_with_room(now, &mut deadline);
        if let (Some(b), ItemData::Block { block: at, .. }) = (block, &mut item.data) {
            *at = open.block_index(b);
        }
        open.items.push(item);
        open.refs.push(r);
        if open.items.len() >= max && self.open.len() == 1 {
            return self.dispatch(now).or(deadline);
        }
        deadline
    }

    /// Adds the whole messages of one block of `sock` (lengths `lens`, back
    /// to back) as stream-verdict items numbered from `first_seq`: the same
    /// as one [`Batcher::add`] per message, with the block registered once
    /// per batch and the items appended in runs.
    pub(crate) fn add_block(
        &mut self,
        sock: SockId,
        (tag, peek_bytes): (u32, usize),
        block: &Bytes,
        lens: &[usize],
        first_seq: u64,
        now: Instant,
    ) -> Option<Instant> {
        let max = self.max_messages();
        let mut deadline = None;
        let (mut i, mut offset) = (0, 0);
        while i < lens.len() {
            let open = self.open_with_room(now, &mut deadline);
            let at = open.block_index(block);
            let n = (max - open.items.len()).min(lens.len() - i);
            for (k, &len) in lens[i..i + n].iter().enumerate() {
                open.items.push(BatchItem {
                    sock,
                    tag,
                    kind: ItemKind::StreamVerdict,
                    len,
                    peek_bytes,
                    data: ItemData::Block { block: at, offset },
                    meta: MessageMeta::None,
                });
                open.refs
                    .push(ItemRef::Verdict(sock, first_seq + (i + k) as u64));
                offset += len;
            }
            i += n;
            if open.items.len() >= max && self.open.len() == 1 {
                deadline = self.dispatch(now).or(deadline);
            }
        }
        deadline
    }

    /// The newest open batch, a new one when there is none or it is full;
    /// the batch timer's deadline goes into `deadline` when the first open
    /// batch starts.
    fn open_with_room(&mut self, now: Instant, deadline: &mut Option<Instant>) -> &mut OpenBatch {
        let max = self.max_messages();
        if self.open.is_empty() {
            self.open_since = Some(now);
            *deadline = deadline.or(Some(now + self.cfg.max_delay));
        }
        if self.open.back().map_or(true, |b| b.items.len() >= max) {
            let room = self.last_len.clamp(1, max);
            self.open.push_back(OpenBatch {
                items: Vec::with_capacity(room),
                refs: Vec::with_capacity(room),
                blocks: Vec::new(),
            });
        }
        self.open.back_mut().expect("pushed")
    }

    /// Hands the oldest open batch off if fewer than `max_in_flight` are
    /// out, and after it every full one that fits. Returns a deadline for
    /// the batch timer when one must be armed.
    pub(crate) fn dispatch(&mut self, now: Instant) -> Option<Instant> {
        let max = self.max_messages();
        let k = self.cfg.max_in_flight.max(1);
        let mut first = true;
        while self.in_flight.len() < k {
            let Some(front) = self.open.front() else {
                break;
            };
            if !first && front.items.len() < max {
                break;
            }
            first = false;
            let open = self.open.pop_front().expect("checked");
            let id = self.next_id;
            self.next_id += 1;
            self.last_len = open.items.len();
            self.in_flight.insert(id, open.refs);
            self.deadlines
                .push_back((now + self.cfg.verdict_timeout, id));
            self.sink.submit(Batch {
                id,
                items: open.items,
                blocks: open.blocks,
                replier: self.replier.clone(),
            });
        }
        if first {
            return None; // nothing handed off: the oldest batch keeps its age
        }
        self.open_since = None;
        if self.open.is_empty() {
            return None;
        }
        self.open_since = Some(now);
        Some(now + self.cfg.max_delay)
    }

    /// Whether items wait in a batch not yet handed off.
    pub(crate) fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// The batch timer fired: hands the open batch off if it is old enough.
    pub(crate) fn handle_timer(&mut self, now: Instant) -> Option<Instant> {
        match self.open_since {
            Some(since) if now >= since + self.cfg.max_delay => self.dispatch(now),
            _ => None,
        }
    }

    /// Answers came back for batch `batch`: what its items referred to, in
    /// order, and whether they came in time.
    pub(crate) fn answered(&mut self, batch: u64) -> BatchAnswer {
        let Some(refs) = self.in_flight.remove(&batch) else {
            return match self.late.iter().position(|(id, _)| *id == batch) {
                Some(i) => BatchAnswer::Late(self.late.remove(i).expect("found").1),
                None => BatchAnswer::Unknown,
            };
        };
        while self
            .deadlines
            .front()
            .is_some_and(|(_, id)| !self.in_flight.contains_key(id))
        {
            self.deadlines.pop_front();
        }
        BatchAnswer::InTime(refs)
    }

    /// The answer deadline to arm in the timer table, when none is armed
    /// and a batch awaits its answer.
    pub(crate) fn answer_deadline(&mut self) -> Option<Instant> {
        if self.armed.is_some() {
            return None;
        }
        self.armed = self.deadlines.front().map(|(at, _)| *at);
        self.armed
    }

    /// Whether no batch awaits its answer; then the armed answer deadline
    /// has no cause and is forgotten (the caller drops it from its timers).
    pub(crate) fn disarm_if_answered(&mut self) -> bool {
        if self.in_flight.is_empty() {
            self.armed = None;
        }
        self.in_flight.is_empty()
    }

    /// The answer deadline fired: takes the batches handed off at least
    /// `verdict_timeout` before `now` and still unanswered, oldest first
    /// (each with its items, in order), and remembers them as late.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(u64, Vec<ItemRef>)> {
        self.armed = None;
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.deadlines.front() {
            if at > now && self.in_flight.contains_key(&id) {
                break;
            }
            self.deadlines.pop_front();
            if let Some(refs) = self.in_flight.remove(&id) {
                out.push((id, refs.clone()));
                if self.late.len() == LATE_KEPT {
                    self.late.pop_front();
                }
                self.late.push_back((id, refs));
            }
        }
        out
    }
}
