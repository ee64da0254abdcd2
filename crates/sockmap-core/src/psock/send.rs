//! The sk_msg path: data the application sends runs the msg verdict
//! (`tcp_bpf_send_verdict`), with `apply_bytes`, `cork_bytes` and the
//! pull/push/pop edits, then is transmitted, redirected or refused.
//!
//! The psock's sk_msg state ([`SendState`](super::state::send::SendState):
//! `psock->cork`, `cork_bytes`, `apply_bytes`, the cached verdict, the send
//! parked for an external answer and the sends behind it) is changed here and
//! only here; `state/send.rs` states its invariants.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use smallvec::SmallVec;

use super::queue::SendAck;
use super::slot::SlotIdx;
use super::state::send::{ParkedSend, SendJob, SendOutcome};
use super::Core;
use crate::batch::{BatchItem, ItemData, ItemKind, MsgEdit};
use crate::batcher::ItemRef;
use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::framer::MessageMeta;
use crate::id::SockId;
use crate::msg::SkMsg;
use crate::program::MsgVerdictKind;
use crate::ring::SgRing;
use crate::rules::MsgBytes;
use crate::stats::DropReason;
use crate::verdict::{eval_rule, resolve, Message, Resolved};

/// Fragments one message under a msg verdict may hold before its cork is
/// forced (the kernel forces a cork when its 17-slot ring fills).
const MSG_MAX_FRAGS: usize = 1024;

impl Core {
    /// An application send; [`Event::SendDone`] reports the bytes accepted,
    /// `EACCES` when the msg verdict dropped everything, `EPIPE` when the
    /// socket or its redirect target is gone. Sends of a socket whose msg
    /// verdict awaits an external answer wait behind it, in order.
    pub fn handle_send(&mut self, id: SockId, data: Bytes, req: u64) {
        let slot = self
            .slot_of(id)
            .filter(|&s| self.at_ref(s).is_egress_target());
        let Some(slot) = slot else {
            return self.events.push_back(Event::SendDone {
                sock: id,
                req,
                result: Err(Errno::Pipe),
            });
        };
        if self.is_dgram(slot) {
            return self.dgram_send(slot, None, data, req);
        }
        let c = self.at(slot);
        c.count(|s| &s.sends, 1);
        if c.send.parked.is_some() {
            c.send.backlog.push_back((data, req));
            return;
        }
        self.start_send(slot, data, req);
    }

    fn start_send(&mut self, slot: SlotIdx, data: Bytes, req: u64) {
        let n = data.len();
        if self.at(slot).progs.msg_verdict.is_none() {
            self.transmit_own(slot, [data]);
            let out = SendOutcome {
                accepted: n,
                ring: Some(slot),
                ..SendOutcome::default()
            };
            return self.finish_send(slot, req, n, out);
        }
        if let Some(out) = self.run_msg_verdict(slot, data, req) {
            self.finish_send(slot, req, n, out);
        }
    }

    /// Reports what became of a send of `n` bytes.
    fn finish_send(&mut self, slot: SlotIdx, req: u64, n: usize, out: SendOutcome) {
        let c = self.at(slot);
        let sock = c.id();
        let result = if out.refused > 0 && out.accepted == 0 {
            c.count(|s| &s.sends_refused, 1);
            Err(if out.unsupported {
                Errno::OpNotSupp
            } else if out.pipe {
                Errno::Pipe
            } else {
                Errno::Acces
            })
        } else {
            Ok(n.saturating_sub(out.refused))
        };
        let ack = SendAck { sock, req, result };
        if let (Some(target), Ok(_)) = (out.remote, result) {
            if self.defer_to_remote(target, ack) {
                return;
            }
        }
        self.ack(out.ring, ack);
    }

    /// Reports a send now, or once the ring its bytes went to drains below the low watermark.
    fn ack(&mut self, ring: Option<SlotIdx>, ack: SendAck) {
        let high = self.cfg.send_high_watermark;
        if let Some(r) = ring {
            let c = self.at(r);
            if c.ring.must_defer_ack(high) {
                c.ring.defer_ack(ack);
                return;
            }
        }
        self.events.push_back(Event::SendDone {
            sock: ack.sock,
            req: ack.req,
            result: ack.result,
        });
    }

    /// The kernel's `tcp_bpf_send_verdict` loop over one send; `None` when
    /// it waits for an external answer.
    fn run_msg_verdict(&mut self, slot: SlotIdx, data: Bytes, req: u64) -> Option<SendOutcome> {
        let c = self.at(slot);
        let len = data.len();
        let mut msg = c
            .send
            .msg
            .cork
            .take()
            .unwrap_or_else(|| SkMsg::new(SgRing::with_max_frags(MSG_MAX_FRAGS)));
        let forced = match msg.sg.push(data) {
            Ok(()) => false,
            Err(full) => {
                // The ring is full: coalesce and force the cork open.
                let mut all = msg.sg.to_vec();
                all.extend_from_slice(&full.0);
                msg.sg.clear();
                let _ = msg.sg.push(Bytes::from(all));
                true
            }
        };
        let st = &mut c.send.msg;
        if st.cork_bytes > 0 && msg.size() < st.cork_bytes && !forced {
            st.cork = Some(msg);
            return Some(SendOutcome {
                accepted: len,
                ..SendOutcome::default()
            });
        }
        st.cork_bytes = 0;
        let job = SendJob {
            msg,
            forced,
            out: SendOutcome::default(),
            len,
            req,
        };
        self.msg_loop(slot, job, None)
    }

    /// Runs verdicts over the message until it is all transmitted, redirected,
    /// refused or corked. `answered`: the verdict an external answer gave
    /// (its edits already applied) for the first part.
    fn msg_loop(
        &mut self,
        slot: SlotIdx,
        mut job: SendJob,
        mut answered: Option<Resolved>,
    ) -> Option<SendOutcome> {
        let c = self.at(slot);
        let id = c.id();
        let prog = c.progs.msg_verdict.clone()?;
        let mut st = std::mem::take(&mut c.send.msg);
        while job.msg.size() > 0 {
            let resolved = match st.cached.filter(|_| st.apply_left > 0) {
                Some(r) => r,
                None => {
                    let r = match answered.take() {
                        Some(r) => r,
                        None => {
                            job.msg.apply_bytes(0);
                            job.msg.cork_bytes(0);
                            if let MsgVerdictKind::External { tag, peek_bytes } = prog.kind {
                                self.at(slot).send.msg = st;
                                self.park_send(slot, job, tag, peek_bytes);
                                return None;
                            }
                            self.msg_verdict(&prog.kind, id, &mut job.msg)
                        }
                    };
                    let cork = job.msg.corked_bytes() as usize;
                    if cork > job.msg.size() && !job.forced {
                        st.cork = Some(job.msg);
                        st.cork_bytes = cork;
                        job.out.accepted = job.len;
                        self.at(slot).send.msg = st;
                        return Some(job.out);
                    }
                    st.apply_left = job.msg.applied_bytes() as usize;
                    st.cached = (st.apply_left > 0).then_some(r);
                    r
                }
            };
            let take = if st.apply_left > 0 {
                st.apply_left.min(job.msg.size())
            } else {
                job.msg.size()
            };
            let part = job.msg.sg.split_to(take);
            if st.apply_left > 0 {
                st.apply_left -= take;
                if st.apply_left == 0 {
                    st.cached = None;
                }
            }
            self.apply_msg(slot, resolved, part, &mut job.out);
        }
        self.at(slot).send.msg = st;
        Some(job.out)
    }

    /// Parks a send until its external msg verdict answers.
    fn park_send(&mut self, slot: SlotIdx, job: SendJob, tag: u32, peek_bytes: usize) {
        let c = self.at(slot);
        let sock = c.id();
        let seq = c.send.seq;
        c.send.seq += 1;
        let item = BatchItem {
            sock,
            tag,
            kind: ItemKind::MsgVerdict,
            len: job.msg.size(),
            peek_bytes,
            data: ItemData::Frags(job.msg.sg.frags().cloned().collect()),
            meta: MessageMeta::None,
        };
        c.send.parked = Some(Box::new(ParkedSend { seq, job }));
        self.batch_item(ItemRef::Msg(sock, seq), item, None);
    }

    /// An external msg verdict answered, with its verdict resolved (`None`:
    /// no answer, the error verdict).
    pub(super) fn handle_msg_answer(
        &mut self,
        sock: SockId,
        seq: u64,
        answer: Option<(&[MsgEdit], Resolved)>,
    ) {
        let Some(slot) = self.slot_of(sock) else {
            return;
        };
        let c = self.at(slot);
        if c.send.parked.as_ref().map_or(true, |p| p.seq != seq) {
            return;
        }
        let Some(parked) = c.send.parked.take() else {
            return;
        };
        let mut job = parked.job;
        let on_error = c.progs.msg_verdict.as_ref().map(|m| m.on_error);
        let resolved = match answer {
            None => super::answers::error_verdict(on_error.unwrap_or_default()),
            Some((edits, resolved)) => match apply_edits(&mut job.msg, edits) {
                Ok(()) => resolved,
                Err(code) => {
                    self.events.push_back(Event::Error {
                        sock: Some(sock),
                        code,
                        detail: format!("msg verdict edits {edits:?} rejected"),
                    });
                    Resolved::Drop(DropReason::Verdict)
                }
            },
        };
        let (req, n) = (job.req, job.len);
        if let Some(out) = self.msg_loop(slot, job, Some(resolved)) {
            self.finish_send(slot, req, n, out);
        }
        while self.at(slot).send.parked.is_none() {
            let Some((data, req)) = self.at(slot).send.backlog.pop_front() else {
                break;
            };
            self.start_send(slot, data, req);
        }
    }

    /// Fails the parked and waiting sends of a closing socket with `EPIPE`.
    pub(super) fn fail_parked_sends(&mut self, slot: SlotIdx) {
        let c = self.at(slot);
        let sock = c.id();
        let parked = c.send.parked.take();
        let backlog = std::mem::take(&mut c.send.backlog);
        let mut lost = 0;
        let mut reqs: SmallVec<[u64; 4]> = SmallVec::new();
        if let Some(p) = parked {
            lost += p.job.msg.size();
            reqs.push(p.job.req);
        }
        for (data, req) in backlog {
            lost += data.len();
            reqs.push(req);
        }
        if lost > 0 {
            c.count(|s| &s.discarded_bytes, lost as u64);
        }
        for req in reqs {
            self.events.push_back(Event::SendDone {
                sock,
                req,
                result: Err(Errno::Pipe),
            });
        }
    }

    /// Runs a msg verdict program on one message.
    fn msg_verdict(&mut self, kind: &MsgVerdictKind, id: SockId, msg: &mut SkMsg) -> Resolved {
        match kind {
            MsgVerdictKind::Rule(rule) => {
                let frags: SmallVec<[Bytes; 4]> = msg.sg.frags().cloned().collect();
                let view = Message {
                    bytes: MsgBytes::Frags(&frags),
                    len: msg.size(),
                    meta: &crate::framer::MessageMeta::None,
                };
                let sni = self.slot_of(id).and_then(|s| self.at_ref(s).sni.clone());
                eval_rule(&mut self.maps, rule, id, sni.as_deref(), &view).0
            }
            MsgVerdictKind::Func(f) => match catch_unwind(AssertUnwindSafe(|| f(id, msg))) {
                Ok(v) => resolve(&self.maps, &v),
                Err(_) => Resolved::Drop(DropReason::Verdict),
            },
            // Answered asynchronously (batches); not decided inline.
            MsgVerdictKind::External { .. } => Resolved::Drop(DropReason::Verdict),
        }
    }

    /// Carries out a msg verdict on the bytes it covers.
    fn apply_msg(
        &mut self,
        slot: SlotIdx,
        resolved: Resolved,
        part: SgRing,
        out: &mut SendOutcome,
    ) {
        let len = part.len();
        let refuse = |core: &mut Core, out: &mut SendOutcome, reason: DropReason, pipe: bool| {
            core.at(slot).count_drops(reason, 1, len);
            out.refused += len;
            out.pipe |= pipe;
        };
        match resolved {
            Resolved::Pass | Resolved::Reply => {
                self.transmit_own(slot, part.frags().cloned());
                out.accepted += len;
                out.ring = Some(slot);
            }
            Resolved::Drop(reason) => refuse(self, out, reason, false),
            Resolved::Redirect { target, ingress } if self.is_remote(target) => {
                out.accepted += len;
                let data: Frags = part.frags().cloned().collect();
                self.push_remote(slot, target, ingress, 1, data);
                out.remote = Some(target);
            }
            Resolved::Redirect { target, ingress } => {
                let Some(ts) = self.live_target(target, ingress) else {
                    return refuse(self, out, DropReason::DeadTarget, true);
                };
                if !ingress && self.is_dgram(ts) {
                    out.unsupported = true;
                    return refuse(self, out, DropReason::DeadTarget, false);
                }
                out.accepted += len;
                if ingress {
                    self.at(slot).count(|s| &s.redirected_ingress, 1);
                    let data: Frags = part.frags().cloned().collect();
                    self.queue_for_app(None, ts, data, len);
                } else {
                    self.at(slot).count(|s| &s.redirected_egress, 1);
                    self.push_own(ts, part.frags().cloned());
                    out.ring = Some(ts);
                }
            }
        }
    }
}

/// Applies an external msg verdict's edits in order.
fn apply_edits(msg: &mut SkMsg, edits: &[MsgEdit]) -> Result<(), Errno> {
    for e in edits {
        match *e {
            MsgEdit::Apply(n) => msg.apply_bytes(n),
            MsgEdit::Cork(n) => msg.cork_bytes(n),
            MsgEdit::Pull(start, end) => {
                msg.pull(start, end)?;
            }
            MsgEdit::Push(start, len) => msg.push(start, len)?,
            MsgEdit::Pop(start, len) => msg.pop(start, len)?,
        }
    }
    Ok(())
}
