//! Redirects across shards: messages whose target another shard (I/O
//! thread) owns, a partner's end of stream or close, and the backpressure between a
//! source on one shard and its target on another.
//!
//! A message for a socket another shard owns leaves its source as a
//! [`Remote::Bytes`] in the core's outbox for that shard (consecutive egress
//! messages of one source to one target merge into one item); the driver
//! hands each shard's items over once per loop turn, as one command with one
//! wake-up. The fragments travel as they are (`Bytes`, no copy).
//!
//! Backpressure mirrors the local protocol, plus a credit:
//! - the target's shard queues the bytes on the target (send ring, or the
//!   application queue for ingress) and answers each item with a
//!   [`Remote::Ack`] saying whether it was delivered — at once while the
//!   target is under its high watermark, else once it drains (so a full
//!   target holds its sources' credit);
//! - a target above its high watermark records the remote source in its
//!   waiter list, as a local one, and tells the source's shard to stop it
//!   ([`Remote::Block`]); when the target drains, the waiter is released
//!   with [`Remote::Release`];
//! - a source may have at most [`REMOTE_CREDIT`] bytes (or its
//!   `send_high_watermark`, if lower) unacknowledged by other shards: past
//!   that it stops being read until acknowledgements bring it to half that.
//!   A full target therefore takes at most the credit past its watermark
//!   from each source before the source stops.
//!
//! Invariants: items between two shards arrive in the order they were made
//! (one queue per shard, drained in order), so a source's bytes reach a
//! target in order and a partner's [`Remote::End`] after its last bytes;
//! `Block`/`Release` pair up exactly as local waiter registrations do. The
//! source counts a message when the ack arrives: as redirected if it was
//! delivered, as dropped (`DeadTarget`) if its target had closed, exactly
//! as a local redirect counts it at once; so across shards the counters
//! settle one loop turn of each shard later.

use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::id::SockId;
use crate::stats::DropReason;

use super::handoff::Remote;
use super::queue::SendAck;
use super::slot::SlotIdx;
use super::Core;

/// Bytes a source may have unacknowledged by other shards.
pub(crate) const REMOTE_CREDIT: usize = 256 << 10;

impl Core {
    /// Reports an application send whose bytes went to another shard: as
    /// computed, or `EPIPE` when the target was gone on arrival.
    fn report_remote_send(&mut self, a: SendAck, delivered: bool) {
        let result = if delivered {
            a.result
        } else {
            Err(Errno::Pipe)
        };
        if !delivered {
            if let Some(s) = self.slot_of(a.sock) {
                self.at(s).count(|s| &s.sends_refused, 1);
            }
        }
        self.events.push_back(Event::SendDone {
            sock: a.sock,
            req: a.req,
            result,
        });
    }

    /// Whether another shard owns `id`.
    pub(super) fn is_remote(&self, id: SockId) -> bool {
        self.shared.shards.of(id) != self.shard
    }

    fn remote_to(&mut self, id: SockId, item: Remote) {
        let shard = self.shared.shards.of(id);
        self.remote[shard].push(item);
    }

    /// Sends messages of `src` to `target`, which another shard owns.
    pub(super) fn push_remote(
        &mut self,
        src: SlotIdx,
        target: SockId,
        ingress: bool,
        messages: u64,
        frags: Frags,
    ) {
        let src_id = self.at(src).id();
        let len: usize = frags.iter().map(|f| f.len()).sum();
        let shard = self.shared.shards.of(target);
        let merged = match self.remote[shard].last_mut() {
            Some(Remote::Bytes {
                src: s,
                target: t,
                ingress: false,
                messages: m,
                len: l,
                frags: f,
                done: None,
                // Merged only while each message is one fragment, so a datagram target can tell them apart.
            }) if !ingress
                && *s == src_id
                && *t == target
                && f.len() as u64 == *m
                && frags.len() as u64 == messages =>
            {
                f.extend(frags.iter().cloned());
                *m += messages;
                *l += len;
                true
            }
            _ => false,
        };
        if !merged {
            self.remote[shard].push(Remote::Bytes {
                src: src_id,
                target,
                ingress,
                messages,
                len,
                frags,
                done: None,
            });
        }
        let credit = REMOTE_CREDIT.min(self.cfg.send_high_watermark);
        self.at(src).remote_sent(len, credit);
    }

    /// Reports `ack` once the shard owning `target` answers the bytes just
    /// queued for it; false when there are none (report it now).
    pub(super) fn defer_to_remote(&mut self, target: SockId, ack: SendAck) -> bool {
        let shard = self.shared.shards.of(target);
        let last = self.remote[shard].iter_mut().rev().find_map(|r| match r {
            Remote::Bytes {
                src,
                target: t,
                done,
                ..
            } if *src == ack.sock && *t == target => Some(done),
            _ => None,
        });
        match last {
            Some(done) => {
                *done = Some(ack);
                true
            }
            None => false,
        }
    }

    /// Ends `target`, a partner another shard owns.
    pub(super) fn end_remote(&mut self, target: SockId) {
        self.remote_to(target, Remote::End { target });
    }

    /// Destroys `target`, a partner another shard owns.
    pub(super) fn destroy_remote(&mut self, target: SockId) {
        self.remote_to(target, Remote::Destroy { target });
    }

    /// Stops `src`, a source another shard owns, at its next read.
    pub(super) fn block_remote(&mut self, src: SockId) {
        self.remote_to(src, Remote::Block { src });
    }

    /// Lets `src`, a source another shard owns, read again.
    pub(super) fn release_remote(&mut self, src: SockId) {
        self.remote_to(src, Remote::Release { src });
    }

    /// Sends the acknowledgements `slot` held while it was full.
    pub(super) fn release_remote_acks(&mut self, slot: SlotIdx) {
        for ack in self.at(slot).take_remote_acks() {
            if let Remote::Ack { src, .. } = ack {
                self.remote_to(src, ack);
            }
        }
    }

    /// Takes the items for other shards: `(shard, items)`, each shard once.
    pub(crate) fn poll_remote(&mut self) -> impl Iterator<Item = (usize, Vec<Remote>)> + '_ {
        self.remote
            .iter_mut()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(shard, v)| (shard, std::mem::take(v)))
    }

    /// Items another shard handed this one, in order.
    pub(crate) fn handle_remote(&mut self, items: Vec<Remote>) {
        for item in items {
            match item {
                Remote::Bytes {
                    src,
                    target,
                    ingress,
                    messages,
                    len,
                    frags,
                    done,
                } => {
                    let live = self.live_target(target, ingress);
                    let ack = Remote::Ack {
                        src,
                        ingress,
                        messages,
                        len,
                        delivered: live.is_some(),
                        done,
                    };
                    let Some(ts) = live else {
                        self.remote_to(src, ack);
                        continue;
                    };
                    let full = if ingress {
                        self.queue_for_app(Some(src), ts, frags, len);
                        let t = self.at_ref(ts);
                        self.cfg
                            .app_high_watermark
                            .is_some_and(|h| t.app_queue.queued() > h)
                    } else if self.is_dgram(ts) {
                        self.push_dgrams_from_remote(ts, messages, frags);
                        false
                    } else {
                        self.push_from_remote(src, ts, frags);
                        self.at_ref(ts).ring.len() > self.cfg.send_high_watermark
                    };
                    if full {
                        self.at(ts).defer_remote_ack(ack);
                    } else {
                        self.remote_to(src, ack);
                    }
                }
                Remote::End { target } => {
                    if let Some(ts) = self.slot_of(target) {
                        self.end(ts);
                    }
                }
                Remote::Destroy { target } => {
                    if let Some(ts) = self.slot_of(target) {
                        self.close(ts, None);
                    }
                }
                Remote::Ack {
                    src,
                    ingress,
                    messages,
                    len,
                    delivered,
                    done,
                } => {
                    if let Some(a) = done {
                        self.report_remote_send(a, delivered);
                    }
                    let Some(s) = self.slot_of(src) else { continue };
                    let low = REMOTE_CREDIT.min(self.cfg.send_high_watermark) / 2;
                    let p = self.at(s);
                    match (delivered, ingress) {
                        (true, false) => p.count(|s| &s.redirected_egress, messages),
                        (true, true) => p.count(|s| &s.redirected_ingress, messages),
                        (false, _) => p.count_drops(DropReason::DeadTarget, messages, len),
                    }
                    if p.remote_acked(len, low) {
                        self.kick_read(s);
                    }
                }
                Remote::Block { src } => {
                    if let Some(s) = self.slot_of(src) {
                        self.at(s).block();
                    }
                }
                Remote::Release { src } => {
                    if let Some(s) = self.slot_of(src) {
                        self.at(s).unblock();
                        self.kick_read(s);
                    }
                }
            }
        }
    }
}
