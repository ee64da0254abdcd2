//! TypeScript verdicts and parsers in batches: the engine's external interface on the binding side.
//!
//! The I/O thread hands a batch to [`JsVerdicts::submit`], which parks it in the engine's inbox and wakes JavaScript
//! (the same coalesced wake-up as events). On the JS thread, `takeBatch` copies the batch's bytes (the first
//! `peekBytes` of each message; every buffered byte of a parse request) and its descriptors into buffers JavaScript
//! allocated once and reuses, with the native framer's metadata of each message (offsets into its copied bytes) in a
//! reused `Int32Array`; JavaScript runs the callbacks and writes one answer code per item into a reused `Int32Array`,
//! plus, for parse and msg-verdict items, their parse results and edits into a reused `Float64Array`; `answerBatch`
//! turns them into one engine [`Answers`] for the whole batch (the codes copied as they are, the small target table
//! converted once) and sends it back through the engine's channel, which wakes the I/O thread. Nothing here waits:
//! the I/O thread never blocks on JavaScript, and JavaScript never waits for the I/O thread.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use sockmap_core::batch::{Answers, Batch, ExternalVerdicts, ItemKind, MsgEdit, Target};
use sockmap_core::framer::{MessageMeta, Parse};
use sockmap_core::{Errno, Key, MapId};

use crate::binding_error::{error_of, Result};
use crate::binding_lock::lock;
use crate::binding_wake::Waker;

/// Batches handed off by the I/O thread, waiting for JavaScript.
pub(crate) type Inbox = Arc<Mutex<VecDeque<Batch>>>;

/// The engine's external-verdict sink: parks batches and wakes JavaScript (driven inline, the driver calls
/// JavaScript itself after the turn, so there is no waker).
pub(crate) struct JsVerdicts {
    pub(crate) inbox: Inbox,
    pub(crate) waker: Option<Arc<Waker>>,
}

impl ExternalVerdicts for JsVerdicts {
    fn submit(&mut self, batch: Batch) {
        lock(&self.inbox).push_back(batch);
        if let Some(w) = &self.waker {
            w.wake();
        }
    }

    fn fork(&self) -> Option<Box<dyn ExternalVerdicts>> {
        Some(Box::new(JsVerdicts {
            inbox: self.inbox.clone(),
            waker: self.waker.clone(),
        }))
    }
}

/// The batch JavaScript is answering (its items say what each answer is for).
struct Taken {
    batch: Batch,
}

/// The batches on the JS thread's side: those waiting to be taken, and the one JavaScript is answering.
#[derive(Default)]
pub(crate) struct Batches {
    pub(crate) inbox: Inbox,
    taken: Mutex<Option<Taken>>,
}

/// The numbers describing one item in the descriptor array, at these offsets from `i * DESC_STRIDE`.
#[napi]
pub enum DescField {
    /// The source socket.
    Sock = 0,
    /// The program's tag (which TypeScript function to run).
    Tag = 1,
    /// A [`BatchItemKind`].
    Kind = 2,
    /// Offset of the item's bytes in the payload buffer.
    Offset = 3,
    /// Bytes copied.
    Copied = 4,
    /// The full message length.
    Len = 5,
}

/// Numbers per item in the descriptor array.
#[napi]
pub const DESC_STRIDE: u32 = DescField::Len as u32 + 1;

/// The numbers describing one item's metadata in the metadata array, at these offsets from `i * META_STRIDE`. A
/// field is a start offset into the item's copied bytes and a length; a start of -1 means the message has no such
/// field or its bytes end past the bytes copied (`peekBytes`).
#[napi]
pub enum MetaField {
    /// A [`MetaKind`].
    Kind = 0,
    /// RESP: the command name; HTTP: the method; TLS: the ClientHello's server name.
    AStart = 1,
    /// The length of field A.
    ALen = 2,
    /// RESP: the first key; HTTP: the request target.
    BStart = 3,
    /// The length of field B.
    BLen = 4,
    /// HTTP: the `Host` header's value.
    CStart = 5,
    /// The length of field C.
    CLen = 6,
}

/// Numbers per item in the metadata array.
#[napi]
pub const META_STRIDE: u32 = MetaField::CLen as u32 + 1;

/// Which metadata an item has, in the `Kind` field of its metadata; only `Kind` is written for `None`.
#[napi]
pub enum MetaKind {
    /// None (no native framer metadata, or not a stream verdict).
    None = 0,
    /// A RESP request: fields A (command) and B (key).
    Resp = 1,
    /// An HTTP/1 request: fields A (method), B (path) and C (host).
    Http = 2,
    /// The first record of a TLS stream (`parsers.tlsRecords()`): field A (the ClientHello's server name).
    Tls = 3,
}

/// Writes `meta` into one item's slot of the metadata array; ranges ending past `copied` are absent.
fn write_meta(slot: &mut [i32], meta: &MessageMeta, copied: usize) {
    let mut field = |at: usize, r: Option<&std::ops::Range<usize>>| {
        let (start, len) = match r {
            Some(r) if r.end <= copied && r.start <= r.end => {
                (r.start as i32, (r.end - r.start) as i32)
            }
            _ => (-1, 0),
        };
        slot[at] = start;
        slot[at + 1] = len;
    };
    match meta {
        MessageMeta::None => slot[MetaField::Kind as usize] = MetaKind::None as i32,
        MessageMeta::Resp { command, key } => {
            field(MetaField::AStart as usize, Some(command));
            field(MetaField::BStart as usize, key.as_ref());
            field(MetaField::CStart as usize, None);
            slot[MetaField::Kind as usize] = MetaKind::Resp as i32;
        }
        MessageMeta::Http { method, path, host } => {
            field(MetaField::AStart as usize, Some(method));
            field(MetaField::BStart as usize, Some(path));
            field(MetaField::CStart as usize, host.as_ref());
            slot[MetaField::Kind as usize] = MetaKind::Http as i32;
        }
        MessageMeta::Tls { sni } => {
            field(MetaField::AStart as usize, sni.as_ref());
            field(MetaField::BStart as usize, None);
            field(MetaField::CStart as usize, None);
            slot[MetaField::Kind as usize] = MetaKind::Tls as i32;
        }
    }
}

/// What a batch item asks, in the `Kind` field of its descriptor.
#[napi]
pub enum BatchItemKind {
    /// A stream verdict on a received message.
    StreamVerdict = 0,
    /// A parse of a socket's buffered bytes.
    Parse = 1,
    /// A msg verdict on data the application sends.
    MsgVerdict = 2,
}

impl From<ItemKind> for BatchItemKind {
    fn from(k: ItemKind) -> BatchItemKind {
        match k {
            ItemKind::StreamVerdict => BatchItemKind::StreamVerdict,
            ItemKind::Parse => BatchItemKind::Parse,
            ItemKind::MsgVerdict => BatchItemKind::MsgVerdict,
        }
    }
}

/// Answer codes of verdict items; `Redirect + t` redirects to target `t`. Any other code is an invalid answer.
#[napi]
pub enum AnswerCode {
    /// DROP.
    Drop = 0,
    /// PASS.
    Pass = 1,
    /// REDIRECT to target 0 (target `t`: `Redirect + t`).
    Redirect = 2,
    /// Answer with reply 0 (reply `r`: `Reply + r`); 2^29.
    Reply = 536870912,
    /// Route by route 0 (route `r`: `Route + r`); 2^30.
    Route = 1073741824,
}

/// A parse result: a length (> 0), `PARSE_NEED_MORE`, `PARSE_HANDBACK`, or `-errno`.
#[napi]
pub const PARSE_NEED_MORE: i32 = 0;

/// A parse result handing the socket back to the application: `-ESTRPIPE`, as a kernel parser returns it.
#[napi]
pub const PARSE_HANDBACK: i32 = -Errno::StrPipe.raw();

/// The errno a parser that failed aborts its socket with (`EPROTO`).
#[napi]
pub const PARSE_FAILED_ERRNO: i32 = Errno::Proto.raw();

/// One result of a TypeScript parser.
fn parse_of(r: f64) -> Parse {
    if r >= 1.0 {
        Parse::Length(r.min(usize::MAX as f64) as usize)
    } else if r == f64::from(PARSE_NEED_MORE) {
        Parse::NeedMore { hint: None }
    } else if r == f64::from(PARSE_HANDBACK) {
        Parse::Handback
    } else {
        let errno = if r.is_finite() { (-r) as i32 } else { 0 };
        Parse::Error(Errno::from_raw(errno).unwrap_or(Errno::Proto))
    }
}

/// Op codes of msg verdict edits in the extras stream; each edit is `EDIT_STRIDE` numbers: op, then two arguments.
#[napi]
pub enum EditOp {
    /// `applyBytes(a)`.
    Apply = 1,
    /// `corkBytes(a)`.
    Cork = 2,
    /// `pull(a, b)`.
    Pull = 3,
    /// `push(a, b)`.
    Push = 4,
    /// `pop(a, b)`.
    Pop = 5,
}

/// Numbers per edit in the extras stream.
#[napi]
pub const EDIT_STRIDE: u32 = 3;

/// An edit, or `None` for an unknown op.
fn edit_of(e: &[f64]) -> Option<MsgEdit> {
    let (a, b) = (e[1] as u32, e[2] as u32);
    let op = e[0] as i64;
    Some(match op {
        o if o == EditOp::Apply as i64 => MsgEdit::Apply(a),
        o if o == EditOp::Cork as i64 => MsgEdit::Cork(a),
        o if o == EditOp::Pull as i64 => MsgEdit::Pull(a, b),
        o if o == EditOp::Push as i64 => MsgEdit::Push(a, b),
        o if o == EditOp::Pop as i64 => MsgEdit::Pop(a, b),
        _ => return None,
    })
}

/// Reads one record of the extras stream at `at`: the item's index, a count, then that many entries of `stride`
/// numbers each (`stride` of the index). Returns the index and the entries' numbers.
fn record_of<'a>(
    extras: &'a [f64],
    at: &mut usize,
    stride: impl Fn(usize) -> usize,
) -> (usize, &'a [f64]) {
    let item = extras.get(*at).map_or(usize::MAX, |&i| i as usize);
    let n = extras.get(*at + 1).map_or(0, |&n| n as usize);
    let start = (*at + 2).min(extras.len());
    let end = start
        .saturating_add(n.saturating_mul(stride(item)))
        .min(extras.len());
    *at = end;
    (item, &extras[start..end])
}

/// The numbers describing one redirect target in the target table, at these offsets from `t * TARGET_STRIDE`.
#[napi]
pub enum TargetField {
    /// The map's number.
    Map = 0,
    /// The key: a number, or (with `TargetFlag.BytesKey`) an index into the key Buffers.
    Key = 1,
    /// `TargetFlag` bits.
    Flags = 2,
}

/// Numbers per redirect target in the target table.
#[napi]
pub const TARGET_STRIDE: u32 = TargetField::Flags as u32 + 1;

/// Bits of a target's `Flags`.
#[napi]
pub enum TargetFlag {
    /// Deliver to the target's application.
    Ingress = 1,
    /// The key is `keys[Key]`, not the number itself.
    BytesKey = 2,
}

/// The targets of `rows` (`TARGET_STRIDE` numbers each). A row that names no
/// readable target gets a placeholder, which keeps the indexes, and its code
/// (`base + row`) goes into `unreadable`, so that no answer names it.
fn rows_of(rows: &[f64], keys: &[Buffer], base: u32, unreadable: &mut Vec<u32>) -> Vec<Target> {
    let rows = rows.chunks_exact(TARGET_STRIDE as usize).enumerate();
    rows.map(|(r, row)| {
        target_of(row, keys).unwrap_or_else(|| {
            unreadable.push(base.saturating_add(r as u32));
            Target {
                map: MapId::from_u32(u32::MAX),
                key: Key::Num(0),
                ingress: false,
            }
        })
    })
    .collect()
}

/// A target of the table, or `None` when it names a key Buffer that is not there.
fn target_of(t: &[f64], keys: &[Buffer]) -> Option<Target> {
    let flags = t[TargetField::Flags as usize] as u32;
    let key = t[TargetField::Key as usize];
    let key = if flags & TargetFlag::BytesKey as u32 != 0 {
        Key::Bytes(Bytes::copy_from_slice(keys.get(key as usize)?))
    } else {
        Key::Num(key as u64)
    };
    Some(Target {
        map: MapId::from_u32(t[TargetField::Map as usize] as u32),
        key,
        ingress: flags & TargetFlag::Ingress as u32 != 0,
    })
}

// The binding's codes are the engine's: `answerBatch` copies them as they are.
const _: () = assert!(
    AnswerCode::Drop as u32 == Answers::DROP
        && AnswerCode::Pass as u32 == Answers::PASS
        && AnswerCode::Redirect as u32 == Answers::REDIRECT
        && AnswerCode::Reply as u32 == Answers::REPLY
        && AnswerCode::Route as u32 == Answers::ROUTE
);

impl Batches {
    /// Copies the next batch into the JS thread's arrays, as `takeBatch` describes.
    pub(crate) fn take(
        &self,
        payload: &mut [u8],
        descs: &mut [f64],
        meta: &mut [i32],
    ) -> Result<f64> {
        let stride = DESC_STRIDE as usize;
        let mstride = META_STRIDE as usize;
        let mut inbox = lock(&self.inbox);
        let Some(batch) = inbox.front() else {
            return Ok(0.0);
        };
        let need = batch.payload_len();
        let n = batch.items.len();
        if need > payload.len() || n * stride > descs.len() || n * mstride > meta.len() {
            return Ok(-(need.max(1) as f64));
        }
        let batch = inbox.pop_front().expect("front checked");
        drop(inbox);
        batch.copy_each(payload, |i, d| {
            let slot = &mut descs[i * stride..(i + 1) * stride];
            slot[DescField::Sock as usize] = d.sock.as_u64() as f64;
            slot[DescField::Tag as usize] = f64::from(d.tag);
            slot[DescField::Kind as usize] = f64::from(BatchItemKind::from(d.kind) as u32);
            slot[DescField::Offset as usize] = d.offset as f64;
            slot[DescField::Copied as usize] = d.copied as f64;
            slot[DescField::Len as usize] = d.len as f64;
            write_meta(&mut meta[i * mstride..(i + 1) * mstride], &d.meta, d.copied);
        });
        *lock(&self.taken) = Some(Taken { batch });
        Ok(n as f64)
    }

    /// Answers the batch last taken with what JavaScript wrote, as `answerBatch` describes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn answer(
        &self,
        answers: &[i32],
        targets: &[f64],
        keys: Vec<Buffer>,
        extras: &[f64],
        replies: Vec<Buffer>,
        routes: &[f64],
    ) -> Result<u32> {
        let taken = lock(&self.taken)
            .take()
            .ok_or_else(|| error_of(Errno::Inval, "no batch is being answered"))?;
        let batch = taken.batch;
        let mut out = Answers::with_capacity(answers.len());
        out.codes.extend(
            answers
                .iter()
                .map(|&c| u32::try_from(c).unwrap_or(Answers::INVALID)),
        );
        let mut unreadable = Vec::new();
        out.targets = rows_of(targets, &keys, Answers::REDIRECT, &mut unreadable);
        out.replies = replies.iter().map(|b| Bytes::copy_from_slice(b)).collect();
        out.routes = rows_of(routes, &keys, Answers::ROUTE, &mut unreadable);
        if !unreadable.is_empty() {
            for c in &mut out.codes {
                if unreadable.contains(c) {
                    *c = Answers::INVALID;
                }
            }
        }
        let kind = |i: usize| batch.items.get(i).map(|it| it.kind);
        let mut at = 0usize;
        while at < extras.len() {
            let stride = |i| match kind(i) {
                Some(ItemKind::MsgVerdict) => EDIT_STRIDE as usize,
                _ => 1,
            };
            let (i, entries) = record_of(extras, &mut at, stride);
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match kind(i) {
                Some(ItemKind::Parse) => {
                    out.parse.extend(entries.iter().map(|&r| parse_of(r)));
                    out.parse_items.extend(entries.iter().map(|_| index));
                }
                Some(ItemKind::MsgVerdict) => {
                    for e in entries.chunks_exact(EDIT_STRIDE as usize) {
                        match edit_of(e) {
                            Some(edit) => {
                                out.edits.push(edit);
                                out.edit_items.push(index);
                            }
                            None => {
                                if let Some(c) = out.codes.get_mut(i) {
                                    *c = Answers::INVALID;
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        batch.reply(out);
        Ok(lock(&self.inbox).len() as u32)
    }
}
