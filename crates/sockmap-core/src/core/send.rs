//! The sk_msg path: data the application sends runs the msg verdict
//! (`tcp_bpf_send_verdict`), with `apply_bytes`, `cork_bytes` and the
//! pull/push/pop edits, then is transmitted, redirected or refused.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use smallvec::SmallVec;

use super::{eval_rule, Core, Resolved};
use crate::conn::SendAck;
use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::id::SockId;
use crate::msg::SkMsg;
use crate::program::MsgVerdictKind;
use crate::ring::SgRing;
use crate::rules::MessageView;
use crate::stats::DropReason;

/// Fragments one message under a msg verdict may hold before its cork is
/// forced (the kernel forces a cork when its 17-slot ring fills).
const MSG_MAX_FRAGS: usize = 1024;

/// What became of one application send.
#[derive(Debug, Default)]
struct Outcome {
    /// Bytes transmitted, redirected or parked by a cork.
    accepted: usize,
    /// Bytes refused.
    refused: usize,
    /// The refusal was a dead redirect target (EPIPE) rather than a DROP (EACCES).
    pipe: bool,
    /// The ring the last accepted bytes went to (the send is acknowledged when it drains).
    ring: Option<usize>,
}

impl Core {
    /// An application send; [`Event::SendDone`] reports the bytes accepted,
    /// `EACCES` when the msg verdict dropped everything, `EPIPE` when the
    /// socket or its redirect target is gone.
    pub fn handle_send(&mut self, id: SockId, data: Bytes, req: u64) {
        let n = data.len();
        let slot = self.slot_of(id).filter(|&s| {
            let c = self.conns[s].as_ref().expect("checked");
            !c.closing && !c.end_requested && !c.listener
        });
        let Some(slot) = slot else {
            return self.events.push_back(Event::SendDone {
                sock: id,
                req,
                result: Err(Errno::Pipe),
            });
        };
        let c = self.at(slot);
        c.count(|s| &s.sends, 1);
        let out = if c.progs.msg_verdict.is_none() {
            self.tx_push(slot, data);
            self.after_push(None, slot);
            Outcome {
                accepted: n,
                ring: Some(slot),
                ..Outcome::default()
            }
        } else {
            self.run_msg_verdict(slot, data)
        };
        let result = if out.refused > 0 && out.accepted == 0 {
            self.at(slot).count(|s| &s.sends_refused, 1);
            Err(if out.pipe { Errno::Pipe } else { Errno::Acces })
        } else {
            Ok(n.saturating_sub(out.refused))
        };
        self.ack(
            out.ring,
            SendAck {
                sock: id,
                req,
                result,
            },
        );
    }

    /// Reports a send now, or once the ring its bytes went to drains below the low watermark.
    fn ack(&mut self, ring: Option<usize>, ack: SendAck) {
        let high = self.cfg.send_high_watermark;
        if let Some(r) = ring {
            let c = self.at(r);
            if c.tx.len() > high || !c.send_acks.is_empty() {
                c.send_acks.push_back(ack);
                return;
            }
        }
        self.events.push_back(Event::SendDone {
            sock: ack.sock,
            req: ack.req,
            result: ack.result,
        });
    }

    /// The kernel's `tcp_bpf_send_verdict` loop over one send.
    fn run_msg_verdict(&mut self, slot: usize, data: Bytes) -> Outcome {
        let c = self.at(slot);
        let id = c.id;
        let prog = c.progs.msg_verdict.clone().expect("checked by caller");
        let mut st = std::mem::take(&mut c.msg);
        let mut out = Outcome::default();
        let len = data.len();

        let mut msg = st
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
        if st.cork_bytes > 0 && msg.size() < st.cork_bytes && !forced {
            st.cork = Some(msg);
            out.accepted = len;
            self.at(slot).msg = st;
            return out;
        }
        st.cork_bytes = 0;

        while msg.size() > 0 {
            let resolved = match st.cached.filter(|_| st.apply_left > 0) {
                Some(r) => r,
                None => {
                    msg.apply_bytes(0);
                    msg.cork_bytes(0);
                    let r = self.msg_verdict(&prog.kind, id, &mut msg);
                    let cork = msg.corked_bytes() as usize;
                    if cork > msg.size() && !forced {
                        st.cork = Some(msg);
                        st.cork_bytes = cork;
                        out.accepted = len;
                        self.at(slot).msg = st;
                        return out;
                    }
                    st.apply_left = msg.applied_bytes() as usize;
                    st.cached = (st.apply_left > 0).then_some(r);
                    r
                }
            };
            let take = if st.apply_left > 0 {
                st.apply_left.min(msg.size())
            } else {
                msg.size()
            };
            let part = msg.sg.split_to(take);
            if st.apply_left > 0 {
                st.apply_left -= take;
                if st.apply_left == 0 {
                    st.cached = None;
                }
            }
            self.apply_msg(slot, resolved, part, &mut out);
        }
        self.at(slot).msg = st;
        out
    }

    /// Runs a msg verdict program on one message.
    fn msg_verdict(&mut self, kind: &MsgVerdictKind, id: SockId, msg: &mut SkMsg) -> Resolved {
        match kind {
            MsgVerdictKind::Rule(rule) => {
                let frags: SmallVec<[Bytes; 4]> = msg.sg.frags().cloned().collect();
                let view = MessageView {
                    sock: id,
                    frags: &frags,
                    len: msg.size(),
                };
                eval_rule(&self.shared, rule, &view).0
            }
            MsgVerdictKind::Func(f) => match catch_unwind(AssertUnwindSafe(|| f(id, msg))) {
                Ok(v) => super::resolve(&self.shared, &v),
                Err(_) => Resolved::Drop(DropReason::Verdict),
            },
            // Answered asynchronously (batches); not decided inline.
            MsgVerdictKind::External { .. } => Resolved::Drop(DropReason::Verdict),
        }
    }

    /// Carries out a msg verdict on the bytes it covers.
    fn apply_msg(&mut self, slot: usize, resolved: Resolved, part: SgRing, out: &mut Outcome) {
        let len = part.len();
        let refuse = |core: &mut Core, out: &mut Outcome, reason: DropReason, pipe: bool| {
            core.count_drop(slot, reason, len);
            out.refused += len;
            out.pipe |= pipe;
        };
        match resolved {
            Resolved::Pass => {
                for f in part.frags() {
                    self.tx_push(slot, f.clone());
                }
                self.after_push(None, slot);
                out.accepted += len;
                out.ring = Some(slot);
            }
            Resolved::Drop(reason) => refuse(self, out, reason, false),
            Resolved::Redirect { target, ingress } => {
                let Some(ts) = self.slot_of(target) else {
                    return refuse(self, out, DropReason::DeadTarget, true);
                };
                let t = self.at(ts);
                let alive = if ingress {
                    !t.listener && !t.closing
                } else {
                    t.is_egress_target()
                };
                if !alive {
                    return refuse(self, out, DropReason::DeadTarget, true);
                }
                out.accepted += len;
                if ingress {
                    self.at(slot).count(|s| &s.redirected_ingress, 1);
                    let data: Frags = part.frags().cloned().collect();
                    self.events.push_back(Event::Message { sock: target, data });
                } else {
                    self.at(slot).count(|s| &s.redirected_egress, 1);
                    for f in part.frags() {
                        self.tx_push(ts, f.clone());
                    }
                    self.after_push(None, ts);
                    out.ring = Some(ts);
                }
            }
        }
    }
}
