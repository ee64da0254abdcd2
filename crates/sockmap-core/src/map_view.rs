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
//! until the next change. The ring and the round-robin order of a map are
//! derived from its entries on first use after a change, never patched.

use std::collections::HashMap;

use crate::hash_ring::{HashRing, Member};
use crate::id::Shards;
use crate::id::{MapId, SockId};
use crate::map::{MapKind, RawKey, Server, Slot, Store};

/// One change the registry made to its maps.
#[derive(Clone, Debug)]
pub(crate) enum MapChange {
    /// A map was created.
    Create {
        map: MapId,
        kind: MapKind,
        max_entries: u32,
    },
    /// `slot` of `map` now holds `sock`, a connection to `server`.
    Set {
        map: MapId,
        slot: Slot,
        sock: SockId,
        server: Server,
    },
    /// `slot` of `map` is empty.
    Remove { map: MapId, slot: Slot },
    /// The map was destroyed.
    Destroy(MapId),
}

struct ViewMap {
    store: Store,
    /// The server of each entry.
    servers: HashMap<Slot, Server>,
    /// The consistent-hash ring, built on first use after a change.
    ring: Option<HashRing>,
    /// The entries in slot order, by shard, built on first use after a change.
    order: Option<Vec<Vec<SockId>>>,
    /// Messages `round_robin` has routed.
    turn: usize,
}

impl ViewMap {
    fn changed(&mut self) {
        self.ring = None;
        self.order = None;
    }
}

/// The maps as the I/O thread sees them.
pub(crate) struct MapView {
    maps: Vec<Option<ViewMap>>,
    epoch: u64,
    shards: Shards,
}

impl Default for MapView {
    fn default() -> MapView {
        MapView::new(Shards::new(1))
    }
}

impl MapView {
    /// An empty view for an engine with `shards`.
    pub(crate) fn new(shards: Shards) -> MapView {
        MapView {
            maps: Vec::new(),
            epoch: 0,
            shards,
        }
    }

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
                    servers: HashMap::new(),
                    ring: None,
                    order: None,
                    turn: 0,
                });
            }
            MapChange::Set {
                map,
                slot,
                sock,
                server,
            } => {
                if let Some(m) = self.map_mut(map) {
                    m.store.set(slot.clone(), sock);
                    m.servers.insert(slot, server);
                    m.changed();
                }
            }
            MapChange::Remove { map, slot } => {
                if let Some(m) = self.map_mut(map) {
                    m.store.remove(&slot);
                    m.servers.remove(&slot);
                    m.changed();
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

    /// The entry of `map` owning `hash` on its ketama ring, preferring a
    /// connection on `source`'s shard ([`HashRing::route`]).
    pub(crate) fn route(&mut self, map: MapId, hash: u32, source: SockId) -> Option<SockId> {
        let shards = self.shards;
        let m = self.map_mut(map)?;
        let (store, servers) = (&m.store, &m.servers);
        m.ring
            .get_or_insert_with(|| {
                let entries = store.entries();
                HashRing::build(entries.iter().filter_map(|(slot, sock)| {
                    let s = servers.get(slot)?;
                    Some(Member {
                        server: &s.name,
                        weight: s.weight,
                        sock: *sock,
                    })
                }))
            })
            .route(hash, source, shards)
    }

    /// The next entry of `map` in slot order, among those on `source`'s
    /// shard when it has any there, else among all; one turn per call.
    pub(crate) fn round_robin(&mut self, map: MapId, source: SockId) -> Option<SockId> {
        let shards = self.shards;
        let m = self.map_mut(map)?;
        let store = &m.store;
        let order = m.order.get_or_insert_with(|| {
            let mut entries = store.entries();
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut by_shard = vec![Vec::new(); shards.count() + 1];
            for (_, sock) in entries {
                by_shard[shards.of(sock)].push(sock);
                by_shard[shards.count()].push(sock);
            }
            by_shard
        });
        let local = &order[shards.of(source)];
        let list = if local.is_empty() {
            &order[shards.count()]
        } else {
            local
        };
        if list.is_empty() {
            return None;
        }
        let pick = list[m.turn % list.len()];
        m.turn = m.turn.wrapping_add(1);
        Some(pick)
    }
}
