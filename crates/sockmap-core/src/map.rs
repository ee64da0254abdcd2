//! SockMap and SockHash storage: the kernel's update flags and errors.

use std::collections::HashMap;

use crate::error::Errno;
use crate::hash_ring::HashRing;
use crate::id::SockId;
use crate::key::{stable_hash, Key};

/// How a map update treats an existing entry (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateFlag {
    /// Create or replace.
    #[default]
    Any,
    /// Create only: `EEXIST` if the key is present.
    NoExist,
    /// Replace only: `ENOENT` if the key is absent.
    Exist,
}

/// The two kinds of socket map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// Integer keys `0..max_entries` (`BPF_MAP_TYPE_SOCKMAP`).
    SockMap,
    /// Byte-string keys, at most `max_entries` of them (`BPF_MAP_TYPE_SOCKHASH`).
    SockHash,
}

/// Where a socket sits in a map, as recorded on the socket for removal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    Index(u32),
    Hash(Box<[u8]>),
}

impl Slot {
    pub(crate) fn to_key(&self) -> Key {
        match self {
            Slot::Index(i) => Key::Num(u64::from(*i)),
            Slot::Hash(b) => Key::Bytes(bytes::Bytes::copy_from_slice(b)),
        }
    }
}

/// The entries of one map.
#[derive(Debug)]
pub(crate) enum Store {
    Array(Vec<Option<SockId>>),
    Hash {
        max: u32,
        entries: HashMap<Box<[u8]>, SockId>,
    },
}

impl Store {
    pub(crate) fn new(kind: MapKind, max_entries: u32) -> Store {
        match kind {
            MapKind::SockMap => Store::Array(vec![None; max_entries as usize]),
            MapKind::SockHash => Store::Hash {
                max: max_entries,
                entries: HashMap::new(),
            },
        }
    }

    pub(crate) fn kind(&self) -> MapKind {
        match self {
            Store::Array(_) => MapKind::SockMap,
            Store::Hash { .. } => MapKind::SockHash,
        }
    }

    /// Resolves `key` to where it lives, checking bounds as an update does.
    ///
    /// # Errors
    /// `E2BIG` for an index beyond the map, `EINVAL` for a key a SockMap cannot
    /// read as an index.
    pub(crate) fn slot_of(&self, key: &Key) -> Result<Slot, Errno> {
        match self {
            Store::Array(v) => {
                let i = key.as_index().ok_or(Errno::Inval)?;
                if i >= v.len() as u64 {
                    return Err(Errno::TooBig);
                }
                Ok(Slot::Index(i as u32))
            }
            Store::Hash { .. } => Ok(key.with_hash_bytes(|b| Slot::Hash(b.into()))),
        }
    }

    pub(crate) fn get(&self, slot: &Slot) -> Option<SockId> {
        match (self, slot) {
            (Store::Array(v), Slot::Index(i)) => v.get(*i as usize).copied().flatten(),
            (Store::Hash { entries, .. }, Slot::Hash(k)) => entries.get(k).copied(),
            _ => None,
        }
    }

    /// Looks a key up without allocating.
    pub(crate) fn lookup(&self, key: &Key) -> Option<SockId> {
        match self {
            Store::Array(v) => {
                let i = key.as_index()?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| v.get(i).copied().flatten())
            }
            Store::Hash { entries, .. } => key.with_hash_bytes(|b| entries.get(b).copied()),
        }
    }

    /// Looks up a hash key given as bytes, or an index.
    pub(crate) fn lookup_raw(&self, raw: RawKey<'_>) -> Option<SockId> {
        match (self, raw) {
            (Store::Array(v), RawKey::Num(i)) => usize::try_from(i)
                .ok()
                .and_then(|i| v.get(i).copied().flatten()),
            (Store::Array(_), RawKey::Bytes(b)) => self.lookup(&Key::from(b)),
            (Store::Hash { entries, .. }, RawKey::Num(n)) => {
                entries.get(&n.to_le_bytes()[..]).copied()
            }
            (Store::Hash { entries, .. }, RawKey::Bytes(b)) => entries.get(b).copied(),
        }
    }

    /// Checks an insertion of a new entry at `slot` against the capacity.
    pub(crate) fn check_room(&self, slot: &Slot) -> Result<(), Errno> {
        match self {
            Store::Hash { max, entries }
                if self.get(slot).is_none() && entries.len() as u64 >= u64::from(*max) =>
            {
                Err(Errno::TooBig)
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn set(&mut self, slot: Slot, sock: SockId) {
        match (self, slot) {
            (Store::Array(v), Slot::Index(i)) => v[i as usize] = Some(sock),
            (Store::Hash { entries, .. }, Slot::Hash(k)) => {
                entries.insert(k, sock);
            }
            _ => {}
        }
    }

    pub(crate) fn remove(&mut self, slot: &Slot) -> Option<SockId> {
        match (self, slot) {
            (Store::Array(v), Slot::Index(i)) => v.get_mut(*i as usize).and_then(Option::take),
            (Store::Hash { entries, .. }, Slot::Hash(k)) => entries.remove(k),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Store::Array(v) => v.iter().filter(|e| e.is_some()).count(),
            Store::Hash { entries, .. } => entries.len(),
        }
    }

    pub(crate) fn entries(&self) -> Vec<(Slot, SockId)> {
        match self {
            Store::Array(v) => v
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.map(|s| (Slot::Index(i as u32), s)))
                .collect(),
            Store::Hash { entries, .. } => entries
                .iter()
                .map(|(k, s)| (Slot::Hash(k.clone()), *s))
                .collect(),
        }
    }

    /// Builds the consistent-hash ring over the entries.
    pub(crate) fn build_ring(&self) -> HashRing {
        HashRing::build(self.entries().into_iter().map(|(slot, sock)| {
            let h = match &slot {
                Slot::Index(i) => stable_hash(&u64::from(*i).to_le_bytes()),
                Slot::Hash(k) => stable_hash(k),
            };
            (h, sock)
        }))
    }
}

/// A key borrowed from a message or a rule, for lookups that must not allocate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RawKey<'a> {
    Num(u64),
    Bytes(&'a [u8]),
}

impl RawKey<'_> {
    pub(crate) fn hash(self) -> u64 {
        match self {
            RawKey::Num(n) => stable_hash(&n.to_le_bytes()),
            RawKey::Bytes(b) => stable_hash(b),
        }
    }
}
