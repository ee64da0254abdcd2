//! External verdicts on the I/O thread: batching, the in-flight bound,
//! per-socket ordering, answers.

use std::collections::VecDeque;
use std::time::Instant;

use smallvec::SmallVec;

use super::{Core, Resolved};
use crate::conn::Awaited;
use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::external::{Answer, Batch, BatchItem, ExternalVerdicts, ItemKind, Replier};
use crate::id::{MapId, SockId};
use crate::key::Key;
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

/// The external-verdict state of a core.
pub(crate) struct ExternalState {
    sink: Box<dyn ExternalVerdicts>,
    replier: Replier,
    open: Vec<BatchItem>,
    open_refs: Vec<ItemRef>,
    open_since: Option<Instant>,
    /// Messages that found the open batch full while `max_in_flight` batches were out.
    overflow: VecDeque<(ItemRef, BatchItem)>,
    in_flight: std::collections::HashMap<u64, Vec<ItemRef>>,
    next_id: u64,
}

impl ExternalState {
    pub(crate) fn new(sink: Box<dyn ExternalVerdicts>, replier: Replier) -> ExternalState {
        ExternalState {
            sink,
            replier,
            open: Vec::new(),
            open_refs: Vec::new(),
            open_since: None,
            overflow: VecDeque::new(),
            in_flight: std::collections::HashMap::new(),
            next_id: 1,
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
            frags: frags.clone(),
        });
        c.awaiting.push_back(Awaited {
            frags,
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

    pub(super) fn batch_item(&mut self, r: ItemRef, item: BatchItem) {
        let max = self.cfg.batch.max_messages.max(1);
        let delay = self.cfg.batch.max_delay;
        let now = self.now;
        let Some(ext) = self.ext.as_mut() else {
            // No external side installed: the error answer.
            return self.answer_missing(r);
        };
        if ext.open.len() >= max {
            ext.overflow.push_back((r, item));
            return;
        }
        if ext.open.is_empty() {
            ext.open_since = Some(now);
            self.timers.set(now + delay, Timer::Batch);
        }
        let ext = self.ext.as_mut().expect("checked");
        ext.open.push(item);
        ext.open_refs.push(r);
        if ext.open.len() >= max {
            self.dispatch();
        }
    }

    /// Hands the open batch off if fewer than `max_in_flight` are out.
    pub(super) fn dispatch(&mut self) {
        let max = self.cfg.batch.max_messages.max(1);
        let k = self.cfg.batch.max_in_flight.max(1);
        let now = self.now;
        let delay = self.cfg.batch.max_delay;
        let Some(ext) = self.ext.as_mut() else { return };
        while !ext.open.is_empty() && ext.in_flight.len() < k {
            let id = ext.next_id;
            ext.next_id += 1;
            let items = std::mem::take(&mut ext.open);
            let refs = std::mem::take(&mut ext.open_refs);
            ext.in_flight.insert(id, refs);
            ext.open_since = None;
            let batch = Batch {
                id,
                items,
                replier: ext.replier.clone(),
            };
            ext.sink.submit(batch);
            while ext.open.len() < max {
                let Some((r, item)) = ext.overflow.pop_front() else {
                    break;
                };
                ext.open.push(item);
                ext.open_refs.push(r);
            }
            if !ext.open.is_empty() {
                ext.open_since = Some(now);
                self.timers.set(now + delay, Timer::Batch);
                if ext.open.len() < max {
                    break;
                }
            }
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
        for r in refs {
            match answers.next() {
                Some((a, v)) => self.answer_item(r, a, v),
                None => {
                    missing += 1;
                    self.answer_missing(r);
                }
            }
        }
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
            ItemRef::Verdict(sock, seq) => {
                self.answer_one(sock, seq, resolved);
                if let Some(slot) = self.slot_of(sock) {
                    self.finish_read(slot);
                }
            }
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

    fn answer_one(&mut self, sock: SockId, seq: u64, resolved: Resolved) {
        let Some(slot) = self.slot_of(sock) else {
            return;
        };
        let c = self.at(slot);
        let Some(i) = seq.checked_sub(c.awaiting_base) else {
            return;
        };
        if let Some(a) = c.awaiting.get_mut(i as usize) {
            a.answer = Some(resolved);
        }
        self.drain_awaited(slot);
    }

    /// Applies the socket's answered messages from the front, in order.
    fn drain_awaited(&mut self, slot: usize) {
        loop {
            let c = self.at(slot);
            if !c.awaiting.front().is_some_and(|a| a.answer.is_some()) {
                break;
            }
            let a = c.awaiting.pop_front().expect("checked");
            c.awaiting_base += 1;
            c.awaiting_bytes -= a.len;
            Stats::set(&c.stats.pending_bytes, c.awaiting_bytes as u64);
            let resolved = a.answer.expect("checked");
            self.apply(slot, resolved, super::Body::Frags(a.frags), a.len);
        }
        self.flush_run();
        let max_pending = self.cfg.max_pending_bytes;
        let c = self.at(slot);
        if c.ext_full && c.awaiting_bytes <= max_pending / 2 {
            c.ext_full = false;
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
    use crate::config::{BatchConfig, EngineConfig};
    use crate::core::NewSock;
    use crate::engine::{Doorbell, Wake};
    use crate::map::{MapKind, UpdateFlag};
    use crate::program::{Programs, StreamVerdictProg, VerdictKind};
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

    #[test]
    fn a_batch_of_redirects_locks_the_registry_once_not_per_message() {
        const N: usize = 1024;
        let shared = Arc::new(Shared::default());
        let (src, targets, ups) = {
            let mut reg = shared.lock();
            let gw = reg.create_map(MapKind::SockHash, 8).unwrap();
            let ups = reg.create_map(MapKind::SockHash, 8).unwrap();
            let progs = Programs {
                verdict: Some(Arc::new(StreamVerdictProg {
                    kind: VerdictKind::External {
                        tag: 1,
                        peek_bytes: 1,
                    },
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
            batch: BatchConfig {
                max_messages: N,
                max_in_flight: 1,
                ..BatchConfig::default()
            },
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
                    key: Key::Num(u64::from(it.frags[0][0])),
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
}
