//! A byte-for-byte `Vec<u8>` model of [`SgRing`], shared by the property
//! tests (`tests/ring_props.rs`) and the fuzz target (`fuzz/fuzz_targets/
//! ring_ops.rs`, which includes this file by path).
//!
//! [`Harness::apply`] runs one [`Op`] on both the ring and the model, asserts
//! that results (including the errno of every rejected call) agree, that a
//! rejected call left the ring untouched, and then checks the ring's
//! invariants. Any mismatch panics with the op that caused it.

use std::io::IoSlice;

use bytes::{Buf, Bytes};
use sockmap_core::{ring::SgRing, Errno, IOV_MAX};

/// Inserted runs longer than this are skipped (they would only test the
/// allocator and make the model huge).
const MAX_INSERT: usize = 1 << 16;

/// An operation argument: small values (mod 512) most of the time, and a
/// few extremes that overflow 32-bit or 64-bit arithmetic.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Arg(pub u16);

impl Arg {
    /// The first raw value that maps to an extreme.
    pub const EXTREME_BASE: u16 = 0xFFF8;
    const EXTREMES: [usize; 8] = [
        usize::MAX,
        usize::MAX - 1,
        u32::MAX as usize,
        u32::MAX as usize - 1,
        u32::MAX as usize + 1,
        i32::MAX as usize,
        1 << 40,
        usize::MAX / 2 + 1,
    ];

    /// The argument as a byte offset or length.
    pub fn get(self) -> usize {
        match self.0.checked_sub(Self::EXTREME_BASE) {
            Some(i) => Self::EXTREMES[usize::from(i)],
            None => usize::from(self.0 % 512),
        }
    }
}

/// One ring operation with its (possibly invalid) arguments.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    /// Push a fresh fragment (`len % 256` bytes, 0 included); `shared`
    /// slices it out of one long-lived buffer instead.
    Push {
        /// Fragment length (mod 256).
        len: u16,
        /// Slice of a shared buffer rather than its own allocation.
        shared: bool,
    },
    /// `advance(n)`.
    Advance(Arg),
    /// `Buf::advance(n)` (the trait method, which delegates to `advance`).
    BufAdvance(Arg),
    /// `trim(len)`.
    Trim(Arg),
    /// `split_to(n)`.
    SplitTo(Arg),
    /// `clone_range(off, len)`.
    CloneRange(Arg, Arg),
    /// `copy_to_slice(off, &mut [0; len])` (len capped at 4096).
    CopyToSlice(Arg, Arg),
    /// `append` of a ring built from these fragment lengths (mod 256).
    Append(Vec<u16>),
    /// `pull(start, end)`.
    Pull(Arg, Arg),
    /// `push_zeroed(start, len)`.
    PushZeroed(Arg, Arg),
    /// `pop(start, len)`.
    Pop(Arg, Arg),
}

/// A ring and its model, kept in lockstep.
pub struct Harness {
    ring: SgRing,
    model: Vec<u8>,
    next: u8,
    pool: Bytes,
}

/// What a rejected call must leave behind: the bytes and the fragment shape.
#[derive(Debug, PartialEq)]
struct Snapshot(Vec<u8>, Vec<usize>);

fn snapshot(ring: &SgRing) -> Snapshot {
    Snapshot(ring.to_vec(), ring.frags().map(Bytes::len).collect())
}

impl Harness {
    /// An empty ring of `max_frags` slots (0 is kept: it must act as 1).
    pub fn new(max_frags: usize) -> Self {
        Harness {
            ring: SgRing::with_max_frags(max_frags),
            model: Vec::new(),
            next: 0,
            pool: (0..4096u32).map(|i| (i * 7 + 3) as u8).collect(),
        }
    }

    /// A fragment of `len` bytes whose content is unlikely to repeat, so
    /// reordering or duplication shows in the bytes.
    fn fragment(&mut self, len: usize, shared: bool) -> Bytes {
        let start = usize::from(self.next);
        self.next = self.next.wrapping_add(1);
        if shared {
            return self.pool.slice(start..start + len);
        }
        (0..len)
            .map(|i| self.next.wrapping_mul(31).wrapping_add(i as u8))
            .collect()
    }

    /// Runs `op` on ring and model, asserting they agree; panics otherwise.
    pub fn apply(&mut self, op: &Op) {
        let before = snapshot(&self.ring);
        let len = self.model.len();
        let err = match *op {
            Op::Push { len: n, shared } => {
                let frag = self.fragment(usize::from(n % 256), shared);
                let expect_full =
                    !frag.is_empty() && self.ring.frag_count() >= self.ring.max_frags();
                match self.ring.push(frag.clone()) {
                    Ok(()) => {
                        assert!(!expect_full, "{op:?}: push into a full ring");
                        self.model.extend_from_slice(&frag);
                    }
                    Err(back) => {
                        assert!(expect_full, "{op:?}: spurious RingFull");
                        assert_eq!(
                            back.0.as_ptr(),
                            frag.as_ptr(),
                            "{op:?}: not the same fragment"
                        );
                        assert_eq!(back.0, frag);
                    }
                }
                None
            }
            Op::Advance(n) => {
                assert_eq!(self.ring.advance(n.get()), n.get().min(len), "{op:?}");
                self.model.drain(..n.get().min(len));
                None
            }
            Op::BufAdvance(n) => {
                Buf::advance(&mut self.ring, n.get());
                self.model.drain(..n.get().min(len));
                None
            }
            Op::Trim(n) => {
                self.ring.trim(n.get());
                self.model.truncate(n.get());
                None
            }
            Op::SplitTo(n) => {
                let head = self.ring.split_to(n.get());
                let expect: Vec<u8> = self.model.drain(..n.get().min(len)).collect();
                check_invariants(&head);
                assert_eq!(head.to_vec(), expect, "{op:?}: head");
                assert_eq!(head.max_frags(), self.ring.max_frags());
                None
            }
            Op::CloneRange(off, n) => {
                let (off, n) = (off.get(), n.get());
                let res = self.ring.clone_range(off, n);
                match model_range(len, off, n) {
                    Some(end) => {
                        let clone = res.unwrap_or_else(|e| panic!("{op:?}: {e}"));
                        check_invariants(&clone);
                        assert_eq!(clone.to_vec(), &self.model[off..end], "{op:?}");
                        None
                    }
                    None => Some((res.err(), Errno::NoSpc)),
                }
            }
            Op::CopyToSlice(off, n) => {
                let (off, n) = (off.get(), n.get().min(4096));
                let mut dst = vec![0xA5; n];
                let res = self.ring.copy_to_slice(off, &mut dst);
                let expect = if off > len {
                    Err(Errno::Inval)
                } else if off + n > len {
                    Err(Errno::NoSpc)
                } else {
                    Ok(())
                };
                assert_eq!(res, expect, "{op:?}");
                match expect {
                    Ok(()) => assert_eq!(dst, &self.model[off..off + n], "{op:?}"),
                    Err(_) => assert!(dst.iter().all(|&b| b == 0xA5), "{op:?}: dst written"),
                }
                None
            }
            Op::Append(ref lens) => {
                let mut other = SgRing::with_max_frags(lens.len().max(1));
                for &n in lens.iter().take(64) {
                    let frag = self.fragment(usize::from(n % 256), false);
                    other.push(frag).unwrap_or_else(|e| panic!("{op:?}: {e}"));
                }
                let other_bytes = other.to_vec();
                let fits = other.frag_count() + self.ring.frag_count() <= self.ring.max_frags();
                let res = self.ring.append(&mut other);
                if fits {
                    assert_eq!(res, Ok(()), "{op:?}");
                    assert!(
                        other.is_empty() && other.frag_count() == 0,
                        "{op:?}: other not emptied"
                    );
                    self.model.extend_from_slice(&other_bytes);
                    None
                } else {
                    assert_eq!(other.to_vec(), other_bytes, "{op:?}: other changed");
                    Some((res.err().map(Errno::from), Errno::NoSpc))
                }
            }
            Op::Pull(start, end) => {
                let (start, end) = (start.get(), end.get());
                let one_frag = holds_in_one_frag(&before.1, start, end);
                let res = self.ring.pull(start, end);
                if end <= start || start >= len || end > len {
                    Some((res.err(), Errno::Inval))
                } else {
                    let view = res.unwrap_or_else(|e| panic!("{op:?}: {e}"));
                    assert_eq!(view, &self.model[start..end], "{op:?}");
                    if one_frag {
                        assert_eq!(
                            snapshot(&self.ring),
                            before,
                            "{op:?}: zero-copy pull changed the ring"
                        );
                    }
                    None
                }
            }
            Op::PushZeroed(start, n) => {
                let (start, n) = (start.get(), n.get());
                let expect = if n == 0 {
                    Ok(0)
                } else if start > len {
                    Err(Errno::Inval)
                } else if len as u128 + n as u128 > u128::from(u32::MAX) {
                    Err(Errno::NoMem)
                } else if n > MAX_INSERT {
                    return; // valid but huge: not worth modelling
                } else {
                    Ok(n)
                };
                let res = self.ring.push_zeroed(start, n);
                match expect {
                    Ok(n) => {
                        assert_eq!(res, Ok(()), "{op:?}");
                        if n > 0 {
                            self.model.splice(start..start, vec![0; n]);
                        }
                        None
                    }
                    Err(e) => Some((res.err(), e)),
                }
            }
            Op::Pop(start, n) => {
                let (start, n) = (start.get(), n.get());
                let res = self.ring.pop(start, n);
                if n == 0 {
                    assert_eq!(res, Ok(()), "{op:?}");
                    None
                } else if start >= len || model_range(len, start, n).is_none() {
                    Some((res.err(), Errno::Inval))
                } else {
                    assert_eq!(res, Ok(()), "{op:?}");
                    self.model.drain(start..start + n);
                    None
                }
            }
        };
        if let Some((got, want)) = err {
            assert_eq!(got, Some(want), "{op:?}: wrong result");
            assert_eq!(
                snapshot(&self.ring),
                before,
                "{op:?}: rejected call changed the ring"
            );
        }
        check_invariants(&self.ring);
        assert_eq!(
            self.ring.to_vec(),
            self.model,
            "{op:?}: bytes differ from the model"
        );
    }
}

/// `off + len` computed wide, if it lies inside `size` bytes.
fn model_range(size: usize, off: usize, len: usize) -> Option<usize> {
    let end = off as u128 + len as u128;
    (end <= size as u128).then_some(end as usize)
}

/// Whether one fragment (of lengths `lens`) holds `[start, end)`.
fn holds_in_one_frag(lens: &[usize], start: usize, end: usize) -> bool {
    let mut base = 0;
    lens.iter().any(|&l| {
        let hit = start >= base && start < end && end <= base + l;
        base += l;
        hit
    })
}

/// The ring's structural invariants.
pub fn check_invariants(ring: &SgRing) {
    let lens: Vec<usize> = ring.frags().map(Bytes::len).collect();
    assert_eq!(
        ring.len(),
        lens.iter().sum::<usize>(),
        "len != sum of fragments"
    );
    assert!(
        lens.iter().all(|&l| l > 0),
        "empty fragment stored: {lens:?}"
    );
    assert!(ring.max_frags() >= 1);
    assert!(
        ring.frag_count() <= ring.max_frags(),
        "{} > {}",
        ring.frag_count(),
        ring.max_frags()
    );
    assert_eq!(ring.frag_count(), lens.len());
    assert_eq!(ring.is_empty(), lens.is_empty());
    assert_eq!(ring.is_full(), ring.frag_count() >= ring.max_frags());
    let chunks: Vec<&[u8]> = ring.chunks().collect();
    assert_eq!(chunks.len(), lens.len());
    let mut iov = [IoSlice::new(&[]); 8];
    let n = ring.fill_iovec(&mut iov);
    assert_eq!(n, lens.len().min(8).min(IOV_MAX));
    for (slot, chunk) in iov[..n].iter().zip(&chunks) {
        assert_eq!(slot.as_ptr(), chunk.as_ptr());
        assert_eq!(slot.len(), chunk.len());
    }
}
