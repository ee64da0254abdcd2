//! TypeScript verdicts and parsers in batches: the engine's external interface on the binding side.
//!
//! The I/O thread hands a batch to [`JsVerdicts::submit`], which parks it in the engine's inbox and wakes JavaScript
//! (the same coalesced wake-up as events). On the JS thread, `takeBatch` copies the batch's bytes (the first
//! `peekBytes` of each message; every buffered byte of a parse request) and its descriptors into buffers JavaScript
//! allocated once and reuses; JavaScript runs the callbacks and writes one answer per item into a reused
//! `Int32Array`, plus, for parse and msg-verdict items, their parse results and edits into a reused `Float64Array`;
//! `answerBatch` turns them into engine answers and sends them back through the engine's channel, which wakes the I/O
//! thread. Nothing here waits: the I/O thread never blocks on JavaScript, and JavaScript never waits for the I/O
//! thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Float64ArraySlice, Uint8ArraySlice, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use sockmap_core::batch::{Answer, Batch, ExternalVerdicts, ItemKind, MsgEdit};
use sockmap_core::framer::Parse;
use sockmap_core::{Errno, Key, Verdict};

use crate::binding_engine::{guarded, lock, BindingEngine};
use crate::binding_error::errno_error;

/// The wake-up function: called with no argument, its return value ignored.
pub(crate) type WakeFn = ThreadsafeFunction<(), Unknown<'static>, (), Status, false>;

/// Wakes the JS thread at most once until it drains.
///
/// The flag and the counter outlive the function: `close()` releases the function (so that it no longer keeps the
/// event loop or the JavaScript callback alive) while `drain()` and `wakeups` keep working.
pub(crate) struct Waker {
    pub(crate) pending: Arc<AtomicBool>,
    pub(crate) wakeups: Arc<AtomicU64>,
    pub(crate) tsfn: WakeFn,
}

impl Waker {
    pub(crate) fn new(tsfn: WakeFn) -> Waker {
        Waker {
            pending: Arc::default(),
            wakeups: Arc::default(),
            tsfn,
        }
    }

    /// Calls JavaScript unless a call is already queued and not yet drained.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            // Unbounded queue: never QueueFull; `Closing` after env teardown needs nothing.
            let _ = self.tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// Batches handed off by the I/O thread, waiting for JavaScript.
pub(crate) type Inbox = Arc<Mutex<VecDeque<Batch>>>;

/// The engine's external-verdict sink: parks batches and wakes JavaScript.
pub(crate) struct JsVerdicts {
    pub(crate) inbox: Inbox,
    pub(crate) waker: Arc<Waker>,
}

impl ExternalVerdicts for JsVerdicts {
    fn submit(&mut self, batch: Batch) {
        lock(&self.inbox).push_back(batch);
        self.waker.wake();
    }
}

/// The batch JavaScript is answering (its items say what each answer is for).
pub(crate) struct Taken {
    batch: Batch,
}

/// Numbers per item in the descriptor array: socket, tag, kind, offset, bytes copied, full length.
pub const DESC_STRIDE: usize = 6;

/// The `kind` number of a descriptor.
fn kind_code(k: ItemKind) -> f64 {
    match k {
        ItemKind::StreamVerdict => 0.0,
        ItemKind::Parse => 1.0,
        ItemKind::MsgVerdict => 2.0,
    }
}

/// `Parse.HANDBACK` of the TypeScript API: `-ESTRPIPE`, as a kernel parser returns it.
const PARSE_HANDBACK: f64 = -86.0;

/// One result of a TypeScript parser: a length (> 0), 0 (need more), `-ESTRPIPE` (hand back) or `-errno`.
fn parse_of(r: f64) -> Parse {
    if r >= 1.0 {
        Parse::Length(r.min(usize::MAX as f64) as usize)
    } else if r == 0.0 {
        Parse::NeedMore { hint: None }
    } else if r == PARSE_HANDBACK {
        Parse::Handback
    } else {
        let errno = if r.is_finite() { (-r) as i32 } else { 0 };
        Parse::Error(Errno::from_raw(errno).unwrap_or(Errno::Proto))
    }
}

/// Edit op codes of the extras stream: apply, cork, pull, push, pop.
fn edit_of(op: f64, a: f64, b: f64) -> Option<MsgEdit> {
    let (a, b) = (a as u32, b as u32);
    Some(match op as u32 {
        1 => MsgEdit::Apply(a),
        2 => MsgEdit::Cork(a),
        3 => MsgEdit::Pull(a, b),
        4 => MsgEdit::Push(a, b),
        5 => MsgEdit::Pop(a, b),
        _ => return None,
    })
}

/// Reads the extras of one item: a count, then that many records of `stride` numbers.
fn extras_of<'a>(extras: &'a [f64], at: &mut usize, stride: usize) -> &'a [f64] {
    let n = extras.get(*at).map_or(0, |&n| n as usize);
    let start = (*at + 1).min(extras.len());
    let end = start
        .saturating_add(n.saturating_mul(stride))
        .min(extras.len());
    *at = end;
    &extras[start..end]
}

/// Numbers per redirect target in the target table: map, key (a number, or an index into the key Buffers), flags.
pub const TARGET_STRIDE: usize = 3;
/// Target flag: deliver to the target's application.
const TARGET_INGRESS: u32 = 1;
/// Target flag: the key is `keys[key]`, not the number itself.
const TARGET_BYTES_KEY: u32 = 2;

fn payload_bytes(batch: &Batch) -> usize {
    batch.items.iter().map(|it| it.len.min(it.peek_bytes)).sum()
}

#[napi]
impl BindingEngine {
    /// Copies the next batch into `payload` and `descs` (6 numbers per item: socket, tag, kind (0 stream verdict,
    /// 1 parse, 2 msg verdict), offset, bytes copied, full length). Returns the number of items; 0 when no batch
    /// waits; `-n` when `payload` needs `n` bytes or `descs` too few slots (`descs.length / 6` items), so that
    /// JavaScript grows them and calls again.
    #[napi]
    pub fn take_batch(
        &self,
        mut payload: Uint8ArraySlice<'_>,
        mut descs: Float64ArraySlice<'_>,
    ) -> napi::Result<f64> {
        // SAFETY: this runs synchronously on the JS thread that owns both arrays; no JavaScript runs until it
        // returns, and the engine never sees these pointers (it copies into them here and nowhere else).
        let (payload, descs) = unsafe { (payload.as_mut(), descs.as_mut()) };
        guarded(|| {
            let mut inbox = lock(&self.inbox);
            let Some(batch) = inbox.front() else {
                return Ok(0.0);
            };
            let need = payload_bytes(batch);
            let n = batch.items.len();
            if need > payload.len() || n * DESC_STRIDE > descs.len() {
                return Ok(-(need.max(1) as f64));
            }
            let batch = inbox.pop_front().expect("front checked");
            drop(inbox);
            let mut off = 0;
            for (it, slot) in batch.items.iter().zip(descs.chunks_exact_mut(DESC_STRIDE)) {
                let copied = batch.copy_item(it, &mut payload[off..]);
                slot[0] = it.sock.as_u64() as f64;
                slot[1] = f64::from(it.tag);
                slot[2] = kind_code(it.kind);
                slot[3] = off as f64;
                slot[4] = copied as f64;
                slot[5] = it.len as f64;
                off += copied;
            }
            *lock(&self.taken) = Some(Taken { batch });
            Ok(n as f64)
        })
    }

    /// Answers the batch last taken: `answers[i]` is 0 (DROP), 1 (PASS), or `2 + t` (REDIRECT to target `t` of
    /// `targets`, 3 numbers each: map, key, flags; flag 1 = ingress, flag 2 = the key is `keys[key]`).
    /// `extras` holds, in item order, for each parse item a count and that many parse results (a length > 0, 0 =
    /// need more, -86 = hand back, -errno), and for each msg-verdict item a count and that many edits of 3 numbers
    /// (op: 1 apply, 2 cork, 3 pull, 4 push, 5 pop; then two arguments).
    #[napi]
    pub fn answer_batch(
        &self,
        answers: &[i32],
        targets: &[f64],
        keys: Vec<Buffer>,
        extras: &[f64],
    ) -> napi::Result<()> {
        guarded(|| {
            let taken = lock(&self.taken)
                .take()
                .ok_or_else(|| errno_error(Errno::Inval, "no batch is being answered"))?;
            let resolved: Vec<Verdict> = targets
                .chunks_exact(TARGET_STRIDE)
                .map(|t| {
                    let flags = t[2] as u32;
                    let key = if flags & TARGET_BYTES_KEY != 0 {
                        let b = keys.get(t[1] as usize).ok_or_else(|| {
                            errno_error(Errno::Inval, "redirect key index out of range")
                        })?;
                        Key::Bytes(Bytes::copy_from_slice(b))
                    } else {
                        Key::Num(t[1] as u64)
                    };
                    Ok(Verdict::Redirect {
                        map: self.map_id(t[0] as u32)?,
                        key,
                        ingress: flags & TARGET_INGRESS != 0,
                    })
                })
                .collect::<napi::Result<_>>()?;
            let mut at = 0usize;
            let batch = taken.batch;
            let out = answers
                .iter()
                .zip(batch.items.iter().map(|it| it.kind))
                .map(|(&a, kind)| {
                    let verdict = match a {
                        1 => Verdict::Pass,
                        t if t >= 2 => resolved
                            .get((t - 2) as usize)
                            .cloned()
                            .unwrap_or(Verdict::Drop),
                        _ => Verdict::Drop,
                    };
                    let mut answer = Answer::from(verdict);
                    match kind {
                        ItemKind::StreamVerdict => {}
                        ItemKind::Parse => {
                            answer.parse = extras_of(extras, &mut at, 1)
                                .iter()
                                .map(|&r| parse_of(r))
                                .collect();
                        }
                        ItemKind::MsgVerdict => {
                            answer.edits = extras_of(extras, &mut at, 3)
                                .chunks_exact(3)
                                .filter_map(|e| edit_of(e[0], e[1], e[2]))
                                .collect();
                        }
                    }
                    answer
                })
                .collect();
            batch.reply(out);
            Ok(())
        })
    }
}
