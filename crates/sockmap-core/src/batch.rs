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
//! behind its unanswered ones, so per-socket order holds. A batch not
//! answered within `verdict_timeout` of its hand-off gives its items their
//! program's error verdict; its answer is then ignored.
//!
//! A binding copies the batch into one buffer it owns with
//! [`Batch::copy_into`] (the first `peek_bytes` of each message, and one
//! [`ItemDesc`] per message, with the native framer's [`MessageMeta`]),
//! runs the callbacks, and answers the whole batch with one [`Answers`]:
//! one code per item, in item order, plus a small table of redirect targets
//! that the I/O thread looks up once per batch per target; parse results
//! and msg-verdict edits travel beside the codes, tagged with their item's
//! index. [`Answer`] is one item's answer, for callers that build answers
//! one by one (`Vec<Answer>` converts into [`Answers`]).

use bytes::Bytes;
use std::sync::Arc;

use crate::event::Frags;
use crate::framer::{MessageMeta, Parse};
use crate::id::{MapId, SockId};
use crate::key::Key;
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
    /// The native framer's metadata for a stream-verdict item (ranges into
    /// the message bytes); [`MessageMeta::None`] otherwise.
    pub meta: MessageMeta,
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The item's metadata (ranges into the message bytes; a range may end
    /// past `copied`).
    pub meta: MessageMeta,
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
    /// item is handled as a missing answer (the error verdict: its program's
    /// [`ErrorVerdict`](crate::program::ErrorVerdict), DROP by default) and the
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

/// A redirect target of an [`Answers`] table: the socket under `key` in `map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The map.
    pub map: MapId,
    /// The key.
    pub key: Key,
    /// Deliver to the target's application instead of its egress.
    pub ingress: bool,
}

/// The answers to a whole batch.
///
/// `codes[i]` answers item `i`: [`Answers::DROP`], [`Answers::PASS`],
/// [`Answers::REDIRECT`]` + t` (target `t` of `targets`), anything else is
/// an invalid answer (the item gets the error verdict, DROP by default, and
/// the batch one error event); items past `codes` have no answer (the same, counted
/// apart). A parse item's results are the entries of `parse` tagged with its
/// index (`parse_items`), in order; a msg verdict's edits likewise in `edits`
/// (`edit_items`); both sides are sorted by item. The code of a parse item
/// only matters when it is invalid. Each distinct target is looked up once
/// per batch, however many items name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answers {
    /// One code per item, in item order.
    pub codes: Vec<u32>,
    /// The redirect targets the codes name.
    pub targets: Vec<Target>,
    /// Parse results of parse items, in item order.
    pub parse: Vec<Parse>,
    /// The item index of each entry of `parse`.
    pub parse_items: Vec<u32>,
    /// Edits of msg-verdict items, in item order.
    pub edits: Vec<MsgEdit>,
    /// The item index of each entry of `edits`.
    pub edit_items: Vec<u32>,
    /// Local replies the codes name ([`Answers::REPLY`]` + r`, stream verdicts only).
    pub replies: Vec<Bytes>,
    /// Ring routes the codes name ([`Answers::ROUTE`]` + r`): the entry of
    /// `map` the consistent-hash ring gives `key`, on the source socket's
    /// shard when it has one there (what `rules.hashRoute` does); an empty
    /// key has no route.
    pub routes: Vec<Target>,
}

impl Answers {
    /// DROP.
    pub const DROP: u32 = 0;
    /// PASS.
    pub const PASS: u32 = 1;
    /// REDIRECT to target 0 (target `t`: `REDIRECT + t`).
    pub const REDIRECT: u32 = 2;
    /// Answer with `replies[0]` (`replies[r]`: `REPLY + r`): the message is
    /// consumed and the bytes are its reply (in requests mode, its slot;
    /// else written out of the source socket).
    pub const REPLY: u32 = 1 << 29;
    /// Route by `routes[0]` (`routes[r]`: `ROUTE + r`).
    pub const ROUTE: u32 = 1 << 30;
    /// An answer that could not be understood.
    pub const INVALID: u32 = u32::MAX;

    /// Empty answers with room for `items` codes.
    pub fn with_capacity(items: usize) -> Answers {
        Answers {
            codes: Vec::with_capacity(items),
            ..Answers::default()
        }
    }

    /// The code of `target`: its index in the table (added if it is not
    /// there; a linear search, for tables of a few targets) plus
    /// [`Answers::REDIRECT`].
    pub fn target_code(&mut self, target: Target) -> u32 {
        let t = match self.targets.iter().position(|t| *t == target) {
            Some(i) => i,
            None => {
                self.targets.push(target);
                self.targets.len() - 1
            }
        };
        Answers::REDIRECT.saturating_add(u32::try_from(t).unwrap_or(u32::MAX))
    }

    /// The code of `verdict`.
    pub fn code_of(&mut self, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Drop => Answers::DROP,
            Verdict::Pass => Answers::PASS,
            Verdict::Redirect { map, key, ingress } => {
                self.target_code(Target { map, key, ingress })
            }
        }
    }

    /// Answers the next item with `verdict`.
    pub fn push(&mut self, verdict: Verdict) {
        let code = self.code_of(verdict);
        self.codes.push(code);
    }

    /// Answers the next item as invalid.
    pub fn push_invalid(&mut self) {
        self.codes.push(Answers::INVALID);
    }

    /// Answers the next item, a parse item, with `results`.
    pub fn push_parse(&mut self, results: &[Parse]) {
        let i = self.next_index();
        self.parse.extend_from_slice(results);
        self.parse_items.extend(results.iter().map(|_| i));
        self.codes.push(Answers::DROP);
    }

    /// Answers the next item, a msg verdict, with `verdict` after `edits`.
    pub fn push_msg(&mut self, verdict: Verdict, edits: &[MsgEdit]) {
        let i = self.next_index();
        self.edits.extend_from_slice(edits);
        self.edit_items.extend(edits.iter().map(|_| i));
        self.push(verdict);
    }

    fn next_index(&self) -> u32 {
        u32::try_from(self.codes.len()).unwrap_or(u32::MAX)
    }

    /// Answers the next item with `answer`.
    pub fn push_answer(&mut self, answer: Answer) {
        if answer.invalid {
            return self.push_invalid();
        }
        let i = self.next_index();
        self.parse.extend_from_slice(&answer.parse);
        self.parse_items.extend(answer.parse.iter().map(|_| i));
        self.edits.extend_from_slice(&answer.edits);
        self.edit_items.extend(answer.edits.iter().map(|_| i));
        self.push(answer.verdict);
    }
}

impl FromIterator<Answer> for Answers {
    fn from_iter<I: IntoIterator<Item = Answer>>(iter: I) -> Answers {
        let iter = iter.into_iter();
        let mut out = Answers::with_capacity(iter.size_hint().0);
        for a in iter {
            out.push_answer(a);
        }
        out
    }
}

impl From<Vec<Answer>> for Answers {
    fn from(answers: Vec<Answer>) -> Answers {
        answers.into_iter().collect()
    }
}

/// The function a [`Replier`] hands answers to.
type ReplyFn = dyn Fn(u64, Answers) + Send + Sync;

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
    pub(crate) fn new(send: impl Fn(u64, Answers) + Send + Sync + 'static) -> Replier {
        Replier {
            send: Arc::new(send),
        }
    }

    /// Answers batch `batch`: one answer per item, in item order (an
    /// [`Answers`], or a `Vec<Answer>`). Missing answers get the error
    /// verdict (DROP) and an error event.
    pub fn reply(&self, batch: u64, answers: impl Into<Answers>) {
        (self.send)(batch, answers.into());
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
    pub fn reply(self, answers: impl Into<Answers>) {
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
    /// the bytes used. Whole messages lying back to back in one block (a
    /// read's messages) are copied with one copy.
    pub fn copy_each(&self, buf: &mut [u8], mut each: impl FnMut(usize, ItemDesc)) -> usize {
        let desc = |it: &BatchItem, offset: usize, copied: usize| ItemDesc {
            sock: it.sock,
            tag: it.tag,
            kind: it.kind,
            offset,
            copied,
            len: it.len,
            meta: it.meta.clone(),
        };
        let mut off = 0;
        let mut i = 0;
        while i < self.items.len() {
            let (end, src) = self.whole_run(i);
            if end > i + 1 && src.len() <= buf.len() - off {
                buf[off..off + src.len()].copy_from_slice(src);
                for (k, it) in self.items[i..end].iter().enumerate() {
                    each(i + k, desc(it, off, it.len));
                    off += it.len;
                }
                i = end;
                continue;
            }
            let it = &self.items[i];
            let want = self.copy_item(it, &mut buf[off..]);
            each(i, desc(it, off, want));
            off += want;
            i += 1;
        }
        off
    }

    /// The items from `i` on that are whole messages (no longer than their
    /// `peek_bytes`) back to back in one block: the end of the run and the
    /// bytes it covers (an empty run when item `i` is no such message).
    fn whole_run(&self, i: usize) -> (usize, &[u8]) {
        let whole = |it: &BatchItem| match it.data {
            ItemData::Block { block, offset } if it.len <= it.peek_bytes => Some((block, offset)),
            _ => None,
        };
        let Some((block, start)) = self.items.get(i).and_then(whole) else {
            return (i, &[]);
        };
        let mut end = start;
        let mut j = i;
        while let Some(it) = self.items.get(j) {
            match whole(it) {
                Some((b, o)) if b == block && o == end => {
                    end += it.len;
                    j += 1;
                }
                _ => break,
            }
        }
        match self.blocks.get(block).and_then(|b| b.get(start..end)) {
            Some(src) => (j, src),
            None => (i, &[]),
        }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use smallvec::smallvec;

    use super::*;

    fn item(len: usize, peek_bytes: usize, data: ItemData) -> BatchItem {
        BatchItem {
            sock: SockId::from_u64(7),
            tag: 1,
            kind: ItemKind::StreamVerdict,
            len,
            peek_bytes,
            data,
            meta: MessageMeta::None,
        }
    }

    #[test]
    fn copies_runs_of_whole_block_messages_as_each_message_alone() {
        let b0 = Bytes::from((0..100u8).collect::<Vec<u8>>());
        let b1 = Bytes::from((100..160u8).collect::<Vec<u8>>());
        let at = |block, offset| ItemData::Block { block, offset };
        let items = vec![
            item(10, 64, at(0, 0)), // a run of three
            item(5, 64, at(0, 10)),
            item(20, 20, at(0, 15)),
            item(30, 8, at(0, 35)),  // cut by peek_bytes: alone
            item(10, 64, at(0, 65)), // a run of two
            item(25, 64, at(0, 75)),
            item(
                3,
                64,
                ItemData::Frags(smallvec![Bytes::from_static(b"xyz")]),
            ),
            item(40, 64, at(1, 0)), // a run of one, then one of another block
            item(20, 64, at(1, 40)),
            item(1, 64, at(1, 0)), // not after the previous one
        ];
        let batch = Batch {
            id: 1,
            items,
            blocks: vec![b0, b1],
            replier: Replier::new(|_, _| {}),
        };
        let mut buf = vec![0u8; batch.payload_len()];
        let mut descs = Vec::new();
        let used = batch.copy_into(&mut buf, &mut descs);
        // The reference: each item copied on its own.
        let mut want = vec![0u8; batch.payload_len()];
        let mut off = 0;
        for (it, d) in batch.items.iter().zip(&descs) {
            let n = batch.copy_item(it, &mut want[off..]);
            assert_eq!((d.offset, d.copied, d.len), (off, n, it.len));
            off += n;
        }
        assert_eq!((used, descs.len()), (off, batch.items.len()));
        assert_eq!(buf, want);
        // A buffer too short for a run: the items that fit are copied, the rest shortened.
        let mut short = vec![0u8; 12];
        let used = batch.copy_into(&mut short, &mut descs);
        assert_eq!(used, 12);
        assert_eq!(&short[..], &want[..12]);
        assert_eq!(
            descs.iter().map(|d| d.copied).take(3).collect::<Vec<_>>(),
            [10, 2, 0]
        );
    }
}
