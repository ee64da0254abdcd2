//! A psock's sk_msg state ([`SendState`]: `psock->cork`, `cork_bytes`, `apply_bytes`, the cached verdict, the send
//! parked for an external answer and the sends behind it). Only the sk_msg path (`psock/send.rs`) changes it.
//!
//! Invariants: while a send is parked for its external msg verdict, every
//! later send of the socket waits in `backlog`, in order; `cached` is set
//! exactly while `apply_left > 0`; a cork holds fewer than `cork_bytes`
//! bytes unless it was forced open by a full message ring.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::id::SockId;
use crate::msg::SkMsg;
use crate::verdict::Resolved;

use crate::psock::slot::SlotIdx;

/// The psock's sk_msg state.
#[derive(Debug, Default)]
pub(crate) struct SendState {
    /// The cork and the cached verdict.
    pub(in crate::psock) msg: MsgState,
    /// The send waiting for an external msg verdict.
    pub(in crate::psock) parked: Option<Box<ParkedSend>>,
    /// Numbers parked sends.
    pub(in crate::psock) seq: u64,
    /// Sends behind the parked one, in order.
    pub(in crate::psock) backlog: VecDeque<(Bytes, u64)>,
}

impl SendState {
    /// Discards the cork (close): the bytes it held.
    pub(crate) fn discard_cork(&mut self) -> usize {
        self.msg.cork.take().map_or(0, |m| m.size())
    }
}

/// What became of one application send.
#[derive(Debug, Default)]
pub(in crate::psock) struct SendOutcome {
    /// Bytes transmitted, redirected or parked by a cork.
    pub(in crate::psock) accepted: usize,
    /// Bytes refused.
    pub(in crate::psock) refused: usize,
    /// The refusal was a dead redirect target (EPIPE) rather than a DROP (EACCES).
    pub(in crate::psock) pipe: bool,
    /// The refusal was an egress redirect to a datagram socket (EOPNOTSUPP, as the kernel's sk_msg egress is
    /// TCP to TCP only).
    pub(in crate::psock) unsupported: bool,
    /// The ring the last accepted bytes went to (the send is acknowledged when it drains).
    pub(in crate::psock) ring: Option<SlotIdx>,
    /// A target on another shard that accepted bytes went to: the send is
    /// reported when that shard says whether they were delivered.
    pub(in crate::psock) remote: Option<SockId>,
}

/// A send going through the msg verdict loop.
#[derive(Debug)]
pub(in crate::psock) struct SendJob {
    /// What is left to judge.
    pub(in crate::psock) msg: SkMsg,
    /// The ring filled up: the cork is forced open.
    pub(in crate::psock) forced: bool,
    pub(in crate::psock) out: SendOutcome,
    /// Bytes of the application's send.
    pub(in crate::psock) len: usize,
    pub(in crate::psock) req: u64,
}

/// A send waiting for its external msg verdict.
#[derive(Debug)]
pub(in crate::psock) struct ParkedSend {
    pub(in crate::psock) seq: u64,
    pub(in crate::psock) job: SendJob,
}

/// The cork and the cached verdict (`psock->cork`, `cork_bytes`,
/// `apply_bytes`, `eval`, `sk_redir`); the verdict loop takes it out of the
/// psock while it runs.
#[derive(Debug, Default)]
pub(in crate::psock) struct MsgState {
    /// Data parked by `cork_bytes`, with the size that releases it.
    pub(in crate::psock) cork: Option<SkMsg>,
    pub(in crate::psock) cork_bytes: usize,
    /// Bytes still covered by the cached verdict.
    pub(in crate::psock) apply_left: usize,
    pub(in crate::psock) cached: Option<Resolved>,
}
