//! Deadlines of the sans-IO core, in a min-heap with lazy invalidation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::id::SockId;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A connect that must finish by then (`ETIMEDOUT`).
    Connect(SockId),
    /// The open external batch is due.
    Batch,
    /// The oldest external batch handed off may have gone unanswered too long.
    Answers,
    /// A socket's parser has a message deadline (`ETIMEDOUT`).
    Parser(SockId),
    /// The oldest request forwarded to an upstream has a deadline (`ETIMEDOUT`).
    Request(SockId),
    /// A TLS handshake that must finish by then (`ETIMEDOUT`).
    Tls(SockId),
    /// A datagram session may have been idle for its timeout by then.
    Session(SockId),
}

/// Pending deadlines; an entry whose cause is gone is skipped when it fires.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl TimerTable {
    pub(crate) fn set(&mut self, at: Instant, t: Timer) {
        self.heap.push(Reverse((at, t)));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Drops the earliest deadlines while `stale` says their cause is gone, so
    /// that [`TimerTable::next`] does not wake the loop for them.
    pub(crate) fn prune(&mut self, mut stale: impl FnMut(&Timer) -> bool) {
        while let Some(Reverse((_, t))) = self.heap.peek() {
            if !stale(t) {
                return;
            }
            self.heap.pop();
        }
    }

    /// Pops one expired timer.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }
}
