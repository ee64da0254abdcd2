//! Verdicts and the native rules that produce them without leaving the I/O thread.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::framer::MessageMeta;
use crate::id::{MapId, SockId};
use crate::key::Key;
use crate::map::RawKey;

/// What happens to a message (the kernel's `SK_PASS`, `SK_DROP`, or `SK_PASS`
/// with a redirect target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver to the source socket's application (stream verdict), or
    /// transmit on the source socket (msg verdict).
    Pass,
    /// Discard and count.
    Drop,
    /// Send to the socket stored under `key` in `map`: out of it (egress) or to
    /// its application (`ingress`). A missing key or a dead target drops.
    Redirect {
        /// The map to look the key up in.
        map: MapId,
        /// The key.
        key: Key,
        /// Deliver to the target's application instead of transmitting.
        ingress: bool,
    },
}

/// The message a verdict judges.
pub struct MessageView<'a> {
    /// The socket the message came from.
    pub sock: SockId,
    /// The message bytes, as fragments.
    pub frags: &'a [Bytes],
    /// The message length.
    pub len: usize,
    /// What the parser learned about the message (RESP key, HTTP Host...).
    pub meta: &'a MessageMeta,
}

impl MessageView<'_> {
    /// The bytes in `r` as a derived key.
    fn owned_range(&self, r: &Range<usize>) -> Option<DerivedKey<'static>> {
        let mut out = SmallVec::new();
        let len = r.end.checked_sub(r.start)?;
        self.copy_range(r.start, len, &mut out)
            .then_some(DerivedKey::Owned(out))
    }

    /// Copies `len` bytes at `offset` into `out`; false if the message is shorter.
    pub fn copy_range(&self, offset: usize, len: usize, out: &mut SmallVec<[u8; 32]>) -> bool {
        copy_range(self.frags, offset, len, out)
    }
}

/// Copies `len` bytes at `offset` of a fragmented message into `out`.
pub(crate) fn copy_range(
    frags: &[Bytes],
    mut offset: usize,
    len: usize,
    out: &mut SmallVec<[u8; 32]>,
) -> bool {
    out.clear();
    let mut need = len;
    for f in frags {
        if need == 0 {
            break;
        }
        if offset >= f.len() {
            offset -= f.len();
            continue;
        }
        let take = need.min(f.len() - offset);
        out.extend_from_slice(&f[offset..offset + take]);
        need -= take;
        offset = 0;
    }
    need == 0
}

/// Where a rule takes its redirect key from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A fixed key.
    Fixed(Key),
    /// The source socket's id, as [`Key::Num`]: a proxy stores each socket's
    /// partner under the socket's own id.
    Socket,
    /// The first key of a RESP command (`parsers.resp()`); a message without
    /// one has no key.
    Resp,
    /// The `Host` header of an HTTP/1 request (`parsers.http1()`); a message
    /// without one has no key.
    HttpHost,
    /// `len` bytes at `offset` of the message (a message shorter than that has no key).
    Range {
        /// First byte.
        offset: usize,
        /// Number of bytes.
        len: usize,
    },
}

/// A Rust function used as a verdict.
pub type VerdictFn = Arc<dyn Fn(&MessageView<'_>) -> Verdict + Send + Sync>;

/// A native verdict rule.
#[derive(Clone)]
pub enum Rule {
    /// Always PASS.
    Pass,
    /// Always DROP.
    Drop,
    /// Redirect to the entry of `map` under a key taken from `key`.
    Redirect {
        /// The map.
        map: MapId,
        /// Where the key comes from.
        key: KeySource,
        /// Deliver to the target's application instead of transmitting.
        ingress: bool,
    },
    /// Redirect to the entry of `map` chosen by a consistent hash of a key.
    HashRoute {
        /// The map whose entries share the traffic.
        map: MapId,
        /// Where the routed key comes from.
        key: KeySource,
        /// Deliver to the target's application instead of transmitting.
        ingress: bool,
    },
    /// A Rust function, run inline for each message.
    Func(VerdictFn),
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Pass => f.write_str("Pass"),
            Rule::Drop => f.write_str("Drop"),
            Rule::Redirect { map, key, ingress } => {
                write!(f, "Redirect({map}, {key:?}, ingress={ingress})")
            }
            Rule::HashRoute { map, key, ingress } => {
                write!(f, "HashRoute({map}, {key:?}, ingress={ingress})")
            }
            Rule::Func(_) => f.write_str("Func"),
        }
    }
}

/// A key derived for one message, borrowed when possible.
pub(crate) enum DerivedKey<'a> {
    Num(u64),
    Borrowed(&'a [u8]),
    Owned(SmallVec<[u8; 32]>),
}

impl DerivedKey<'_> {
    pub(crate) fn raw(&self) -> RawKey<'_> {
        match self {
            DerivedKey::Num(n) => RawKey::Num(*n),
            DerivedKey::Borrowed(b) => RawKey::Bytes(b),
            DerivedKey::Owned(b) => RawKey::Bytes(b),
        }
    }

    /// Whether the key is the same for every message of a socket.
    pub(crate) fn from_key(key: &Key) -> DerivedKey<'_> {
        match key {
            Key::Num(n) => DerivedKey::Num(*n),
            Key::Bytes(b) => DerivedKey::Borrowed(b),
        }
    }
}

impl KeySource {
    /// Takes the key for one message; `None` when the message has none.
    pub(crate) fn derive<'a>(&'a self, msg: &MessageView<'_>) -> Option<DerivedKey<'a>> {
        match self {
            KeySource::Fixed(k) => Some(DerivedKey::from_key(k)),
            KeySource::Socket => Some(DerivedKey::Num(msg.sock.as_u64())),
            KeySource::Range { offset, len } => {
                let mut out = SmallVec::new();
                msg.copy_range(*offset, *len, &mut out)
                    .then_some(DerivedKey::Owned(out))
            }
            KeySource::Resp => match msg.meta {
                MessageMeta::Resp { key: Some(r), .. } => msg.owned_range(r),
                _ => None,
            },
            KeySource::HttpHost => match msg.meta {
                MessageMeta::Http { host: Some(r), .. } => msg.owned_range(r),
                _ => None,
            },
        }
    }

    /// Takes the key for a message that is the contiguous bytes `msg`, the
    /// same key [`derive`](KeySource::derive) gives; `None` also for the
    /// sources that need the parser's metadata (a message framed without
    /// metadata has none).
    pub(crate) fn derive_contiguous<'a>(
        &'a self,
        sock: SockId,
        msg: &'a [u8],
    ) -> Option<DerivedKey<'a>> {
        match self {
            KeySource::Fixed(k) => Some(DerivedKey::from_key(k)),
            KeySource::Socket => Some(DerivedKey::Num(sock.as_u64())),
            // As `copy_range`: an empty range is found anywhere.
            KeySource::Range { len: 0, .. } => Some(DerivedKey::Borrowed(&[])),
            KeySource::Range { offset, len } => offset
                .checked_add(*len)
                .and_then(|end| msg.get(*offset..end))
                .map(DerivedKey::Borrowed),
            KeySource::Resp | KeySource::HttpHost => None,
        }
    }

    /// True when the key does not depend on the message bytes.
    pub(crate) fn is_per_socket(&self) -> bool {
        matches!(self, KeySource::Fixed(_) | KeySource::Socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_range_spans_fragments() {
        let frags = [Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
        let mut out = SmallVec::new();
        assert!(copy_range(&frags, 2, 3, &mut out));
        assert_eq!(&out[..], b"cde");
        assert!(!copy_range(&frags, 5, 3, &mut out));
        assert!(copy_range(&frags, 7, 0, &mut out));
    }
}
