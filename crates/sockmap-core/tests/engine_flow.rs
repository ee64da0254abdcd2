//! Half-close, closes and deletes mid-stream, backpressure, dispatch.

mod engine_util;

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use engine_util::*;
use sockmap_core::map::MapKind;
use sockmap_core::program::{Programs, StreamVerdictProg};
use sockmap_core::rules::MessageView;
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{EngineConfig, Event, Key, KeySource, Rule, Verdict};

#[test]
fn fin_after_redirect_reaches_the_target_after_the_data() {
    let mut h = Harness::new();
    let (mut pa, a, mut pb, b, _) = h.proxy_pair();
    write(&mut pa, b"last words");
    pa.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut pb), b"last words");
    h.wait(|e| matches!(e, Event::ReadEnd { sock } if *sock == a).then_some(()));
    // The other direction still works until b's peer closes too.
    write(&mut pb, b"reply");
    pb.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut pa), b"reply");
    assert_eq!(h.closed(a), None);
    assert_eq!(h.closed(b), None);
}

#[test]
fn target_closed_mid_stream_drops_and_counts_and_source_lives() {
    let mut h = Harness::new();
    let (mut pa, a, mut pb, b, map) = h.proxy_pair();
    write(&mut pa, b"one");
    assert_eq!(read_n(&mut pb, 3), b"one");
    h.h().destroy(b);
    assert_eq!(h.closed(b), None);
    assert_eq!(h.h().map_len(map), Ok(1));
    write(&mut pa, b"lost");
    // "lost" is read, then dropped: its drop is counted after its bytes.
    let counts = |s: &StatsSnapshot| (s.bytes_in, s.redirected_egress, s.dropped_no_key);
    h.settled_eq(a, counts, (7, 1, 1));
    // The source still works: redirect it somewhere else.
    let (mut pc, c) = h.pair();
    h.put(map, a, c);
    write(&mut pa, b"again");
    assert_eq!(read_n(&mut pc, 5), b"again");
    assert!(h.h().sock_stats(a).is_some());
}

// SO_LINGER through libc: Unix only.
#[cfg(unix)]
#[test]
fn peer_reset_surfaces_as_econnreset() {
    let mut h = Harness::new();
    let (mut pa, a, mut pb, _b, _) = h.proxy_pair();
    write(&mut pb, b"x");
    // Arrived before the reset: a has nothing left to write, so its read reports the reset
    // (a write after it would fail with EPIPE instead).
    assert_eq!(read_n(&mut pa, 1), b"x");
    // SO_LINGER 0 then close: the kernel sends RST.
    engine_util::os::reset(pa);
    assert_eq!(h.closed(a), Some(sockmap_core::Errno::ConnReset));
}

#[test]
fn delete_while_sending_switches_to_drops_without_loss_before() {
    let h = Harness::new();
    let (mut pa, a, mut pb, b, map) = h.proxy_pair();
    let writer = std::thread::spawn(move || {
        for i in 0..200u32 {
            pa.write_all(&i.to_be_bytes()).unwrap();
        }
        pa
    });
    let got = read_n(&mut pb, 40);
    h.h().map_delete(map, &Key::from(a)).unwrap();
    let mut pa = writer.join().unwrap();
    write(&mut pa, b"ZZZZ");
    // Every byte read is dropped or written to b.
    let out = || h.h().sock_stats(b).unwrap().bytes_out;
    let s = h.settled_until(a, |s| {
        s.bytes_in == 804
            && s.dropped + s.redirected_egress == s.messages_in
            && s.dropped_bytes + out() == 804
    });
    assert_eq!(s.passed, 0);
    // What did arrive is a prefix of the stream, in order: exactly the bytes not dropped.
    let mut expect: Vec<u8> = (0..200u32).flat_map(|i| i.to_be_bytes()).collect();
    expect.extend_from_slice(b"ZZZZ");
    assert_eq!(&got[..], &expect[..40]);
    let forwarded = (s.bytes_in - s.dropped_bytes) as usize;
    assert_eq!(read_n(&mut pb, forwarded - 40), &expect[40..forwarded]);
}

#[test]
fn backpressure_stops_the_source_and_loses_nothing() {
    let cfg = EngineConfig {
        send_high_watermark: 64 << 10,
        send_low_watermark: 16 << 10,
        ..EngineConfig::default()
    };
    let h = Harness::with_config(cfg);
    let (mut pa, a, mut pb, b, _) = h.proxy_pair();
    const TOTAL: usize = 32 << 20;
    let writer = std::thread::spawn(move || {
        let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < TOTAL {
            pa.write_all(&block).unwrap();
            sent += block.len();
        }
        pa
    });
    // Nobody reads b's peer: a must stall with memory bounded.
    let s = h.stats_until(a, |s| s.backpressure_stalls >= 1);
    assert!(s.bytes_in < TOTAL as u64);
    // Once the kernel's buffers are full too, the source stays stopped with most of the stream unread.
    let stalled = h.stats_still(a, Duration::from_millis(50));
    assert!(
        stalled.bytes_in < TOTAL as u64,
        "source kept being read: {stalled:?}"
    );
    let q = h.h().sock_stats(b).unwrap().queued_bytes;
    assert!(q <= (64 << 10) + (256 << 10), "queued {q}");
    // Drain: every byte arrives, in order.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while got < TOTAL {
        let n = std::io::Read::read(&mut pb, &mut buf).unwrap();
        assert!(n > 0);
        for (i, &x) in buf[..n].iter().enumerate() {
            assert_eq!(x, (((got + i) % 65536) % 251) as u8);
        }
        got += n;
    }
    drop(writer.join().unwrap());
    h.stats_eq(b, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
    h.settled_eq(a, |s| (s.bytes_in, s.dropped), (TOTAL as u64, 0));
}

#[test]
fn dispatch_by_size_to_two_targets() {
    let h = Harness::new();
    let targets = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let by_size: sockmap_core::rules::VerdictFn =
        Arc::new(move |m: &MessageView<'_>| Verdict::Redirect {
            map: targets,
            key: Key::from(if m.len >= 100 { "big" } else { "small" }),
            ingress: false,
        });
    let src_map = h.h().create_map(MapKind::SockHash, 8).unwrap();
    h.h()
        .attach(
            src_map,
            Programs {
                verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Func(by_size)))),
                ..Programs::default()
            },
        )
        .unwrap();
    let (mut ps, s) = h.pair();
    let (mut pbig, big) = h.pair();
    let (mut psmall, small) = h.pair();
    h.put(targets, "big", big);
    h.put(targets, "small", small);
    h.put(src_map, "src", s);
    write(&mut ps, &[b'B'; 150]);
    assert_eq!(read_n(&mut pbig, 150), vec![b'B'; 150]);
    write(&mut ps, &[b's'; 10]);
    assert_eq!(read_n(&mut psmall, 10), vec![b's'; 10]);
    h.settled_eq(s, |st| (st.bytes_in, st.redirected_egress), (160, 2));
}

#[test]
fn hash_route_spreads_keys_consistently() {
    let h = Harness::new();
    let pool = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let src_map = h.hash_with(|_| Rule::HashRoute {
        map: pool,
        key: KeySource::Range { offset: 0, len: 4 },
        ingress: false,
        hash_tag: None,
    });
    let (mut t1, id1) = h.pair();
    let (mut t2, id2) = h.pair();
    h.put(pool, "t1", id1);
    h.put(pool, "t2", id2);
    let (mut ps, s) = h.pair();
    h.put(src_map, "s", s);
    let mut sent = 0;
    let mut pass = |ps: &mut std::net::TcpStream| {
        // One message per read: send one 4-byte key, wait until it is
        // counted. The ring hashes with FNV-1a (as twemproxy), under which
        // keys differing only in their last byte stay close: they differ first.
        for k in 0..16u8 {
            write(ps, &[k.wrapping_mul(17), 1, 2, 3]);
            sent += 1;
            h.stats_until(s, |st| st.messages_in == sent);
        }
        h.stats_until(s, |st| st.redirected_egress == sent);
        let out = |id| h.h().sock_stats(id).unwrap().bytes_out / 4;
        h.stats_until(id1, |_| out(id1) + out(id2) == sent);
        (out(id1), out(id2))
    };
    let (n1, n2) = pass(&mut ps);
    assert!(n1 > 0 && n2 > 0, "both targets get keys: {n1} {n2}");
    let first = (
        read_n(&mut t1, 4 * n1 as usize),
        read_n(&mut t2, 4 * n2 as usize),
    );
    let (m1, m2) = pass(&mut ps);
    assert_eq!((m1 - n1, m2 - n2), (n1, n2));
    let second = (
        read_n(&mut t1, 4 * n1 as usize),
        read_n(&mut t2, 4 * n2 as usize),
    );
    assert_eq!(first, second, "the same key goes to the same target");
    assert_eq!(h.h().sock_stats(s).unwrap().dropped, 0);
}
