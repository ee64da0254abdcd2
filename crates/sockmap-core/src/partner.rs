//! Partners: two sockets declared a pair, whatever their verdicts.
//!
//! A pair is symmetric and exclusive: each socket has at most one partner,
//! and each is the other's. The registry keeps the relation (it answers
//! `pair`/`unpair` at once and checks them); each psock keeps a copy, taken
//! like its programs when the registry tells its shard to relink it. What a
//! pair carries:
//!
//! - a peer's FIN read on one side goes to the other after every byte the
//!   first received before it was judged and queued, and the other shuts its
//!   write side after writing everything queued before the FIN;
//! - a close of one before both its directions finished ends the other
//!   ([`OnClose::End`], after its queued bytes) or destroys it
//!   ([`OnClose::Destroy`]); a close on an error (a reset, a failed connect,
//!   an I/O error) always destroys it, so its peer never takes a broken
//!   exchange for a complete one;
//! - a close of either dissolves the pair (both sides), and each leaves its
//!   maps when it closes, as every socket does.

use crate::id::SockId;

/// What a close of one partner does to the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnClose {
    /// Write out what is queued for its peer, then shut its write side (FIN). The default.
    #[default]
    End,
    /// Close it at once, discarding what is queued (as `destroy()`).
    Destroy,
}

impl OnClose {
    /// The option's name in the API: `"end"` or `"destroy"`.
    pub fn name(self) -> &'static str {
        match self {
            OnClose::End => "end",
            OnClose::Destroy => "destroy",
        }
    }
}

/// Options of a pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairOptions {
    /// What a close of one (without an error) does to the other.
    pub on_close: OnClose,
}

/// One side's view of a pair: the other socket and what a close does to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partner {
    /// The other socket.
    pub peer: SockId,
    /// What this socket's close does to `peer`.
    pub on_close: OnClose,
}
