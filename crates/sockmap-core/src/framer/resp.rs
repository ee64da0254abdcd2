//! [`Resp`]: the Redis protocol, RESP2 and RESP3, requests and replies, pipelined.
//!
//! # What is framed
//!
//! One message is one top-level value:
//!
//! * RESP2: simple string `+`, error `-`, integer `:`, bulk string `$` (null
//!   `$-1`), array `*` (null `*-1`), nested to any depth up to `max_depth`.
//! * RESP3: null `_`, boolean `#`, double `,`, big number `(`, bulk error `!`,
//!   verbatim string `=`, map `%`, set `~`, push `>`, and attributes `|` (an
//!   attribute travels in the same message as the value it annotates).
//! * RESP3 streamed strings (`$?` then `;<len>` chunks up to `;0`) and streamed
//!   aggregates (`*?`, `%?`, `~?`, `>?` up to `.`).
//! * Inline commands (a line not starting with a type byte, ended by `\n`),
//!   as `redis-cli`/telnet send them.
//!
//! Bulk strings of any size (up to the strparser's `max_message_bytes`) are
//! never scanned or copied: the framer asks for exactly the bytes it needs.
//!
//! # Metadata
//!
//! For a request, an array whose first elements are bulk strings, or an inline
//! command, [`MessageMeta::Resp`] gives the command name (first element) and
//! the first key (second element). Inline commands are split on spaces and
//! tabs; quotes are not interpreted for the metadata.
//!
//! # Errors
//!
//! Malformed lengths, a missing `\r\n` after a bulk string, an unknown type
//! byte inside a value, a bad `_`/`#` payload, nesting deeper than `max_depth`:
//! `EPROTO`. A line longer than `max_line_length`: `EMSGSIZE`.

use std::ops::Range;

use bytes::Bytes;
use smallvec::SmallVec;

use super::{Chunks, Framer, MessageMeta, Parse, ReplyError};
use crate::error::Errno;

/// Options of [`Resp`] (`parsers.resp({...})`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespOptions {
    /// `maxDepth`: deepest aggregate nesting accepted. Default: 64.
    pub max_depth: usize,
    /// `maxLineLength`: longest line (inline command, simple string, header)
    /// in bytes, `\r\n` excluded. Default: 65536 (Redis's inline limit).
    pub max_line_length: usize,
}

impl Default for RespOptions {
    fn default() -> Self {
        RespOptions {
            max_depth: 64,
            max_line_length: 65536,
        }
    }
}

/// An open aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agg {
    /// Elements still expected; `attr`: an attribute, which does not count as
    /// a value of its parent.
    Count { left: u64, attr: bool },
    /// A streamed aggregate, ended by `.`.
    Streamed,
}

/// A RESP framer. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Resp {
    opts: RespOptions,
    /// Offset of the next element header of the current message.
    pos: usize,
    /// The `\r\n` search for the line at `pos` resumes here.
    line_scan: usize,
    /// A bulk string whose header is parsed: (data start, data length).
    bulk: Option<(usize, usize)>,
    stack: SmallVec<[Agg; 8]>,
    /// Inside a streamed string (expecting `;` chunks).
    streamed_string: bool,
    /// Element count of a top-level `*` array (for metadata), 0 if none.
    top_count: u64,
    command: Option<Range<usize>>,
    key: Option<Range<usize>>,
}

enum Step {
    Continue,
    Done(usize),
    Answer(Parse),
}

fn is_type(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

/// A parsed length: a count, null (`-1`) or streamed (`?`).
enum Len {
    N(u64),
    Null,
    Streamed,
}

impl Resp {
    /// A RESP framer with these options.
    pub fn new(opts: RespOptions) -> Self {
        Resp {
            opts,
            pos: 0,
            line_scan: 0,
            bulk: None,
            stack: SmallVec::new(),
            streamed_string: false,
            top_count: 0,
            command: None,
            key: None,
        }
    }

    /// Finds the `\r\n` ending the line that starts at `pos`: its offset.
    fn line_end(&mut self, data: &Chunks<'_>) -> Result<Option<usize>, Errno> {
        let from = self.line_scan.max(self.pos);
        match data.find(b"\r\n", from) {
            Some(cr) if cr - self.pos <= self.opts.max_line_length + 1 => Ok(Some(cr)),
            Some(_) => Err(Errno::MsgSize),
            None => {
                if data.len() - self.pos > self.opts.max_line_length + 2 {
                    return Err(Errno::MsgSize);
                }
                self.line_scan = data.len().saturating_sub(1).max(self.pos);
                Ok(None)
            }
        }
    }

    /// Parses the length in `pos+1..cr`.
    fn length(data: &Chunks<'_>, start: usize, cr: usize) -> Result<Len, Errno> {
        let mut buf = [0u8; 20];
        let n = cr - start;
        if n == 0 || n > buf.len() || !data.copy_to(start, &mut buf[..n]) {
            return Err(Errno::Proto);
        }
        match &buf[..n] {
            b"?" => return Ok(Len::Streamed),
            b"-1" => return Ok(Len::Null),
            _ => {}
        }
        let mut v: u64 = 0;
        for &b in &buf[..n] {
            if !b.is_ascii_digit() {
                return Err(Errno::Proto);
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or(Errno::Proto)?;
        }
        Ok(Len::N(v))
    }

    /// A value ended at `next`: close finished aggregates.
    fn value_done(&mut self, next: usize) -> Step {
        self.pos = next;
        self.line_scan = next;
        loop {
            match self.stack.last_mut() {
                None => return Step::Done(next),
                Some(Agg::Streamed) => return Step::Continue,
                Some(Agg::Count { left, attr }) => {
                    *left -= 1;
                    if *left > 0 {
                        return Step::Continue;
                    }
                    let attr = *attr;
                    self.stack.pop();
                    if attr {
                        // The annotated value follows.
                        return Step::Continue;
                    }
                }
            }
        }
    }

    fn open(&mut self, left: u64, attr: bool) -> Result<(), Errno> {
        if self.stack.len() >= self.opts.max_depth {
            return Err(Errno::Proto);
        }
        self.stack.push(Agg::Count { left, attr });
        Ok(())
    }

    /// Records metadata for a bulk string `range` that is an element of the
    /// top-level array.
    fn note_bulk(&mut self, range: Range<usize>) {
        if self.top_count == 0 || self.stack.len() != 1 {
            return;
        }
        if let Some(Agg::Count { left, attr: false }) = self.stack.last() {
            match self.top_count - left {
                0 => self.command = Some(range),
                1 => self.key = Some(range),
                _ => {}
            }
        }
    }

    /// Finishes a bulk string whose header is parsed.
    fn step_bulk(&mut self, data: &Chunks<'_>, start: usize, len: usize) -> Step {
        let Some(end) = start.checked_add(len).and_then(|e| e.checked_add(2)) else {
            return Step::Answer(Parse::Error(Errno::MsgSize));
        };
        if data.len() < end {
            return Step::Answer(Parse::NeedMore { hint: Some(end) });
        }
        if data.matches_at(end - 2, b"\r\n") != Some(true) {
            return Step::Answer(Parse::Error(Errno::Proto));
        }
        self.bulk = None;
        if self.streamed_string {
            // A chunk of a streamed string: more chunks follow.
            self.pos = end;
            self.line_scan = end;
            return Step::Continue;
        }
        self.note_bulk(start..start + len);
        self.value_done(end)
    }

    /// Parses one element header (and a bulk body) at `pos`.
    fn step(&mut self, data: &Chunks<'_>) -> Step {
        if let Some((start, len)) = self.bulk {
            return self.step_bulk(data, start, len);
        }
        let Some(t) = data.byte(self.pos) else {
            return Step::Answer(Parse::NeedMore {
                hint: Some(self.pos + 1),
            });
        };
        if self.pos == 0 && !is_type(t) {
            return self.inline(data);
        }
        let cr = match self.line_end(data) {
            Ok(Some(cr)) => cr,
            Ok(None) => return Step::Answer(Parse::NeedMore { hint: None }),
            Err(e) => return Step::Answer(Parse::Error(e)),
        };
        let start = self.pos + 1;
        let next = cr + 2;
        match self.header(data, t, start, cr, next) {
            Ok(step) => step,
            Err(e) => Step::Answer(Parse::Error(e)),
        }
    }

    fn header(
        &mut self,
        data: &Chunks<'_>,
        t: u8,
        start: usize,
        cr: usize,
        next: usize,
    ) -> Result<Step, Errno> {
        if self.streamed_string && t != b';' {
            return Err(Errno::Proto);
        }
        match t {
            b'+' | b'-' | b':' | b',' | b'(' => Ok(self.value_done(next)),
            b'_' if cr == start => Ok(self.value_done(next)),
            b'#' if cr == start + 1 && matches!(data.byte(start), Some(b't' | b'f')) => {
                Ok(self.value_done(next))
            }
            b'$' | b'!' | b'=' | b';' => match Resp::length(data, start, cr)? {
                Len::Null if t == b'$' => Ok(self.value_done(next)),
                Len::Streamed if t == b'$' => {
                    self.streamed_string = true;
                    self.pos = next;
                    self.line_scan = next;
                    Ok(Step::Continue)
                }
                Len::N(0) if t == b';' => {
                    if !self.streamed_string {
                        return Err(Errno::Proto);
                    }
                    self.streamed_string = false;
                    Ok(self.value_done(next))
                }
                Len::N(n) if t != b';' || self.streamed_string => {
                    let len = usize::try_from(n).map_err(|_| Errno::MsgSize)?;
                    self.bulk = Some((next, len));
                    Ok(self.step_bulk(data, next, len))
                }
                _ => Err(Errno::Proto),
            },
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let pairs = matches!(t, b'%' | b'|');
                match Resp::length(data, start, cr)? {
                    Len::Null if t == b'*' => Ok(self.value_done(next)),
                    Len::Streamed if t != b'|' => {
                        if self.stack.len() >= self.opts.max_depth {
                            return Err(Errno::Proto);
                        }
                        self.stack.push(Agg::Streamed);
                        self.pos = next;
                        self.line_scan = next;
                        Ok(Step::Continue)
                    }
                    Len::N(0) if t != b'|' => Ok(self.value_done(next)),
                    Len::N(n) => {
                        let left = if pairs {
                            n.checked_mul(2).ok_or(Errno::Proto)?
                        } else {
                            n
                        };
                        if left == 0 {
                            return Err(Errno::Proto);
                        }
                        if self.pos == 0 && t == b'*' {
                            self.top_count = left;
                        }
                        self.open(left, t == b'|')?;
                        self.pos = next;
                        self.line_scan = next;
                        Ok(Step::Continue)
                    }
                    _ => Err(Errno::Proto),
                }
            }
            b'.' if cr == start && self.stack.last() == Some(&Agg::Streamed) => {
                self.stack.pop();
                Ok(self.value_done(next))
            }
            _ => Err(Errno::Proto),
        }
    }

    /// The common request, an array of bulk strings, when it lies whole in
    /// `buf` (the start of the message): its length, the command and key
    /// recorded. `None` for anything else, malformed or incomplete there; the
    /// general parser then decides, and would answer the same for this one.
    #[inline]
    fn whole_request(&mut self, buf: &[u8]) -> Option<usize> {
        // Lines of up to 20 bytes and one level of nesting are always allowed.
        if buf.first() != Some(&b'*') || self.opts.max_line_length < 20 || self.opts.max_depth == 0
        {
            return None;
        }
        let (count, mut at) = digits_line(buf, 1)?;
        if count == 0 || count > buf.len() {
            return None;
        }
        let mut names = [0..0, 0..0];
        for i in 0..count {
            if buf.get(at) != Some(&b'$') {
                return None;
            }
            let (len, start) = digits_line(buf, at + 1)?;
            let end = start.checked_add(len)?;
            if buf.get(end..end.checked_add(2)?) != Some(b"\r\n") {
                return None;
            }
            if let Some(slot) = names.get_mut(i) {
                *slot = start..end;
            }
            at = end + 2;
        }
        let [command, key] = names;
        self.command = Some(command);
        self.key = (count > 1).then_some(key);
        Some(at)
    }

    /// An inline command: a line ended by `\n`.
    fn inline(&mut self, data: &Chunks<'_>) -> Step {
        let from = self.line_scan;
        let Some(nl) = data.find_any_byte(b"\n", from) else {
            if data.len() > self.opts.max_line_length + 1 {
                return Step::Answer(Parse::Error(Errno::MsgSize));
            }
            self.line_scan = data.len();
            return Step::Answer(Parse::NeedMore { hint: None });
        };
        if nl > self.opts.max_line_length + 1 {
            return Step::Answer(Parse::Error(Errno::MsgSize));
        }
        // Tokens: the command and the first key.
        let mut tokens: [Option<Range<usize>>; 2] = [None, None];
        let mut i = 0;
        for slot in &mut tokens {
            while i < nl && matches!(data.byte(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            let s = i;
            while i < nl && !matches!(data.byte(i), Some(b' ' | b'\t' | b'\r')) {
                i += 1;
            }
            if i > s {
                *slot = Some(s..i);
            }
        }
        let [command, key] = tokens;
        self.command = command;
        self.key = key;
        Step::Done(nl + 1)
    }
}

/// A decimal of 1 to 18 digits at `at`, ended by `\r\n`: (value, offset
/// after the `\n`).
#[inline]
fn digits_line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    let mut i = at;
    while let Some(&b) = buf.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        v = v * 10 + u64::from(b - b'0');
        i += 1;
        if i - at > 18 {
            return None;
        }
    }
    if i == at || buf.get(i..i + 2) != Some(b"\r\n") {
        return None;
    }
    Some((usize::try_from(v).ok()?, i + 2))
}

impl Default for Resp {
    fn default() -> Self {
        Resp::new(RespOptions::default())
    }
}

impl Framer for Resp {
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        if self.pos == 0 {
            if let Some(n) = self.whole_request(data.first()) {
                return Parse::Length(n);
            }
        }
        loop {
            match self.step(data) {
                Step::Continue => {}
                Step::Done(len) => return Parse::Length(len),
                Step::Answer(a) => return a,
            }
        }
    }

    fn meta(&self) -> MessageMeta {
        match &self.command {
            Some(c) => MessageMeta::Resp {
                command: c.clone(),
                key: self.key.clone(),
            },
            None => MessageMeta::None,
        }
    }

    /// `-ERR sockmap: <reason>\r\n`.
    fn error_reply(&self, kind: ReplyError) -> Option<Bytes> {
        Some(Bytes::from(format!("-ERR sockmap: {}\r\n", kind.reason())))
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.line_scan = 0;
        self.bulk = None;
        self.stack.clear();
        self.streamed_string = false;
        self.top_count = 0;
        self.command = None;
        self.key = None;
    }
}
