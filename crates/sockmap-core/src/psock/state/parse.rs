//! A psock's parser state ([`RxParser`]): its stream parser and its conversation with an external parser, whose
//! invariants `psock/parse.rs` states and keeps.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::framer::Parse;
use crate::program::ParserProg;
use crate::strparser::StrParser;

/// A psock's parser state.
#[derive(Default)]
pub(crate) struct RxParser {
    /// The stream parser, when the socket's parser program frames messages.
    pub(in crate::psock) strp: Option<Box<StrParser>>,
    /// The parser program `strp` runs.
    pub(in crate::psock) prog: Option<Arc<ParserProg>>,
    /// The parser handed the stream back: later bytes go to the application as they come.
    pub(in crate::psock) handed_back: bool,
    /// The deadline a parser timer is set for.
    pub(in crate::psock) timer: Option<Instant>,
    /// The external parser's state.
    pub(in crate::psock) external: ExternalParse,
}

/// A socket's conversation with its external parser.
#[derive(Debug, Default)]
pub(in crate::psock) struct ExternalParse {
    /// The request in flight: its number and the bytes it carried.
    pub(in crate::psock) asked: Option<(u64, usize)>,
    /// Numbers requests (answers to older ones are ignored).
    pub(in crate::psock) next_req: u64,
    /// Answers not yet given to the strparser, with the bytes the parser
    /// had seen for each (for `NeedMore`).
    pub(in crate::psock) answers: VecDeque<(Parse, usize)>,
    /// After a `NeedMore`: ask again once this many bytes are buffered.
    pub(in crate::psock) wait_for: Option<usize>,
}

impl RxParser {
    /// Whether no parse is outstanding and the parser holds no complete
    /// message it was kept from delivering (paused).
    pub(crate) fn is_settled(&self) -> bool {
        self.external.asked.is_none()
            && self.external.answers.is_empty()
            && !self
                .strp
                .as_ref()
                .is_some_and(|s| s.is_paused() && s.buffered_bytes() > 0)
    }

    /// Whether an external parse request is in flight.
    pub(crate) fn is_asking(&self) -> bool {
        self.external.asked.is_some()
    }

    pub(crate) fn pause(&mut self) {
        if let Some(s) = self.strp.as_mut() {
            s.pause();
        }
    }

    /// Unpauses a paused parser; true if it was paused.
    pub(crate) fn unpause(&mut self) -> bool {
        match self.strp.as_mut() {
            Some(s) if s.is_paused() => {
                s.unpause();
                true
            }
            _ => false,
        }
    }
}
