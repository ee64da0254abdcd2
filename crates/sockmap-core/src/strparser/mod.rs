//! The stream parser: turns a TCP byte stream into messages, with the Linux
//! strparser's semantics (`net/strparser/strparser.c`).
//!
//! [`StrParser`] is sans-IO: bytes come in with [`handle_data`](StrParser::handle_data),
//! time comes in as a `now` argument, and results come out of
//! [`poll_event`](StrParser::poll_event). It drives a [`Framer`] (the kernel's
//! `parse_msg`) at the start of each message.
//!
//! # Contract
//!
//! * Inputs: [`handle_data`](StrParser::handle_data), [`handle_deferred`](StrParser::handle_deferred),
//!   [`handle_timeout`](StrParser::handle_timeout); commands: [`pause`](StrParser::pause),
//!   [`unpause`](StrParser::unpause), [`stop`](StrParser::stop), [`done`](StrParser::done).
//! * Outputs: call [`poll_event`](StrParser::poll_event) until it returns `None`
//!   after every input, then [`poll_timeout`](StrParser::poll_timeout) to learn
//!   when to call [`handle_timeout`](StrParser::handle_timeout).
//!
//! # Semantics
//!
//! * A message is delivered as [`Bytes`] slices of the input: zero copy, never
//!   made contiguous. Many messages in one chunk are all delivered, in order;
//!   a message may span any number of chunks; bytes past a message start the next.
//! * A length not larger than what the framer had already seen: `EPROTO`. A
//!   length over [`max_message_bytes`](StrParserConfig::max_message_bytes), or
//!   a message still incomplete when that many bytes are buffered: `EMSGSIZE`.
//!   A message not complete within
//!   [`message_timeout`](StrParserConfig::message_timeout): `ETIMEDOUT`. Every
//!   error frees everything buffered and stops the parser for good.
//! * [`pause`](StrParser::pause) stops delivery at once, even between two
//!   messages of one chunk; [`unpause`](StrParser::unpause) resumes where it
//!   stopped, losing and reordering nothing. Input is still queued while
//!   paused (the caller applies backpressure with
//!   [`buffered_bytes`](StrParser::buffered_bytes)).
//! * [`Parse::Handback`] (the kernel's `-ESTRPIPE`) ends parsing and returns
//!   every unconsumed byte, the current message's included. Unlike the kernel,
//!   which loses the bytes it had already pulled from the socket (`ENODATA`),
//!   nothing is lost here; `partial_consumed` tells that the kernel would have
//!   reported `ENODATA` (the framer had already answered `NeedMore` for the message).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use smallvec::SmallVec;

use crate::error::Errno;
use crate::framer::{Chunks, Framer, MessageMeta, Parse, Trim};

/// Stream parser settings (`maxMessageBytes`, `messageTimeoutMs` in JS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrParserConfig {
    /// Largest message in bytes, as it is on the wire (trimmed bytes
    /// included). Also bounds what is buffered for one incomplete message.
    /// Unlike the kernel this is not the receive buffer size. Default: 16 MiB.
    pub max_message_bytes: usize,
    /// Time allowed to complete a message, counted from when it is first seen
    /// incomplete. `None` (the default, as in the kernel) = no limit.
    pub message_timeout: Option<Duration>,
}

impl Default for StrParserConfig {
    fn default() -> Self {
        StrParserConfig {
            max_message_bytes: 16 << 20,
            message_timeout: None,
        }
    }
}

/// One framed message: slices of the input, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The message bytes, as slices of the received chunks (no copy).
    pub frags: SmallVec<[Bytes; 2]>,
    /// Total length of `frags`.
    pub len: usize,
    /// Routing metadata from the framer.
    pub meta: MessageMeta,
}

impl Message {
    /// The message bytes copied into one vector (for tests and slow paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for f in &self.frags {
            v.extend_from_slice(f);
        }
        v
    }
}

/// What [`StrParser::poll_event`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete message.
    Message(Message),
    /// The framer skipped this many bytes (an oversize frame, or part of one).
    Skipped(usize),
    /// The framer handed the stream back: here is every unconsumed byte.
    Handback {
        /// The unconsumed bytes, in order, starting at the current message.
        rest: Vec<Bytes>,
        /// The framer had already answered `NeedMore` for the current message:
        /// the kernel would report `ENODATA` (bytes lost); here `rest` still
        /// holds them.
        partial_consumed: bool,
    },
    /// The parser aborted with this error; everything buffered was freed.
    Error(Errno),
}

/// Counters of a [`StrParser`] (the kernel's `strp_stats` plus skips).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrParserStats {
    /// Messages delivered.
    pub messages: u64,
    /// Wire bytes of delivered messages (trimmed bytes included).
    pub bytes: u64,
    /// `Skip` answers (skipped frames or pieces of them).
    pub skipped_frames: u64,
    /// Bytes skipped.
    pub skipped_bytes: u64,
    /// Aborts with `EMSGSIZE` (kernel `msg_too_big`).
    pub msg_too_big: u64,
    /// Aborts with `ETIMEDOUT` (kernel `msg_timeouts`).
    pub timeouts: u64,
    /// Aborts with `EPROTO`.
    pub proto_errors: u64,
    /// Aborts with any other error.
    pub other_errors: u64,
    /// Hand-backs.
    pub handbacks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// Parsing.
    Active,
    /// Waiting for `handle_deferred`; the framer had seen this many bytes.
    Pending(usize),
    /// Stopped by `stop`; input is still queued for `done`.
    Stopped,
    /// Handed back; input is still queued for `done`.
    HandedBack,
    /// Aborted or done: input is dropped.
    Dead,
}

/// The stream parser state machine. See the [module documentation](self).
pub struct StrParser {
    framer: Box<dyn Framer>,
    config: StrParserConfig,
    /// Received fragments; the current message starts at the front.
    queue: VecDeque<Bytes>,
    buffered: usize,
    /// `Chunks` lookup cursor, valid while the queue front is unchanged.
    cursor: (usize, usize),
    run: Run,
    paused: bool,
    /// Full wire length of the current message once known (0 = unknown).
    target: usize,
    /// Do not call the framer before this many bytes are buffered.
    need: usize,
    /// Bytes the framer had seen when it last answered `NeedMore` (0 = never).
    seen: usize,
    /// Bytes still to discard for a `Skip`.
    skip: usize,
    /// An answer from `handle_deferred`, with the bytes it was computed on.
    deferred: Option<(Parse, usize)>,
    /// An event produced outside `poll_event` (a timeout).
    queued: Option<Event>,
    deadline: Option<Instant>,
    stats: StrParserStats,
    /// The framer supports [`Framer::scan_whole`].
    scans: bool,
}

impl std::fmt::Debug for StrParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrParser")
            .field("buffered", &self.buffered)
            .field("run", &self.run)
            .field("paused", &self.paused)
            .field("target", &self.target)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl StrParser {
    /// A parser driving `framer`.
    pub fn new(framer: Box<dyn Framer>, config: StrParserConfig) -> Self {
        StrParser {
            scans: framer.can_scan(),
            framer,
            config,
            queue: VecDeque::new(),
            buffered: 0,
            cursor: (0, 0),
            run: Run::Active,
            paused: false,
            target: 0,
            need: 0,
            seen: 0,
            skip: 0,
            deferred: None,
            queued: None,
            deadline: None,
            stats: StrParserStats::default(),
        }
    }

    /// Queues received bytes (any size, any split). Empty chunks are ignored;
    /// after an error or [`done`](StrParser::done) input is dropped.
    pub fn handle_data(&mut self, data: Bytes, now: Instant) {
        if data.is_empty() || self.run == Run::Dead {
            return;
        }
        let in_progress = self.buffered > 0 && self.skip == 0;
        self.buffered += data.len();
        self.queue.push_back(data);
        if in_progress && !self.paused && matches!(self.run, Run::Active | Run::Pending(_)) {
            self.arm(now);
        }
    }

    /// The next message, skip, hand-back or error; `None` when more input is
    /// needed or the parser is paused, pending or stopped.
    #[inline]
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        if self.queue.len() == 1 && self.at_fresh_message() {
            return self.poll_front(now);
        }
        self.poll_slow(now)
    }

    /// Whether the next step is calling the framer for a message not yet
    /// looked at: nothing queued, deferred, skipped or known about it.
    #[inline]
    fn at_fresh_message(&self) -> bool {
        self.run == Run::Active
            && !self.paused
            && self.queued.is_none()
            && self.deferred.is_none()
            && (self.skip | self.target | self.need) == 0
    }

    /// [`poll_event`](StrParser::poll_event) when every buffered byte is in
    /// one fragment and a new message starts at its front: a message the
    /// framer finds complete there is cut straight out of that fragment.
    #[inline(always)]
    fn poll_front(&mut self, now: Instant) -> Option<Event> {
        let front = &self.queue[0];
        let seen_now = front.len();
        let answer = self.framer.parse(&Chunks::single(front));
        match answer {
            // `seen` is 0 at a fresh message: any non-zero length is new.
            Parse::Length(n) if n != 0 && n <= seen_now && n <= self.config.max_message_bytes => {
                Some(self.complete_front(n))
            }
            _ => match self.apply(answer, seen_now, now) {
                Some(ev) => Some(ev),
                None => self.poll_slow(now),
            },
        }
    }

    /// Delivers the `n`-byte message at the front of the only fragment.
    #[inline(always)]
    fn complete_front(&mut self, n: usize) -> Event {
        let (Trim { head, tail }, meta) = self.framer.finish();
        let body = match head.checked_add(tail) {
            Some(t) if t <= n => n - t,
            _ => return self.fail(Errno::Proto),
        };
        self.deadline = None;
        let mut frags = SmallVec::new();
        if n == self.buffered {
            // The whole fragment: hand it over without touching its refcount.
            if let Some(mut f) = self.queue.pop_front() {
                if body > 0 {
                    f.truncate(n - tail);
                    f.advance(head);
                    frags.push(f);
                }
            }
        } else if let Some(front) = self.queue.front_mut() {
            if body > 0 {
                frags.push(front.slice(head..n - tail));
            }
            front.advance(n);
        }
        self.buffered -= n;
        self.cursor = (0, 0);
        self.stats.messages += 1;
        self.stats.bytes += n as u64;
        Event::Message(Message {
            frags,
            len: body,
            meta,
        })
    }

    /// Boundary-only delivery of the whole messages at the front of the
    /// buffer, when every buffered byte is in one fragment, a new message
    /// starts at its front and the framer supports
    /// [`scan_whole`](Framer::scan_whole).
    ///
    /// Returns those messages as one block of consecutive bytes, and their
    /// lengths in `lens` (cleared first, in order, summing to the block's
    /// length): exactly the messages, counters and state that as many
    /// [`poll_event`](StrParser::poll_event) calls would have given (each
    /// message's bytes are the next `lens[i]` bytes of the block, without
    /// metadata). `None` when this does not apply or no message is whole;
    /// then use `poll_event`.
    pub fn take_whole(&mut self, lens: &mut Vec<usize>) -> Option<Bytes> {
        lens.clear();
        if !self.scans || self.queue.len() != 1 || !self.at_fresh_message() {
            return None;
        }
        let front = self.queue.front_mut()?;
        let n = self
            .framer
            .scan_whole(front, self.config.max_message_bytes, lens);
        // A framer's lengths must add up to what it claims to cover.
        let consistent = n <= front.len()
            && lens.iter().try_fold(0usize, |sum, &l| {
                (l > 0).then(|| sum.checked_add(l)).flatten()
            }) == Some(n);
        if n == 0 || !consistent {
            lens.clear();
            return None;
        }
        let block = if n == front.len() {
            self.queue.pop_front()?
        } else {
            front.split_to(n)
        };
        self.buffered -= n;
        self.cursor = (0, 0);
        self.deadline = None;
        self.stats.messages += lens.len() as u64;
        self.stats.bytes += n as u64;
        Some(block)
    }

    /// The general [`poll_event`](StrParser::poll_event).
    fn poll_slow(&mut self, now: Instant) -> Option<Event> {
        if let Some(ev) = self.queued.take() {
            return Some(ev);
        }
        loop {
            if self.paused || self.run != Run::Active {
                return None;
            }
            if let Some((answer, seen_now)) = self.deferred.take() {
                if let Some(ev) = self.apply(answer, seen_now, now) {
                    return Some(ev);
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(self.buffered);
                self.discard(n);
                self.skip -= n;
                if self.skip > 0 {
                    return None;
                }
                continue;
            }
            if self.buffered == 0 {
                return None;
            }
            if self.target > 0 {
                if self.buffered >= self.target {
                    return Some(self.complete());
                }
                self.arm(now);
                return None;
            }
            if self.buffered < self.need {
                self.arm(now);
                return None;
            }
            let seen_now = self.buffered;
            let answer = {
                let (a, b) = self.queue.as_slices();
                let chunks = Chunks::from_parts(a, b, seen_now, self.cursor);
                let answer = self.framer.parse(&chunks);
                self.cursor = chunks.cursor();
                answer
            };
            if let Some(ev) = self.apply(answer, seen_now, now) {
                return Some(ev);
            }
        }
    }

    /// Acts on a framer answer computed over `seen_now` bytes.
    fn apply(&mut self, answer: Parse, seen_now: usize, now: Instant) -> Option<Event> {
        match answer {
            Parse::Length(n) => {
                if n == 0 || n <= self.seen {
                    return Some(self.fail(Errno::Proto));
                }
                if n > self.config.max_message_bytes {
                    return Some(self.fail(Errno::MsgSize));
                }
                self.target = n;
                None
            }
            Parse::NeedMore { hint } => {
                let need = match hint {
                    Some(h) => h.max(seen_now.saturating_add(1)),
                    None => seen_now.saturating_add(1),
                };
                if need > self.config.max_message_bytes {
                    return Some(self.fail(Errno::MsgSize));
                }
                self.seen = seen_now;
                self.need = need;
                self.arm(now);
                None
            }
            Parse::Handback => {
                let partial_consumed = self.seen > 0;
                self.stats.handbacks += 1;
                self.framer.reset();
                self.clear_message();
                self.run = Run::HandedBack;
                Some(Event::Handback {
                    rest: self.drain(),
                    partial_consumed,
                })
            }
            Parse::Skip(0) => Some(self.fail(Errno::Proto)),
            Parse::Skip(n) => {
                self.stats.skipped_frames += 1;
                self.stats.skipped_bytes += n as u64;
                self.clear_message();
                self.skip = n;
                Some(Event::Skipped(n))
            }
            Parse::Pending => {
                self.run = Run::Pending(seen_now);
                self.arm(now);
                None
            }
            Parse::Error(e) => Some(self.fail(e)),
        }
    }

    /// Delivers the current message (`target` bytes are buffered).
    fn complete(&mut self) -> Event {
        let n = self.target;
        let (Trim { head, tail }, meta) = self.framer.finish();
        let body = match head.checked_add(tail) {
            Some(t) if t <= n => n - t,
            _ => return self.fail(Errno::Proto),
        };
        self.clear_message();
        self.discard(head);
        let frags = self.take(body);
        self.discard(tail);
        self.stats.messages += 1;
        self.stats.bytes += n as u64;
        Event::Message(Message {
            frags,
            len: body,
            meta,
        })
    }

    /// Removes `n` (<= buffered) bytes from the front as message fragments.
    #[inline]
    fn take(&mut self, n: usize) -> SmallVec<[Bytes; 2]> {
        let mut frags = SmallVec::new();
        let mut left = n;
        while left > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if front.len() > left {
                frags.push(front.split_to(left));
                self.buffered -= left;
                break;
            }
            left -= front.len();
            self.buffered -= front.len();
            if let Some(f) = self.queue.pop_front() {
                frags.push(f);
            }
        }
        self.cursor = (0, 0);
        frags
    }

    /// Drops `n` (<= buffered) bytes from the front.
    #[inline]
    fn discard(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if front.len() > left {
                front.advance(left);
                self.buffered -= left;
                break;
            }
            left -= front.len();
            self.buffered -= front.len();
            self.queue.pop_front();
        }
        self.cursor = (0, 0);
    }

    fn drain(&mut self) -> Vec<Bytes> {
        self.buffered = 0;
        self.cursor = (0, 0);
        self.queue.drain(..).collect()
    }

    /// Forgets the per-message state (a new message starts at the front).
    #[inline]
    fn clear_message(&mut self) {
        self.target = 0;
        self.need = 0;
        self.seen = 0;
        self.deadline = None;
    }

    /// Aborts: frees everything, counts the error, stops for good.
    fn fail(&mut self, e: Errno) -> Event {
        match e {
            Errno::MsgSize => self.stats.msg_too_big += 1,
            Errno::TimedOut => self.stats.timeouts += 1,
            Errno::Proto => self.stats.proto_errors += 1,
            _ => self.stats.other_errors += 1,
        }
        self.framer.reset();
        self.clear_message();
        self.skip = 0;
        self.deferred = None;
        self.queue.clear();
        self.buffered = 0;
        self.cursor = (0, 0);
        self.run = Run::Dead;
        Event::Error(e)
    }

    /// Starts the message timer if it is configured and not running.
    #[inline]
    fn arm(&mut self, now: Instant) {
        if self.deadline.is_none() {
            if let Some(t) = self.config.message_timeout {
                self.deadline = now.checked_add(t);
            }
        }
    }

    /// Answers a [`Parse::Pending`].
    ///
    /// The answer is taken as computed over the bytes the framer saw when it
    /// answered `Pending`. Ignored when no answer is pending; `Pending` again
    /// keeps waiting.
    pub fn handle_deferred(&mut self, answer: Parse) {
        if let Run::Pending(seen_now) = self.run {
            if answer != Parse::Pending {
                self.deferred = Some((answer, seen_now));
                self.run = Run::Active;
            }
        }
    }

    /// When [`handle_timeout`](StrParser::handle_timeout) must be called next,
    /// if a message timer is running.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.run {
            Run::Active | Run::Pending(_) if !self.paused => self.deadline,
            _ => None,
        }
    }

    /// Fires the message timer if it has expired: the parser aborts with
    /// `ETIMEDOUT`, reported by the next [`poll_event`](StrParser::poll_event).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.poll_timeout() {
            if now >= d {
                let ev = self.fail(Errno::TimedOut);
                self.queued = Some(ev);
            }
        }
    }

    /// Stops delivery at once (`strp_pause`). The message timer is suspended.
    pub fn pause(&mut self) {
        self.paused = true;
        self.deadline = None;
    }

    /// Resumes delivery where it stopped (`strp_unpause`).
    pub fn unpause(&mut self) {
        self.paused = false;
    }

    /// The framer, to tell it what it cannot see in its input
    /// ([`Framer::request_forwarded`]).
    pub fn framer_mut(&mut self) -> &mut dyn Framer {
        &mut *self.framer
    }

    /// Whether delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Stops parsing for good (`strp_stop`); input is still queued until
    /// [`done`](StrParser::done).
    pub fn stop(&mut self) {
        if matches!(self.run, Run::Active | Run::Pending(_)) {
            self.run = Run::Stopped;
            self.deferred = None;
            self.deadline = None;
        }
    }

    /// Stops and releases everything (`strp_done`), returning the bytes not yet
    /// delivered (the partial message first). Input is dropped afterwards.
    pub fn done(&mut self) -> Vec<Bytes> {
        let rest = self.forget_input();
        self.run = Run::Dead;
        rest
    }

    /// Ends the input at a boundary the transport keeps (the end of a
    /// datagram): returns the bytes of a message cut short there (none when
    /// the input ended between messages), and restarts the framer, and the
    /// parser after an error or a hand-back, so the next input starts a
    /// fresh message. A `Skip` stops at the boundary; counters and pause are
    /// kept, and a parser stopped by [`stop`](StrParser::stop) stays stopped.
    pub fn end_input(&mut self) -> Vec<Bytes> {
        let rest = self.forget_input();
        if self.run != Run::Stopped {
            self.run = Run::Active;
        }
        rest
    }

    /// Resets the framer and every per-message state, and returns what was buffered.
    fn forget_input(&mut self) -> Vec<Bytes> {
        self.framer.reset();
        self.clear_message();
        self.skip = 0;
        self.deferred = None;
        self.queued = None;
        self.drain()
    }

    /// Whether the end of the input ends a message cut short there
    /// ([`Framer::ends_at_boundary`]).
    pub fn ends_at_boundary(&self) -> bool {
        self.framer.ends_at_boundary()
    }

    /// Whether the parser waits for [`handle_deferred`](StrParser::handle_deferred).
    pub fn is_pending(&self) -> bool {
        matches!(self.run, Run::Pending(_))
    }

    /// The buffered fragments, starting at the current message (what an
    /// external parser is shown while the parser is pending).
    pub fn buffered(&self) -> impl Iterator<Item = &Bytes> {
        self.queue.iter()
    }

    /// Bytes received and not yet delivered, skipped or handed back.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// The counters.
    pub fn stats(&self) -> &StrParserStats {
        &self.stats
    }
}
