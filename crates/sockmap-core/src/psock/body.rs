//! The bytes of one message as they travel from a read to a target: its own fragments, or a range of a block
//! the read took whole ([`Body::Range`]).

use bytes::Bytes;
use smallvec::smallvec;

use crate::event::Frags;

/// The bytes of one message.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    /// Fragments of received buffers.
    Frags(Frags),
    /// `start..end` of a block.
    Range(&'a Bytes, usize, usize),
}

impl Body<'_> {
    pub(crate) fn into_frags(self) -> Frags {
        match self {
            Body::Frags(f) => f,
            Body::Range(b, s, e) => smallvec![b.slice(s..e)],
        }
    }
}
