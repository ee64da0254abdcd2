//! The consistent-hash ring a `hashRoute` rule routes by: twemproxy's ketama.
//!
//! The ring has points per *server*, not per entry: entries naming the same
//! server are connections to it. Each server gets `160 * weight / total *
//! servers` points, rounded down to a multiple of 4 (as twemproxy computes it,
//! in `f32`); point group `i` is the md5 digest of `"<name>-<i>"` (truncated
//! to 85 bytes, as twemproxy's buffer does), read as four little-endian
//! `u32`s. A key hash goes to the first point at or after it, wrapping to the
//! first point. With the same server names, weights and key hash
//! (`key::fnv1a_64`), keys land where twemproxy's `distribution: ketama` puts
//! them.
//!
//! Invariants: the ring is rebuilt from a map's entries when the map changes,
//! never patched; removing a server moves only the keys its points owned;
//! within a server, the connection is chosen on the source socket's shard
//! when it has one there, else among all of them, by the key hash (so one key
//! always takes one connection while the entries stay the same).

use md5::{Digest, Md5};

use crate::id::Shards;
use crate::id::SockId;

/// Points per server of weight equal to the average (twemproxy's
/// `KETAMA_POINTS_PER_SERVER`).
const POINTS_PER_SERVER: f32 = 160.0;

/// twemproxy's `KETAMA_MAX_HOSTLEN` less its NUL: longer `name-i` strings are cut.
const MAX_HOSTLEN: usize = 85;

/// One map entry as the ring sees it.
#[derive(Clone, Debug)]
pub(crate) struct Member<'a> {
    /// The server it is a connection to.
    pub(crate) server: &'a [u8],
    /// The server's weight (at least 1).
    pub(crate) weight: u32,
    /// The connection.
    pub(crate) sock: SockId,
}

/// One server on the ring.
#[derive(Debug)]
struct Server {
    /// Its connections, by socket id.
    socks: Vec<SockId>,
}

/// A ketama ring over a map's entries. See the [module documentation](self).
#[derive(Debug, Default)]
pub(crate) struct HashRing {
    /// (point, index into `servers`), sorted by point.
    points: Vec<(u32, u32)>,
    servers: Vec<Server>,
}

/// The ketama points of a server `name` (unsorted): `count` of them.
fn server_points(name: &[u8], count: u32, mut push: impl FnMut(u32)) {
    let mut host = Vec::with_capacity(name.len() + 12);
    for i in 0..count / 4 {
        host.clear();
        host.extend_from_slice(name);
        host.push(b'-');
        host.extend_from_slice(i.to_string().as_bytes());
        host.truncate(MAX_HOSTLEN);
        let d = Md5::digest(&host);
        for x in 0..4 {
            push(u32::from_le_bytes([
                d[x * 4],
                d[x * 4 + 1],
                d[x * 4 + 2],
                d[x * 4 + 3],
            ]));
        }
    }
}

/// Points of a server of `weight` among `servers` servers weighing `total`:
/// twemproxy's `floorf(pct * 160 / 4 * n + 1e-10) * 4`, in `f32`.
fn point_count(weight: u32, total: u64, servers: usize) -> u32 {
    let pct = weight as f32 / total as f32;
    let n = (pct * POINTS_PER_SERVER / 4.0 * servers as f32 + 0.000_000_000_1).floor();
    (n as u32).saturating_mul(4)
}

impl HashRing {
    /// Builds the ring from a map's entries. Entries of one server share its
    /// points; the server's weight is the largest its entries give.
    pub(crate) fn build<'a>(members: impl Iterator<Item = Member<'a>>) -> HashRing {
        let mut by_name: Vec<(&[u8], u32, SockId)> = members
            .map(|m| (m.server, m.weight.max(1), m.sock))
            .collect();
        by_name.sort_unstable();
        let mut names: Vec<(&[u8], u32)> = Vec::new();
        let mut servers: Vec<Server> = Vec::new();
        for (name, weight, sock) in by_name {
            match names.last_mut() {
                Some((n, w)) if *n == name => {
                    *w = (*w).max(weight);
                    if let Some(s) = servers.last_mut() {
                        s.socks.push(sock);
                    }
                }
                _ => {
                    names.push((name, weight));
                    servers.push(Server { socks: vec![sock] });
                }
            }
        }
        let total: u64 = names.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut points = Vec::new();
        for (i, &(name, weight)) in names.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            server_points(name, point_count(weight, total, names.len()), |p| {
                points.push((p, index));
            });
        }
        points.sort_unstable();
        HashRing { points, servers }
    }

    /// The connection owning `hash`: of the server whose point is the first
    /// at or after `hash`, one on `source`'s shard if it has one, else any.
    pub(crate) fn route(&self, hash: u32, source: SockId, shards: Shards) -> Option<SockId> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|p| p.0 < hash);
        let (_, server) = self.points[i % self.points.len()];
        let socks = &self.servers.get(server as usize)?.socks;
        pick(socks, hash, source, shards)
    }

    /// Points on the ring (tests).
    #[cfg(test)]
    fn points(&self) -> &[(u32, u32)] {
        &self.points
    }
}

/// One of `socks` (non-empty): chosen by `hash` among those on `source`'s
/// shard, or among all when none is there.
fn pick(socks: &[SockId], hash: u32, source: SockId, shards: Shards) -> Option<SockId> {
    let shard = shards.of(source);
    let local = socks.iter().filter(|&&s| shards.of(s) == shard).count();
    let h = hash as usize;
    if local > 0 {
        socks
            .iter()
            .filter(|&&s| shards.of(s) == shard)
            .nth(h % local)
            .copied()
    } else if socks.is_empty() {
        None
    } else {
        socks.get(h % socks.len()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::fnv1a_64;

    fn member(server: &[u8], weight: u32, slot: u32) -> Member<'_> {
        Member {
            server,
            weight,
            sock: SockId::new(slot, 0),
        }
    }

    fn one_shard() -> Shards {
        Shards::new(1)
    }

    #[test]
    fn points_are_twemproxys_ketama() {
        // Three servers of weight 1: 160 points each. The expected values are
        // md5("127.0.0.1:6379-0") read as four little-endian u32s, computed
        // apart from this code.
        let ring = HashRing::build(
            [b"127.0.0.1:6379", b"127.0.0.1:6380", b"127.0.0.1:6381"]
                .iter()
                .enumerate()
                .map(|(i, n)| member(&n[..], 1, i as u32)),
        );
        assert_eq!(ring.points().len(), 480);
        let mut first = Vec::new();
        server_points(b"127.0.0.1:6379", 4, |p| first.push(p));
        assert_eq!(first, KETAMA_6379_0);
        for p in KETAMA_6379_0 {
            assert!(ring.points().contains(&(p, 0)), "{p:#x}");
        }
        assert!(ring.points().windows(2).all(|w| w[0].0 <= w[1].0));
    }

    /// md5("127.0.0.1:6379-0") as four little-endian u32s (Python:
    /// `struct.unpack('<4I', hashlib.md5(b'127.0.0.1:6379-0').digest())`).
    const KETAMA_6379_0: [u32; 4] = [0x8bb7_5706, 0x0810_66aa, 0x6c98_c6fe, 0x28ff_9e77];

    #[test]
    fn weights_scale_points_as_twemproxy() {
        assert_eq!(point_count(1, 3, 3), 160);
        assert_eq!(point_count(2, 4, 3), 240);
        assert_eq!(point_count(1, 4, 3), 120);
        // 1/3 * 40 * 2 = 26.67 -> 26 groups of 4.
        assert_eq!(point_count(1, 3, 2), 104);
        let ring = HashRing::build([member(b"a", 3, 0), member(b"b", 1, 1)].into_iter());
        let of = |s| ring.points().iter().filter(|p| p.1 == s).count();
        assert_eq!((of(0), of(1)), (240, 80));
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let names: Vec<String> = (0..8).map(|i| format!("10.0.0.{i}:6379")).collect();
        let members = |n: usize| {
            names[..n]
                .iter()
                .enumerate()
                .map(|(i, s)| member(s.as_bytes(), 1, i as u32))
                .collect::<Vec<_>>()
        };
        let full = HashRing::build(members(8).into_iter());
        let less = HashRing::build(members(7).into_iter());
        let gone = SockId::new(7, 0);
        let mut moved = 0;
        for k in 0..4000u32 {
            let h = fnv1a_64(format!("key:{k}").as_bytes());
            let a = full.route(h, gone, one_shard()).unwrap();
            let b = less.route(h, gone, one_shard()).unwrap();
            if a == gone {
                moved += 1;
            } else {
                assert_eq!(a, b, "a key of a remaining server moved");
            }
        }
        assert!(
            (200..900).contains(&moved),
            "the removed server owned {moved} of 4000 keys"
        );
        assert_eq!(HashRing::default().route(1, gone, one_shard()), None);
    }

    #[test]
    fn connections_of_a_server_share_its_points_and_prefer_the_source_shard() {
        let shards = Shards::new(2);
        // Slots 0 and 2 are on shard 0, slot 1 on shard 1.
        let ring = HashRing::build(
            [member(b"s", 1, 0), member(b"s", 1, 1), member(b"s", 1, 2)].into_iter(),
        );
        assert_eq!(ring.points().len(), 160);
        let on1 = SockId::new(5, 0);
        let on0 = SockId::new(4, 0);
        for h in [0, 1, 2, 3, u32::MAX] {
            assert_eq!(ring.route(h, on1, shards), Some(SockId::new(1, 0)));
            let got = ring.route(h, on0, shards).unwrap();
            assert!(got == SockId::new(0, 0) || got == SockId::new(2, 0));
            assert_eq!(ring.route(h, on0, shards), Some(got), "stable per hash");
        }
        // No connection on the source's shard: any.
        let ring = HashRing::build([member(b"s", 1, 1)].into_iter());
        assert_eq!(ring.route(7, on0, shards), Some(SockId::new(1, 0)));
    }

    #[test]
    fn long_names_are_cut_as_twemproxy_cuts_them() {
        let long = [b'x'; 100];
        let mut a = Vec::new();
        let mut b = Vec::new();
        server_points(&long, 8, |p| a.push(p));
        server_points(&long[..90], 8, |p| b.push(p));
        // Both "<name>-0" and "<name>-1" are cut to the same 85 bytes.
        assert_eq!(a, b);
        assert_eq!(a[..4], a[4..]);
    }
}
