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
    /// The server name the source socket's stream asked for, lowercased: the
    /// one its TLS handshake agreed on when the engine terminates TLS, else
    /// the one of the ClientHello `parsers.tlsRecords()` framed first (TLS
    /// passthrough). A socket without one has no key.
    Sni,
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
    /// Redirect to the entry of `map` chosen by its ketama ring (twemproxy's
    /// `distribution: ketama`, `hash: fnv1a_64`) from a key: a connection of
    /// the key's server on the source socket's shard, else any.
    HashRoute {
        /// The map whose entries share the traffic.
        map: MapId,
        /// Where the routed key comes from.
        key: KeySource,
        /// Deliver to the target's application instead of transmitting.
        ingress: bool,
        /// `[open, close]`: hash only what lies between the first `open` and
        /// the next `close` when it is not empty (twemproxy's `hash_tag`).
        hash_tag: Option<[u8; 2]>,
    },
    /// Redirect each message to the next entry of `map` (in key order),
    /// among those on the source socket's shard when there are any.
    RoundRobin {
        /// The map whose entries share the traffic.
        map: MapId,
        /// Deliver to the target's application instead of transmitting.
        ingress: bool,
    },
    /// Redirect an HTTP/1 request (`parsers.http1()`) to the pool of the
    /// first route it matches; within the pool, the ring on the source
    /// socket's id picks the connection, so one client stays on one. No
    /// match drops (counted `dropped_no_route`).
    HttpRoute {
        /// The routes, tried in order.
        routes: Arc<[HttpRoute]>,
        /// Deliver to the target's application instead of transmitting.
        ingress: bool,
    },
    /// A Rust function, run inline for each message.
    Func(VerdictFn),
    /// The stream verdict of an upstream in request/response pairing: each
    /// message answers the oldest request forwarded to the socket and goes
    /// to that request's client, in the client's request order; a message
    /// with no request pending is passed to the application.
    Reply,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Pass => f.write_str("Pass"),
            Rule::Drop => f.write_str("Drop"),
            Rule::Redirect { map, key, ingress } => {
                write!(f, "Redirect({map}, {key:?}, ingress={ingress})")
            }
            Rule::HashRoute {
                map,
                key,
                ingress,
                hash_tag,
            } => {
                write!(f, "HashRoute({map}, {key:?}, ingress={ingress}")?;
                match hash_tag {
                    Some([o, c]) => write!(f, ", hashTag={}{})", *o as char, *c as char),
                    None => f.write_str(")"),
                }
            }
            Rule::RoundRobin { map, ingress } => write!(f, "RoundRobin({map}, ingress={ingress})"),
            Rule::HttpRoute { routes, ingress } => {
                write!(f, "HttpRoute({routes:?}, ingress={ingress})")
            }
            Rule::Func(_) => f.write_str("Func"),
            Rule::Reply => f.write_str("Reply"),
        }
    }
}

/// One route of [`Rule::HttpRoute`]: a request matches when every given
/// condition holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    /// The `Host` header without its port, compared case-insensitively.
    pub host: Option<Bytes>,
    /// A prefix of the request target.
    pub path_prefix: Option<Bytes>,
    /// The map of the upstream connections serving the route.
    pub pool: MapId,
}

impl HttpRoute {
    /// Whether a request with `host` (the header's value, port included)
    /// and request target `path` matches.
    pub fn matches(&self, host: Option<&[u8]>, path: &[u8]) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(h)) => host_name(h).eq_ignore_ascii_case(want),
            (Some(_), None) => false,
        };
        host_ok
            && self
                .path_prefix
                .as_ref()
                .map_or(true, |p| path.starts_with(p))
    }
}

/// A `Host` value without its port (`[v6]:port` keeps the brackets) and
/// surrounding blanks.
fn host_name(h: &[u8]) -> &[u8] {
    let h = h.trim_ascii();
    if h.first() == Some(&b'[') {
        return match memchr::memchr(b']', h) {
            Some(e) => &h[..=e],
            None => h,
        };
    }
    match memchr::memchr(b':', h) {
        Some(c) => &h[..c],
        None => h,
    }
}

/// A key derived for one message, borrowed when possible.
pub(crate) enum DerivedKey<'a> {
    Num(u64),
    Borrowed(&'a [u8]),
    Owned(SmallVec<[u8; 32]>),
}

impl DerivedKey<'_> {
    /// The key's bytes (empty for a number).
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            DerivedKey::Num(_) => &[],
            DerivedKey::Borrowed(b) => b,
            DerivedKey::Owned(b) => b,
        }
    }

    pub(crate) fn raw(&self) -> RawKey<'_> {
        match self {
            DerivedKey::Num(n) => RawKey::Num(*n),
            DerivedKey::Borrowed(b) => RawKey::Bytes(b),
            DerivedKey::Owned(b) => RawKey::Bytes(b),
        }
    }

    /// A rule's or an answer's key, borrowed.
    pub(crate) fn from_key(key: &Key) -> DerivedKey<'_> {
        match key {
            Key::Num(n) => DerivedKey::Num(*n),
            Key::Bytes(b) => DerivedKey::Borrowed(b),
        }
    }
}

/// The bytes of a message: its fragments, or `start..end` of a received block.
#[derive(Clone, Copy)]
pub(crate) enum MsgBytes<'a> {
    /// Fragments of received buffers.
    Frags(&'a [Bytes]),
    /// `start..end` of a block.
    Range(&'a Bytes, usize, usize),
}

impl<'a> MsgBytes<'a> {
    /// `len` bytes at `offset` as a key (`None` if the message is shorter),
    /// borrowed when contiguous.
    fn range(self, offset: usize, len: usize) -> Option<DerivedKey<'a>> {
        match self {
            MsgBytes::Range(b, s, e) => offset
                .checked_add(len)
                .and_then(|end| b[s..e].get(offset..end))
                .map(DerivedKey::Borrowed),
            MsgBytes::Frags(f) => {
                let mut out = SmallVec::new();
                copy_range(f, offset, len, &mut out).then_some(DerivedKey::Owned(out))
            }
        }
    }

    pub(crate) fn meta_range(self, r: &Range<usize>) -> Option<DerivedKey<'a>> {
        self.range(r.start, r.end.checked_sub(r.start)?)
    }
}

impl KeySource {
    /// Takes the key for one message of `sock`, whose stream asked for
    /// server name `sni`; `None` when the message has none (too short, or no
    /// key in the parser's metadata).
    pub(crate) fn derive<'a>(
        &'a self,
        sock: SockId,
        sni: Option<&'a [u8]>,
        msg: MsgBytes<'a>,
        meta: &MessageMeta,
    ) -> Option<DerivedKey<'a>> {
        match self {
            KeySource::Fixed(k) => Some(DerivedKey::from_key(k)),
            KeySource::Socket => Some(DerivedKey::Num(sock.as_u64())),
            KeySource::Range { offset, len } => msg.range(*offset, *len),
            KeySource::Resp => match meta {
                MessageMeta::Resp { key: Some(r), .. } => msg.meta_range(r),
                _ => None,
            },
            KeySource::HttpHost => match meta {
                MessageMeta::Http { host: Some(r), .. } => msg.meta_range(r),
                _ => None,
            },
            KeySource::Sni => sni.map(DerivedKey::Borrowed),
        }
    }

    /// True when the key is the same for every message of a socket (a fixed
    /// key, or the socket's own id), so one verdict holds for all of them.
    pub(crate) fn is_message_independent(&self) -> bool {
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

    #[test]
    fn http_routes_match_host_without_port_and_path_prefix() {
        let r = HttpRoute {
            host: Some(Bytes::from_static(b"api.example")),
            path_prefix: Some(Bytes::from_static(b"/v1/")),
            pool: MapId::from_u32(0),
        };
        assert!(r.matches(Some(b"API.Example:8080"), b"/v1/users"));
        assert!(r.matches(Some(b" api.example "), b"/v1/"));
        assert!(!r.matches(Some(b"api.example"), b"/v2/users"));
        assert!(!r.matches(Some(b"api.example.org"), b"/v1/x"));
        assert!(!r.matches(None, b"/v1/x"));
        let any = HttpRoute {
            host: Some(Bytes::from_static(b"[::1]")),
            path_prefix: None,
            pool: MapId::from_u32(0),
        };
        assert!(any.matches(Some(b"[::1]:80"), b"/"));
        assert!(!any.matches(Some(b"[::2]"), b"/"));
    }
}
