//! The core's side of datagram sockets: each datagram one message, send
//! queues of whole datagrams, and sessions.
//!
//! Invariants:
//! - a datagram is received as one message to the socket's stream verdict,
//!   or, under a native parser, as the messages it frames in that datagram
//!   alone: none spans two datagrams, and a parser error costs the rest of
//!   its datagram, not the socket (an external parser does not run on
//!   datagrams); a redirect or send to a datagram socket queues exactly one
//!   datagram ([`Core::push_dgram`]): boundaries are never merged;
//! - a datagram socket's send queue holds at most
//!   [`EngineConfig::dgram_queue_datagrams`](crate::config::EngineConfig::dgram_queue_datagrams)
//!   datagrams and
//!   [`EngineConfig::dgram_queue_bytes`](crate::config::EngineConfig::dgram_queue_bytes)
//!   bytes; a datagram beyond either is dropped and counted
//!   (`dropped_overflow` on its source). A datagram target never stops its
//!   sources (UDP has no flow control);
//! - a bound socket without sessions keeps the sender of each datagram
//!   received, in order, until its verdict is applied ([`Core::apply`] takes
//!   the oldest), so a PASS reaches the application with its sender even
//!   after an external verdict;
//! - a session belongs to one bound socket: it has no descriptor of its own;
//!   the bound socket reads for all of its sessions and sends what is queued
//!   for a session to that session's client. A session that is not read
//!   (not yet in a map, paused, or stopped by a full stream target) holds its
//!   datagrams, within the queue bounds (and all the sessions of one bound
//!   socket within its byte bound together), and takes them in order once it
//!   reads; it closes after its idle timeout without a datagram either way,
//!   and when its bound socket closes.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::smallvec;

use super::egress::Egress;
use super::slot::SlotIdx;
use super::state::dgram::DgramState;
use super::{AppRead, Core, NewSock, Op};
use crate::dgram::{Datagram, DgramRole};
use crate::error::Errno;
use crate::event::{Event, Frags};
use crate::framer::MessageMeta;
use crate::id::SockId;
use crate::registry::SockState;
use crate::sock::Addr;
use crate::stats::DropReason;
use crate::strparser::{Event as StrpEvent, StrParser};
use crate::timer::Timer;

/// One buffer holding a message's fragments (one datagram).
fn concat(frags: Frags) -> Bytes {
    match frags.len() {
        1 => frags.into_iter().next().expect("one"),
        _ => {
            let mut b = BytesMut::with_capacity(frags.iter().map(Bytes::len).sum());
            for f in &frags {
                b.extend_from_slice(f);
            }
            b.freeze()
        }
    }
}

impl Core {
    /// A datagram socket the backend registered: its role.
    pub fn handle_new_dgram(&mut self, id: SockId, role: DgramRole) {
        let now = self.now;
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at(slot);
        p.dgram = Some(Box::new(DgramState::new(role, now)));
        if matches!(role, DgramRole::Sessions(_)) {
            // It reads for its sessions, whatever its own programs.
            p.set_app_read(AppRead::Resumed);
            self.kick_read(slot);
        }
    }

    pub(super) fn is_dgram(&self, slot: SlotIdx) -> bool {
        self.at_ref(slot).dgram.is_some()
    }

    /// Whether `id` is a session (it has no I/O object: its bound socket's serves it).
    pub(super) fn is_session(&self, id: SockId) -> bool {
        self.psock(id)
            .and_then(|p| p.dgram.as_ref())
            .is_some_and(|d| d.is_session())
    }

    /// A datagram was read from the socket at `now` (`from`: its sender, for a bound socket).
    pub fn handle_datagram(&mut self, id: SockId, from: Option<Addr>, data: Bytes, now: Instant) {
        let Some(slot) = self.slot_of(id) else { return };
        self.now = now;
        let Some(d) = self.at_ref(slot).dgram.as_ref() else {
            return;
        };
        if d.sessions_cfg().is_some() {
            return self.route_to_session(slot, from, data);
        }
        let from = from.filter(|_| d.role == DgramRole::Bound);
        self.receive_dgram(slot, from, data);
    }

    /// A datagram received too large for the receive slot: dropped and counted.
    pub fn handle_datagram_truncated(&mut self, id: SockId, len: usize) {
        if let Some(slot) = self.slot_of(id) {
            let p = self.at(slot);
            p.count(|s| &s.bytes_in, len as u64);
            p.count_drops(DropReason::TooBig, 1, len);
        }
    }

    /// The kernel says it dropped `total` datagrams on the socket so far: the new ones are counted.
    pub fn handle_kernel_drops(&mut self, id: SockId, total: u32) {
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at(slot);
        let Some(d) = p.dgram.as_mut() else { return };
        let new = total.wrapping_sub(d.kernel_drops);
        d.kernel_drops = total;
        if new > 0 {
            p.count(|s| &s.kernel_drops, u64::from(new));
        }
    }

    /// One datagram through the socket's verdict: as one message, or as the
    /// messages its native parser frames in it.
    fn receive_dgram(&mut self, slot: SlotIdx, from: Option<Addr>, data: Bytes) {
        let p = self.at(slot);
        let len = data.len();
        p.count(|s| &s.bytes_in, len as u64);
        let mut out = Egress::new(slot, Bytes::new());
        let framed = p
            .parser
            .prog
            .as_ref()
            .is_some_and(|pp| pp.external_tag().is_none());
        match p.parser.strp.take().filter(|_| framed) {
            Some(strp) => self.frame_dgram(slot, strp, from, data, &mut out),
            None => self.deliver_dgram(
                slot,
                &from,
                smallvec![data],
                len,
                &MessageMeta::None,
                &mut out,
            ),
        }
        out.flush(self);
    }

    /// One message of a datagram to the socket's verdict, its sender kept
    /// for the verdict's PASS.
    fn deliver_dgram(
        &mut self,
        slot: SlotIdx,
        from: &Option<Addr>,
        frags: Frags,
        len: usize,
        meta: &MessageMeta,
        out: &mut Egress,
    ) {
        if let (Some(f), Some(d)) = (from, self.at(slot).dgram.as_mut()) {
            d.rx_from.push_back(f.clone());
        }
        self.deliver(slot, frags, len, meta, out);
    }

    /// Splits one datagram into the messages the socket's parser frames in
    /// it. No message spans two datagrams: the datagram's end ends a message
    /// it cut short when the framer says so (a delimiter's last line), else
    /// that message is dropped (`dropped_parser`); a parser error drops the
    /// rest of this datagram alone (`parser_errors`), and a hand-back makes
    /// the rest one message. The next datagram starts a fresh message.
    fn frame_dgram(
        &mut self,
        slot: SlotIdx,
        mut strp: Box<StrParser>,
        from: Option<Addr>,
        data: Bytes,
        out: &mut Egress,
    ) {
        let now = self.now;
        // A datagram read is framed whole: nothing of it waits in the parser
        // for the next one, so a pause (which stops reading) does not stop this.
        let paused = strp.is_paused();
        strp.unpause();
        strp.handle_data(data, now);
        loop {
            let before = strp.buffered_bytes();
            let Some(ev) = strp.poll_event(now) else {
                break;
            };
            match ev {
                StrpEvent::Message(m) => {
                    self.deliver_dgram(slot, &from, m.frags, m.len, &m.meta, out)
                }
                StrpEvent::Skipped(n) => {
                    let p = self.at(slot);
                    p.count(|s| &s.skipped_frames, 1);
                    p.count(|s| &s.skipped_bytes, n as u64);
                }
                StrpEvent::Handback { rest, .. } => {
                    self.at(slot).count(|s| &s.handbacks, 1);
                    let len = rest.iter().map(Bytes::len).sum();
                    let frags = rest.into_iter().collect();
                    self.deliver_dgram(slot, &from, frags, len, &MessageMeta::None, out);
                    break;
                }
                StrpEvent::Error(_) => {
                    let p = self.at(slot);
                    p.count(|s| &s.parser_errors, 1);
                    p.count_drops(DropReason::Parser, 1, before);
                    break;
                }
            }
        }
        let whole = strp.ends_at_boundary();
        let rest = strp.end_input();
        let len: usize = rest.iter().map(Bytes::len).sum();
        if len > 0 {
            if whole {
                let frags = rest.into_iter().collect();
                self.deliver_dgram(slot, &from, frags, len, &MessageMeta::None, out);
            } else {
                self.at(slot).count_drops(DropReason::Parser, 1, len);
            }
        }
        if paused {
            strp.pause();
        }
        self.at(slot).parser.strp = Some(strp);
    }

    /// The sender of the oldest datagram of a bound socket whose verdict is being applied.
    pub(super) fn take_rx_from(&mut self, slot: SlotIdx) -> Option<Addr> {
        self.at(slot).dgram.as_mut()?.rx_from.pop_front()
    }

    /// A datagram read by a bound socket with sessions: to the session of
    /// its sender, created on its first datagram.
    fn route_to_session(&mut self, slot: SlotIdx, from: Option<Addr>, data: Bytes) {
        let len = data.len();
        // The bound socket counts every datagram it reads; a session counts those it takes.
        self.at(slot).count(|s| &s.bytes_in, len as u64);
        let Some(from) = from.filter(|a| *a != Addr::Unix(crate::sock::UnixName::Unnamed)) else {
            // An unbound Unix client cannot be answered: no session.
            return self.at(slot).count_drops(DropReason::NoKey, 1, len);
        };
        let d = self.at_ref(slot).dgram.as_ref().expect("dgram");
        let known = d.sessions.get(&from).and_then(|&s| self.slot_of(s));
        let s = match known {
            Some(s) => s,
            None => match self.open_session(slot, from) {
                Some(s) => s,
                None => return self.at(slot).count_drops(DropReason::Overflow, 1, len),
            },
        };
        let now = self.now;
        let (count, bytes) = (self.cfg.dgram_queue_datagrams, self.cfg.dgram_queue_bytes);
        let all_held = self
            .at_ref(slot)
            .dgram
            .as_ref()
            .map_or(0, |d| d.sessions_held);
        let p = self.at(s);
        let reads = p.reads_for_app();
        let d = p.dgram.as_mut().expect("session");
        d.last = now;
        if reads && d.held.is_empty() {
            return self.receive_dgram(s, None, data);
        }
        if d.held.len() >= count || d.held_bytes + len > bytes || all_held + len > bytes {
            return p.count_drops(DropReason::Overflow, 1, len);
        }
        d.held_bytes += len;
        d.held.push_back(data);
        if let Some(b) = self.at(slot).dgram.as_mut() {
            b.sessions_held += len;
        }
    }

    /// `len` bytes a session of `bound` held left it.
    fn release_held(&mut self, bound: SockId, len: usize) {
        if let Some(b) = self.slot_of(bound).and_then(|b| self.at(b).dgram.as_mut()) {
            b.sessions_held = b.sessions_held.saturating_sub(len);
        }
    }

    /// Opens a session of the bound socket at `slot` for `peer`; `None` at its maximum of sessions.
    fn open_session(&mut self, slot: SlotIdx, peer: Addr) -> Option<SlotIdx> {
        let bound = self.at_ref(slot).id();
        let d = self.at_ref(slot).dgram.as_ref().expect("dgram");
        let cfg = d.sessions_cfg().expect("sessions");
        if d.sessions.len() >= cfg.max_sessions || self.at_ref(slot).is_closing() {
            return None;
        }
        let id = self.shared.lock().alloc(SockState::Established, self.shard);
        self.handle_new_socket(id, NewSock::Established, None);
        let s = self.slot_of(id)?;
        let now = self.now;
        let mut state = DgramState::new(DgramRole::Connected, now);
        state.session = Some((bound, peer.clone()));
        self.at(s).dgram = Some(Box::new(state));
        self.at(slot)
            .dgram
            .as_mut()
            .expect("dgram")
            .sessions
            .insert(peer.clone(), id);
        self.has_sessions = true;
        self.timers.set(now + cfg.idle_timeout, Timer::Session(id));
        self.events.push_back(Event::Accepted {
            listener: bound,
            sock: id,
            peer,
        });
        Some(s)
    }

    /// A session that reads again takes the datagrams it held, in order.
    pub(super) fn drain_held(&mut self, id: SockId) {
        let Some(slot) = self.slot_of(id) else { return };
        loop {
            let p = self.at(slot);
            if !p.reads_for_app() {
                return;
            }
            let Some(d) = p.dgram.as_mut() else { return };
            let Some(data) = d.held.pop_front() else {
                return;
            };
            d.held_bytes -= data.len();
            if let Some((bound, _)) = d.session {
                self.release_held(bound, data.len());
            }
            self.receive_dgram(slot, None, data);
        }
    }

    /// A session's idle deadline: it closes if nothing moved since.
    pub(super) fn handle_session_timer(&mut self, id: SockId, now: Instant) {
        let Some(slot) = self.slot_of(id) else { return };
        let Some(d) = self.at_ref(slot).dgram.as_ref() else {
            return;
        };
        let Some((bound, _)) = &d.session else { return };
        let idle = self
            .psock(*bound)
            .and_then(|b| b.dgram.as_ref())
            .and_then(|b| b.sessions_cfg())
            .map_or(std::time::Duration::ZERO, |c| c.idle_timeout);
        let due = d.last + idle;
        if due <= now {
            self.close(slot, None);
        } else {
            self.timers.set(due, Timer::Session(id));
        }
    }

    /// A datagram socket begins closing: a session leaves its bound socket's
    /// table; a bound socket returns its sessions (to be closed too) and
    /// discards its queue (returns the bytes discarded).
    pub(super) fn dgram_closing(&mut self, slot: SlotIdx) -> (Vec<SockId>, usize) {
        let id = self.at_ref(slot).id();
        let Some(d) = self.at(slot).dgram.as_mut() else {
            return (Vec::new(), 0);
        };
        let children: Vec<SockId> = d.sessions.drain().map(|(_, s)| s).collect();
        let held = d.held_bytes;
        let lost = d.tx_bytes + held;
        d.tx.clear();
        d.held.clear();
        d.tx_bytes = 0;
        d.held_bytes = 0;
        d.rx_from.clear();
        if let Some((bound, peer)) = d.session.clone() {
            self.release_held(bound, held);
            if let Some(b) = self.slot_of(bound) {
                if let Some(bd) = self.at(b).dgram.as_mut() {
                    if bd.sessions.get(&peer) == Some(&id) {
                        bd.sessions.remove(&peer);
                    }
                }
            }
        }
        (children, lost)
    }

    /// `end()` of a datagram socket: it closes once its queue is sent (a session at once).
    pub(super) fn dgram_end(&mut self, slot: SlotIdx) {
        let d = self.at_ref(slot).dgram.as_ref().expect("dgram");
        if d.is_session() || d.tx.is_empty() {
            self.close(slot, None);
        }
    }

    /// Queues one datagram on `target`'s egress: to its connected peer, or
    /// for a session to its client through its bound socket. `Err` says why
    /// it was dropped (the caller counts it).
    pub(super) fn push_dgram(
        &mut self,
        target: SlotIdx,
        to: Option<Addr>,
        data: Bytes,
    ) -> Result<(), DropReason> {
        let now = self.now;
        let t = self.at(target);
        let d = t.dgram.as_mut().ok_or(DropReason::DeadTarget)?;
        d.last = now;
        let (via, to) = match (&d.session, to) {
            (Some((bound, peer)), _) => {
                let (bound, peer) = (*bound, peer.clone());
                (
                    self.slot_of(bound).ok_or(DropReason::DeadTarget)?,
                    Some(peer),
                )
            }
            (None, Some(to)) => (target, Some(to)),
            (None, None) if d.role == DgramRole::Connected => (target, None),
            (None, None) => return Err(DropReason::DeadTarget),
        };
        let (count, bytes) = (self.cfg.dgram_queue_datagrams, self.cfg.dgram_queue_bytes);
        let v = self.at(via);
        if v.is_closing() {
            return Err(DropReason::DeadTarget);
        }
        let connecting = v.is_connecting();
        let d = v.dgram.as_mut().ok_or(DropReason::DeadTarget)?;
        if d.tx.len() >= count || d.tx_bytes + data.len() > bytes {
            return Err(DropReason::Overflow);
        }
        d.tx_bytes += data.len();
        d.tx.push_back(Datagram { to, data });
        let ask = !d.flush_asked && !connecting;
        d.flush_asked = true;
        let tx_bytes = d.tx_bytes;
        v.gauge(|s| &s.queued_bytes, tx_bytes);
        if ask {
            let id = v.id();
            self.ops.push_back(Op::Flush(id));
        }
        Ok(())
    }

    /// Messages of `src` redirected to the datagram socket `target`: each one datagram.
    pub(super) fn push_dgram_from(&mut self, src: SlotIdx, target: SlotIdx, frags: Frags) {
        let data = concat(frags);
        let len = data.len();
        match self.push_dgram(target, None, data) {
            Ok(()) => self.at(src).count(|s| &s.redirected_egress, 1),
            Err(reason) => self.at(src).count_drops(reason, 1, len),
        }
    }

    /// Messages a source on another shard redirected to the datagram socket
    /// `target`: one fragment per message when they are as many, else one
    /// message. Datagrams its full queue drops are counted on `target`.
    pub(super) fn push_dgrams_from_remote(&mut self, target: SlotIdx, messages: u64, frags: Frags) {
        let each: Vec<Bytes> = if frags.len() as u64 == messages {
            frags.into_iter().collect()
        } else {
            vec![concat(frags)]
        };
        for data in each {
            let len = data.len();
            if let Err(reason) = self.push_dgram(target, None, data) {
                self.at(target).count_drops(reason, 1, len);
            }
        }
    }

    /// An application send on a datagram socket: one datagram, to `to` (a
    /// bound socket) or its peer. A msg verdict does not run on datagram
    /// sockets: a send through one fails with `EOPNOTSUPP`, as a full queue
    /// fails with `ENOBUFS` and a bound socket's send without destination
    /// with `ENOTCONN`.
    pub(super) fn dgram_send(&mut self, slot: SlotIdx, to: Option<Addr>, data: Bytes, req: u64) {
        let p = self.at(slot);
        let id = p.id();
        let len = data.len();
        let result = if p.progs.msg_verdict.is_some() {
            Err(Errno::OpNotSupp)
        } else {
            p.count(|s| &s.sends, 1);
            match self.push_dgram(slot, to, data) {
                Ok(()) => Ok(len),
                Err(DropReason::Overflow) => Err(Errno::NoBufs),
                Err(_) => Err(Errno::NotConn),
            }
        };
        if result.is_err() {
            self.at(slot).count(|s| &s.sends_refused, 1);
        }
        self.events.push_back(Event::SendDone {
            sock: id,
            req,
            result,
        });
    }

    /// An application send to `to` from a bound datagram socket (`EINVAL`
    /// for a Unix name no socket address can hold).
    pub fn handle_send_to(&mut self, id: SockId, data: Bytes, to: Addr, req: u64) {
        #[cfg(unix)]
        if let Addr::Unix(name) = &to {
            if name.to_addr().is_err() {
                return self.events.push_back(Event::SendDone {
                    sock: id,
                    req,
                    result: Err(Errno::Inval),
                });
            }
        }
        match self.slot_of(id).filter(|&s| self.is_dgram(s)) {
            Some(slot) if self.at_ref(slot).is_egress_target() => {
                self.dgram_send(slot, Some(to), data, req)
            }
            _ => self.events.push_back(Event::SendDone {
                sock: id,
                req,
                result: Err(Errno::Pipe),
            }),
        }
    }

    /// The datagrams the socket has queued to send, oldest first (for the backend).
    pub(crate) fn dgram_tx(&self, id: SockId) -> impl Iterator<Item = &Datagram> {
        self.psock(id)
            .filter(|p| p.can_write())
            .and_then(|p| p.dgram.as_ref())
            .into_iter()
            .flat_map(|d| d.tx.iter())
    }

    /// The backend sent the first `n` queued datagrams.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux backends read datagram sockets
    pub(crate) fn handle_dgrams_sent(&mut self, id: SockId, n: usize) {
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at(slot);
        let Some(d) = p.dgram.as_mut() else { return };
        let mut bytes = 0;
        for _ in 0..n {
            let Some(dg) = d.tx.pop_front() else { break };
            bytes += dg.data.len();
        }
        d.tx_bytes -= bytes;
        let (left, empty) = (d.tx_bytes, d.tx.is_empty());
        if empty {
            d.flush_asked = false;
        }
        p.count(|s| &s.bytes_out, bytes as u64);
        p.gauge(|s| &s.queued_bytes, left);
        if empty && p.is_ending() {
            self.close(slot, None);
        }
    }

    /// The kernel refused the first queued datagram: it is dropped and
    /// counted (`dropped_too_big` for `EMSGSIZE`, else `dropped_send_error`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux backends read datagram sockets
    pub(crate) fn handle_dgram_failed(&mut self, id: SockId, err: Errno) {
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at(slot);
        let Some(d) = p.dgram.as_mut() else { return };
        let Some(dg) = d.tx.pop_front() else { return };
        d.tx_bytes -= dg.data.len();
        let reason = if err == Errno::MsgSize {
            DropReason::TooBig
        } else {
            DropReason::SendError
        };
        if d.tx.is_empty() {
            d.flush_asked = false;
        }
        let left = d.tx_bytes;
        p.count_drops(reason, 1, dg.data.len());
        p.gauge(|s| &s.queued_bytes, left);
    }

    /// Whether the socket is a datagram socket with datagrams queued.
    pub(crate) fn has_dgram_tx(&self, id: SockId) -> bool {
        self.dgram_tx(id).next().is_some()
    }
}
