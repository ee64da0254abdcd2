//! The psock's stream parser, and the conversation with an external parser.
//!
//! A socket whose parser program frames messages runs a [`StrParser`]. Native
//! framers answer inline. An external parser's framer always answers
//! `Pending`; the core then asks the external side in a batch item carrying
//! every byte buffered from the current message on, and the answer may hold
//! several consecutive results (one per message), which are given to the
//! strparser one message at a time, so one crossing frames many messages.
//!
//! Invariants: at most one parse request is in flight per socket (`asked`),
//! and answers to older requests are ignored; queued `answers` are given to
//! the strparser only while it is pending; after a `NeedMore` the socket is
//! asked again only once `wait_for` bytes are buffered.

use std::sync::Arc;

use bytes::Bytes;

use super::egress::Egress;
use super::slot::SlotIdx;
use super::state::parse::RxParser;
use super::{AppRead, Core};
use crate::batch::{BatchItem, ItemData, ItemKind};
use crate::batcher::ItemRef;
use crate::error::Errno;
use crate::framer::{MessageMeta, Parse};
use crate::id::SockId;
use crate::stats::DropReason;
use crate::strparser::StrParser;

impl Core {
    /// Takes the socket's parser program afresh. Bytes the old parser still
    /// held go through the new one (or on, raw), in order.
    pub(super) fn relink_parser(&mut self, slot: SlotIdx) {
        let p = self.at(slot);
        let prog = p.progs.parser.clone();
        let same = match (&prog, &p.parser.prog) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let paused = p.app_read() == AppRead::Paused;
        let held = p
            .parser
            .strp
            .take()
            .map(|mut s| s.done())
            .unwrap_or_default();
        p.set_hold(super::state::Hold::Parser, false);
        let strp = prog.as_ref().and_then(|pp| {
            let framer = pp.framer().ok().flatten()?;
            let mut s = Box::new(StrParser::new(framer, pp.strparser_config()));
            if paused {
                s.pause();
            }
            Some(s)
        });
        p.parser = RxParser {
            strp,
            prog,
            ..RxParser::default()
        };
        let mut out = Egress::new(slot, Bytes::new());
        for b in held {
            self.ingest(slot, b, &mut out);
        }
        out.flush(self);
    }

    /// The parser timer fired.
    pub(super) fn handle_parser_timer(&mut self, id: SockId) {
        let now = self.now;
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at(slot);
        p.parser.timer = None;
        if let Some(s) = p.parser.strp.as_mut() {
            s.handle_timeout(now);
            let mut out = Egress::new(slot, Bytes::new());
            self.run_parser(slot, &mut out);
            out.flush(self);
        }
    }

    /// Gives the pending strparser the next external answer; false when
    /// nothing was given (no answer yet, or waiting for more bytes).
    pub(super) fn feed_external(&mut self, slot: SlotIdx, strp: &mut StrParser) -> bool {
        let p = self.at(slot);
        let max_msg = p
            .parser
            .prog
            .as_ref()
            .map_or(usize::MAX, |pp| pp.max_message_bytes);
        let buffered = strp.buffered_bytes();
        let x = &mut p.parser.external;
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
    pub(super) fn ask_external(&mut self, slot: SlotIdx, strp: &StrParser) {
        let p = self.at(slot);
        let Some(tag) = p.parser.prog.as_ref().and_then(|pp| pp.external_tag()) else {
            return;
        };
        let x = &mut p.parser.external;
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
        let sock = p.id();
        let item = BatchItem {
            sock,
            tag,
            kind: ItemKind::Parse,
            len,
            peek_bytes: len,
            data: ItemData::Frags(strp.buffered().cloned().collect()),
            meta: MessageMeta::None,
        };
        self.batch_item(ItemRef::Parse(sock, req), item, None);
    }

    /// An external parser answered request `req` of socket `sock`: consecutive
    /// results from the current message on (an empty list is an error).
    pub(super) fn handle_parse_answer(&mut self, sock: SockId, req: u64, parses: &[Parse]) {
        let Some(slot) = self.slot_of(sock) else {
            return;
        };
        let x = &mut self.at(slot).parser.external;
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
        let mut out = Egress::new(slot, Bytes::new());
        self.run_parser(slot, &mut out);
        out.flush(self);
        self.finish_read(slot);
    }

    /// Frees what the socket's parser holds when the socket closes: a partial
    /// message counts as dropped by the parser.
    pub(super) fn drop_parser(&mut self, slot: SlotIdx) {
        let p = self.at(slot);
        if let Some(mut s) = p.parser.strp.take() {
            let held: usize = s.done().iter().map(Bytes::len).sum();
            if held > 0 {
                p.count_drops(DropReason::Parser, 1, held);
            }
        }
    }
}
