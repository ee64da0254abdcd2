//! Counters per socket and per map.
//!
//! Each counter has one writer, the I/O thread, which adds with a plain load
//! and store (no locked instruction on the hot path); any thread may read a
//! [`StatsSnapshot`] at any time. Stores release and reads acquire, so a
//! reader that sees one counter's value also sees every value the I/O thread
//! wrote before it (a gauge set after a count implies the count, on every
//! CPU); on x86 both are plain moves. A map's sockets live on every shard, so a
//! map has one [`Stats`] per shard ([`ShardedStats`]), each written by its
//! shard alone, and its snapshot is their sum.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The verdict said DROP.
    Verdict,
    /// The redirect key is absent from the map.
    NoKey,
    /// No route of an `httpRoute` rule matched the request.
    NoRoute,
    /// The redirect target is closed, listening or otherwise unable to take data.
    DeadTarget,
    /// The parser failed or the socket closed in the middle of a message.
    Parser,
    /// A datagram target's send queue was full, a session's held datagrams
    /// at their bound, or a bound socket at its maximum of sessions.
    Overflow,
    /// A datagram above the size the kernel takes (`EMSGSIZE`), or one
    /// received truncated.
    TooBig,
    /// The kernel refused a datagram (`ECONNREFUSED` after an ICMP error...).
    SendError,
}

macro_rules! counters {
    ($(#[$m:meta])* $name:ident / $snap:ident { $($(#[$fm:meta])* $field:ident,)* }) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fm])* pub(crate) $field: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $snap {
            $($(#[$fm])* pub $field: u64,)*
        }

        impl $snap {
            /// The counter names, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The counter values, in the order of [`Self::FIELDS`].
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$field),*]
            }

            /// Adds every counter of `other` to this one.
            pub fn merge(&mut self, other: &$snap) {
                $(self.$field = self.$field.wrapping_add(other.$field);)*
            }
        }

        impl $name {
            /// Reads every counter.
            pub fn snapshot(&self) -> $snap {
                $snap { $($field: self.$field.load(Ordering::Acquire),)* }
            }
        }
    };
}

counters! {
    /// The counters of one socket, or of the sockets that took one map's programs.
    Stats / StatsSnapshot {
        /// Bytes read from the socket.
        bytes_in,
        /// Bytes written to the socket.
        bytes_out,
        /// Messages framed from what was read.
        messages_in,
        /// Messages passed to the application.
        passed,
        /// Messages redirected to another socket's egress.
        redirected_egress,
        /// Messages redirected to another socket's application (ingress).
        redirected_ingress,
        /// Messages dropped, for any reason.
        dropped,
        /// Messages dropped by a DROP verdict.
        dropped_verdict,
        /// Messages dropped because the redirect key was absent.
        dropped_no_key,
        /// Messages dropped because no route of an `httpRoute` rule matched.
        dropped_no_route,
        /// Messages dropped because the redirect target could not take them.
        dropped_dead_target,
        /// Partial messages dropped by a parser error or a close mid-message.
        dropped_parser,
        /// Datagrams dropped because their target's send queue was full, a
        /// session held too many, or a bound socket had its maximum of sessions.
        dropped_overflow,
        /// Datagrams dropped for their size (`EMSGSIZE`, or received truncated).
        dropped_too_big,
        /// Datagrams the kernel refused to send (`ECONNREFUSED`...).
        dropped_send_error,
        /// Datagrams the kernel dropped before the engine read them, for want
        /// of room in the socket's receive buffer (`SO_RXQ_OVFL`; learnt with
        /// the next datagram read). Not in `dropped`: the engine never had them.
        kernel_drops,
        /// Bytes of dropped messages.
        dropped_bytes,
        /// Parser errors (each one aborted the socket).
        parser_errors,
        /// Frames (or pieces of frames) the parser skipped.
        skipped_frames,
        /// Bytes the parser skipped.
        skipped_bytes,
        /// Times the parser handed the stream back to the application.
        handbacks,
        /// Bytes delivered to the application and not yet acknowledged (a gauge).
        app_queued_bytes,
        /// Queued bytes discarded because the socket closed before writing them.
        discarded_bytes,
        /// Bytes queued in the send ring, waiting to be written (a gauge).
        queued_bytes,
        /// Bytes waiting for an external verdict or parser (a gauge).
        pending_bytes,
        /// Items (messages, sends, parse requests) whose batch went
        /// unanswered past the verdict timeout: each got the error verdict.
        verdict_timeouts,
        /// Answers that came for items after their batch had timed out (ignored).
        verdicts_late,
        /// Bytes redirected to sockets another shard (I/O thread) owns and
        /// not yet acknowledged by it (a gauge): until it is back to 0, that
        /// shard's answers may still change the redirect and drop counters.
        remote_bytes,
        /// Application sends accepted (sk_msg path).
        sends,
        /// Application sends refused (EACCES, EPIPE).
        sends_refused,
        /// Times reading stopped because a redirect target was full.
        backpressure_stalls,
        /// Requests of a client in requests mode (each gets exactly one reply, in order).
        requests,
        /// Upstream replies delivered to the client in its request order.
        replies,
        /// Replies the application made (`msg.reply`, or a send filling a passed request's slot).
        local_replies,
        /// Error replies made in place of an upstream's (or, without a reply
        /// format, clients closed), for any of the reasons below.
        error_replies,
        /// ...because the upstream did not answer in time.
        error_timeout,
        /// ...because the upstream closed or failed before answering.
        error_upstream_closed,
        /// ...because no upstream could take the request.
        error_no_upstream,
        /// ...because the verdict dropped the request.
        error_denied,
        /// Upstream replies discarded because their client was gone (on the upstream).
        orphan_replies,
        /// Upstream messages with no request pending, passed to its application (on the upstream).
        unsolicited,
        /// Requests awaiting their reply (a gauge): on a client, its slots
        /// not yet sent; on an upstream, the requests forwarded to it and not answered.
        pending_requests,
    }
}

/// One [`Stats`] per shard: the counters of a map, whose sockets every shard
/// may own. Shard `i` writes only `of(i)`.
#[derive(Debug)]
pub(crate) struct ShardedStats(Box<[Arc<Stats>]>);

impl ShardedStats {
    /// Counters for `shards` shards (at least one).
    pub(crate) fn new(shards: usize) -> ShardedStats {
        ShardedStats((0..shards.max(1)).map(|_| Arc::default()).collect())
    }

    /// The counters shard `shard` writes.
    pub(crate) fn of(&self, shard: usize) -> Arc<Stats> {
        self.0[shard % self.0.len()].clone()
    }

    /// The sum over every shard.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut sum = StatsSnapshot::default();
        for s in self.0.iter() {
            sum.merge(&s.snapshot());
        }
        sum
    }
}

impl Stats {
    #[inline]
    pub(crate) fn add(field: &AtomicU64, n: u64) {
        field.store(
            field.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Release,
        );
    }

    #[inline]
    pub(crate) fn set(field: &AtomicU64, n: u64) {
        field.store(n, Ordering::Release);
    }

    /// Counts `messages` dropped messages of `bytes` in all for `reason`.
    pub(crate) fn count_drop(&self, reason: DropReason, messages: u64, bytes: usize) {
        Stats::add(&self.dropped, messages);
        Stats::add(&self.dropped_bytes, bytes as u64);
        let field = match reason {
            DropReason::Verdict => &self.dropped_verdict,
            DropReason::NoKey => &self.dropped_no_key,
            DropReason::NoRoute => &self.dropped_no_route,
            DropReason::DeadTarget => &self.dropped_dead_target,
            DropReason::Parser => &self.dropped_parser,
            DropReason::Overflow => &self.dropped_overflow,
            DropReason::TooBig => &self.dropped_too_big,
            DropReason::SendError => &self.dropped_send_error,
        };
        Stats::add(field, messages);
    }
}
