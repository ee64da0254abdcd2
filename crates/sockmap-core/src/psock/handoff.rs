//! What one shard's core hands another ([`Remote`]): messages for a target the other shard owns, their
//! acknowledgements, backpressure and partners' ends. `remote.rs` makes and applies them.

use crate::event::Frags;
use crate::id::SockId;

use super::queue::SendAck;

/// What one shard's core hands another.
#[derive(Debug)]
pub(crate) enum Remote {
    /// Messages of `src` for `target`'s egress (or its application, `ingress`).
    Bytes {
        src: SockId,
        target: SockId,
        ingress: bool,
        messages: u64,
        len: usize,
        frags: Frags,
        /// The application send whose last bytes these are, reported on the ack.
        done: Option<SendAck>,
    },
    /// `target`'s partner read to its end (or closed): end `target` after its queued bytes.
    End { target: SockId },
    /// `target`'s partner closed on an error (or as its pair asked): close `target` at once.
    Destroy { target: SockId },
    /// The answer to a `Bytes` item of `src`.
    Ack {
        src: SockId,
        ingress: bool,
        messages: u64,
        len: usize,
        delivered: bool,
        done: Option<SendAck>,
    },
    /// A target of `src` went above its high watermark: stop reading `src`.
    Block { src: SockId },
    /// A target `src` waited on drained.
    Release { src: SockId },
}
