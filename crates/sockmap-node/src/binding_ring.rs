//! `BindingRing`: the scatter-gather ring, exposed for inspection and tests.

use bytes::Bytes;
use napi_derive::napi;
use sockmap_core::ring::SgRing;
use sockmap_core::Frags;

use crate::binding_bytes::JsBytes;
use crate::binding_error::{error_of, guarded, Result};

/// A scatter-gather ring of byte fragments (the engine's `sk_msg`).
#[napi]
pub struct BindingRing {
    inner: SgRing,
}

#[napi]
impl BindingRing {
    /// Creates an empty ring holding at most `max_frags` fragments.
    #[napi(constructor)]
    pub fn new(max_frags: u32) -> Result<Self> {
        guarded(|| {
            Ok(BindingRing {
                inner: SgRing::with_max_frags(max_frags as usize),
            })
        })
    }

    /// Appends a copy of `data` as one fragment; returns false when the ring is full.
    #[napi]
    pub fn append(&mut self, data: &[u8]) -> Result<bool> {
        guarded(|| Ok(self.inner.push(Bytes::copy_from_slice(data)).is_ok()))
    }

    /// Total bytes held.
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        self.inner.len() as u32
    }

    /// Number of fragments held.
    #[napi(getter)]
    pub fn frag_count(&self) -> u32 {
        self.inner.frag_count() as u32
    }

    /// Maximum number of fragments.
    #[napi(getter)]
    pub fn max_frags(&self) -> u32 {
        self.inner.max_frags() as u32
    }

    /// Drops `n` bytes from the head (as after a partial write); returns the bytes dropped.
    #[napi]
    pub fn advance(&mut self, n: f64) -> Result<u32> {
        guarded(|| Ok(self.inner.advance(clamp_len(n)) as u32))
    }

    /// Keeps only the first `len` bytes.
    #[napi]
    pub fn trim(&mut self, len: f64) -> Result<()> {
        guarded(|| {
            self.inner.trim(clamp_len(len));
            Ok(())
        })
    }

    /// Makes `[start, end)` contiguous and returns a copy of it.
    #[napi(ts_return_type = "Buffer")]
    pub fn pull(&mut self, start: f64, end: f64) -> Result<JsBytes> {
        guarded(|| {
            self.inner
                .pull(clamp_len(start), clamp_len(end))
                .map(JsBytes::from)
                .map_err(|e| error_of(e, "pull: bad range"))
        })
    }

    /// Inserts `len` zero bytes at `start`.
    #[napi]
    pub fn push(&mut self, start: f64, len: f64) -> Result<()> {
        guarded(|| {
            self.inner
                .push_zeroed(clamp_len(start), clamp_len(len))
                .map_err(|e| error_of(e, "push: bad range"))
        })
    }

    /// Removes `len` bytes at `start`.
    #[napi]
    pub fn pop(&mut self, start: f64, len: f64) -> Result<()> {
        guarded(|| {
            self.inner
                .pop(clamp_len(start), clamp_len(len))
                .map_err(|e| error_of(e, "pop: bad range"))
        })
    }

    /// Copies every byte held into one Buffer.
    #[napi(ts_return_type = "Buffer")]
    pub fn to_buffer(&self) -> Result<JsBytes> {
        guarded(|| {
            Ok(JsBytes::from(
                self.inner.frags().cloned().collect::<Frags>(),
            ))
        })
    }

    /// The fragment lengths, in order.
    #[napi]
    pub fn fragment_lengths(&self) -> Result<Vec<u32>> {
        guarded(|| Ok(self.inner.frags().map(|f| f.len() as u32).collect()))
    }
}

/// Converts a JS number already validated by the TypeScript layer to a length;
/// anything out of range saturates so that the engine reports the error.
fn clamp_len(n: f64) -> usize {
    if n.is_nan() || n < 0.0 {
        usize::MAX
    } else {
        n.min(usize::MAX as f64) as usize
    }
}
