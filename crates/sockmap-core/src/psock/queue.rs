//! The queues a psock owns: its send ring, its application queue and its
//! messages awaiting external verdicts, each keeping its own invariants.

use std::collections::VecDeque;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::event::Frags;
use crate::id::SockId;
use crate::ring::SgRing;
use crate::verdict::Resolved;

/// Fragments a send ring holds before it coalesces.
const TX_MAX_FRAGS: usize = 1024;

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
/// Its bytes are the next `len` bytes of the queue's front block, or, with
/// `own`, the queue's front fragment list.
#[derive(Debug)]
struct Awaited {
    len: usize,
    answer: Option<Resolved>,
    own: bool,
    /// A local reply answering the message (`msg.reply`).
    reply: Option<bytes::Bytes>,
}

/// A socket's awaited messages, oldest first, numbered from `base`.
///
/// Messages read together as a block of whole messages share that block:
/// each costs a length and an answer, not a buffer reference of its own.
/// Invariants: `bytes` is the sum of the items' lengths; the items without
/// `own`, in order, tile `blocks` from `block_off` on, each block ending
/// exactly with its last message; the items with `own` have the entries
/// of `frags`, in order.
#[derive(Debug, Default)]
pub(crate) struct AwaitQueue {
    items: VecDeque<Awaited>,
    frags: VecDeque<Frags>,
    blocks: VecDeque<Bytes>,
    block_off: usize,
    base: u64,
    bytes: usize,
}

/// An answered message taken from the front of an [`AwaitQueue`].
pub(crate) enum Answered {
    /// Its own fragments.
    Frags(Frags, usize, Resolved),
    /// `start..end` of the block [`AwaitQueue::pop_answered`] left in `cur`.
    InBlock {
        start: usize,
        end: usize,
        resolved: Resolved,
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
    pub(crate) fn push_frags(&mut self, frags: Frags, len: usize, answer: Option<Resolved>) {
        self.frags.push_back(frags);
        self.items.push_back(Awaited {
            len,
            answer,
            own: true,
            reply: None,
        });
        self.bytes += len;
    }

    /// Queues the messages of a block (lengths `lens`, back to back, tiling it).
    pub(crate) fn push_block(&mut self, block: Bytes, lens: &[usize]) {
        self.bytes += block.len();
        self.blocks.push_back(block);
        self.items.extend(lens.iter().map(|&len| Awaited {
            len,
            answer: None,
            own: false,
            reply: None,
        }));
    }

    /// Records the answer of message `seq` (ignored if it is gone).
    pub(crate) fn answer(&mut self, seq: u64, resolved: Resolved) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        if let Some(a) = self.items.get_mut(i as usize) {
            a.answer = Some(resolved);
        }
    }

    /// Records that message `seq` is answered with a local reply.
    pub(crate) fn answer_reply(&mut self, seq: u64, reply: Bytes) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        if let Some(a) = self.items.get_mut(i as usize) {
            a.answer = Some(Resolved::Pass);
            a.reply = Some(reply);
        }
    }

    /// Takes the reply of the front message, if it was answered with one
    /// (before [`AwaitQueue::pop_answered`] takes the message).
    pub(crate) fn take_reply(&mut self) -> Option<Bytes> {
        let a = self.items.front_mut()?;
        a.answer?;
        a.reply.take()
    }

    /// Takes the front message if it is answered. For a message of a block,
    /// `cur` is made that block (cloned only when it changes).
    pub(crate) fn pop_answered(&mut self, cur: &mut Bytes) -> Option<Answered> {
        let resolved = self.items.front()?.answer?;
        let a = self.items.pop_front().expect("front checked");
        self.base += 1;
        self.bytes -= a.len;
        Some(match a.own {
            true => {
                let frags = self.frags.pop_front().unwrap_or_default();
                Answered::Frags(frags, a.len, resolved)
            }
            false => {
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
        self.frags.clear();
        self.blocks.clear();
        self.block_off = 0;
        std::mem::take(&mut self.bytes)
    }
}
