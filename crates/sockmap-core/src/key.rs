//! Map keys and the stable hash they are routed by.

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
    crate::hash_ring::mix64(h)
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
}
