//! External verdicts: decisions made outside the I/O thread (the TypeScript
//! callbacks), answered asynchronously in batches.
//!
//! The engine collects the messages whose socket has an external verdict into
//! a [`Batch`] (at most `max_messages`, handed off at the latest `max_delay`
//! after its first message), gives it to the application's
//! [`ExternalVerdicts`] and goes on with other sockets. The answer comes back
//! through [`Batch::reply`] (or a [`Replier`] kept after the batch was
//! dropped) from any thread, and wakes the I/O thread. At most
//! `max_in_flight` batches await answers; a socket's later messages wait
//! behind its unanswered ones, so per-socket order holds.
//!
//! A binding copies the batch into one buffer it owns with
//! [`Batch::copy_into`] (the first `peek_bytes` of each message, and one
//! [`ItemDesc`] per message), runs the callbacks, and answers with one
//! [`Answer`] per item, in item order.

use std::sync::Arc;

use crate::event::Frags;
use crate::framer::Parse;
use crate::id::SockId;
use crate::rules::Verdict;

/// The application's side of external verdicts.
pub trait ExternalVerdicts: Send + 'static {
    /// Takes a batch. Runs on the I/O thread: hand the batch off and return
    /// at once (never block, never wait for an answer here).
    fn submit(&mut self, batch: Batch);

    /// Another sink for one more shard (I/O thread), whose batches reach the
    /// same application; `None` (the default) limits the engine to one shard.
    fn fork(&self) -> Option<Box<dyn ExternalVerdicts>> {
        None
    }
}

/// What a batch item asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ItemKind {
    /// A stream verdict on a received message: answer with [`Answer::verdict`].
    #[default]
    StreamVerdict,
    /// A parse of a socket's buffered bytes, starting at its current message:
    /// answer with [`Answer::parse`], one result per consecutive message
    /// (`Length` of the first, then of the one after it, ... ending with
    /// `NeedMore` if the bytes end inside a message).
    Parse,
    /// A msg verdict on data the application sends: answer with
    /// [`Answer::verdict`] and [`Answer::edits`].
    MsgVerdict,
}

/// One message (or, for a parse, the buffered bytes) awaiting an external answer.
#[derive(Clone, Debug)]
pub struct BatchItem {
    /// The socket the message came from.
    pub sock: SockId,
    /// The program's tag (which external function to run).
    pub tag: u32,
    /// What is asked.
    pub kind: ItemKind,
    /// The full message length.
    pub len: usize,
    /// How many leading bytes the program wants to see.
    pub peek_bytes: usize,
    /// Where the message bytes are (shared with the engine, not copied):
    /// read them with [`Batch::bytes`].
    pub data: ItemData,
}

/// Where a batch item's bytes are.
#[derive(Clone, Debug)]
pub enum ItemData {
    /// In these fragments.
    Frags(Frags),
    /// At `offset..offset + len` of the batch's block number `block`
    /// (messages read together share one block).
    Block {
        /// Index into the batch's blocks.
        block: usize,
        /// Offset of the message in the block.
        offset: usize,
    },
}

/// Where one item's bytes sit in the buffer filled by [`Batch::copy_into`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemDesc {
    /// The source socket.
    pub sock: SockId,
    /// The program's tag.
    pub tag: u32,
    /// What is asked.
    pub kind: ItemKind,
    /// Offset of the copied bytes in the buffer.
    pub offset: usize,
    /// Bytes copied (`min(len, peek_bytes)`).
    pub copied: usize,
    /// The full message length.
    pub len: usize,
}

/// A msg verdict's edits, applied in order before its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgEdit {
    /// `apply_bytes(n)`.
    Apply(u32),
    /// `cork_bytes(n)`.
    Cork(u32),
    /// `pull(start, end)`.
    Pull(u32, u32),
    /// `push(start, len)`.
    Push(u32, u32),
    /// `pop(start, len)`.
    Pop(u32, u32),
}

/// The answer for one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The verdict (verdict items; ignored for parse items).
    pub verdict: Verdict,
    /// Edits (msg verdicts only; ignored otherwise).
    pub edits: Vec<MsgEdit>,
    /// Parse results (parse items only): one per consecutive message from the
    /// current one. `Length(n)` frames `n` bytes (the next result starts after
    /// them); `NeedMore { hint }` waits for more bytes (`hint`: the total the
    /// current message needs); `Handback`, `Skip` and `Error` as for native
    /// framers. Results past the bytes the item carried are ignored; an empty
    /// list aborts the socket with `EINVAL`.
    pub parse: Vec<Parse>,
    /// The external side's answer for this item could not be understood (an
    /// unknown verdict code, a redirect to a target it did not describe): the
    /// item is handled as a missing answer (the error verdict, DROP) and the
    /// batch reports how many were invalid in one error event. `verdict`,
    /// `edits` and `parse` are then DROP and empty.
    pub invalid: bool,
}

impl Default for Answer {
    /// DROP, no edits, no parse results.
    fn default() -> Answer {
        Answer::from(Verdict::Drop)
    }
}

impl Answer {
    /// An answer that could not be understood: `invalid` set, DROP.
    pub fn invalid() -> Answer {
        Answer {
            invalid: true,
            ..Answer::default()
        }
    }

    /// The answer to a parse item.
    pub fn parsed(parse: Vec<Parse>) -> Answer {
        Answer {
            parse,
            ..Answer::default()
        }
    }
}

impl From<Verdict> for Answer {
    fn from(verdict: Verdict) -> Answer {
        Answer {
            verdict,
            edits: Vec::new(),
            parse: Vec::new(),
            invalid: false,
        }
    }
}

/// The function a [`Replier`] hands answers to.
type ReplyFn = dyn Fn(u64, Vec<Answer>) + Send + Sync;

/// Sends answers back to the I/O thread; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Replier {
    send: Arc<ReplyFn>,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Replier")
    }
}

impl Replier {
    /// A replier that hands answers to `send` (the engine queues them for its I/O thread).
    pub(crate) fn new(send: impl Fn(u64, Vec<Answer>) + Send + Sync + 'static) -> Replier {
        Replier {
            send: Arc::new(send),
        }
    }

    /// Answers batch `batch`: one answer per item, in item order. Missing
    /// answers get the error verdict (DROP) and an error event.
    pub fn reply(&self, batch: u64, answers: Vec<Answer>) {
        (self.send)(batch, answers);
    }
}

/// Messages awaiting external verdicts.
#[derive(Debug)]
pub struct Batch {
    /// The batch number, to answer with.
    pub id: u64,
    /// The messages, oldest first per socket.
    pub items: Vec<BatchItem>,
    /// Received blocks of whole messages that items point into.
    pub blocks: Vec<bytes::Bytes>,
    pub(crate) replier: Replier,
}

impl Batch {
    /// A handle to answer this batch after dropping it.
    pub fn replier(&self) -> Replier {
        self.replier.clone()
    }

    /// Answers the batch.
    pub fn reply(self, answers: Vec<Answer>) {
        self.replier.reply(self.id, answers);
    }

    /// The bytes of `item` (an item of this batch), in order; a block item
    /// whose block or range is not in this batch has none.
    pub fn bytes<'a>(&'a self, item: &'a BatchItem) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (frags, block): (&[bytes::Bytes], Option<&[u8]>) = match &item.data {
            ItemData::Frags(f) => (f, None),
            ItemData::Block { block, offset } => {
                let b = self
                    .blocks
                    .get(*block)
                    .and_then(|b| b.get(*offset..offset.checked_add(item.len)?));
                (&[], Some(b.unwrap_or_default()))
            }
        };
        block.into_iter().chain(frags.iter().map(|f| &f[..]))
    }

    /// The bytes [`Batch::copy_into`] needs to copy every item whole: the
    /// sum of `min(len, peek_bytes)`.
    pub fn payload_len(&self) -> usize {
        self.items.iter().map(|it| it.len.min(it.peek_bytes)).sum()
    }

    /// Copies each item's first `peek_bytes` into `buf`, back to back, and
    /// describes each in `descs` (cleared first). Returns the bytes used;
    /// items that don't fit get `copied` shortened (possibly to 0).
    pub fn copy_into(&self, buf: &mut [u8], descs: &mut Vec<ItemDesc>) -> usize {
        descs.clear();
        self.copy_each(buf, |_, d| descs.push(d))
    }

    /// [`copy_into`](Batch::copy_into) handing each item's description to
    /// `each` (with the item's index) instead of collecting them. Returns
    /// the bytes used.
    pub fn copy_each(&self, buf: &mut [u8], mut each: impl FnMut(usize, ItemDesc)) -> usize {
        let mut off = 0;
        for (i, it) in self.items.iter().enumerate() {
            let want = self.copy_item(it, &mut buf[off..]);
            each(
                i,
                ItemDesc {
                    sock: it.sock,
                    tag: it.tag,
                    kind: it.kind,
                    offset: off,
                    copied: want,
                    len: it.len,
                },
            );
            off += want;
        }
        off
    }

    /// Copies the first `min(len, peek_bytes)` bytes of `it` into `buf`
    /// (fewer if `buf` is shorter); returns how many.
    pub fn copy_item(&self, it: &BatchItem, buf: &mut [u8]) -> usize {
        let want = it.len.min(it.peek_bytes).min(buf.len());
        let mut at = 0;
        for f in self.bytes(it) {
            if at == want {
                break;
            }
            let n = (want - at).min(f.len());
            buf[at..at + n].copy_from_slice(&f[..n]);
            at += n;
        }
        at
    }
}
