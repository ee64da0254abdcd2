//! [`Delimiter`]: messages ended by one of several delimiters (Netty's
//! `DelimiterBasedFrameDecoder` / `LineBasedFrameDecoder`, tokio-util's
//! `LinesCodec` / `AnyDelimiterCodec`).
//!
//! # Rules
//!
//! * The message ends at the first complete delimiter, the one that ends
//!   earliest; when several end at the same byte (`"\r\n"` and `"\n"`), the
//!   longest wins (the shortest frame). Deciding by where a delimiter ends
//!   needs no byte beyond it, so the result never depends on how the stream
//!   was split, and a message never ends inside bytes the framer had already
//!   seen (which the strparser rejects with `EPROTO`). For ordinary delimiter
//!   sets this is Netty's "shortest frame"; with overlapping ones it differs:
//!   `["\r\n", "\r"]` ends `"a\r\n"` at `"a"` + `"\r"` and leaves `"\n"` to the next
//!   message (list `"\r\n"` and `"\n"` for lines).
//! * `strip_delimiter`: the delivered message excludes the delimiter.
//! * `max_length` counts the bytes before the delimiter. A longer frame is
//!   discarded up to and including the next delimiter and reported as skipped
//!   (`discard_oversize`, tokio-util `LinesCodec` behaviour; the skip may be
//!   reported in several pieces as bytes arrive, never buffered), or aborts
//!   the stream with `EMSGSIZE`.
//!
//! The search is incremental: each call resumes where the last one stopped.

use super::chunks::find_byte_of;
use super::{Chunks, Framer, Parse, Trim};
use crate::error::Errno;

/// Options of [`Delimiter`]; each field maps 1:1 to `parsers.delimiter({...})`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelimiterOptions {
    /// `delimiters`: byte strings that end a message, none empty. Default:
    /// `["\r\n", "\n"]`.
    pub delimiters: Vec<Vec<u8>>,
    /// `maxLength`: largest frame in bytes, delimiter excluded. Default: 65536.
    pub max_length: usize,
    /// `stripDelimiter`: leave the delimiter out of the delivered message.
    /// Default: true.
    pub strip_delimiter: bool,
    /// `discardOversize`: skip an over-long frame up to the next delimiter and
    /// go on (true), or abort with `EMSGSIZE` (false). Default: true.
    pub discard_oversize: bool,
}

impl Default for DelimiterOptions {
    fn default() -> Self {
        DelimiterOptions {
            delimiters: vec![b"\r\n".to_vec(), b"\n".to_vec()],
            max_length: 65536,
            strip_delimiter: true,
            discard_oversize: true,
        }
    }
}

impl DelimiterOptions {
    /// The options of `parsers.lines()`: lines ended by `\r\n` or `\n`, the
    /// line ending stripped, at most 65536 bytes, over-long lines skipped.
    pub fn lines() -> Self {
        DelimiterOptions {
            delimiters: vec![b"\r\n".to_vec(), b"\n".to_vec()],
            max_length: 65536,
            strip_delimiter: true,
            discard_oversize: true,
        }
    }
}

/// A framer for delimited messages. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Delimiter {
    opts: DelimiterOptions,
    /// Distinct last bytes of the delimiters (the search set).
    lasts: Vec<u8>,
    /// The delimiters, longest first (list order among equal lengths).
    by_len: Vec<Vec<u8>>,
    /// Longest delimiter length minus one: bytes at the end of the data that
    /// may still begin a delimiter.
    keep: usize,
    /// No delimiter ends before this offset of the current message.
    searched_to: usize,
    /// Discarding an over-long frame up to its delimiter.
    discarding: bool,
    /// Length of the delimiter that ended the current message.
    found_len: usize,
}

impl Delimiter {
    /// A framer with these options.
    ///
    /// # Errors
    ///
    /// `EINVAL` if there is no delimiter or one is empty.
    pub fn new(opts: DelimiterOptions) -> Result<Self, Errno> {
        if opts.delimiters.is_empty() || opts.delimiters.iter().any(Vec::is_empty) {
            return Err(Errno::Inval);
        }
        Ok(Delimiter::with_valid(opts))
    }

    /// A framer with options already checked.
    fn with_valid(opts: DelimiterOptions) -> Self {
        let mut lasts: Vec<u8> = opts
            .delimiters
            .iter()
            .filter_map(|d| d.last().copied())
            .collect();
        lasts.sort_unstable();
        lasts.dedup();
        let mut by_len = opts.delimiters.clone();
        by_len.sort_by_key(|d| std::cmp::Reverse(d.len()));
        let keep = by_len.first().map_or(0, |d| d.len().saturating_sub(1));
        Delimiter {
            opts,
            lasts,
            by_len,
            keep,
            searched_to: 0,
            discarding: false,
            found_len: 0,
        }
    }

    /// Lines ended by `"\n"` or `"\r\n"`, delimiter stripped, over-long lines
    /// skipped (`parsers.lines({ maxLength })`).
    pub fn lines(max_length: usize) -> Self {
        Delimiter::with_valid(DelimiterOptions {
            max_length,
            ..DelimiterOptions::default()
        })
    }

    /// The options in force.
    pub fn options(&self) -> &DelimiterOptions {
        &self.opts
    }

    /// The delimiter that ends earliest at or after `searched_to`:
    /// `Ok((offset, len))`, or `Err(())` after moving `searched_to` to the end.
    #[inline]
    fn search(&mut self, data: &Chunks<'_>) -> Result<(usize, usize), ()> {
        // The first fragment holds the start of the message: delimiters
        // ending there are matched on the slice itself.
        let first = data.first();
        let mut pos = self.searched_to;
        while let Some(hay) = first.get(pos..) {
            let Some(q) = find_byte_of(&self.lasts, hay) else {
                pos = first.len();
                break;
            };
            let end = pos + q + 1;
            let upto = &first[..end];
            if let Some(d) = self.by_len.iter().find(|d| upto.ends_with(d)) {
                return Ok((end - d.len(), d.len()));
            }
            pos = end;
        }
        while let Some(q) = data.find_any_byte(&self.lasts, pos) {
            let end = q + 1;
            for d in &self.by_len {
                if d.len() <= end && data.matches_at(end - d.len(), d) == Some(true) {
                    return Ok((end - d.len(), d.len()));
                }
            }
            pos = end;
        }
        self.searched_to = data.len();
        Err(())
    }

    fn oversize(&mut self, skip: usize) -> Parse {
        self.searched_to = 0;
        if !self.opts.discard_oversize {
            return Parse::Error(Errno::MsgSize);
        }
        if skip == 0 {
            return Parse::NeedMore { hint: None };
        }
        Parse::Skip(skip)
    }
}

impl Framer for Delimiter {
    /// A line cut by the end of a datagram is a message, unless it is the
    /// rest of an oversize line being discarded.
    fn ends_at_boundary(&self) -> bool {
        !self.discarding
    }

    #[inline]
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        match self.search(data) {
            Ok((p, dlen)) => {
                if self.discarding || p > self.opts.max_length {
                    self.discarding = false;
                    return self.oversize(p + dlen);
                }
                self.found_len = dlen;
                Parse::Length(p + dlen)
            }
            Err(()) => {
                // Bytes that can no longer be followed by a delimiter start.
                let settled = data.len().saturating_sub(self.keep);
                if self.discarding || settled > self.opts.max_length {
                    self.discarding = self.opts.discard_oversize;
                    return self.oversize(settled);
                }
                Parse::NeedMore { hint: None }
            }
        }
    }

    #[inline]
    fn trim(&self) -> Trim {
        Trim {
            head: 0,
            tail: if self.opts.strip_delimiter {
                self.found_len
            } else {
                0
            },
        }
    }

    #[inline]
    fn reset(&mut self) {
        self.searched_to = 0;
        self.discarding = false;
        self.found_len = 0;
    }
}
