//! [`LengthField`]: frames with a binary length field (Netty's
//! `LengthFieldBasedFrameDecoder` option set).
//!
//! # Getting started
//!
//! The length field is read at `length_field_offset`; the full frame length is
//!
//! ```text
//! frame = field value + length_adjustment + length_field_offset + length_field_length
//! ```
//!
//! and the delivered message is the frame minus its first `initial_bytes_to_strip`
//! bytes. With the defaults (4-byte big-endian length at offset 0, nothing
//! stripped):
//!
//! ```text
//! +----------+---------------+        +----------+---------------+
//! | 00000005 | h e l l o     |  --->  | 00000005 | h e l l o     |
//! +----------+---------------+        +----------+---------------+
//! ```
//!
//! Netty's documented examples, one per option combination, are tests in
//! `tests/framer_length.rs`.
//!
//! # Errors
//!
//! * A field value that is negative (8-byte fields are signed, as in Netty), an
//!   adjusted frame shorter than the header end, or a strip count above the
//!   frame length: `EPROTO`.
//! * A frame longer than `max_frame_length`: `EMSGSIZE`, or with
//!   `discard_oversize` the frame is skipped (streamed past, never buffered) and
//!   counted, and the stream goes on.

use super::{Chunks, Framer, Parse, Trim};
use crate::error::Errno;

/// Byte order of a length field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ByteOrder {
    /// Most significant byte first (network order). The default.
    #[default]
    BigEndian,
    /// Least significant byte first.
    LittleEndian,
}

/// Options of [`LengthField`]; each field maps 1:1 to `parsers.lengthField({...})`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LengthFieldOptions {
    /// `byteOrder` (`'be'`/`'le'`). Default: big endian.
    pub byte_order: ByteOrder,
    /// `lengthFieldOffset`: bytes before the length field. Default: 0.
    pub length_field_offset: usize,
    /// `lengthFieldLength`: width of the field in bytes, one of 1, 2, 3, 4, 8. Default: 4.
    pub length_field_length: usize,
    /// `lengthAdjustment`: added to the field value (may be negative). Default: 0.
    pub length_adjustment: i64,
    /// `initialBytesToStrip`: bytes removed from the start of each delivered
    /// message. Default: 0.
    pub initial_bytes_to_strip: usize,
    /// `maxFrameLength`: largest accepted frame in bytes, header included.
    /// Default: 8 MiB.
    pub max_frame_length: usize,
    /// `failFast`: accepted for Netty compatibility. The oversize error or skip
    /// is always reported as soon as the length field is read (Netty's
    /// fail-fast behaviour), because an abort frees the stream anyway and a
    /// skip never buffers the frame. Default: true.
    pub fail_fast: bool,
    /// `discardOversize`: skip oversize frames and go on instead of aborting
    /// with `EMSGSIZE`. Default: false.
    pub discard_oversize: bool,
}

impl Default for LengthFieldOptions {
    fn default() -> Self {
        LengthFieldOptions {
            byte_order: ByteOrder::BigEndian,
            length_field_offset: 0,
            length_field_length: 4,
            length_adjustment: 0,
            initial_bytes_to_strip: 0,
            max_frame_length: 8 << 20,
            fail_fast: true,
            discard_oversize: false,
        }
    }
}

/// A framer for messages carrying a binary length field. See the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct LengthField {
    opts: LengthFieldOptions,
    /// End of the length field: offset + length.
    header_end: usize,
}

impl LengthField {
    /// A framer with these options.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `length_field_length` is not 1, 2, 3, 4 or 8, or the header
    /// end overflows.
    pub fn new(opts: LengthFieldOptions) -> Result<Self, Errno> {
        if !matches!(opts.length_field_length, 1 | 2 | 3 | 4 | 8) {
            return Err(Errno::Inval);
        }
        let header_end = opts
            .length_field_offset
            .checked_add(opts.length_field_length)
            .ok_or(Errno::Inval)?;
        Ok(LengthField { opts, header_end })
    }

    /// The options in force.
    pub fn options(&self) -> &LengthFieldOptions {
        &self.opts
    }

    /// The length field's value, once its bytes are buffered.
    #[inline]
    fn field(&self, data: &Chunks<'_>) -> Option<u64> {
        let w = self.opts.length_field_length;
        let off = self.opts.length_field_offset;
        // Usually the field lies in the first fragment: read it in place.
        if let Some(bytes) = data.first().get(off..self.header_end) {
            return Some(self.decode(bytes));
        }
        let mut raw = [0u8; 8];
        if !data.copy_to(off, &mut raw[..w]) {
            return None;
        }
        Some(self.decode(&raw[..w]))
    }

    /// Decodes the `length_field_length` bytes of a length field.
    #[inline]
    fn decode(&self, bytes: &[u8]) -> u64 {
        let be = self.opts.byte_order == ByteOrder::BigEndian;
        match *bytes {
            [a] => u64::from(a),
            [a, b] => u64::from(if be {
                u16::from_be_bytes([a, b])
            } else {
                u16::from_le_bytes([a, b])
            }),
            [a, b, c, d] => u64::from(if be {
                u32::from_be_bytes([a, b, c, d])
            } else {
                u32::from_le_bytes([a, b, c, d])
            }),
            [a, b, c, d, e, f, g, h] => {
                let raw = [a, b, c, d, e, f, g, h];
                if be {
                    u64::from_be_bytes(raw)
                } else {
                    u64::from_le_bytes(raw)
                }
            }
            _ if be => bytes.iter().fold(0, |v, &b| (v << 8) | u64::from(b)),
            _ => bytes.iter().rev().fold(0, |v, &b| (v << 8) | u64::from(b)),
        }
    }
}

impl LengthField {
    /// The answer for a message whose length field holds `value`.
    #[inline]
    fn frame_of(&self, value: u64) -> Parse {
        if self.opts.length_field_length == 8 && value > i64::MAX as u64 {
            return Parse::Error(Errno::Proto);
        }
        let frame = value as i128 + self.opts.length_adjustment as i128 + self.header_end as i128;
        if frame < self.header_end as i128 {
            return Parse::Error(Errno::Proto);
        }
        if frame > self.opts.max_frame_length as i128 {
            if !self.opts.discard_oversize {
                return Parse::Error(Errno::MsgSize);
            }
            return Parse::Skip(usize::try_from(frame).unwrap_or(usize::MAX));
        }
        // frame <= max_frame_length, so it fits in usize.
        let frame = frame as usize;
        if self.opts.initial_bytes_to_strip > frame {
            return Parse::Error(Errno::Proto);
        }
        Parse::Length(frame)
    }
}

impl Framer for LengthField {
    #[inline]
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        match self.field(data) {
            Some(value) => self.frame_of(value),
            None => Parse::NeedMore {
                hint: Some(self.header_end),
            },
        }
    }

    #[inline]
    fn trim(&self) -> Trim {
        Trim {
            head: self.opts.initial_bytes_to_strip,
            tail: 0,
        }
    }

    fn can_scan(&self) -> bool {
        self.opts.initial_bytes_to_strip == 0
    }

    fn scan_whole(&self, data: &[u8], max: usize, lens: &mut Vec<usize>) -> usize {
        if !self.can_scan() {
            return 0;
        }
        let (off, end) = (self.opts.length_field_offset, self.header_end);
        let mut at = 0;
        while let Some(rest) = data.get(at..) {
            let Some(field) = rest.get(off..end) else {
                break;
            };
            match self.frame_of(self.decode(field)) {
                Parse::Length(n) if n <= max && n <= rest.len() => {
                    lens.push(n);
                    at += n;
                }
                _ => break,
            }
        }
        at
    }
}
