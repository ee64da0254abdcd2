//! Bytes into a target: the per-read egress coalescer, the send ring's
//! watermarks, and the application queue.
//!
//! An [`Egress`] is a local value: one is created for each input that can
//! redirect messages (a read, an answered batch, a relink), carried down the
//! receive path by `&mut`, and flushed before that input returns. It gathers
//! the messages one source redirects to each egress target, in order:
//! adjacent ranges of one block as one range, small scattered messages
//! copied into one buffer, so a read of many small messages to a few
//! targets queues a fragment or two per target instead of one per message.
//!
//! Backpressure: a send ring above its high watermark stops the sources that
//! feed it (each recorded once in the ring's waiters, each counting the
//! targets it waits on); they are read again once it drains to its low
//! watermark. With an application high watermark, a socket's application
//! queue does the same for the sockets feeding it, until acknowledgements
//! bring it to half the mark.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::body::Body;
use super::slot::SlotIdx;
use super::{Core, Op};
use crate::event::{Event, Frags};
use crate::id::SockId;
use crate::stats::DropReason;

/// Distinct egress targets gathered at once.
const STAGED_TARGETS: usize = 4;
/// Messages up to this size, and runs up to it, are copied together when they
/// are not adjacent (a fragment per message costs more than the copy).
pub(super) const STAGE_COPY_MAX: usize = 1024;
/// The first allocation of a gathered copy.
const STAGE_COPY_CAPACITY: usize = 16 * 1024;
/// A gathered copy goes to its target once it holds this many bytes.
const STAGE_FLUSH: usize = 256 * 1024;

/// Messages of one source headed to one egress target, in order.
struct Staged {
    target: SlotIdx,
    messages: u64,
    bytes: StagedBytes,
}

enum StagedBytes {
    /// `start..end` of `block`.
    Range {
        block: Bytes,
        start: usize,
        end: usize,
    },
    /// The messages' bytes, copied.
    Copy(BytesMut),
}

/// The egress coalescer of one input: see the module documentation.
pub(crate) struct Egress {
    src: SlotIdx,
    /// The bytes read by this input: single fragments lying in it are
    /// gathered as ranges of it.
    chunk: Bytes,
    staged: SmallVec<[Staged; STAGED_TARGETS]>,
}

fn same_block(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// Where `part` starts inside `whole`, if it lies within it.
pub(super) fn offset_in(whole: &Bytes, part: &[u8]) -> Option<usize> {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    (p >= w && p + part.len() <= w + whole.len() && !part.is_empty()).then(|| p - w)
}

impl Egress {
    /// A coalescer for messages of `src`, whose input read `chunk`.
    pub(crate) fn new(src: SlotIdx, chunk: Bytes) -> Egress {
        Egress {
            src,
            chunk,
            staged: SmallVec::new(),
        }
    }

    /// The bytes read by this input (empty when it is no read).
    pub(super) fn chunk(&self) -> &Bytes {
        &self.chunk
    }

    /// Queues `messages` messages of the source for `target` (a live egress target).
    pub(crate) fn push(&mut self, core: &mut Core, target: SlotIdx, messages: u64, body: Body<'_>) {
        if core.is_dgram(target) {
            // One datagram per message, never gathered with others.
            return self.push_frags(core, target, messages, body.into_frags());
        }
        let (block, start, end) = match body {
            Body::Range(b, s, e) => match offset_in(&self.chunk, &b[s..e]) {
                Some(off) => (None, off, off + (e - s)),
                None => (Some(b), s, e),
            },
            Body::Frags(f) => match f.as_slice() {
                [one] => match offset_in(&self.chunk, one) {
                    Some(off) => (None, off, off + one.len()),
                    None => return self.push_frags(core, target, messages, f),
                },
                _ => return self.push_frags(core, target, messages, f),
            },
        };
        let block = block.unwrap_or(&self.chunk);
        stage(
            &mut self.staged,
            self.src,
            core,
            (target, messages),
            block,
            start,
            end,
        );
    }

    /// Queues fragments that cannot be gathered, after what is gathered for
    /// the same target.
    fn push_frags(&mut self, core: &mut Core, target: SlotIdx, messages: u64, frags: Frags) {
        self.flush_target(core, target);
        core.push_egress(self.src, target, messages, frags);
    }

    /// Queues what is gathered for `target` now (before it ends).
    pub(crate) fn flush_target_of(&mut self, core: &mut Core, target: SlotIdx) {
        self.flush_target(core, target);
    }

    /// Queues what is gathered for `target` now (before bytes that must follow it).
    fn flush_target(&mut self, core: &mut Core, target: SlotIdx) {
        if let Some(i) = self.staged.iter().position(|s| s.target == target) {
            let s = self.staged.remove(i);
            core.unstage(self.src, s);
        }
    }

    /// Queues everything gathered on its targets' send rings.
    pub(crate) fn flush(mut self, core: &mut Core) {
        for s in self.staged.drain(..) {
            core.unstage(self.src, s);
        }
    }
}

/// Gathers `messages` messages at `start..end` of `block` for `target`.
fn stage(
    staged: &mut SmallVec<[Staged; STAGED_TARGETS]>,
    src: SlotIdx,
    core: &mut Core,
    (target, messages): (SlotIdx, u64),
    block: &Bytes,
    start: usize,
    end: usize,
) {
    let fresh = |block: &Bytes| StagedBytes::Range {
        block: block.clone(),
        start,
        end,
    };
    let Some(i) = staged.iter().position(|s| s.target == target) else {
        if staged.len() == STAGED_TARGETS {
            let oldest = staged.remove(0);
            core.unstage(src, oldest);
        }
        staged.push(Staged {
            target,
            messages,
            bytes: fresh(block),
        });
        return;
    };
    let s = &mut staged[i];
    let small = end - start <= STAGE_COPY_MAX;
    match &mut s.bytes {
        StagedBytes::Range {
            block: b, end: e, ..
        } if same_block(b, block) && *e == start => {
            *e = end;
        }
        StagedBytes::Range {
            block: b,
            start: s0,
            end: e,
        } if small && *e - *s0 <= STAGE_COPY_MAX => {
            let mut copy = BytesMut::with_capacity(STAGE_COPY_CAPACITY);
            copy.extend_from_slice(&b[*s0..*e]);
            copy.extend_from_slice(&block[start..end]);
            s.bytes = StagedBytes::Copy(copy);
        }
        StagedBytes::Copy(copy) if small && copy.len() < STAGE_FLUSH => {
            copy.extend_from_slice(&block[start..end]);
        }
        _ => {
            let done = std::mem::replace(
                s,
                Staged {
                    target,
                    messages: 0,
                    bytes: fresh(block),
                },
            );
            core.unstage(src, done);
        }
    }
    staged[i].messages += messages;
}

impl Core {
    /// Queues gathered messages on their target.
    fn unstage(&mut self, src: SlotIdx, s: Staged) {
        let frag = match s.bytes {
            StagedBytes::Range { block, start, end } => block.slice(start..end),
            StagedBytes::Copy(b) => b.freeze(),
        };
        self.push_egress(src, s.target, s.messages, smallvec::smallvec![frag]);
    }

    /// Appends `messages` messages of `src` to `target`'s send ring, or
    /// drops them as sent to a dead target if it can no longer take them.
    fn push_egress(&mut self, src: SlotIdx, target: SlotIdx, messages: u64, frags: Frags) {
        let live = self.socks[target.get()]
            .as_ref()
            .is_some_and(|t| t.is_egress_target());
        let s = self.at(src);
        if !live {
            let bytes = frags.iter().map(Bytes::len).sum();
            return s.count_drops(DropReason::DeadTarget, messages, bytes);
        }
        if self.is_dgram(target) {
            return self.push_dgram_from(src, target, frags);
        }
        let s = self.at(src);
        s.count(|s| &s.redirected_egress, messages);
        let t = self.at(target);
        for f in frags {
            t.ring.push(f);
        }
        let src = self.at(src).id();
        self.after_push(Some(src), target);
    }

    /// Appends fragments a source on another shard redirected to `target`.
    pub(super) fn push_from_remote(&mut self, src: SockId, target: SlotIdx, frags: Frags) {
        let t = self.at(target);
        for f in frags {
            t.ring.push(f);
        }
        self.after_push(Some(src), target);
    }

    /// Appends a fragment the socket's own application (or a msg verdict) sends.
    pub(super) fn push_own(&mut self, target: SlotIdx, frags: impl IntoIterator<Item = Bytes>) {
        let t = self.at(target);
        for f in frags {
            t.ring.push(f);
        }
        self.after_push(None, target);
    }

    /// Accounts a push into `target`'s ring from `src` (None: an application send).
    fn after_push(&mut self, src: Option<SockId>, target: SlotIdx) {
        let high = self.cfg.send_high_watermark;
        let t = self.at(target);
        t.gauge(|s| &s.queued_bytes, t.ring.len());
        if !t.is_connecting() && t.ring.queue_flush() {
            let id = t.id();
            self.ops.push_back(Op::Flush(id));
        }
        let t = self.at(target);
        if t.ring.len() <= high {
            return;
        }
        t.ring.mark_above_high();
        if let Some(src) = src {
            self.block_on(src, target, false);
        }
    }

    /// Stops reading `src` until `target`'s send ring drains (or, with
    /// `app`, until its application acknowledges enough bytes).
    fn block_on(&mut self, src: SockId, target: SlotIdx, app: bool) {
        let t = self.at(target);
        let added = if app {
            t.app_queue.add_waiter(src)
        } else {
            t.ring.add_waiter(src)
        };
        if !added {
            return;
        }
        match self.slot_of(src) {
            Some(s) => self.at(s).block(),
            None if self.is_remote(src) => self.block_remote(src),
            None => {}
        }
    }

    /// Lets sources stopped by a drained queue read again.
    pub(super) fn release_waiters(&mut self, waiters: SmallVec<[SockId; 2]>) {
        for w in waiters {
            if let Some(ws) = self.slot_of(w) {
                self.at(ws).unblock();
                self.kick_read(ws);
            } else if self.is_remote(w) {
                self.release_remote(w);
            }
        }
    }

    /// Queues a message for `target`'s application; with a bounded
    /// application queue, `src` stops being read above the high watermark.
    pub(super) fn queue_for_app(
        &mut self,
        src: Option<SockId>,
        target: SlotIdx,
        data: Frags,
        len: usize,
    ) {
        let sock = self.account_app(src, target, len);
        self.events.push_back(Event::Message { sock, data });
    }

    /// [`Core::queue_for_app`] for a datagram a bound socket passed, with its sender.
    pub(super) fn queue_datagram_for_app(
        &mut self,
        src: Option<SockId>,
        target: SlotIdx,
        data: Frags,
        len: usize,
        from: crate::sock::Addr,
    ) {
        let sock = self.account_app(src, target, len);
        self.events.push_back(Event::Datagram { sock, data, from });
    }

    /// Counts `len` bytes into `target`'s application queue (stopping `src`
    /// above its high watermark); returns the target's id.
    fn account_app(&mut self, src: Option<SockId>, target: SlotIdx, len: usize) -> SockId {
        let high = self.cfg.app_high_watermark;
        let t = self.at(target);
        let sock = t.id();
        if let Some(high) = high {
            let above = t.app_queue.add(len, high);
            t.gauge(|s| &s.app_queued_bytes, t.app_queue.queued());
            if let (true, Some(src)) = (above, src) {
                self.block_on(src, target, true);
            }
        }
        sock
    }

    /// The application consumed `bytes` of the messages delivered to it.
    pub fn handle_ack(&mut self, id: SockId, bytes: usize) {
        let Some(high) = self.cfg.app_high_watermark else {
            return;
        };
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at(slot);
        let waiters = p.app_queue.ack(bytes, high);
        p.gauge(|s| &s.app_queued_bytes, p.app_queue.queued());
        let drained = p.app_queue.queued() <= high / 2;
        self.release_waiters(waiters);
        if drained {
            self.release_remote_acks(slot);
        }
    }

    /// `n` bytes of the send ring were written.
    pub fn handle_sent(&mut self, id: SockId, n: usize) {
        let Some(slot) = self.slot_of(id) else { return };
        let low = self.cfg.send_low_watermark;
        // TLS: `n` bytes of ciphertext were written; the plaintext they carried leaves the ring.
        let n = self.tls_sent(slot, n);
        let p = self.at(slot);
        p.ring.advance(n);
        p.count(|s| &s.bytes_out, n as u64);
        p.gauge(|s| &s.queued_bytes, p.ring.len());
        if p.ring.len() <= low {
            let drain = p.ring.drained();
            for a in drain.acks {
                self.events.push_back(Event::SendDone {
                    sock: a.sock,
                    req: a.req,
                    result: a.result,
                });
            }
            if drain.owed {
                self.events.push_back(Event::Drained { sock: id });
            }
            self.release_waiters(drain.waiters);
            self.release_remote_acks(slot);
        }
        if self.slot_of(id) == Some(slot) {
            self.tls_pump(slot, false);
        }
        if self.at(slot).should_shut() {
            self.ops.push_back(Op::ShutdownWrite(id));
        }
    }
}
