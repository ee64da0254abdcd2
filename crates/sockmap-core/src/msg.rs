//! The message a msg verdict sees: the user-space `struct sk_msg`.
//!
//! [`SkMsg`] pairs a message's [`SgRing`] with the verdict state the
//! kernel keeps beside it (`apply_bytes`, `cork_bytes`) and offers the
//! `bpf_msg_*` helpers with the kernel's `u32` arguments and argument checks.

use bytes::Bytes;

use crate::error::Errno;
use crate::ring::SgRing;

/// One message under a msg verdict: its data plus apply/cork state.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use sockmap_core::{msg::SkMsg, ring::SgRing};
///
/// let mut sg = SgRing::new();
/// sg.push(Bytes::from_static(b"LEN5:hello")).unwrap();
/// let mut msg = SkMsg::new(sg);
/// msg.pop(0, 5).unwrap();
/// msg.push(0, 2).unwrap();
/// msg.apply_bytes(7);
/// assert_eq!(msg.sg.to_vec(), b"\0\0hello");
/// assert_eq!(msg.applied_bytes(), 7);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SkMsg {
    /// The message's bytes.
    pub sg: SgRing,
    apply_bytes: u32,
    cork_bytes: u32,
}

impl SkMsg {
    /// Wraps a ring; apply and cork bytes start at 0 (unset).
    pub fn new(sg: SgRing) -> Self {
        SkMsg {
            sg,
            apply_bytes: 0,
            cork_bytes: 0,
        }
    }

    /// The message size in bytes (the kernel's `msg->sg.size`).
    pub fn size(&self) -> usize {
        self.sg.len()
    }

    /// `bpf_msg_apply_bytes`: the verdict covers the next `n` bytes
    /// (0 = the whole message). Never fails, like the kernel helper.
    pub fn apply_bytes(&mut self, n: u32) {
        self.apply_bytes = n;
    }

    /// `bpf_msg_cork_bytes`: hold the verdict until `n` bytes have
    /// accumulated (0 = no cork). Never fails, like the kernel helper.
    pub fn cork_bytes(&mut self, n: u32) {
        self.cork_bytes = n;
    }

    /// The byte count last set by [`SkMsg::apply_bytes`].
    pub fn applied_bytes(&self) -> u32 {
        self.apply_bytes
    }

    /// The byte count last set by [`SkMsg::cork_bytes`].
    pub fn corked_bytes(&self) -> u32 {
        self.cork_bytes
    }

    /// `bpf_msg_pull_data(start, end)`: see [`SgRing::pull`].
    ///
    /// # Errors
    ///
    /// [`Errno::Inval`] when `end <= start`, `start >= size()` or
    /// `end > size()`.
    pub fn pull(&mut self, start: u32, end: u32) -> Result<Bytes, Errno> {
        self.sg.pull(widen(start), widen(end))
    }

    /// `bpf_msg_push_data(start, len)`: see [`SgRing::push_zeroed`].
    ///
    /// # Errors
    ///
    /// [`Errno::Inval`] when `start > size()` (and `len != 0`);
    /// [`Errno::NoMem`] past [`crate::ring::MAX_MSG_LEN`].
    pub fn push(&mut self, start: u32, len: u32) -> Result<(), Errno> {
        self.sg.push_zeroed(widen(start), widen(len))
    }

    /// `bpf_msg_pop_data(start, len)`: see [`SgRing::pop`]. `start + len`
    /// is computed without wrapping at 32 bits.
    ///
    /// # Errors
    ///
    /// [`Errno::Inval`] when `len != 0` and `start >= size()` or
    /// `start + len > size()`.
    pub fn pop(&mut self, start: u32, len: u32) -> Result<(), Errno> {
        self.sg.pop(widen(start), widen(len))
    }
}

/// A kernel `u32` helper argument as a byte offset (lossless: `usize` is at
/// least 32 bits on every supported target).
fn widen(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg_of(data: &'static [u8]) -> SkMsg {
        let mut sg = SgRing::with_max_frags(17);
        sg.push(Bytes::from_static(data)).unwrap();
        SkMsg::new(sg)
    }

    #[test]
    fn apply_and_cork_are_recorded() {
        let mut msg = SkMsg::default();
        assert_eq!((msg.applied_bytes(), msg.corked_bytes()), (0, 0));
        msg.apply_bytes(u32::MAX);
        msg.cork_bytes(4096);
        assert_eq!((msg.applied_bytes(), msg.corked_bytes()), (u32::MAX, 4096));
    }

    #[test]
    fn pop_end_overflowing_u32_is_einval() {
        let mut msg = msg_of(b"abcdef");
        // 2 + u32::MAX wraps to 1 in 32 bits, which the kernel once accepted.
        assert_eq!(msg.pop(2, u32::MAX), Err(Errno::Inval));
        assert_eq!(msg.pop(u32::MAX, 2), Err(Errno::Inval));
        assert_eq!(msg.sg.to_vec(), b"abcdef");
        msg.pop(0, 6).unwrap();
        assert_eq!(msg.size(), 0);
    }

    #[test]
    fn helpers_delegate_with_kernel_checks() {
        let mut msg = msg_of(b"abcdef");
        assert_eq!(msg.pull(3, 3), Err(Errno::Inval));
        assert_eq!(msg.pull(0, u32::MAX), Err(Errno::Inval));
        assert_eq!(&msg.pull(1, 3).unwrap()[..], b"bc");
        assert_eq!(msg.push(7, 1), Err(Errno::Inval));
        msg.push(6, 2).unwrap();
        msg.push(u32::MAX, 0).unwrap();
        assert_eq!(msg.sg.to_vec(), b"abcdef\0\0");
    }
}
