//! The I/O thread's view of the maps: redirect lookups without a lock.
//!
//! The registry (shared with the application's threads under a mutex) is the
//! truth that map operations check and answer from. Every change it makes is
//! also described as a [`MapChange`] and sent to the I/O thread, in the order
//! the registry made them (they are queued while its lock is held), through
//! the same command queue as everything else; the core applies each to its
//! [`MapView`] before the commands queued after it. The per-message path
//! reads only the view, so it takes no lock, and a change costs O(1) on
//! both sides (no snapshot is copied).
//!
//! Invariants: the view holds the registry's entries except for sockets the
//! I/O thread already closed (their entries are gone from both, and a change
//! naming a socket that is no longer open empties the entry instead); `epoch`
//! grows with every applied change, so a verdict cached at an epoch holds
//! until the next change.

use crate::hash_ring::HashRing;
use crate::id::{MapId, SockId};
use crate::map::{MapKind, RawKey, Slot, Store};

/// One change the registry made to its maps.
#[derive(Clone, Debug)]
pub(crate) enum MapChange {
    /// A map was created.
    Create {
        map: MapId,
        kind: MapKind,
        max_entries: u32,
    },
    /// `slot` of `map` now holds `sock`.
    Set {
        map: MapId,
        slot: Slot,
        sock: SockId,
    },
    /// `slot` of `map` is empty.
    Remove { map: MapId, slot: Slot },
    /// The map was destroyed.
    Destroy(MapId),
}

struct ViewMap {
    store: Store,
    /// The consistent-hash ring, built on first use after a change.
    ring: Option<HashRing>,
}

/// The maps as the I/O thread sees them.
#[derive(Default)]
pub(crate) struct MapView {
    maps: Vec<Option<ViewMap>>,
    epoch: u64,
}

impl MapView {
    /// Grows with every change.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Applies one change.
    pub(crate) fn apply(&mut self, change: MapChange) {
        self.epoch += 1;
        match change {
            MapChange::Create {
                map,
                kind,
                max_entries,
            } => {
                let i = map.as_u32() as usize;
                if self.maps.len() <= i {
                    self.maps.resize_with(i + 1, || None);
                }
                self.maps[i] = Some(ViewMap {
                    store: Store::new(kind, max_entries),
                    ring: None,
                });
            }
            MapChange::Set { map, slot, sock } => {
                if let Some(m) = self.map_mut(map) {
                    m.store.set(slot, sock);
                    m.ring = None;
                }
            }
            MapChange::Remove { map, slot } => {
                if let Some(m) = self.map_mut(map) {
                    m.store.remove(&slot);
                    m.ring = None;
                }
            }
            MapChange::Destroy(map) => {
                if let Some(m) = self.maps.get_mut(map.as_u32() as usize) {
                    *m = None;
                }
            }
        }
    }

    fn map_mut(&mut self, map: MapId) -> Option<&mut ViewMap> {
        self.maps.get_mut(map.as_u32() as usize)?.as_mut()
    }

    /// The socket under `key` in `map`.
    #[inline]
    pub(crate) fn lookup(&self, map: MapId, key: RawKey<'_>) -> Option<SockId> {
        self.maps
            .get(map.as_u32() as usize)?
            .as_ref()?
            .store
            .lookup_raw(key)
    }

    /// The entry of `map` owning `hash` on its consistent-hash ring.
    pub(crate) fn route(&mut self, map: MapId, hash: u64) -> Option<SockId> {
        let m = self.map_mut(map)?;
        let store = &m.store;
        m.ring.get_or_insert_with(|| store.build_ring()).route(hash)
    }
}
