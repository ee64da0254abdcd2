//! SockMap and SockHash storage: the kernel's update flags and errors, and
//! the server each entry stands for on its map's consistent-hash ring.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::Errno;
use crate::id::SockId;
use crate::key::{decimal, fnv1a_64, hash_tagged, Key};

/// How a map entry takes part in its map's consistent-hash ring
/// (`map.set(key, sock, { server, weight })`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryOptions {
    /// The server the entry is a connection to: entries naming the same
    /// server share its points on the ring. `None`: the entry is a server
    /// named by its key (numbers in decimal).
    pub server: Option<Bytes>,
    /// The server's weight, at least 1 (its share of the ring). Default: 1.
    pub weight: u32,
}

impl Default for EntryOptions {
    fn default() -> Self {
        EntryOptions {
            server: None,
            weight: 1,
        }
    }
}

/// The server an entry stands for on the ring, its name resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Server {
    pub(crate) name: Bytes,
    pub(crate) weight: u32,
}

impl Server {
    /// The server of an entry stored under `key` at `slot` with `opts`.
    ///
    /// # Errors
    /// `EINVAL` for a weight of 0.
    pub(crate) fn of(key: &Key, slot: &Slot, opts: &EntryOptions) -> Result<Server, Errno> {
        if opts.weight == 0 {
            return Err(Errno::Inval);
        }
        let mut buf = [0u8; 20];
        let name = match (&opts.server, slot, key) {
            (Some(s), _, _) => s.clone(),
            (None, Slot::Index(i), _) => Bytes::copy_from_slice(decimal(u64::from(*i), &mut buf)),
            (None, Slot::Hash(_), Key::Num(n)) => Bytes::copy_from_slice(decimal(*n, &mut buf)),
            (None, Slot::Hash(_), Key::Bytes(b)) => b.clone(),
        };
        Ok(Server {
            name,
            weight: opts.weight,
        })
    }
}

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
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

/// A key borrowed from a message or a rule, for lookups that must not allocate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RawKey<'a> {
    Num(u64),
    Bytes(&'a [u8]),
}

impl RawKey<'_> {
    /// The key's hash on a ring (`key::fnv1a_64`; numbers in decimal), of
    /// the part `tag` selects ([`hash_tagged`]).
    pub(crate) fn ring_hash(self, tag: Option<[u8; 2]>) -> u32 {
        match self {
            RawKey::Num(n) => fnv1a_64(decimal(n, &mut [0u8; 20])),
            RawKey::Bytes(b) => fnv1a_64(hash_tagged(b, tag)),
        }
    }
}
