//! The registry: sockets' identities and states, and the maps they sit in.
//!
//! It is shared by the application's threads and the I/O thread behind one
//! short-held mutex, so map operations return their result at once without
//! waiting for the I/O loop. Every change to a map's entries is also
//! recorded as a [`MapChange`], which the caller sends to each I/O thread's
//! [`MapView`](crate::map_view::MapView) with [`Shared::fan_out`] before
//! releasing the lock: the per-message path reads that view and never this
//! lock.
//!
//! While the application holds the changes ([`Registry::hold`] above 0),
//! its changes and relinks stay here and reach the I/O threads together when
//! the last hold ends, so that an I/O thread never judges a message between
//! two changes the application made as one (a pair of partners stored under
//! each other's ids). The registry itself changes at once: lookups, sizes and
//! errors never wait for a hold, and a command to an I/O thread sends what
//! is held before it. An I/O thread that changes the maps itself (a socket
//! it closes leaves them) sends only its own changes: the held ones wait for
//! the hold to end, behind the commands queued before them.

#[cfg(test)]
use std::sync::atomic::AtomicU64;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use smallvec::SmallVec;

use crate::error::Errno;
pub use crate::id::Shards;
use crate::id::{MapId, SockId};
use crate::key::Key;
use crate::map::{EntryOptions, MapKind, Server, Slot, Store, UpdateFlag};
use crate::map_view::MapChange;
use crate::partner::{PairOptions, Partner};
use crate::program::Programs;
use crate::stats::{ShardedStats, Stats};

/// Where a socket is in its life, as map operations see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockState {
    /// The slot is unused.
    Free,
    /// A connect is in progress.
    Connecting,
    /// Connected: it can join maps and carry data.
    Established,
    /// Listening for connections.
    Listening,
    /// Closed (or half-closed before joining a map): it can no longer join maps.
    Closed,
}

#[derive(Debug)]
pub(crate) struct SockEntry {
    pub(crate) gen: u32,
    pub(crate) state: SockState,
    pub(crate) links: SmallVec<[(MapId, Slot); 2]>,
    pub(crate) programs: Programs,
    /// The map whose stream verdict the socket took, for per-map counters.
    pub(crate) verdict_map: Option<MapId>,
    pub(crate) stats: Arc<Stats>,
    /// The socket's partner ([`crate::partner`]); each side names the other.
    pub(crate) partner: Option<Partner>,
    /// TLS: a listener's current configuration (replaced on reload), or a socket's own.
    pub(crate) tls: Option<crate::tls::SockTls>,
}

#[derive(Debug)]
pub(crate) struct MapState {
    pub(crate) store: Store,
    pub(crate) programs: Programs,
    pub(crate) stats: ShardedStats,
}

/// Socket slots and maps.
///
/// With several shards (I/O threads), a socket's slot names its shard:
/// shard `slot % shards` owns it ([`Shards::of`]), so a command for a socket
/// finds its thread without a lookup; each shard reuses its own freed slots.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) socks: Vec<SockEntry>,
    /// Freed slots, by shard.
    free: Vec<Vec<u32>>,
    pub(crate) maps: Vec<Option<MapState>>,
    /// Changes to the maps' entries not yet taken by the caller.
    changes: Vec<MapChange>,
    /// The number of shards (at least 1 once built by [`Shared::new`]).
    shards: usize,
    /// Live sockets per shard.
    load: Vec<usize>,
    /// Holds on the application's changes: while above 0, they wait here.
    pub(crate) hold: u32,
    /// Sockets whose relink waits for the holds to end, in order.
    pub(crate) held_relinks: Vec<SockId>,
}

/// Where each change to the maps goes: one sink per shard, which queues it
/// for that shard's I/O thread (called with the registry locked, so every
/// shard sees the changes in the registry's order).
pub(crate) type MapSink = Box<dyn Fn(MapChange) + Send + Sync>;

/// The registry, shared between threads.
pub(crate) struct Shared {
    registry: Mutex<Registry>,
    pub(crate) shards: Shards,
    sinks: OnceLock<Vec<MapSink>>,
    /// Whether the application holds its changes (`Registry::hold` above 0),
    /// read without the lock by every command.
    pub(crate) held: AtomicBool,
    /// TLS counters of every shard.
    pub(crate) tls: crate::tls::TlsStats,
    /// Times the registry was locked (unit tests count them).
    #[cfg(test)]
    pub(crate) locks: AtomicU64,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared::new(1)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A registry for `shards` I/O threads.
    pub(crate) fn new(shards: usize) -> Shared {
        let shards = Shards::new(shards);
        let registry = Registry {
            free: vec![Vec::new(); shards.count()],
            load: vec![0; shards.count()],
            shards: shards.count(),
            ..Registry::default()
        };
        Shared {
            registry: Mutex::new(registry),
            shards,
            sinks: OnceLock::new(),
            held: AtomicBool::new(false),
            tls: crate::tls::TlsStats::default(),
            #[cfg(test)]
            locks: AtomicU64::new(0),
        }
    }

    /// Sets the shards' change sinks (once, before any map exists).
    pub(crate) fn set_sinks(&self, sinks: Vec<MapSink>) {
        let _ = self.sinks.set(sinks);
    }

    /// Sends the registry's pending map changes from the `from`th on to every
    /// shard but `except` (whose caller applies them itself), with the
    /// registry still locked. Those before `from` stay pending: an I/O thread
    /// passes the count of pending changes it found ([`Registry::pending_changes`])
    /// so that it sends only its own, never the application's held ones, which
    /// it would apply ahead of the commands queued before them.
    pub(crate) fn fan_out(
        &self,
        reg: &mut Registry,
        from: usize,
        except: Option<usize>,
    ) -> Vec<MapChange> {
        let changes: Vec<MapChange> = reg.changes.drain(from..).collect();
        if let Some(sinks) = self.sinks.get() {
            for (shard, sink) in sinks.iter().enumerate() {
                if Some(shard) != except {
                    for c in &changes {
                        sink(c.clone());
                    }
                }
            }
        }
        changes
    }

    /// Locks the registry. A panic elsewhere never makes it unusable: the
    /// registry is left consistent by every operation before it can panic.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry> {
        #[cfg(test)]
        self.locks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a registry change asks the I/O thread to refresh.
pub(crate) type Relink = SmallVec<[SockId; 2]>;

impl Registry {
    /// Takes the changes made to the maps' entries since the last call, in order.
    #[cfg(test)]
    pub(crate) fn take_changes(&mut self) -> std::vec::Drain<'_, MapChange> {
        self.changes.drain(..)
    }

    /// How many changes wait to be sent (those the application holds).
    pub(crate) fn pending_changes(&self) -> usize {
        self.changes.len()
    }

    /// `sock` closed while the first `held` pending changes were held: those
    /// that set it become removals, so that no shard's view takes a socket
    /// that is gone when the hold ends.
    pub(crate) fn unset_held(&mut self, sock: SockId, held: usize) {
        for c in &mut self.changes[..held] {
            if let MapChange::Set {
                map, slot, sock: s, ..
            } = c
            {
                if *s == sock {
                    *c = MapChange::Remove {
                        map: *map,
                        slot: slot.clone(),
                    };
                }
            }
        }
    }

    /// Live sockets of `shard`.
    pub(crate) fn load(&self, shard: usize) -> usize {
        self.load.get(shard).copied().unwrap_or(0)
    }

    /// The shard with the fewest live sockets (the lowest index on a tie).
    pub(crate) fn least_loaded(&self) -> usize {
        (0..self.load.len())
            .min_by_key(|&s| self.load[s])
            .unwrap_or(0)
    }

    /// Allocates a socket id in `state`, owned by `shard`.
    pub(crate) fn alloc(&mut self, state: SockState, shard: usize) -> SockId {
        let shards = self.shards.max(1);
        if self.free.len() < shards {
            self.free.resize_with(shards, Vec::new);
            self.load.resize(shards, 0);
        }
        self.load[shard] += 1;
        let slot = match self.free[shard].pop() {
            Some(s) => s,
            None => {
                // The next slot of this shard past every slot in use; the ones skipped belong to other shards.
                let mut slot = self.socks.len();
                slot += (shard + shards - slot % shards) % shards;
                while self.socks.len() <= slot {
                    let skipped = self.socks.len();
                    self.socks.push(SockEntry {
                        gen: 0,
                        state: SockState::Free,
                        links: SmallVec::new(),
                        programs: Programs::default(),
                        verdict_map: None,
                        stats: Arc::default(),
                        partner: None,
                        tls: None,
                    });
                    if skipped != slot {
                        self.free[skipped % shards].push(skipped as u32);
                    }
                }
                slot as u32
            }
        };
        let e = &mut self.socks[slot as usize];
        e.state = state;
        e.stats = Arc::default();
        e.partner = None;
        e.tls = None;
        SockId::new(slot, e.gen)
    }

    /// Sets a live socket's TLS role (a listener's: what its next accepted connections take).
    pub(crate) fn set_tls(&mut self, id: SockId, tls: Option<crate::tls::SockTls>) -> bool {
        match self.sock_mut(id) {
            Some(e) => {
                e.tls = tls;
                true
            }
            None => false,
        }
    }

    /// An accepted connection takes its listener's TLS configuration as it is now.
    pub(crate) fn inherit_tls(&mut self, id: SockId, listener: SockId) {
        let tls = self.sock(listener).and_then(|l| l.tls.clone());
        if tls.is_some() {
            self.set_tls(id, tls);
        }
    }

    pub(crate) fn sock(&self, id: SockId) -> Option<&SockEntry> {
        self.socks
            .get(id.slot())
            .filter(|e| e.gen == id.gen() && e.state != SockState::Free)
    }

    fn sock_mut(&mut self, id: SockId) -> Option<&mut SockEntry> {
        self.socks
            .get_mut(id.slot())
            .filter(|e| e.gen == id.gen() && e.state != SockState::Free)
    }

    /// Sets a live socket's state.
    pub(crate) fn set_state(&mut self, id: SockId, state: SockState) {
        if let Some(e) = self.sock_mut(id) {
            e.state = state;
        }
    }

    /// Returns a closed socket's slot for reuse.
    pub(crate) fn release(&mut self, id: SockId) {
        if let Some(e) = self.sock_mut(id) {
            e.state = SockState::Free;
            e.gen = (e.gen + 1) % crate::id::GEN_LIMIT;
            e.links.clear();
            e.programs = Programs::default();
            e.verdict_map = None;
            e.tls = None;
            e.partner = None;
            let shards = self.shards.max(1);
            if self.free.len() < shards {
                self.free.resize_with(shards, Vec::new);
                self.load.resize(shards, 0);
            }
            let shard = id.slot() % shards;
            self.free[shard].push(id.slot() as u32);
            self.load[shard] = self.load[shard].saturating_sub(1);
        }
    }

    /// Pairs `a` and `b` ([`crate::partner`]); both shards must relink them.
    ///
    /// # Errors
    /// `EINVAL` when `a` is `b` or either is a listener, `ENOTCONN` when
    /// either is closed or unknown, `EBUSY` when either already has a partner.
    pub(crate) fn pair(
        &mut self,
        a: SockId,
        b: SockId,
        opts: PairOptions,
    ) -> Result<Relink, Errno> {
        if a == b {
            return Err(Errno::Inval);
        }
        for s in [a, b] {
            let e = self.sock(s).ok_or(Errno::NotConn)?;
            match e.state {
                SockState::Connecting | SockState::Established => {}
                SockState::Listening => return Err(Errno::Inval),
                SockState::Closed | SockState::Free => return Err(Errno::NotConn),
            }
        }
        for s in [a, b] {
            if self.sock(s).is_some_and(|e| e.partner.is_some()) {
                return Err(Errno::Busy);
            }
        }
        for (s, peer) in [(a, b), (b, a)] {
            if let Some(e) = self.sock_mut(s) {
                e.partner = Some(Partner {
                    peer,
                    on_close: opts.on_close,
                });
            }
        }
        Ok(SmallVec::from_slice(&[a, b]))
    }

    /// Dissolves `sock`'s pair, if it has one: the two sockets to relink.
    pub(crate) fn unpair(&mut self, sock: SockId) -> Relink {
        match self.take_partner(sock) {
            Some(p) => SmallVec::from_slice(&[sock, p.peer]),
            None => Relink::new(),
        }
    }

    /// Dissolves `sock`'s pair on both sides: its partner, if it had one.
    pub(crate) fn take_partner(&mut self, sock: SockId) -> Option<Partner> {
        let p = self.sock_mut(sock)?.partner.take()?;
        if let Some(e) = self.sock_mut(p.peer) {
            if e.partner.is_some_and(|q| q.peer == sock) {
                e.partner = None;
            }
        }
        Some(p)
    }

    /// The socket's partner.
    pub(crate) fn partner(&self, sock: SockId) -> Option<SockId> {
        self.sock(sock)?.partner.map(|p| p.peer)
    }

    pub(crate) fn create_map(&mut self, kind: MapKind, max_entries: u32) -> Result<MapId, Errno> {
        if max_entries == 0 {
            return Err(Errno::Inval);
        }
        let state = MapState {
            store: Store::new(kind, max_entries),
            programs: Programs::default(),
            stats: ShardedStats::new(self.shards),
        };
        let id = MapId(self.maps.len() as u32);
        self.maps.push(Some(state));
        self.changes.push(MapChange::Create {
            map: id,
            kind,
            max_entries,
        });
        Ok(id)
    }

    pub(crate) fn map(&self, id: MapId) -> Result<&MapState, Errno> {
        self.maps
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno::BadF)
    }

    fn map_mut(&mut self, id: MapId) -> Result<&mut MapState, Errno> {
        self.maps
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Errno::BadF)
    }

    /// Attaches programs to a map; sockets inserted afterwards take them.
    pub(crate) fn attach(&mut self, map: MapId, programs: Programs) -> Result<(), Errno> {
        let m = self.map_mut(map)?;
        if let Some(p) = &programs.parser {
            p.framer()?;
        }
        if programs.parser.is_some() {
            m.programs.parser = programs.parser;
        }
        if programs.verdict.is_some() {
            m.programs.verdict = programs.verdict;
        }
        if programs.msg_verdict.is_some() {
            m.programs.msg_verdict = programs.msg_verdict;
        }
        if programs.requests.is_some() {
            m.programs.requests = programs.requests;
        }
        Ok(())
    }

    /// `bpf_map_update_elem` from user space; `opts` name the entry's
    /// server on the map's ring (setting the same socket again with other
    /// options changes only its server).
    pub(crate) fn update(
        &mut self,
        map: MapId,
        key: &Key,
        sock: SockId,
        flag: UpdateFlag,
        opts: &EntryOptions,
    ) -> Result<Relink, Errno> {
        let m = self.map(map)?;
        let slot = m.store.slot_of(key)?;
        let server = Server::of(key, &slot, opts)?;
        let entry = self.sock(sock).ok_or(Errno::OpNotSupp)?;
        if !matches!(entry.state, SockState::Established | SockState::Listening) {
            return Err(Errno::OpNotSupp);
        }
        let old = m.store.get(&slot);
        match (flag, old) {
            (UpdateFlag::NoExist, Some(_)) => return Err(Errno::Exist),
            (UpdateFlag::Exist, None) => return Err(Errno::NoEnt),
            _ => {}
        }
        if old == Some(sock) {
            self.changes.push(MapChange::Set {
                map,
                slot,
                sock,
                server,
            });
            return Ok(Relink::new());
        }
        m.store.check_room(&slot)?;
        entry.programs.check_link(&m.programs)?;
        let progs = m.programs.clone();
        let map_has_verdict = progs.verdict.is_some();
        let mut relink = Relink::new();
        if let Some(old) = old {
            self.unlink(old, map, &slot);
            relink.push(old);
        }
        let e = self.sock_mut(sock).ok_or(Errno::OpNotSupp)?;
        e.programs.link(&progs);
        if map_has_verdict && e.verdict_map.is_none() {
            e.verdict_map = Some(map);
        }
        e.links.push((map, slot.clone()));
        self.changes.push(MapChange::Set {
            map,
            slot: slot.clone(),
            sock,
            server,
        });
        let m = self.map_mut(map)?;
        m.store.set(slot, sock);
        relink.push(sock);
        Ok(relink)
    }

    /// Removes one link from a socket's records; drops its programs with the last link.
    fn unlink(&mut self, sock: SockId, map: MapId, slot: &Slot) {
        if let Some(e) = self.sock_mut(sock) {
            if let Some(i) = e.links.iter().position(|(m, s)| *m == map && s == slot) {
                e.links.swap_remove(i);
            }
            if e.links.is_empty() {
                e.programs = Programs::default();
                e.verdict_map = None;
            }
        }
    }

    /// `bpf_map_delete_elem`: absent keys give `EINVAL` in a SockMap and
    /// `ENOENT` in a SockHash, as in the kernel.
    pub(crate) fn delete(&mut self, map: MapId, key: &Key) -> Result<Relink, Errno> {
        let m = self.map_mut(map)?;
        let kind = m.store.kind();
        let absent = match kind {
            MapKind::SockMap => Errno::Inval,
            MapKind::SockHash => Errno::NoEnt,
        };
        let slot = m.store.slot_of(key).map_err(|_| absent)?;
        let sock = m.store.remove(&slot).ok_or(absent)?;
        self.unlink(sock, map, &slot);
        self.changes.push(MapChange::Remove { map, slot });
        Ok(SmallVec::from_elem(sock, 1))
    }

    /// Removes a socket from every map (on close).
    pub(crate) fn remove_links(&mut self, sock: SockId) -> bool {
        let links = match self.sock_mut(sock) {
            Some(e) => std::mem::take(&mut e.links),
            None => return false,
        };
        let any = !links.is_empty();
        for (map, slot) in links {
            if let Ok(m) = self.map_mut(map) {
                if m.store.get(&slot) == Some(sock) {
                    m.store.remove(&slot);
                    self.changes.push(MapChange::Remove { map, slot });
                }
            }
        }
        if let Some(e) = self.sock_mut(sock) {
            e.programs = Programs::default();
            e.verdict_map = None;
        }
        any
    }

    /// Destroys a map, unlinking its sockets.
    pub(crate) fn destroy_map(&mut self, map: MapId) -> Result<Relink, Errno> {
        let m = self.map(map)?;
        let entries = m.store.entries();
        let mut relink = Relink::new();
        for (slot, sock) in entries {
            self.unlink(sock, map, &slot);
            relink.push(sock);
        }
        self.maps[map.0 as usize] = None;
        self.changes.push(MapChange::Destroy(map));
        Ok(relink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{StreamVerdictProg, VerdictKind};
    use crate::rules::Rule;

    fn verdict(rule: Rule) -> Programs {
        Programs {
            verdict: Some(Arc::new(StreamVerdictProg {
                on_error: Default::default(),
                kind: VerdictKind::Rule(rule),
                propagate_fin: false,
            })),
            ..Programs::default()
        }
    }

    #[test]
    fn update_flags_and_errors_match_the_kernel() {
        let mut r = Registry::default();
        let a = r.alloc(SockState::Established, 0);
        let b = r.alloc(SockState::Established, 0);
        let c = r.alloc(SockState::Connecting, 0);
        let m = r.create_map(MapKind::SockMap, 2).unwrap();
        let h = r.create_map(MapKind::SockHash, 1).unwrap();
        assert_eq!(
            r.update(
                m,
                &Key::Num(2),
                a,
                UpdateFlag::Any,
                &EntryOptions::default()
            ),
            Err(Errno::TooBig)
        );
        assert_eq!(
            r.update(
                m,
                &Key::Num(0),
                c,
                UpdateFlag::Any,
                &EntryOptions::default()
            ),
            Err(Errno::OpNotSupp)
        );
        assert_eq!(
            r.update(
                m,
                &Key::Num(0),
                a,
                UpdateFlag::Exist,
                &EntryOptions::default()
            ),
            Err(Errno::NoEnt)
        );
        r.update(
            m,
            &Key::Num(0),
            a,
            UpdateFlag::NoExist,
            &EntryOptions::default(),
        )
        .unwrap();
        assert_eq!(
            r.update(
                m,
                &Key::Num(0),
                b,
                UpdateFlag::NoExist,
                &EntryOptions::default()
            ),
            Err(Errno::Exist)
        );
        r.update(
            m,
            &Key::Num(0),
            b,
            UpdateFlag::Exist,
            &EntryOptions::default(),
        )
        .unwrap();
        assert!(r.sock(a).unwrap().links.is_empty());
        r.update(
            h,
            &Key::from("x"),
            a,
            UpdateFlag::Any,
            &EntryOptions::default(),
        )
        .unwrap();
        assert_eq!(
            r.update(
                h,
                &Key::from("y"),
                b,
                UpdateFlag::Any,
                &EntryOptions::default()
            ),
            Err(Errno::TooBig)
        );
        r.update(
            h,
            &Key::from("x"),
            b,
            UpdateFlag::Any,
            &EntryOptions::default(),
        )
        .unwrap();
        assert_eq!(r.delete(h, &Key::from("nope")), Err(Errno::NoEnt));
        assert_eq!(r.delete(m, &Key::Num(1)), Err(Errno::Inval));
        assert_eq!(r.sock(b).unwrap().links.len(), 2);
        assert!(r.remove_links(b));
        assert_eq!(r.map(m).unwrap().store.len(), 0);
        assert_eq!(r.map(h).unwrap().store.len(), 0);
        r.set_state(a, SockState::Closed);
        assert_eq!(
            r.update(
                m,
                &Key::Num(1),
                a,
                UpdateFlag::Any,
                &EntryOptions::default()
            ),
            Err(Errno::OpNotSupp)
        );
        r.release(a);
        assert!(r.sock(a).is_none());
        let again = r.alloc(SockState::Established, 0);
        assert_eq!(again.slot(), a.slot());
        assert_ne!(again, a);
    }

    #[test]
    fn a_second_verdict_from_another_map_is_busy() {
        let mut r = Registry::default();
        let s = r.alloc(SockState::Established, 0);
        let m1 = r.create_map(MapKind::SockHash, 8).unwrap();
        let m2 = r.create_map(MapKind::SockHash, 8).unwrap();
        let m3 = r.create_map(MapKind::SockHash, 8).unwrap();
        let shared = verdict(Rule::Pass);
        r.attach(m1, shared.clone()).unwrap();
        r.attach(m2, verdict(Rule::Drop)).unwrap();
        r.attach(m3, shared).unwrap();
        r.update(
            m1,
            &Key::Num(1),
            s,
            UpdateFlag::Any,
            &EntryOptions::default(),
        )
        .unwrap();
        assert_eq!(
            r.update(
                m2,
                &Key::Num(1),
                s,
                UpdateFlag::Any,
                &EntryOptions::default()
            ),
            Err(Errno::Busy)
        );
        r.update(
            m3,
            &Key::Num(1),
            s,
            UpdateFlag::Any,
            &EntryOptions::default(),
        )
        .unwrap();
        assert_eq!(r.sock(s).unwrap().verdict_map, Some(m1));
        r.delete(m1, &Key::Num(1)).unwrap();
        assert!(r.sock(s).unwrap().programs.verdict.is_some());
        r.delete(m3, &Key::Num(1)).unwrap();
        assert!(r.sock(s).unwrap().programs.is_empty());
    }
}
