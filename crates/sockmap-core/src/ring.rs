//! The scatter-gather ring: the user-space `struct sk_msg_sg`.
//!
//! An [`SgRing`] holds one socket's (or one message's) bytes as an ordered
//! ring of refcounted [`Bytes`] fragments. Appending, exporting to an iovec,
//! consuming after a partial write, splitting, trimming and cloning a range
//! never copy payload; only the verdict helpers [`SgRing::pull`] (across
//! fragments), [`SgRing::push_zeroed`] and [`SgRing::pop`] (on a full ring)
//! copy, exactly where the kernel's `bpf_msg_*` helpers do.
//!
//! Invariants, kept by every operation: [`SgRing::len`] is the sum of the
//! fragment lengths; no stored fragment is empty; `frag_count() <=
//! max_frags()` (a capacity of 0 is treated as 1, so a ring can always hold
//! one fragment); an operation that fails changes nothing.
//!
//! Errors: a ring with no free slot for what an operation must add is
//! [`RingFull`], whatever the operation ([`SgRing::push`],
//! [`SgRing::append`]); it converts to [`Errno::NoSpc`], the kernel's code
//! for a full `sk_msg` (`sk_msg_alloc`). [`Errno::NoSpc`] on its own means a
//! range outside the data ([`SgRing::clone_range`],
//! [`SgRing::copy_to_slice`]), as the kernel's `sk_msg_clone` reports it.
//! The verdict helpers return the kernel's codes ([`Errno::Inval`],
//! [`Errno::NoMem`]) and never fail on a full ring: they copy instead.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::Errno;

/// The most iovec entries one `writev` accepts (`UIO_MAXIOV` on Linux).
///
/// [`SgRing::fill_iovec`] never fills more than this many entries.
pub const IOV_MAX: usize = 1024;

/// The largest message [`SgRing::push_zeroed`] grows a ring to.
///
/// The kernel keeps `sg.size` in a `u32`; inserting bytes past that size is
/// refused with [`Errno::NoMem`] (the kernel fails the page allocation far
/// earlier, at a few MiB).
pub const MAX_MSG_LEN: usize = u32::MAX as usize;

/// Zeroed bytes shared by every inserted run of at most this many bytes.
const ZERO_CHUNK: usize = 4096;
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// The ring is full: every fragment slot is in use.
///
/// The one error for a full ring, returned by every operation that needs a
/// free slot. It is the backpressure signal: the ring never drops data, and
/// `.0` hands back what did not fit: the fragment for [`SgRing::push`]
/// (retry it once the ring has been drained), `()` for [`SgRing::append`]
/// (the other ring keeps its fragments). It converts to [`Errno::NoSpc`],
/// the kernel's code for a full `sk_msg`.
#[derive(Debug, PartialEq, Eq)]
pub struct RingFull<T = Bytes>(pub T);

impl<T> fmt::Display for RingFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring full: no free fragment slot")
    }
}

impl<T: fmt::Debug> std::error::Error for RingFull<T> {}

impl<T> From<RingFull<T>> for Errno {
    fn from(_: RingFull<T>) -> Errno {
        Errno::NoSpc
    }
}

/// A bounded ring of [`Bytes`] fragments holding one message or stream.
///
/// The user-space analogue of the kernel's `struct sk_msg_sg`: `len()` is
/// `sg.size`, `frag_count()` is `sk_msg_elem_used`, `is_full()` is
/// `sk_msg_full`. The kernel allows 17 fragments (`MAX_SKB_FRAGS`); a ring
/// here allows [`SgRing::DEFAULT_MAX_FRAGS`] unless set otherwise.
///
/// # Memory layout
///
/// ```text
///  SgRing { frags: VecDeque<Bytes>, len: 11, max_frags: 4 }
///
///   front (oldest byte)                              back
///  +-------------------+-------------------+----------+ - - - - +
///  | Bytes ptr,len=6   | Bytes ptr,len=3   | ptr,len=2|  free    |
///  +--------|----------+---------|---------+----|-----+ - - - - +
///           v                    v              v
///   [..."hello "...]      [.."wor"..]     [."ld".]   refcounted buffers,
///    (recv buffer A)       (buffer B)     (buffer B)  shared, never copied
/// ```
///
/// Invariants (see the [module](self) documentation): `len` is the sum of
/// the fragment lengths; no stored fragment is empty; `frag_count() <=
/// max_frags()`. The slot array (a `VecDeque`) grows on demand up to
/// `max_frags` slots and is then reused, so a ring in steady state (`push`,
/// `fill_iovec`, `advance`) allocates nothing.
///
/// # Complexity
///
/// With `k` = fragment count:
///
/// | operation | cost |
/// |---|---|
/// | `push`, `len`, `frag_count`, `is_full` | O(1) (amortised: slots are reused) |
/// | `advance`, `trim` | O(fragments dropped) |
/// | `fill_iovec` | O(min(k, dst.len(), IOV_MAX)) |
/// | `append` | O(other's k) |
/// | `split_to`, `clone_range`, `copy_to_slice` | O(k), no payload copy except `copy_to_slice` |
/// | `pull` within a fragment | O(k) to locate, zero copy |
/// | `pull` across fragments | O(k) + copy of the covering fragments |
/// | `push_zeroed`, `pop` | O(k); copies one fragment only when the ring is full |
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use sockmap_core::ring::SgRing;
/// use std::io::IoSlice;
///
/// let mut ring = SgRing::with_max_frags(8);
/// ring.push(Bytes::from_static(b"hello ")).unwrap();
/// ring.push(Bytes::from_static(b"world")).unwrap();
/// assert_eq!((ring.len(), ring.frag_count()), (11, 2));
///
/// // Export for writev, then account for a partial write of 8 bytes.
/// let mut iov = [IoSlice::new(&[]); 4];
/// assert_eq!(ring.fill_iovec(&mut iov), 2);
/// assert_eq!(ring.advance(8), 8);
/// assert_eq!(ring.to_vec(), b"rld");
/// ```
#[derive(Clone)]
pub struct SgRing {
    frags: VecDeque<Bytes>,
    len: usize,
    max_frags: usize,
}

impl Default for SgRing {
    fn default() -> Self {
        SgRing::new()
    }
}

impl fmt::Debug for SgRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SgRing")
            .field("len", &self.len)
            .field("frag_lens", &FragLens(&self.frags))
            .field("max_frags", &self.max_frags)
            .finish()
    }
}

/// Debug view of the fragment lengths (payload is not printed).
struct FragLens<'a>(&'a VecDeque<Bytes>);

impl fmt::Debug for FragLens<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(Bytes::len))
            .finish()
    }
}

impl SgRing {
    /// The fragment capacity of [`SgRing::new`] (the kernel's is 17).
    pub const DEFAULT_MAX_FRAGS: usize = 256;

    /// An empty ring with [`SgRing::DEFAULT_MAX_FRAGS`] fragment slots.
    ///
    /// No memory is allocated until the first fragment is pushed.
    pub fn new() -> Self {
        Self::with_max_frags(Self::DEFAULT_MAX_FRAGS)
    }

    /// An empty ring holding at most `max_frags` fragments.
    ///
    /// A capacity of 0 is treated as 1: a ring can always hold one fragment.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockmap_core::ring::SgRing;
    /// assert_eq!(SgRing::with_max_frags(17).max_frags(), 17);
    /// assert_eq!(SgRing::with_max_frags(0).max_frags(), 1);
    /// ```
    pub fn with_max_frags(max_frags: usize) -> Self {
        SgRing {
            frags: VecDeque::new(),
            len: 0,
            max_frags: max_frags.max(1),
        }
    }

    /// The most fragments this ring holds.
    pub fn max_frags(&self) -> usize {
        self.max_frags
    }

    /// The number of bytes held (the kernel's `sg.size`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the ring holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of fragments held (never counts empty fragments).
    pub fn frag_count(&self) -> usize {
        self.frags.len()
    }

    /// Whether every fragment slot is in use (the kernel's `sk_msg_full`).
    pub fn is_full(&self) -> bool {
        self.frags.len() >= self.max_frags
    }

    /// Slots still free.
    fn free_slots(&self) -> usize {
        self.max_frags.saturating_sub(self.frags.len())
    }

    /// Appends a fragment without copying it.
    ///
    /// A zero-length fragment is accepted and uses no slot.
    ///
    /// # Errors
    ///
    /// [`RingFull`] carrying `frag` back when every slot is in use: nothing
    /// is dropped, the caller keeps the fragment and retries later.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use sockmap_core::ring::SgRing;
    ///
    /// let mut ring = SgRing::with_max_frags(1);
    /// ring.push(Bytes::from_static(b"a")).unwrap();
    /// let back = ring.push(Bytes::from_static(b"b")).unwrap_err();
    /// assert_eq!(&back.0[..], b"b");
    /// ```
    pub fn push(&mut self, frag: Bytes) -> Result<(), RingFull> {
        if frag.is_empty() {
            return Ok(());
        }
        if self.is_full() {
            return Err(RingFull(frag));
        }
        self.len += frag.len();
        self.frags.push_back(frag);
        Ok(())
    }

    /// Moves all of `other`'s fragments to the back of this ring, leaving
    /// `other` empty.
    ///
    /// # Errors
    ///
    /// [`RingFull`] if they don't all fit; then nothing is moved.
    pub fn append(&mut self, other: &mut SgRing) -> Result<(), RingFull<()>> {
        if other.frags.len() > self.free_slots() {
            return Err(RingFull(()));
        }
        self.len += other.len;
        self.frags.append(&mut other.frags);
        other.len = 0;
        Ok(())
    }

    /// Removes every fragment (keeping the slot array for reuse).
    pub fn clear(&mut self) {
        self.frags.clear();
        self.len = 0;
    }

    /// The fragments, oldest first.
    pub fn frags(&self) -> impl Iterator<Item = &Bytes> {
        self.frags.iter()
    }

    /// The fragments as byte slices, oldest first (none is empty).
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.frags.iter().map(|f| &f[..])
    }

    /// Fills `dst` with the leading fragments for `writev`, returning how
    /// many entries were filled: at most `min(dst.len(), IOV_MAX)`.
    ///
    /// Entries past the returned count are left untouched.
    pub fn fill_iovec<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, frag) in dst.iter_mut().take(IOV_MAX).zip(self.frags.iter()) {
            *slot = IoSlice::new(frag);
            n += 1;
        }
        n
    }

    /// Drops the first `n` bytes, as after a (partial) write of `n` bytes:
    /// whole fragments are released, the last one touched is advanced in
    /// place. The kernel's `sk_msg_free_partial`.
    ///
    /// `n` is clamped to [`len`](SgRing::len); returns the bytes dropped.
    ///
    /// Named after [`Buf::advance`], which the ring implements by calling
    /// this: it is the name every `bytes` user knows for "move the read
    /// position past `n` bytes", and it says what the ring does. The
    /// kernel's `free_partial` also uncharges socket memory, which a ring
    /// here does not account. Unlike `Buf::advance` it never panics: it
    /// clamps, and returns how much it dropped.
    pub fn advance(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        let mut left = n;
        while left > 0 {
            let Some(front) = self.frags.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                self.frags.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
        self.len -= n;
        n
    }

    /// Keeps the first `len` bytes and releases the rest (the kernel's
    /// `sk_msg_trim`). `len >= self.len()` is a no-op.
    pub fn trim(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let mut excess = self.len - len;
        while excess > 0 {
            let Some(back) = self.frags.back_mut() else {
                break;
            };
            if back.len() <= excess {
                excess -= back.len();
                self.frags.pop_back();
            } else {
                back.truncate(back.len() - excess);
                excess = 0;
            }
        }
        self.len = len;
    }

    /// Detaches the first `min(n, len())` bytes as a new ring with the same
    /// capacity, without copying payload (a straddling fragment is split by
    /// refcount).
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use sockmap_core::ring::SgRing;
    ///
    /// let mut ring = SgRing::new();
    /// ring.push(Bytes::from_static(b"head|body")).unwrap();
    /// let head = ring.split_to(5);
    /// assert_eq!(head.to_vec(), b"head|");
    /// assert_eq!(ring.to_vec(), b"body");
    /// ```
    #[must_use = "the detached bytes are dropped; consider SgRing::advance"]
    pub fn split_to(&mut self, n: usize) -> SgRing {
        let n = n.min(self.len);
        let mut head = SgRing::with_max_frags(self.max_frags);
        if n == 0 {
            return head;
        }
        let (idx, off) = self.locate(n);
        head.frags.reserve_exact(idx + usize::from(off > 0));
        head.frags.extend(self.frags.drain(..idx));
        if off > 0 {
            if let Some(front) = self.frags.front_mut() {
                head.frags.push_back(front.split_to(off));
            }
        }
        head.len = n;
        self.len -= n;
        head
    }

    /// A new ring sharing bytes `[off, off + len)` of this one, without
    /// copying (the kernel's `sk_msg_clone`), with the same capacity.
    ///
    /// Unlike the kernel, which clones into an existing message and can run
    /// out of slots there, the result is a fresh ring; it never needs more
    /// fragments than this one holds.
    ///
    /// # Errors
    ///
    /// [`Errno::NoSpc`] when the range does not lie inside the data (the end
    /// is computed with overflow checks, never wrapping).
    pub fn clone_range(&self, off: usize, len: usize) -> Result<SgRing, Errno> {
        let end = self.range_end(off, len).ok_or(Errno::NoSpc)?;
        let mut out = SgRing::with_max_frags(self.max_frags);
        for (frag, s, e) in self.pieces(off, end) {
            out.frags.push_back(frag.slice(s..e));
        }
        out.len = len;
        Ok(out)
    }

    /// Copies bytes `[off, off + dst.len())` into `dst`.
    ///
    /// # Errors
    ///
    /// [`Errno::Inval`] if `off > len()`; [`Errno::NoSpc`] if the range runs
    /// past the end. `dst` is untouched on error.
    pub fn copy_to_slice(&self, off: usize, dst: &mut [u8]) -> Result<(), Errno> {
        if off > self.len {
            return Err(Errno::Inval);
        }
        let end = self.range_end(off, dst.len()).ok_or(Errno::NoSpc)?;
        let mut at = 0;
        for (frag, s, e) in self.pieces(off, end) {
            dst[at..at + (e - s)].copy_from_slice(&frag[s..e]);
            at += e - s;
        }
        Ok(())
    }

    /// Copies the whole content into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
        out
    }

    /// A contiguous view of bytes `[start, end)`, as `bpf_msg_pull_data`.
    ///
    /// If one fragment holds the range, the result shares it (zero copy) and
    /// the ring is unchanged. Otherwise the covering fragments are copied,
    /// whole, into one new fragment that replaces them (the ring is
    /// re-packed: same bytes, fewer fragments) and the view points into it.
    ///
    /// Unlike the kernel, a fragment is never "shared/hidden" (the copy bit),
    /// so a range inside one fragment is never copied.
    ///
    /// # Errors
    ///
    /// [`Errno::Inval`] when `end <= start`, `start >= len()` or
    /// `end > len()`: the kernel checks `end <= start` first, then
    /// `start` against the data, and rejects an `end` past the data when it
    /// fails to find enough covering elements; it never clamps.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use sockmap_core::ring::SgRing;
    ///
    /// let mut ring = SgRing::new();
    /// ring.push(Bytes::from_static(b"GET ")).unwrap();
    /// ring.push(Bytes::from_static(b"/ HTTP/1.1")).unwrap();
    /// assert_eq!(&ring.pull(0, 5).unwrap()[..], b"GET /");
    /// assert_eq!(ring.frag_count(), 1); // re-packed
    /// ```
    pub fn pull(&mut self, start: usize, end: usize) -> Result<Bytes, Errno> {
        if end <= start || start >= self.len || end > self.len {
            return Err(Errno::Inval);
        }
        let want = end - start;
        let (first, off) = self.locate(start);
        let Some(frag) = self.frags.get(first) else {
            return Err(Errno::Inval);
        };
        if off + want <= frag.len() {
            return Ok(frag.slice(off..off + want));
        }
        // Covering fragments [first, last]: walk until `end` is reached.
        let mut covered = frag.len() - off;
        let mut last = first;
        while covered < want {
            last += 1;
            let Some(next) = self.frags.get(last) else {
                return Err(Errno::Inval); // unreachable: `end <= len()`
            };
            covered += next.len();
        }
        let total = off + covered;
        let merged = concat(total, self.frags.range(first..=last).map(|f| &f[..]));
        self.frags.drain(first + 1..=last);
        self.frags[first] = merged.clone();
        Ok(merged.slice(off..off + want))
    }

    /// Inserts `len` zero bytes at offset `start`, as `bpf_msg_push_data`.
    ///
    /// The zeros are a new fragment (shared static zeros up to 4 KiB, so no
    /// allocation). Inserting inside a fragment splits it by refcount. When
    /// the ring lacks the one or two free slots this needs, the fragment at
    /// `start` is copied together with the zeros into one new fragment, as
    /// the kernel does, so a full ring never fails.
    ///
    /// Unlike the kernel, which leaves the new bytes uninitialised, they are
    /// zeroed; `start == len()` (append) is allowed as in kernels since 2024.
    ///
    /// # Errors
    ///
    /// `len == 0` is `Ok` with no change (checked first, like the kernel).
    /// [`Errno::Inval`] when `start > len()`. [`Errno::NoMem`] when the
    /// message would grow past [`MAX_MSG_LEN`]. A full ring with no
    /// fragment to merge into would be [`RingFull`] ([`Errno::NoSpc`]),
    /// which cannot happen since a ring always has at least one slot.
    pub fn push_zeroed(&mut self, start: usize, len: usize) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        if start > self.len {
            return Err(Errno::Inval);
        }
        if !matches!(self.len.checked_add(len), Some(total) if total <= MAX_MSG_LEN) {
            return Err(Errno::NoMem);
        }
        let (idx, off) = self.locate(start);
        let needed = if off == 0 { 1 } else { 2 };
        if self.free_slots() >= needed {
            let zeros = zeroed(len);
            if off > 0 {
                let tail = self.frags[idx].split_off(off);
                self.frags.insert(idx + 1, tail);
            }
            self.frags.insert(idx + usize::from(off > 0), zeros);
        } else {
            // Merge into the fragment at `start`, or the last one when
            // appending at the very end.
            let (target, at) = if idx < self.frags.len() {
                (idx, off)
            } else {
                let last = idx.checked_sub(1).ok_or(RingFull(()))?;
                (last, self.frags[last].len())
            };
            let frag = &self.frags[target];
            let mut buf = BytesMut::with_capacity(frag.len() + len);
            buf.extend_from_slice(&frag[..at]);
            buf.resize(at + len, 0);
            buf.extend_from_slice(&frag[at..]);
            self.frags[target] = buf.freeze();
        }
        self.len += len;
        Ok(())
    }

    /// Removes bytes `[start, start + len)`, as `bpf_msg_pop_data`.
    ///
    /// Zero copy, except when the hole lies strictly inside one fragment of
    /// a full ring: then that fragment's remaining bytes are copied into one
    /// new fragment, as the kernel does.
    ///
    /// # Errors
    ///
    /// `len == 0` is `Ok` with no change (checked first, like the kernel).
    /// [`Errno::Inval`] when `start >= len()` or `start + len > len()`; the
    /// sum is overflow-checked (the kernel once computed it in 32 bits and
    /// wrapped). Popping the whole message is allowed, as in kernels since
    /// 2024.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use sockmap_core::{ring::SgRing, Errno};
    ///
    /// let mut ring = SgRing::new();
    /// ring.push(Bytes::from_static(b"hdr:payload")).unwrap();
    /// ring.pop(0, 4).unwrap();
    /// assert_eq!(ring.to_vec(), b"payload");
    /// assert_eq!(ring.pop(3, usize::MAX), Err(Errno::Inval));
    /// ```
    pub fn pop(&mut self, start: usize, len: usize) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        if start >= self.len || self.range_end(start, len).is_none() {
            return Err(Errno::Inval);
        }
        let (idx, off) = self.locate(start);
        let flen = self.frags[idx].len();
        if off > 0 && off + len < flen {
            // The hole is strictly inside one fragment: keep both sides.
            let frag = &self.frags[idx];
            if self.is_full() {
                self.frags[idx] = concat(flen - len, [&frag[..off], &frag[off + len..]]);
            } else {
                let tail = frag.slice(off + len..);
                self.frags[idx].truncate(off);
                self.frags.insert(idx + 1, tail);
            }
        } else {
            let mut first = idx;
            let mut left = len;
            if off > 0 {
                left -= flen - off;
                self.frags[idx].truncate(off);
                first += 1;
            }
            let mut last = first;
            while let Some(frag) = self.frags.get(last).filter(|f| f.len() <= left) {
                left -= frag.len();
                last += 1;
            }
            self.frags.drain(first..last);
            if left > 0 {
                if let Some(frag) = self.frags.get_mut(first) {
                    frag.advance(left);
                }
            }
        }
        self.len -= len;
        Ok(())
    }

    /// The exclusive end of `[off, off + len)` if it lies inside the data.
    fn range_end(&self, off: usize, len: usize) -> Option<usize> {
        off.checked_add(len).filter(|&end| end <= self.len)
    }

    /// The fragment holding byte `pos` and the offset inside it; for
    /// `pos >= len()` the index is `frag_count()` (one past the last).
    fn locate(&self, pos: usize) -> (usize, usize) {
        let mut base = 0;
        for (i, frag) in self.frags.iter().enumerate() {
            if pos < base + frag.len() {
                return (i, pos - base);
            }
            base += frag.len();
        }
        (self.frags.len(), pos.saturating_sub(base))
    }

    /// The non-empty pieces of `[start, end)`: each fragment it touches with
    /// the sub-range `[s, e)` inside that fragment.
    fn pieces(&self, start: usize, end: usize) -> impl Iterator<Item = (&Bytes, usize, usize)> {
        self.frags
            .iter()
            .scan(0usize, |base, frag| {
                let frag_start = *base;
                *base += frag.len();
                Some((frag, frag_start))
            })
            .take_while(move |&(_, frag_start)| frag_start < end)
            .filter_map(move |(frag, frag_start)| {
                let s = start.max(frag_start);
                let e = end.min(frag_start + frag.len());
                (s < e).then(|| (frag, s - frag_start, e - frag_start))
            })
    }
}

/// `len` zero bytes: a slice of shared static zeros when small enough.
fn zeroed(len: usize) -> Bytes {
    if len <= ZERO_CHUNK {
        Bytes::from_static(&ZEROS[..len])
    } else {
        Bytes::from(vec![0u8; len])
    }
}

/// Concatenates `parts` (of `total` bytes in all) into one new fragment.
fn concat<'a>(total: usize, parts: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut buf = BytesMut::with_capacity(total);
    for part in parts {
        buf.extend_from_slice(part);
    }
    buf.freeze()
}

/// The ring as a [`Buf`]: `chunk` is the oldest fragment, `advance` is
/// [`SgRing::advance`] (clamped, never panics) and `chunks_vectored` is
/// [`SgRing::fill_iovec`].
impl Buf for SgRing {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.frags.front().map_or(&[], |f| &f[..])
    }

    fn advance(&mut self, cnt: usize) {
        SgRing::advance(self, cnt);
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.fill_iovec(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of the given fragments, each a distinct allocation.
    fn ring_of(max: usize, parts: &[&[u8]]) -> SgRing {
        let mut ring = SgRing::with_max_frags(max);
        for part in parts {
            ring.push(Bytes::copy_from_slice(part)).unwrap();
        }
        ring
    }

    fn lens(ring: &SgRing) -> Vec<usize> {
        ring.frags().map(Bytes::len).collect()
    }

    #[test]
    fn zero_length_push_uses_no_slot_even_when_full() {
        let mut ring = ring_of(1, &[b"a"]);
        assert!(ring.is_full());
        ring.push(Bytes::new()).unwrap();
        assert_eq!((ring.len(), ring.frag_count()), (1, 1));
    }

    #[test]
    fn zero_capacity_means_one() {
        let mut ring = SgRing::with_max_frags(0);
        assert_eq!(ring.max_frags(), 1);
        ring.push(Bytes::from_static(b"x")).unwrap();
        assert!(ring.is_full());
    }

    #[test]
    fn full_ring_hands_the_fragment_back() {
        let mut ring = ring_of(2, &[b"ab", b"cd"]);
        let frag = Bytes::from_static(b"ef");
        let ptr = frag.as_ptr();
        let RingFull(back) = ring.push(frag).unwrap_err();
        assert_eq!((back.as_ptr(), &back[..]), (ptr, &b"ef"[..]));
        assert_eq!(ring.to_vec(), b"abcd");
        ring.advance(2);
        ring.push(back).unwrap();
        assert_eq!(ring.to_vec(), b"cdef");
    }

    #[test]
    fn append_moves_all_or_nothing() {
        let mut a = ring_of(3, &[b"a", b"b"]);
        let mut b = ring_of(3, &[b"c", b"d"]);
        assert_eq!(a.append(&mut b), Err(RingFull(())));
        assert_eq!((a.to_vec(), b.to_vec()), (b"ab".to_vec(), b"cd".to_vec()));
        b.advance(1);
        a.append(&mut b).unwrap();
        assert_eq!(a.to_vec(), b"abd");
        assert!(b.is_empty() && b.frag_count() == 0);
    }

    #[test]
    fn fill_iovec_bounded_by_dst_and_iov_max() {
        let mut ring = SgRing::with_max_frags(IOV_MAX + 10);
        for _ in 0..IOV_MAX + 10 {
            ring.push(Bytes::from_static(b"z")).unwrap();
        }
        let mut small = [IoSlice::new(&[]); 3];
        assert_eq!(ring.fill_iovec(&mut small), 3);
        let mut big = vec![IoSlice::new(&[]); IOV_MAX + 5];
        assert_eq!(ring.fill_iovec(&mut big), IOV_MAX);
        assert_eq!(SgRing::new().fill_iovec(&mut small), 0);
    }

    #[test]
    fn a_full_ring_is_enospc_for_the_kernel() {
        assert_eq!(Errno::from(RingFull(Bytes::new())), Errno::NoSpc);
        assert_eq!(Errno::from(RingFull(())), Errno::NoSpc);
        assert_eq!(RingFull(()).to_string(), "ring full: no free fragment slot");
    }

    #[test]
    fn advance_after_partial_write_advances_last_fragment() {
        let mut ring = ring_of(8, &[b"abc", b"defg", b"hi"]);
        assert_eq!(ring.advance(5), 5);
        assert_eq!((ring.to_vec(), lens(&ring)), (b"fghi".to_vec(), vec![2, 2]));
        assert_eq!(ring.advance(0), 0);
        assert_eq!(ring.advance(100), 4);
        assert!(ring.is_empty() && ring.frag_count() == 0);
    }

    #[test]
    fn advance_wraps_around_the_slot_array() {
        let mut ring = SgRing::with_max_frags(4);
        let mut expect = Vec::new();
        for i in 0u8..50 {
            ring.push(Bytes::from(vec![i; 3])).unwrap();
            expect.extend_from_slice(&[i; 3]);
            if ring.is_full() {
                let n = ring.advance(7);
                expect.drain(..n);
            }
            assert_eq!(ring.to_vec(), expect);
        }
    }

    #[test]
    fn trim_keeps_prefix() {
        let mut ring = ring_of(8, &[b"abc", b"def"]);
        ring.trim(10);
        assert_eq!(ring.len(), 6);
        ring.trim(4);
        assert_eq!((ring.to_vec(), lens(&ring)), (b"abcd".to_vec(), vec![3, 1]));
        ring.trim(3);
        assert_eq!(lens(&ring), vec![3]);
        ring.trim(0);
        assert!(ring.is_empty() && ring.frag_count() == 0);
    }

    #[test]
    fn split_to_shares_buffers() {
        let mut ring = ring_of(8, &[b"abc", b"defg"]);
        let base = ring.frags().nth(1).unwrap().as_ptr();
        let head = ring.split_to(5);
        assert_eq!(
            (head.to_vec(), lens(&head)),
            (b"abcde".to_vec(), vec![3, 2])
        );
        assert_eq!(head.frags().nth(1).unwrap().as_ptr(), base);
        assert_eq!(ring.to_vec(), b"fg");
        assert_eq!(ring.frags().next().unwrap().as_ptr(), base.wrapping_add(2));
        assert!(ring.split_to(0).is_empty());
        assert_eq!(ring.split_to(99).to_vec(), b"fg");
        assert!(ring.is_empty());
    }

    #[test]
    fn clone_range_zero_copy_and_bounds() {
        let ring = ring_of(8, &[b"abc", b"defg"]);
        let c = ring.clone_range(2, 3).unwrap();
        assert_eq!(c.to_vec(), b"cde");
        assert_eq!(
            c.frags().next().unwrap().as_ptr(),
            ring.frags().next().unwrap()[2..].as_ptr()
        );
        assert!(ring.clone_range(7, 0).unwrap().is_empty());
        assert_eq!(ring.clone_range(5, 3).unwrap_err(), Errno::NoSpc);
        assert_eq!(ring.clone_range(8, 0).unwrap_err(), Errno::NoSpc);
        assert_eq!(ring.clone_range(1, usize::MAX).unwrap_err(), Errno::NoSpc);
    }

    #[test]
    fn copy_to_slice_bounds() {
        let ring = ring_of(8, &[b"abc", b"defg"]);
        let mut out = [0u8; 4];
        ring.copy_to_slice(1, &mut out).unwrap();
        assert_eq!(&out, b"bcde");
        assert_eq!(ring.copy_to_slice(8, &mut out), Err(Errno::Inval));
        assert_eq!(ring.copy_to_slice(4, &mut out), Err(Errno::NoSpc));
        ring.copy_to_slice(7, &mut []).unwrap();
    }

    #[test]
    fn pull_within_one_fragment_is_zero_copy() {
        let mut ring = ring_of(8, &[b"abc", b"defgh"]);
        let second = ring.frags().nth(1).unwrap().as_ptr();
        let view = ring.pull(4, 7).unwrap();
        assert_eq!(
            (&view[..], view.as_ptr()),
            (&b"efg"[..], second.wrapping_add(1))
        );
        assert_eq!(lens(&ring), vec![3, 5]);
    }

    #[test]
    fn pull_across_fragments_copies_and_repacks() {
        let mut ring = ring_of(8, &[b"ab", b"cd", b"ef", b"gh"]);
        let view = ring.pull(1, 5).unwrap();
        assert_eq!(&view[..], b"bcde");
        // Covering fragments [ab, cd, ef] became one fragment.
        assert_eq!(
            (ring.to_vec(), lens(&ring)),
            (b"abcdefgh".to_vec(), vec![6, 2])
        );
        let first = ring.frags().next().unwrap().clone();
        assert_eq!(view.as_ptr(), first[1..].as_ptr());
        // Now within one fragment: zero copy.
        let again = ring.pull(0, 6).unwrap();
        assert_eq!(again.as_ptr(), first.as_ptr());
    }

    #[test]
    fn pull_argument_checks_match_kernel() {
        let mut ring = ring_of(8, &[b"abc", b"def"]);
        for (s, e) in [(2, 2), (3, 1), (6, 7), (0, 7), (5, usize::MAX)] {
            assert_eq!(ring.pull(s, e), Err(Errno::Inval), "pull({s}, {e})");
        }
        assert_eq!(SgRing::new().pull(0, 1), Err(Errno::Inval));
        assert_eq!(lens(&ring), vec![3, 3]);
        assert_eq!(&ring.pull(5, 6).unwrap()[..], b"f");
    }

    #[test]
    fn push_zeroed_at_start_middle_end_and_boundary() {
        let mut ring = ring_of(16, &[b"abc", b"def"]);
        ring.push_zeroed(0, 1).unwrap();
        assert_eq!(ring.to_vec(), b"\0abcdef");
        ring.push_zeroed(2, 2).unwrap(); // inside "abc": split
        assert_eq!(ring.to_vec(), b"\0a\0\0bcdef");
        ring.push_zeroed(6, 1).unwrap(); // boundary between "bc" and "def"
        assert_eq!(ring.to_vec(), b"\0a\0\0bc\0def");
        ring.push_zeroed(ring.len(), 3).unwrap(); // append
        assert_eq!(ring.to_vec(), b"\0a\0\0bc\0def\0\0\0");
        assert_eq!(lens(&ring), vec![1, 1, 2, 2, 1, 3, 3]);
        let mut empty = SgRing::new();
        empty.push_zeroed(0, 5000).unwrap();
        assert_eq!(empty.to_vec(), vec![0; 5000]);
    }

    #[test]
    fn push_zeroed_checks() {
        let mut ring = ring_of(8, &[b"abc"]);
        assert_eq!(ring.push_zeroed(4, 1), Err(Errno::Inval));
        ring.push_zeroed(99, 0).unwrap(); // len 0 is checked first
        assert_eq!(ring.push_zeroed(0, usize::MAX), Err(Errno::NoMem));
        assert_eq!(ring.push_zeroed(0, MAX_MSG_LEN - 2), Err(Errno::NoMem));
        assert_eq!(ring.to_vec(), b"abc");
    }

    #[test]
    fn push_zeroed_on_full_ring_merges_by_copy() {
        let mut ring = ring_of(2, &[b"abc", b"def"]);
        ring.push_zeroed(1, 1).unwrap(); // inside, no slot: copy "abc"
        assert_eq!(
            (ring.to_vec(), lens(&ring)),
            (b"a\0bcdef".to_vec(), vec![4, 3])
        );
        ring.push_zeroed(4, 1).unwrap(); // boundary: merges into "def"
        assert_eq!(
            (ring.to_vec(), lens(&ring)),
            (b"a\0bc\0def".to_vec(), vec![4, 4])
        );
        ring.push_zeroed(8, 2).unwrap(); // end: merges into the last
        assert_eq!(
            (ring.to_vec(), lens(&ring)),
            (b"a\0bc\0def\0\0".to_vec(), vec![4, 6])
        );
        // One slot free but a split needs two: copy.
        let mut ring = ring_of(2, &[b"abc"]);
        ring.push_zeroed(1, 1).unwrap();
        assert_eq!((ring.to_vec(), lens(&ring)), (b"a\0bc".to_vec(), vec![4]));
    }

    #[test]
    fn pop_start_middle_end_and_across() {
        let mut ring = ring_of(16, &[b"abc", b"defg", b"hij"]);
        ring.pop(0, 1).unwrap();
        assert_eq!(ring.to_vec(), b"bcdefghij");
        ring.pop(3, 2).unwrap(); // inside "defg": split
        assert_eq!(
            (ring.to_vec(), lens(&ring)),
            (b"bcdghij".to_vec(), vec![2, 1, 1, 3])
        );
        ring.pop(1, 4).unwrap(); // across fragments
        assert_eq!((ring.to_vec(), lens(&ring)), (b"bij".to_vec(), vec![1, 2]));
        ring.pop(2, 1).unwrap(); // the last byte
        assert_eq!(ring.to_vec(), b"bi");
        ring.pop(0, 2).unwrap(); // whole message
        assert!(ring.is_empty() && ring.frag_count() == 0);
    }

    #[test]
    fn pop_inside_fragment_of_full_ring_copies() {
        let mut ring = ring_of(2, &[b"abcdef", b"g"]);
        ring.pop(2, 2).unwrap();
        assert_eq!(
            (ring.to_vec(), lens(&ring)),
            (b"abefg".to_vec(), vec![4, 1])
        );
    }

    #[test]
    fn pop_checks_in_wide_arithmetic() {
        let mut ring = ring_of(8, &[b"abc", b"def"]);
        ring.pop(99, 0).unwrap(); // len 0 is checked first
        assert_eq!(ring.pop(6, 1), Err(Errno::Inval));
        assert_eq!(ring.pop(4, 3), Err(Errno::Inval));
        // start + len wraps a u32 to 1: must still be rejected.
        assert_eq!(ring.pop(2, u32::MAX as usize), Err(Errno::Inval));
        assert_eq!(ring.pop(2, usize::MAX), Err(Errno::Inval));
        assert_eq!(ring.to_vec(), b"abcdef");
        assert_eq!(SgRing::new().pop(0, 1), Err(Errno::Inval));
    }

    #[test]
    fn buf_impl_reads_across_fragments() {
        let mut ring = ring_of(8, &[b"ab", b"cd"]);
        assert_eq!(ring.get_u16(), u16::from_be_bytes(*b"ab"));
        assert_eq!(ring.chunk(), b"cd");
        Buf::advance(&mut ring, 10);
        assert_eq!((ring.remaining(), ring.chunk()), (0, &b""[..]));
    }

    #[test]
    fn debug_shows_shape_not_payload() {
        let ring = ring_of(4, &[b"secret", b"xy"]);
        assert_eq!(
            format!("{ring:?}"),
            "SgRing { len: 8, frag_lens: [6, 2], max_frags: 4 }"
        );
    }
}
