//! The receive side's stream parser: framing between read and verdict.
//!
//! A socket whose parser program frames messages runs a [`StrParser`]. Native
//! framers answer inline. An external parser's framer always answers
//! `Pending`; the core then asks the external side in a batch item carrying
//! every byte buffered from the current message on, and the answer may hold
//! several consecutive results (one per message), which are given to the
//! strparser one message at a time, so one crossing frames many messages.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::smallvec;

use super::external::ItemRef;
use super::Core;
use crate::conn::{AppRead, ExternalParse};
use crate::error::Errno;
use crate::external::{BatchItem, ItemData, ItemKind};
use crate::framer::{MessageMeta, Parse};
use crate::stats::DropReason;
use crate::strparser::{Event as StrpEvent, StrParser};
use crate::timer::Timer;

impl Core {
    /// Takes the socket's parser program afresh. Bytes the old parser still
    /// held go through the new one (or on, raw), in order.
    pub(super) fn relink_parser(&mut self, slot: usize) {
        let c = self.at(slot);
        let prog = c.progs.parser.clone();
        let same = match (&prog, &c.strp_prog) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let held = c.strp.take().map(|mut s| s.done()).unwrap_or_default();
        c.handed_back = false;
        c.rx_full = false;
        c.xparse = ExternalParse::default();
        let paused = c.app == AppRead::Paused;
        c.strp = prog.as_ref().and_then(|p| {
            let framer = p.framer().ok().flatten()?;
            let mut s = Box::new(StrParser::new(framer, p.strparser_config()));
            if paused {
                s.pause();
            }
            Some(s)
        });
        c.strp_prog = prog;
        for b in held {
            self.ingest(slot, b);
        }
    }

    /// Routes bytes read from the socket: through its parser, to its
    /// application (after a hand-back), or on as one message.
    pub(super) fn ingest(&mut self, slot: usize, data: Bytes) {
        let now = self.now;
        let c = self.at(slot);
        let len = data.len();
        if c.handed_back {
            return self.queue_for_app(Some(slot), slot, smallvec![data], len);
        }
        match c.strp.as_mut() {
            Some(s) => {
                s.handle_data(data, now);
                self.run_parser(slot);
            }
            None => self.deliver(slot, smallvec![data], len, &MessageMeta::None),
        }
    }

    /// Delivers every message the socket's parser can frame now.
    pub(super) fn run_parser(&mut self, slot: usize) {
        let now = self.now;
        let Some(mut strp) = self.at(slot).strp.take() else {
            return;
        };
        let by_boundary = self.judges_by_boundary(slot);
        loop {
            loop {
                if by_boundary {
                    if let Some(block) = strp.take_whole(&mut self.lens) {
                        self.deliver_block(slot, block);
                    }
                }
                let Some(ev) = strp.poll_event(now) else {
                    break;
                };
                match ev {
                    StrpEvent::Message(m) => self.deliver(slot, m.frags, m.len, &m.meta),
                    StrpEvent::Skipped(n) => {
                        let c = self.at(slot);
                        c.count(|s| &s.skipped_frames, 1);
                        c.count(|s| &s.skipped_bytes, n as u64);
                    }
                    StrpEvent::Handback { rest, .. } => {
                        let c = self.at(slot);
                        c.handed_back = true;
                        c.rx_full = false;
                        c.count(|s| &s.handbacks, 1);
                        for b in rest {
                            let len = b.len();
                            self.queue_for_app(Some(slot), slot, smallvec![b], len);
                        }
                        self.kick_read(slot);
                        return;
                    }
                    StrpEvent::Error(e) => {
                        self.at(slot).count(|s| &s.parser_errors, 1);
                        self.close(slot, Some(e));
                        return;
                    }
                }
            }
            if !(strp.is_pending() && self.feed_external(slot, &mut strp)) {
                break;
            }
        }
        if strp.is_pending() {
            self.ask_external(slot, &strp);
        }
        let max_pending = self.cfg.max_pending_bytes;
        let deadline = strp.poll_timeout();
        let buffered = strp.buffered_bytes();
        let c = self.at(slot);
        let id = c.id;
        c.strp = Some(strp);
        if let Some(d) = deadline {
            if c.strp_timer.map_or(true, |t| d < t) {
                c.strp_timer = Some(d);
                self.timers.set(d, Timer::Parser(id));
            }
        }
        let c = self.at(slot);
        let full = c.xparse.asked.is_some() && buffered > max_pending;
        if c.rx_full != full {
            c.rx_full = full;
            if !full {
                self.kick_read(slot);
            }
        }
    }

    /// The parser timer fired.
    pub(super) fn handle_parser_timer(&mut self, id: crate::id::SockId) {
        let now = self.now;
        let Some(slot) = self.slot_of(id) else { return };
        let c = self.at(slot);
        c.strp_timer = None;
        if let Some(s) = c.strp.as_mut() {
            s.handle_timeout(now);
            self.run_parser(slot);
            self.end_chunk();
        }
    }

    /// Gives the pending strparser the next external answer; false when
    /// nothing was given (no answer yet, or waiting for more bytes).
    fn feed_external(&mut self, slot: usize, strp: &mut StrParser) -> bool {
        let max_msg = self
            .at(slot)
            .strp_prog
            .as_ref()
            .map_or(usize::MAX, |p| p.max_message_bytes);
        let buffered = strp.buffered_bytes();
        let x = &mut self.at(slot).xparse;
        if let Some(w) = x.wait_for {
            if buffered >= w {
                x.wait_for = None;
            }
            return false;
        }
        match x.answers.pop_front() {
            None => false,
            Some((answer @ (Parse::NeedMore { .. } | Parse::Pending), seen)) => {
                let hint = match answer {
                    Parse::NeedMore { hint } => hint,
                    _ => None,
                };
                x.answers.clear();
                let need = hint.unwrap_or(0).max(seen.saturating_add(1));
                if need > max_msg {
                    strp.handle_deferred(Parse::Error(Errno::MsgSize));
                    return true;
                }
                if buffered < need {
                    x.wait_for = Some(need);
                }
                false
            }
            Some((answer, _)) => {
                strp.handle_deferred(answer);
                true
            }
        }
    }

    /// Asks the external parser about the bytes buffered from the current
    /// message on, unless a request or answers are outstanding.
    fn ask_external(&mut self, slot: usize, strp: &StrParser) {
        let c = self.at(slot);
        let Some(tag) = c.strp_prog.as_ref().and_then(|p| p.external_tag()) else {
            return;
        };
        let x = &mut c.xparse;
        if x.asked.is_some() || x.wait_for.is_some() || !x.answers.is_empty() {
            return;
        }
        let len = strp.buffered_bytes();
        if len == 0 {
            return;
        }
        let req = x.next_req;
        x.next_req += 1;
        x.asked = Some((req, len));
        let sock = c.id;
        let item = BatchItem {
            sock,
            tag,
            kind: ItemKind::Parse,
            len,
            peek_bytes: len,
            data: ItemData::Frags(strp.buffered().cloned().collect()),
        };
        self.batch_item(ItemRef::Parse(sock, req), item);
    }

    /// An external parser answered request `req` of socket `sock`: consecutive
    /// results from the current message on (an empty list is an error).
    pub(super) fn handle_parse_answer(
        &mut self,
        sock: crate::id::SockId,
        req: u64,
        parses: &[Parse],
    ) {
        let Some(slot) = self.slot_of(sock) else {
            return;
        };
        let x = &mut self.at(slot).xparse;
        let Some((asked, sent)) = x.asked else { return };
        if asked != req {
            return;
        }
        x.asked = None;
        let mut seen = sent;
        for &p in parses {
            x.answers.push_back((p, seen));
            match p {
                Parse::Length(n) | Parse::Skip(n) if n > 0 && n < seen => seen -= n,
                _ => break,
            }
        }
        if parses.is_empty() {
            x.answers.push_back((Parse::Error(Errno::Inval), seen));
        }
        self.run_parser(slot);
        self.end_chunk();
        self.finish_read(slot);
    }

    /// Frees what the socket's parser holds when the socket closes: a partial
    /// message counts as dropped by the parser.
    pub(super) fn drop_parser(&mut self, slot: usize) {
        if let Some(mut s) = self.at(slot).strp.take() {
            let held: usize = s.done().iter().map(Bytes::len).sum();
            if held > 0 {
                self.count_drop(slot, DropReason::Parser, held);
            }
        }
    }
}
