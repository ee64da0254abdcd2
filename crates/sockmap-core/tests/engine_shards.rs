//! Shards: accepted connections spread over the I/O threads, upstreams
//! connected near their client, and redirects between sockets of two shards
//! with exact bytes, order, backpressure, closes and map changes.

mod engine_util;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;

use bytes::Bytes;
use engine_util::stream::*;
use engine_util::*;
use sockmap_core::map::MapKind;
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg};
use sockmap_core::{EngineConfig, EntryOptions, Event, Key, KeySource, Rule, UpdateFlag, Verdict};

fn two_shards(cfg: EngineConfig) -> Harness {
    Harness::with_config(EngineConfig {
        shards: Some(2),
        ..cfg
    })
}

/// A proxy pair whose two sockets are on different shards.
fn split_pair(
    h: &Harness,
) -> (
    TcpStream,
    sockmap_core::SockId,
    TcpStream,
    sockmap_core::SockId,
) {
    let (pa, a, pb, b, _) = h.proxy_pair();
    assert_ne!(
        h.h().shard_of(a),
        h.h().shard_of(b),
        "adopted sockets go to the least loaded shard"
    );
    (pa, a, pb, b)
}

#[test]
fn accepted_connections_spread_over_the_shards() {
    let mut h = two_shards(EngineConfig::default());
    assert_eq!(h.engine.shards(), 2);
    let (listener, addr) = h.h().listen("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let clients: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut per_shard = [0usize; 2];
    for _ in 0..10 {
        let sock = h.wait(|e| match e {
            Event::Accepted {
                listener: l, sock, ..
            } if *l == listener => Some(*sock),
            _ => None,
        });
        per_shard[h.h().shard_of(sock)] += 1;
    }
    // Each goes to the shard with fewer sockets (the listener counts), the listener's on a tie.
    assert_eq!(per_shard, [5, 5]);
    drop(clients);
}

#[test]
fn an_upstream_connected_near_a_socket_shares_its_shard() {
    let mut h = two_shards(EngineConfig::default());
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    for _ in 0..4 {
        let (_p, near) = h.pair();
        let up = h.h().connect_near(addr, None, Some(near)).unwrap();
        assert_eq!(h.h().shard_of(up), h.h().shard_of(near));
        h.wait(|e| {
            matches!(e, Event::Connected { sock, result: Ok(()) } if *sock == up).then_some(())
        });
        let _ = upstream.accept().unwrap();
    }
}

/// 32 MiB each way between two shards, written in odd sizes: every byte
/// arrives once, in order, and the counters settle to exact figures.
#[test]
fn a_redirect_across_shards_keeps_every_byte_in_order() {
    let h = two_shards(EngineConfig::default());
    let (pa, a, mut pb, b) = split_pair(&h);
    const TOTAL: usize = 32 << 20;
    let there = pump(pa.try_clone().unwrap(), TOTAL);
    let back = pump(pb.try_clone().unwrap(), TOTAL);
    expect_pattern(&mut pb, TOTAL, 64 << 10);
    let mut pa = pa;
    expect_pattern(&mut pa, TOTAL, 64 << 10);
    drop((there.join().unwrap(), back.join().unwrap()));
    let sa = h.settled_until(a, |s| {
        s.bytes_in == TOTAL as u64 && s.redirected_egress == s.messages_in
    });
    assert_eq!(sa.dropped, 0);
    let sb = h.stats_eq(b, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
    assert_eq!(sb.dropped, 0);
}

/// A target on another shard that nobody reads: its source stops being
/// read with the target's queue bounded (watermark + the cross-shard
/// credit), then every byte arrives once the target drains.
#[test]
fn a_full_target_on_another_shard_stops_its_source() {
    let h = two_shards(EngineConfig {
        send_high_watermark: 64 << 10,
        send_low_watermark: 16 << 10,
        ..EngineConfig::default()
    });
    let (pa, a, mut pb, b) = split_pair(&h);
    const TOTAL: usize = 16 << 20;
    let writer = pump(pa, TOTAL);
    h.stats_until(a, |s| s.backpressure_stalls >= 1);
    let q = h.h().sock_stats(b).unwrap().queued_bytes;
    assert!(q <= (64 << 10) + (256 << 10) + (256 << 10), "queued {q}");
    let stalled = h.h().sock_stats(a).unwrap().bytes_in;
    assert!(stalled < TOTAL as u64, "the source was read to the end");
    expect_pattern(&mut pb, TOTAL, 64 << 10);
    drop(writer.join().unwrap());
    h.stats_eq(b, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
    h.settled_eq(a, |s| (s.bytes_in, s.dropped), (TOTAL as u64, 0));
}

/// A source hash-routes messages over two targets; the target on the
/// other shard closes. Its entry must leave the source shard's view of the
/// map too: every later message goes to the live target, none is dropped
/// as sent to the dead one.
#[test]
fn a_closed_target_leaves_every_shards_view_of_the_map() {
    let h = two_shards(EngineConfig::default());
    let targets = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let src = h.hash_with(|_| Rule::HashRoute {
        map: targets,
        key: KeySource::Range { offset: 0, len: 4 },
        ingress: false,
        hash_tag: None,
    });
    let (mut ps, s) = h.pair();
    let (mut p1, t1) = h.pair();
    let (mut p2, t2) = h.pair();
    assert_ne!(h.h().shard_of(s), h.h().shard_of(t1));
    h.put(targets, "t1", t1);
    h.put(targets, "t2", t2);
    h.put(src, s, s);
    h.h().destroy(t1);
    assert_eq!(read_to_end(&mut p1), b"");
    until("the closed target left the map", || {
        h.h().map_len(targets).unwrap() == 1
    });
    for i in 0..64u32 {
        let msg = format!("{i:04}");
        ps.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_n(&mut p2, 4), msg.as_bytes(), "message {i}");
    }
    h.settled_eq(
        s,
        |st| (st.messages_in, st.redirected_egress, st.dropped),
        (64, 64, 0),
    );
}

#[test]
fn a_servers_connection_on_the_source_shard_takes_its_keys() {
    let h = two_shards(EngineConfig::default());
    let pool = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let src = h.hash_with(|_| Rule::HashRoute {
        map: pool,
        key: KeySource::Range { offset: 0, len: 4 },
        ingress: false,
        hash_tag: None,
    });
    let (mut ps, s) = h.pair();
    let (p1, c1) = h.pair();
    let (p2, c2) = h.pair();
    let near_shard = h.h().shard_of(s);
    assert_ne!(h.h().shard_of(c1), h.h().shard_of(c2));
    let ((mut near_peer, near), (mut far_peer, far)) = if h.h().shard_of(c1) == near_shard {
        ((p1, c1), (p2, c2))
    } else {
        ((p2, c2), (p1, c1))
    };
    // Two connections of one server: the ring has that server's points once.
    let one_server = EntryOptions {
        server: Some(Bytes::from_static(b"10.0.0.1:6379")),
        weight: 1,
    };
    for (k, c) in [("c1", c1), ("c2", c2)] {
        h.h()
            .map_update_entry(pool, &Key::from(k), c, UpdateFlag::Any, &one_server)
            .unwrap();
    }
    h.put(src, s, s);
    let keys: Vec<u8> = (0..32u32)
        .flat_map(|i| format!("{i:04}").into_bytes())
        .collect();
    ps.write_all(&keys).unwrap();
    assert_eq!(read_n(&mut near_peer, keys.len()), keys);
    assert_eq!(h.h().sock_stats(far).unwrap().bytes_out, 0);
    // Without a connection on the source's shard, the other one serves.
    h.h()
        .map_delete(pool, &Key::from(if near == c1 { "c1" } else { "c2" }))
        .unwrap();
    ps.write_all(b"0000").unwrap();
    assert_eq!(read_n(&mut far_peer, 4), b"0000");
    let st = h.settled_until(s, |st| {
        st.messages_in >= 2 && st.redirected_egress == st.messages_in
    });
    assert_eq!(st.dropped, 0);
}

/// Sockets of one map on both shards, judged at the same time message by
/// message: the map's counters are the exact sum of its sockets' (each
/// shard writes its own share of them, so no increment is lost to the
/// other).
#[test]
fn a_maps_counters_add_up_over_both_shards() {
    let h = two_shards(EngineConfig::default());
    let map = h.h().create_map(MapKind::SockHash, 64).unwrap();
    let drop_all: sockmap_core::rules::VerdictFn = Arc::new(|_| Verdict::Drop);
    let progs = Programs {
        parser: Some(Arc::new(ParserProg::new(ParserKind::Fixed(16)))),
        verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Func(drop_all)))),
        ..Programs::default()
    };
    h.h().attach(map, progs).unwrap();
    const EACH: usize = 4 << 20;
    let mut ids = Vec::new();
    let mut writers = Vec::new();
    for k in 0..8u64 {
        let (peer, id) = h.pair();
        h.put(map, k, id);
        ids.push(id);
        writers.push(pump(peer, EACH));
    }
    let shards: std::collections::HashSet<usize> = ids.iter().map(|&s| h.h().shard_of(s)).collect();
    assert_eq!(shards.len(), 2, "the sockets are spread over both shards");
    let peers: Vec<TcpStream> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let each = (EACH / 16) as u64;
    for &id in &ids {
        h.stats_eq(id, |s| (s.messages_in, s.dropped), (each, each));
    }
    // Each socket's counter is added to before its map's.
    let messages = 8 * each;
    h.map_stats_eq(
        map,
        |m| (m.bytes_in, m.messages_in, m.dropped),
        ((8 * EACH) as u64, messages, messages),
    );
    drop(peers);
}
