//! Bytes nothing inspects: the route a backend may splice (socket → pipe →
//! socket in the kernel, never copied to user space), and its accounting.
//!
//! A socket's bytes may go by splice when nothing would look at them: no
//! parser (each read is one message), a native stream verdict that
//! redirects every message to one egress target whatever its bytes (a
//! fixed key, or the socket's own id), that target on this shard, open and
//! with an empty send ring (so spliced bytes can never pass queued ones),
//! and nothing of the source held back (initial bytes, messages awaiting
//! answers). [`Core::splice_route`] answers per read; the backend decides
//! whether the traffic is bulk enough to pay for a pipe
//! ([`EngineConfig::splice_min`](crate::EngineConfig::splice_min)).
//!
//! Invariants: the core counts spliced bytes as it counts copied ones —
//! each splice into the pipe is one message of the source, redirected;
//! bytes written out of the pipe are the target's `bytes_out` — so the
//! counters cannot tell the two paths apart; bytes a pipe held when its
//! source or target closed are counted as dropped (`DeadTarget`).

use crate::framer::MessageMeta;
use crate::id::SockId;
use crate::program::VerdictKind;
use crate::rules::{MsgBytes, Rule};
use crate::stats::DropReason;
use crate::verdict::{Message, Resolved};

use super::Core;

impl Core {
    /// The target every byte `id` reads next goes to unseen, if its bytes
    /// may be spliced (see the module documentation).
    pub fn splice_route(&mut self, id: SockId) -> Option<SockId> {
        let slot = self.slot_of(id)?;
        let p = self.at_ref(slot);
        if !p.wants_read() || p.parser.strp.is_some() || p.parser.handed_back || p.tls.is_some() {
            return None;
        }
        if p.has_initial() || !p.awaiting.is_empty() {
            return None;
        }
        let fixed_redirect = p.progs.verdict.as_deref().is_some_and(|v| {
            matches!(&v.kind, VerdictKind::Rule(Rule::Redirect { key, ingress: false, .. })
                if key.is_message_independent())
        });
        if !fixed_redirect {
            return None;
        }
        let msg = Message {
            bytes: MsgBytes::Frags(&[]),
            len: 0,
            meta: &MessageMeta::None,
        };
        let (resolved, fixed) = self.decide(slot, &msg);
        let Resolved::Redirect {
            target,
            ingress: false,
        } = resolved
        else {
            return None;
        };
        if !fixed || self.is_remote(target) {
            return None;
        }
        let ts = self.slot_of(target)?;
        let t = self.at_ref(ts);
        (ts != slot
            && t.is_egress_target()
            && !t.is_connecting()
            && t.ring.is_empty()
            && t.tls.is_none())
        .then_some(target)
    }

    /// The backend spliced `n` bytes of `src` into the pipe toward `target`.
    pub fn handle_spliced_in(&mut self, src: SockId, n: usize) {
        if let Some(s) = self.slot_of(src) {
            let p = self.at(s);
            p.count(|s| &s.bytes_in, n as u64);
            p.count(|s| &s.messages_in, 1);
            p.count(|s| &s.redirected_egress, 1);
        }
    }

    /// The backend spliced `n` bytes out of a pipe into `target`.
    pub fn handle_spliced_out(&mut self, target: SockId, n: usize) {
        if let Some(t) = self.slot_of(target) {
            self.at(t).count(|s| &s.bytes_out, n as u64);
        }
    }

    /// `src` stops being read until its pipe drains into a full target (a backpressure stall).
    pub fn handle_splice_stalled(&mut self, src: SockId) {
        if let Some(s) = self.slot_of(src) {
            self.at(s).count(|s| &s.backpressure_stalls, 1);
        }
    }

    /// A pipe from `src` still held `n` bytes when its source or target closed.
    pub fn handle_splice_lost(&mut self, src: SockId, n: usize) {
        if let Some(s) = self.slot_of(src) {
            self.at(s).count_drops(DropReason::DeadTarget, 0, n);
        }
    }
}
