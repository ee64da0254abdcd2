//! [`Raw`]: no framing, each received chunk is one message (`parsers.none()`).

use super::{Chunks, Framer, Parse};

/// A framer that makes each received chunk one message, as it arrived
/// (`parsers.none()`: a verdict without a parser).
///
/// Named `Raw` rather than `None` so it never shadows `Option::None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Raw;

impl Raw {
    /// The framer.
    pub fn new() -> Self {
        Raw
    }
}

impl Framer for Raw {
    #[inline]
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        // The strparser never buffers empty chunks, and a message always ends
        // at a chunk end here, so the first fragment is a whole received chunk.
        match data.first().len() {
            0 => Parse::NeedMore { hint: None },
            n => Parse::Length(n),
        }
    }
}
