//! [`Chunks`]: a read-only view over the buffered fragments of the current message.

use std::cell::Cell;

use bytes::Bytes;

/// A read-only view over the bytes buffered for the current message, as the
/// fragments they arrived in.
///
/// Offset 0 is the first byte of the current message. The view also covers
/// any bytes buffered after the message (the start of the next ones), exactly
/// like the kernel's parser sees the whole `skb`. Nothing is copied: framers
/// read the few header bytes they need with [`byte`](Chunks::byte),
/// [`copy_to`](Chunks::copy_to) or [`contiguous`](Chunks::contiguous), and
/// search with [`find`](Chunks::find) / [`find_any_byte`](Chunks::find_any_byte).
///
/// Lookups remember the fragment they last reached, so a forward scan over a
/// message spread across many fragments costs O(1) per lookup, not O(fragments).
#[derive(Debug)]
pub struct Chunks<'a> {
    a: &'a [Bytes],
    b: &'a [Bytes],
    len: usize,
    /// (fragment index, offset of its first byte) of the last forward lookup.
    cursor: Cell<(usize, usize)>,
}

impl<'a> Chunks<'a> {
    /// A view over `frags`, in order. Empty fragments are allowed.
    pub fn new(frags: &'a [Bytes]) -> Self {
        let len = frags.iter().map(Bytes::len).sum();
        Chunks {
            a: frags,
            b: &[],
            len,
            cursor: Cell::new((0, 0)),
        }
    }

    /// A view over two runs of fragments (the halves of a ring), with a
    /// known total length and a cursor remembered from an earlier view.
    pub(crate) fn from_parts(
        a: &'a [Bytes],
        b: &'a [Bytes],
        len: usize,
        cursor: (usize, usize),
    ) -> Self {
        Chunks {
            a,
            b,
            len,
            cursor: Cell::new(cursor),
        }
    }

    /// The cursor to hand to the next view over the same fragments.
    pub(crate) fn cursor(&self) -> (usize, usize) {
        self.cursor.get()
    }

    /// Number of bytes in view.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is in view.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first fragment (empty if there is none).
    #[inline]
    pub fn first(&self) -> &'a [u8] {
        self.frag(0).unwrap_or(&[])
    }

    #[inline]
    fn frag(&self, i: usize) -> Option<&'a [u8]> {
        match self.a.get(i) {
            Some(f) => Some(f),
            None => self.b.get(i - self.a.len()).map(|f| &f[..]),
        }
    }

    /// Finds the fragment holding byte `off`: (index, offset of its first byte).
    #[inline]
    fn locate(&self, off: usize) -> Option<(usize, usize)> {
        if off >= self.len {
            return None;
        }
        let (ci, cs) = self.cursor.get();
        let forward = off >= cs;
        let (mut i, mut start) = if forward { (ci, cs) } else { (0, 0) };
        loop {
            let f = self.frag(i)?;
            if off < start + f.len() {
                if forward {
                    self.cursor.set((i, start));
                }
                return Some((i, start));
            }
            start += f.len();
            i += 1;
        }
    }

    /// The byte at `off`, if buffered.
    #[inline]
    pub fn byte(&self, off: usize) -> Option<u8> {
        let first = self.first();
        if off < first.len() {
            return Some(first[off]);
        }
        let (i, start) = self.locate(off)?;
        self.frag(i).map(|f| f[off - start])
    }

    /// The `n` bytes at `off` as one slice, when they lie in one fragment.
    ///
    /// Returns `None` when they are not all buffered or span fragments (use
    /// [`copy_to`](Chunks::copy_to) then).
    #[inline]
    pub fn contiguous(&self, off: usize, n: usize) -> Option<&'a [u8]> {
        let end = off.checked_add(n)?;
        let first = self.first();
        if end <= first.len() {
            return Some(&first[off..end]);
        }
        if end > self.len {
            return None;
        }
        if n == 0 {
            return Some(&[]);
        }
        let (i, start) = self.locate(off)?;
        let f = self.frag(i)?;
        f.get(off - start..end - start)
    }

    /// Copies `dst.len()` bytes starting at `off` into `dst`.
    ///
    /// Returns `false` (and leaves `dst` unspecified) when they are not all buffered.
    #[inline]
    pub fn copy_to(&self, off: usize, dst: &mut [u8]) -> bool {
        if let Some(s) = self.contiguous(off, dst.len()) {
            dst.copy_from_slice(s);
            return true;
        }
        match off.checked_add(dst.len()) {
            Some(end) if end <= self.len => {}
            _ => return false,
        }
        let Some((mut i, start)) = self.locate(off) else {
            return false;
        };
        let mut skip = off - start;
        let mut done = 0;
        while done < dst.len() {
            let Some(f) = self.frag(i) else {
                return false;
            };
            let src = &f[skip..];
            let n = src.len().min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&src[..n]);
            done += n;
            skip = 0;
            i += 1;
        }
        true
    }

    /// The fragments in view, in order (empty ones included).
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.a.iter().chain(self.b.iter()).map(|f| &f[..])
    }

    /// The offset of the first byte at or after `from` that is one of `set`.
    ///
    /// `set` of 1 to 3 bytes uses a vectorised search.
    pub fn find_any_byte(&self, set: &[u8], from: usize) -> Option<usize> {
        let (mut i, start) = self.locate(from)?;
        let mut base = start;
        let mut skip = from - start;
        while let Some(f) = self.frag(i) {
            let hay = &f[skip..];
            let hit = match *set {
                [] => None,
                [a] => memchr::memchr(a, hay),
                [a, b] => memchr::memchr2(a, b, hay),
                [a, b, c] => memchr::memchr3(a, b, c, hay),
                _ => hay.iter().position(|x| set.contains(x)),
            };
            if let Some(p) = hit {
                if base > self.cursor.get().1 {
                    self.cursor.set((i, base));
                }
                return Some(base + skip + p);
            }
            base += f.len();
            skip = 0;
            i += 1;
        }
        None
    }

    /// Whether `needle` is at `off`: `None` when the bytes needed to tell are
    /// not all buffered yet.
    pub fn matches_at(&self, off: usize, needle: &[u8]) -> Option<bool> {
        if let Some(s) = self.contiguous(off, needle.len()) {
            return Some(s == needle);
        }
        for (k, &want) in needle.iter().enumerate() {
            match self.byte(off.checked_add(k)?) {
                Some(b) if b == want => {}
                Some(_) => return Some(false),
                None => return None,
            }
        }
        Some(true)
    }

    /// The offset of the first complete occurrence of `needle` at or after `from`.
    ///
    /// Occurrences may span fragments. An occurrence cut off by the end of the
    /// buffered bytes is not reported: a framer that keeps its search position
    /// should resume from `len() - needle.len() + 1` (saturating).
    pub fn find(&self, needle: &[u8], from: usize) -> Option<usize> {
        let (&first, _) = needle.split_first()?;
        let mut pos = from;
        loop {
            let p = self.find_any_byte(&[first], pos)?;
            match self.matches_at(p, needle) {
                Some(true) => return Some(p),
                Some(false) => pos = p + 1,
                None => return None,
            }
        }
    }
}
