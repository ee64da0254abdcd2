//! Shards: accepted connections spread over the I/O threads, upstreams
//! connected near their client, and redirects between sockets of two shards
//! with exact bytes, order, backpressure, closes and map changes.

mod engine_util;

use std::io::Write;
use std::net::TcpStream;

use engine_util::stream::*;
use engine_util::*;
use sockmap_core::map::MapKind;
use sockmap_core::{EngineConfig, Event, KeySource, Rule};

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
    let sa = h.settled_until(a, |s| s.bytes_in == TOTAL as u64);
    assert_eq!((sa.redirected_egress, sa.dropped), (sa.messages_in, 0));
    let sb = h.stats_until(b, |s| s.bytes_out == TOTAL as u64 && s.queued_bytes == 0);
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
    let s = h.stats_until(b, |s| s.bytes_out == TOTAL as u64);
    assert_eq!(s.queued_bytes, 0);
    assert_eq!(h.h().sock_stats(a).unwrap().dropped, 0);
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
    let mut polls = 0;
    while h.h().map_len(targets).unwrap() != 1 {
        polls += 1;
        assert!(polls < 1_000_000, "the closed target stayed in the map");
        std::thread::yield_now();
    }
    for i in 0..64u32 {
        let msg = format!("{i:04}");
        ps.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_n(&mut p2, 4), msg.as_bytes(), "message {i}");
    }
    let st = h.settled_until(s, |st| st.messages_in == 64);
    assert_eq!((st.redirected_egress, st.dropped), (64, 0));
}
