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

/// twemproxy's `hash_fnv1a_64`: FNV-1a computed in 32 bits with the 64-bit
/// offset basis and prime truncated to 32 bits, each byte widened as a C
/// `char` (signed on x86), so bytes >= 0x80 mix in as `0xffffff..`. Routing
/// by it places keys where twemproxy (`hash: fnv1a_64`) places them.
pub fn fnv1a_64(data: &[u8]) -> u32 {
    let mut h: u32 = 0xcbf2_9ce4_8422_2325_u64 as u32;
    for &b in data {
        // Sign-extended, as twemproxy's `(uint32_t)key[x]`.
        h ^= i32::from(b as i8) as u32;
        h = h.wrapping_mul(0x0000_0100_0000_01b3_u64 as u32);
    }
    h
}

/// The part of `key` a hash tag selects (twemproxy's `hash_tag`): with
/// `tag = [open, close]`, the bytes between the first `open` and the next
/// `close` after it, when there are some; else the whole key.
pub fn hash_tagged(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(s) = memchr::memchr(open, key) else {
        return key;
    };
    match memchr::memchr(close, &key[s + 1..]) {
        Some(n) if n > 0 => &key[s + 1..s + 1 + n],
        _ => key,
    }
}

/// A number as the decimal string rings name and hash it by.
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
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
    fn fnv1a_64_is_twemproxys() {
        // From twemproxy's hash_fnv1a_64 (32-bit arithmetic, signed chars).
        assert_eq!(fnv1a_64(b""), 0x8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0x8601_ec8c);
        assert_eq!(fnv1a_64(b"ab"), 0xb545_986a);
        assert_eq!(fnv1a_64(b"foo:1234"), 0x7e03_27e7);
        // A byte >= 0x80 is sign-extended: 0xff mixes in as 0xffffffff.
        assert_eq!(fnv1a_64(&[0xff]), 0x79fe_466e);
    }

    #[test]
    fn hash_tags_select_the_braced_part() {
        let t = Some(*b"{}");
        assert_eq!(hash_tagged(b"user:{42}:name", t), b"42");
        assert_eq!(hash_tagged(b"{a}{b}", t), b"a");
        assert_eq!(hash_tagged(b"x{}y", t), b"x{}y");
        assert_eq!(hash_tagged(b"x{y", t), b"x{y");
        assert_eq!(hash_tagged(b"x}y{z}", t), b"z");
        assert_eq!(hash_tagged(b"user:{42}", None), b"user:{42}");
    }

    #[test]
    fn decimal_names() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(1234, &mut b), b"1234");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }
}
