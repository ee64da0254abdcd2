//! Boundary-only delivery: messages judged and moved by their offsets.
//!
//! When a socket's framer can find whole messages from their bytes alone
//! ([`Framer::scan_whole`](crate::framer::Framer::scan_whole)) and its stream
//! verdict is a native rule (or none), the messages lying whole in a received
//! chunk are taken as one block with their lengths
//! ([`StrParser::take_whole`](crate::strparser::StrParser::take_whole)): no
//! per-message buffer, fragment list or event is built. Each message is
//! judged on its bytes in place; when the verdict holds for every message of
//! the socket (a fixed or per-socket key, PASS, DROP), the rest of the block
//! is judged once and counted in bulk, and an egress redirect appends the
//! whole block to the target's send ring as one fragment. Bytes, order,
//! counters and backpressure are those of the per-message path. Under an
//! external stream verdict the block's messages await their verdicts as
//! ranges of the block.

use bytes::Bytes;

use super::{eval_keyed, offset_in, Body, Core, Resolved};
use crate::conn::RouteCache;
use crate::program::VerdictKind;
use crate::rules::Rule;
use crate::stats::DropReason;

impl Core {
    /// Whether the messages of `slot` may be judged by their boundaries: its
    /// stream verdict is a native rule other than a function (or it has
    /// none), and no earlier message waits for an external verdict.
    pub(super) fn judges_by_boundary(&self, slot: usize) -> bool {
        let Some(c) = self.conns[slot].as_ref() else {
            return false;
        };
        let kind = c.progs.verdict.as_deref().map(|p| &p.kind);
        if matches!(kind, Some(VerdictKind::External { .. })) {
            // Every message awaits its verdict in order anyway.
            return !c.closing;
        }
        if c.closing || !c.awaiting.is_empty() {
            return false;
        }
        match kind {
            None => true,
            Some(VerdictKind::Rule(Rule::Func(_)) | VerdictKind::External { .. }) => false,
            Some(VerdictKind::Rule(_)) => true,
        }
    }

    /// Delivers the whole messages of `block`, one after the other, whose
    /// lengths are `self.lens` (filled by the strparser).
    pub(super) fn deliver_block(&mut self, slot: usize, block: Bytes) {
        if let Some(ext) = self.external_verdict(slot) {
            let lens = std::mem::take(&mut self.lens);
            self.await_block(slot, block, &lens, ext);
            self.lens = lens;
            return;
        }
        let base = match offset_in(&self.chunk, &block) {
            Some(off) => off,
            None => {
                self.flush_run();
                self.chunk = block;
                0
            }
        };
        let lens = std::mem::take(&mut self.lens);
        self.at(slot).count(|s| &s.messages_in, lens.len() as u64);
        let mut start = base;
        for (i, &len) in lens.iter().enumerate() {
            let (resolved, fixed) = self.decide_contiguous(slot, start, len);
            if fixed {
                self.apply_many(slot, resolved, start, &lens[i..]);
                break;
            }
            self.apply(
                slot,
                resolved,
                Body::Chunk {
                    start,
                    end: start + len,
                },
                len,
            );
            start += len;
        }
        self.lens = lens;
    }

    /// [`decide`](Core::decide) for the message at `start..start + len` of
    /// the current chunk, framed without metadata; the flag says the verdict
    /// holds for every message of the socket until the maps change.
    fn decide_contiguous(&mut self, slot: usize, start: usize, len: usize) -> (Resolved, bool) {
        let epoch = self.shared.epoch();
        let c = self.conns[slot].as_mut().expect("live");
        let Some(prog) = c.progs.verdict.as_ref() else {
            return (Resolved::Pass, true);
        };
        let VerdictKind::Rule(rule) = &prog.kind else {
            return (Resolved::Drop(DropReason::Verdict), false);
        };
        if c.route.epoch == epoch {
            if let Some(r) = c.route.resolved {
                return (r, true);
            }
        }
        let msg = &self.chunk[start..start + len];
        let sock = c.id;
        let (resolved, fixed) =
            eval_keyed(&self.shared, rule, |key| key.derive_contiguous(sock, msg));
        if fixed {
            c.route = RouteCache {
                epoch,
                resolved: Some(resolved),
            };
        }
        (resolved, fixed)
    }

    /// Carries out one verdict for consecutive messages of the current
    /// chunk starting at `start`, with lengths `lens`.
    fn apply_many(&mut self, slot: usize, resolved: Resolved, start: usize, lens: &[usize]) {
        let count = lens.len() as u64;
        let total: usize = lens.iter().sum();
        match resolved {
            Resolved::Drop(reason) => self.count_drops(slot, reason, count, total),
            Resolved::Redirect {
                target,
                ingress: false,
            } => match self.slot_of(target) {
                Some(ts) if self.at(ts).is_egress_target() => {
                    let body = Body::Chunk {
                        start,
                        end: start + total,
                    };
                    self.redirect_egress(slot, ts, count, body);
                }
                _ => self.count_drops(slot, DropReason::DeadTarget, count, total),
            },
            Resolved::Pass | Resolved::Redirect { ingress: true, .. } => {
                let mut at = start;
                for &len in lens {
                    let body = Body::Chunk {
                        start: at,
                        end: at + len,
                    };
                    self.apply(slot, resolved, body, len);
                    at += len;
                }
            }
        }
    }
}
