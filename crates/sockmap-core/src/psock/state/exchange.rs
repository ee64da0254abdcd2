//! A psock's request/response pairing state ([`Exchange`]): a client's reply slots in request order, an upstream's
//! FIFO of the requests forwarded to it. `psock/exchange.rs` states the pairing's invariants and keeps them.

use std::collections::VecDeque;
use std::time::Instant;

use smallvec::{smallvec, SmallVec};

use crate::event::Frags;
use crate::framer::Framer;
use crate::id::SockId;
use crate::redis::{ClientState, Merger};

/// One request's place in its client's reply order.
pub(in crate::psock) enum Slot {
    /// Forwarded; waits for its upstream's reply.
    Waiting,
    /// Passed to the application; its next send fills the slot.
    App,
    /// The reply, ready to go once every earlier slot went.
    Ready(Frags),
    /// A Redis command split over several upstreams: `left` parts still to answer.
    Merge { merger: Box<Merger>, left: usize },
}

/// What filling a slot did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::psock) enum Filled {
    /// The slot is gone (or was never waiting): an orphan reply.
    Gone,
    /// The slot holds its reply now.
    Ready,
    /// A part of a split command answered; others are still to come.
    Part,
}

/// The client side: the slots of its requests, in order.
#[derive(Default)]
pub(in crate::psock) struct ClientSide {
    /// The number of `slots[0]`.
    head: u64,
    slots: VecDeque<Slot>,
    /// The framer that makes the client's error replies (built once).
    pub(in crate::psock) replier: Option<Option<Box<dyn Framer>>>,
    /// The Redis planner's state of the client (`AUTH`), once it planned a command.
    pub(in crate::psock) redis: Option<ClientState>,
}

/// A request forwarded to an upstream.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(in crate::psock) client: SockId,
    pub(in crate::psock) seq: u64,
    pub(in crate::psock) deadline: Instant,
    /// The key indices of a split command's part.
    pub(in crate::psock) part: Option<Box<[usize]>>,
}

/// The upstream side: the requests forwarded to it, oldest first.
#[derive(Default)]
pub(in crate::psock) struct UpstreamSide {
    pending: VecDeque<Pending>,
    armed: bool,
    /// Heads of requests forwarded while the upstream's parser was out of
    /// its psock (during its own read), told to its framer once it is back.
    pub(in crate::psock) untold: Vec<SmallVec<[u8; 32]>>,
}

/// A psock's pairing state (see the module documentation).
#[derive(Default)]
pub(crate) struct Exchange {
    client: Option<Box<ClientSide>>,
    pub(in crate::psock) upstream: Option<Box<UpstreamSide>>,
}

impl Exchange {
    pub(in crate::psock) fn client(&mut self) -> &mut ClientSide {
        self.client.get_or_insert_with(Box::default)
    }

    /// Opens the next slot; returns its number.
    pub(in crate::psock) fn open(&mut self, slot: Slot) -> u64 {
        let c = self.client();
        c.slots.push_back(slot);
        c.head + c.slots.len() as u64 - 1
    }

    /// Fills a waiting (or application) slot with its reply, or gives a
    /// split command's merger the reply of its `part`.
    pub(in crate::psock) fn fill(
        &mut self,
        seq: u64,
        part: Option<&[usize]>,
        reply: Frags,
    ) -> Filled {
        let Some(c) = self.client.as_mut() else {
            return Filled::Gone;
        };
        let Some(i) = seq.checked_sub(c.head).map(|i| i as usize) else {
            return Filled::Gone;
        };
        match (c.slots.get_mut(i), part) {
            (Some(s @ (Slot::Waiting | Slot::App)), None) => {
                *s = Slot::Ready(reply);
                return Filled::Ready;
            }
            (Some(Slot::Merge { merger, left }), Some(part)) => {
                merger.add(part, &reply);
                *left -= 1;
                if *left > 0 {
                    return Filled::Part;
                }
            }
            _ => return Filled::Gone,
        }
        if let Slot::Merge { merger, .. } = std::mem::replace(&mut c.slots[i], Slot::Waiting) {
            c.slots[i] = Slot::Ready(smallvec![merger.finish()]);
        }
        Filled::Ready
    }

    /// The number of the oldest slot reserved for the application.
    pub(in crate::psock) fn app_slot(&self) -> Option<u64> {
        let c = self.client.as_ref()?;
        let i = c.slots.iter().position(|s| matches!(s, Slot::App))?;
        Some(c.head + i as u64)
    }

    /// Takes the head slot's reply, if it is ready.
    pub(in crate::psock) fn take_ready(&mut self) -> Option<Frags> {
        let c = self.client.as_mut()?;
        if !matches!(c.slots.front(), Some(Slot::Ready(_))) {
            return None;
        }
        c.head += 1;
        match c.slots.pop_front() {
            Some(Slot::Ready(f)) => Some(f),
            _ => None,
        }
    }

    /// Requests of the client awaiting their turn.
    pub(crate) fn slots(&self) -> usize {
        self.client.as_ref().map_or(0, |c| c.slots.len())
    }

    /// Requests forwarded to the upstream and not answered.
    pub(crate) fn pending(&self) -> usize {
        self.upstream.as_ref().map_or(0, |u| u.pending.len())
    }

    /// Records a request forwarded to this upstream; true when its timer must be armed.
    pub(in crate::psock) fn forwarded(&mut self, p: Pending) -> bool {
        let u = self.upstream.get_or_insert_with(Box::default);
        u.pending.push_back(p);
        !std::mem::replace(&mut u.armed, true)
    }

    pub(in crate::psock) fn pop_pending(&mut self) -> Option<Pending> {
        self.upstream.as_mut()?.pending.pop_front()
    }

    /// The timer fired: the oldest request, the timer disarmed.
    pub(in crate::psock) fn oldest(&mut self) -> Option<Instant> {
        let u = self.upstream.as_mut()?;
        u.armed = false;
        u.pending.front().map(|p| p.deadline)
    }

    pub(in crate::psock) fn arm(&mut self) {
        if let Some(u) = self.upstream.as_mut() {
            u.armed = true;
        }
    }

    /// Close: every request pending on the upstream, and the client's slots dropped.
    pub(in crate::psock) fn take_all(&mut self) -> VecDeque<Pending> {
        self.client = None;
        self.upstream.take().map(|u| u.pending).unwrap_or_default()
    }

    /// The socket's programs changed: its error replies are made afresh.
    pub(crate) fn programs_changed(&mut self) {
        if let Some(c) = self.client.as_mut() {
            c.replier = None;
        }
    }
}
