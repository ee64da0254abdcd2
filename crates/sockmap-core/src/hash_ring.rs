//! The consistent-hash ring a `hashRoute` rule routes by.
//!
//! Each map entry owns [`POINTS_PER_ENTRY`] points derived from its key's
//! stable hash; a routing hash goes to the first point at or after it
//! (wrapping). Adding or removing one entry moves only the keys next to that
//! entry's points. The ring is rebuilt from the map's entries when the map
//! changes, never patched.

use crate::id::SockId;

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
    use crate::key::stable_hash;

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
