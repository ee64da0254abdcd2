//! Map keys, the stable hash they are routed by, and the consistent-hash ring.

use bytes::Bytes;

use crate::id::SockId;

/// A map key: an index for a SockMap, a byte string for a SockHash.
///
/// Numbers used as SockHash keys are stored as their 8 little-endian bytes, so
/// `Key::Num(id)` and the key a rule takes from a source socket id agree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// An integer key (the index in a SockMap).
    Num(u64),
    /// A byte-string key.
    Bytes(Bytes),
}

impl Key {
    /// The key as an index for a SockMap: numbers as they are, byte strings of
    /// 1 to 8 bytes read as a big-endian unsigned integer.
    pub fn as_index(&self) -> Option<u64> {
        match self {
            Key::Num(n) => Some(*n),
            Key::Bytes(b) if !b.is_empty() && b.len() <= 8 => {
                Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            }
            Key::Bytes(_) => None,
        }
    }

    /// Calls `f` with the key as the byte string a SockHash stores.
    pub fn with_hash_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Key::Num(n) => f(&n.to_le_bytes()),
            Key::Bytes(b) => f(b),
        }
    }
}

impl From<u64> for Key {
    fn from(n: u64) -> Key {
        Key::Num(n)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key::Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&[u8]> for Key {
    fn from(s: &[u8]) -> Key {
        Key::Bytes(Bytes::copy_from_slice(s))
    }
}

impl From<SockId> for Key {
    fn from(id: SockId) -> Key {
        Key::Num(id.as_u64())
    }
}

/// A stable 64-bit hash (FNV-1a followed by a final mix): the same on every
/// run and platform, which consistent routing needs.
pub fn stable_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// A 64-bit finalizer (from SplitMix64) that spreads every input bit.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Points each map entry places on the ring.
const POINTS_PER_ENTRY: u64 = 64;

/// A consistent-hash ring over a map's entries: each entry owns
/// [`POINTS_PER_ENTRY`] points derived from its key, and a routing hash goes to
/// the first point at or after it. Adding or removing one entry moves only
/// the keys next to that entry's points.
#[derive(Debug, Default)]
pub(crate) struct HashRing {
    points: Vec<(u64, SockId)>,
}

impl HashRing {
    /// Builds the ring from `(entry key hash, socket)` pairs.
    pub(crate) fn build(entries: impl Iterator<Item = (u64, SockId)>) -> HashRing {
        let mut points = Vec::new();
        for (key_hash, sock) in entries {
            for i in 0..POINTS_PER_ENTRY {
                points.push((mix64(key_hash ^ mix64(i + 1)), sock));
            }
        }
        points.sort_unstable_by_key(|p| p.0);
        HashRing { points }
    }

    /// The socket owning `hash`, if the ring has any entry.
    pub(crate) fn route(&self, hash: u64) -> Option<SockId> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|p| p.0 < hash);
        Some(self.points[i % self.points.len()].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_from_bytes_is_big_endian() {
        assert_eq!(Key::from(&[1u8, 0][..]).as_index(), Some(256));
        assert_eq!(Key::Num(9).as_index(), Some(9));
        assert_eq!(Key::from(&[0u8; 9][..]).as_index(), None);
        assert_eq!(Key::from("").as_index(), None);
    }

    #[test]
    fn ring_moves_few_keys_when_an_entry_leaves() {
        let socks: Vec<SockId> = (0..8).map(|i| SockId::new(i, 0)).collect();
        let full = HashRing::build(
            socks
                .iter()
                .map(|&s| (stable_hash(&s.as_u64().to_le_bytes()), s)),
        );
        let less = HashRing::build(
            socks[..7]
                .iter()
                .map(|&s| (stable_hash(&s.as_u64().to_le_bytes()), s)),
        );
        let mut moved = 0;
        for k in 0..4000u32 {
            let h = stable_hash(&k.to_le_bytes());
            let a = full.route(h).unwrap();
            let b = less.route(h).unwrap();
            if a != socks[7] {
                assert_eq!(a, b, "a key not owned by the removed entry moved");
            } else {
                moved += 1;
            }
        }
        assert!(
            moved > 200 && moved < 900,
            "entry 7 owned {moved} of 4000 keys"
        );
        assert_eq!(HashRing::default().route(1), None);
    }
}
