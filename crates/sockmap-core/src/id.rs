//! Small opaque identifiers: sockets and maps; and [`Shards`], which shard (I/O
//! thread) owns a socket id.

use std::fmt;

/// A socket owned by the engine: stable and unique within one engine.
///
/// It packs a slot (the index of the socket's state) with a generation, so an
/// id that outlives its socket never names the socket that reuses the slot.
/// The value fits in 53 bits, so JavaScript can hold it as a plain number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockId(u64);

/// Bits of a [`SockId`] that hold the slot.
const SLOT_BITS: u32 = 32;
/// Generations wrap below this bound so ids stay under 2^53.
pub(crate) const GEN_LIMIT: u32 = 1 << 20;

impl SockId {
    pub(crate) fn new(slot: u32, gen: u32) -> SockId {
        SockId((u64::from(gen % GEN_LIMIT) << SLOT_BITS) | u64::from(slot))
    }

    /// The raw number, as exposed to applications.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds an id from [`SockId::as_u64`].
    pub const fn from_u64(raw: u64) -> SockId {
        SockId(raw)
    }

    pub(crate) fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    pub(crate) fn gen(self) -> u32 {
        (self.0 >> SLOT_BITS) as u32
    }
}

impl fmt::Display for SockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A map (SockMap or SockHash) created in an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapId(pub(crate) u32);

impl MapId {
    /// The raw number.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// Rebuilds an id from [`MapId::as_u32`]. An id no engine created is
    /// refused by every map operation with `EBADF`.
    pub const fn from_u32(raw: u32) -> MapId {
        MapId(raw)
    }
}

impl fmt::Display for MapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "map#{}", self.0)
    }
}

/// The I/O threads (shards): which one owns a socket.
#[derive(Clone, Copy, Debug)]
pub struct Shards {
    count: usize,
}

impl Shards {
    pub(crate) fn new(count: usize) -> Shards {
        Shards {
            count: count.max(1),
        }
    }

    /// How many shards run.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The shard that owns `id`.
    pub fn of(&self, id: SockId) -> usize {
        id.slot() % self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sock_id_packs_slot_and_generation() {
        let id = SockId::new(7, 3);
        assert_eq!(id.slot(), 7);
        assert_eq!(id.gen(), 3);
        assert_eq!(SockId::from_u64(id.as_u64()), id);
        assert!(SockId::new(u32::MAX, GEN_LIMIT - 1).as_u64() < 1 << 53);
        assert_eq!(SockId::new(1, GEN_LIMIT + 2).gen(), 2);
    }
}
