//! Length-prefixed frames with sequence numbers: a batch builder for senders and
//! a streaming checker for receivers.

/// Bytes of the length field.
pub const HEADER_LEN: usize = 4;
/// Bytes of the sequence number at the start of every payload.
pub const SEQ_LEN: usize = 8;
/// The smallest frame on the wire: header plus sequence number.
pub const MIN_FRAME: usize = HEADER_LEN + SEQ_LEN;
/// The largest frame the checker accepts (header included).
pub const MAX_FRAME: usize = 64 * 1024;

/// A reusable buffer of `count` equal frames, restamped with fresh sequence numbers per send.
#[derive(Debug)]
pub struct FrameBatch {
    buf: Vec<u8>,
    frame_size: usize,
}

impl FrameBatch {
    /// Builds `count` frames of `frame_size` bytes on the wire (header included).
    ///
    /// # Errors
    /// Returns a message when `frame_size` is outside `MIN_FRAME..=MAX_FRAME` or `count` is 0.
    pub fn new(frame_size: usize, count: usize) -> Result<FrameBatch, String> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame_size) {
            return Err(format!(
                "frame size must be between {MIN_FRAME} and {MAX_FRAME} bytes"
            ));
        }
        if count == 0 {
            return Err("a batch needs at least one frame".into());
        }
        let total = frame_size.checked_mul(count).ok_or("batch too large")?;
        let mut buf = vec![0xA5u8; total];
        let len = u32::try_from(frame_size - HEADER_LEN).map_err(|_| "frame too large")?;
        for frame in buf.chunks_exact_mut(frame_size) {
            frame[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        }
        Ok(FrameBatch { buf, frame_size })
    }

    /// Size of one frame on the wire.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Number of frames the batch holds.
    pub fn capacity(&self) -> usize {
        self.buf.len() / self.frame_size
    }

    /// Stamps the first `n` frames (capped at the capacity) with `first_seq, first_seq + 1, ...`
    /// and returns their bytes.
    pub fn stamp(&mut self, first_seq: u64, n: usize) -> &[u8] {
        let n = n.min(self.capacity());
        let mut seq = first_seq;
        for frame in self.buf.chunks_exact_mut(self.frame_size).take(n) {
            frame[HEADER_LEN..MIN_FRAME].copy_from_slice(&seq.to_be_bytes());
            seq = seq.wrapping_add(1);
        }
        &self.buf[..n * self.frame_size]
    }
}

/// Counts frames of one connection and checks that their sequence numbers follow each other.
#[derive(Debug, Default, Clone)]
pub struct FrameChecker {
    /// Complete frames seen.
    pub frames: u64,
    /// Frames whose sequence number was not the previous one plus one.
    pub seq_errors: u64,
    /// Frames whose length was too short for a sequence number, or too long
    /// (after which the stream is unusable and [`FrameChecker::is_broken`] turns true).
    pub len_errors: u64,
    next_seq: u64,
    broken: bool,
}

impl FrameChecker {
    /// A checker expecting sequence number 0 first.
    pub fn new() -> FrameChecker {
        FrameChecker::default()
    }

    /// True once a frame longer than `MAX_FRAME` was announced: the framing is lost.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Consumes the complete frames at the start of `data` and returns how many bytes they span;
    /// the caller keeps the rest (an incomplete frame) for the next call.
    pub fn check(&mut self, data: &[u8]) -> usize {
        let mut pos = 0usize;
        while !self.broken && data.len() - pos >= HEADER_LEN {
            let mut head = [0u8; HEADER_LEN];
            head.copy_from_slice(&data[pos..pos + HEADER_LEN]);
            let len = u32::from_be_bytes(head) as usize;
            if len > MAX_FRAME - HEADER_LEN {
                self.len_errors += 1;
                self.broken = true;
                break;
            }
            let end = pos + HEADER_LEN + len;
            if end > data.len() {
                break;
            }
            if len < SEQ_LEN {
                self.len_errors += 1;
            } else {
                let mut seq = [0u8; SEQ_LEN];
                seq.copy_from_slice(&data[pos + HEADER_LEN..pos + MIN_FRAME]);
                let seq = u64::from_be_bytes(seq);
                if seq != self.next_seq {
                    self.seq_errors += 1;
                }
                self.next_seq = seq.wrapping_add(1);
            }
            self.frames += 1;
            pos = end;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_layout_is_exact() {
        let mut b = FrameBatch::new(16, 3).unwrap();
        let bytes = b.stamp(7, 2).to_vec();
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..4], &[0, 0, 0, 12]);
        assert_eq!(&bytes[4..12], &7u64.to_be_bytes());
        assert_eq!(&bytes[12..16], &[0xA5; 4]);
        assert_eq!(&bytes[16..20], &[0, 0, 0, 12]);
        assert_eq!(&bytes[20..28], &8u64.to_be_bytes());
        assert!(FrameBatch::new(11, 1).is_err());
        assert!(FrameBatch::new(64, 0).is_err());
    }

    #[test]
    fn checker_handles_every_split_point() {
        let mut b = FrameBatch::new(64, 5).unwrap();
        let stream = b.stamp(0, 5).to_vec();
        for split in 0..=stream.len() {
            let mut c = FrameChecker::new();
            let mut carry = stream[..split].to_vec();
            let used = c.check(&carry);
            carry.drain(..used);
            carry.extend_from_slice(&stream[split..]);
            let used = c.check(&carry);
            assert_eq!(used, carry.len(), "split {split}");
            assert_eq!((c.frames, c.seq_errors, c.len_errors), (5, 0, 0));
        }
    }

    #[test]
    fn checker_counts_gaps_and_bad_lengths() {
        let mut b = FrameBatch::new(12, 4).unwrap();
        let mut stream = b.stamp(0, 2).to_vec();
        stream.extend_from_slice(b.stamp(5, 1)); // gap: 2, 3, 4 missing
        stream.extend_from_slice(&[0, 0, 0, 2, 9, 9]); // too short for a seq
        let mut c = FrameChecker::new();
        assert_eq!(c.check(&stream), stream.len());
        assert_eq!((c.frames, c.seq_errors, c.len_errors), (4, 1, 1));
        assert_eq!(c.check(&[0xFF, 0xFF, 0xFF, 0xFF, 0]), 0);
        assert!(c.is_broken());
        assert_eq!(c.len_errors, 2);
    }
}
