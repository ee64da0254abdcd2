//! [`Fixed`]: every message has the same length.

use super::{Chunks, Framer, Parse};
use crate::error::Errno;

/// A framer for fixed-size messages (`parsers.fixed(n)`, Netty's
/// `FixedLengthFrameDecoder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    len: usize,
}

impl Fixed {
    /// Messages of exactly `len` bytes.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `len` is 0.
    pub fn new(len: usize) -> Result<Self, Errno> {
        if len == 0 {
            return Err(Errno::Inval);
        }
        Ok(Fixed { len })
    }

    /// The message length.
    pub fn message_len(&self) -> usize {
        self.len
    }
}

impl Framer for Fixed {
    #[inline]
    fn parse(&mut self, _data: &Chunks<'_>) -> Parse {
        Parse::Length(self.len)
    }

    fn can_scan(&self) -> bool {
        true
    }

    fn scan_whole(&self, data: &[u8], max: usize, lens: &mut Vec<usize>) -> usize {
        if self.len > max {
            return 0;
        }
        let n = data.len() / self.len;
        lens.extend(std::iter::repeat(self.len).take(n));
        n * self.len
    }
}
