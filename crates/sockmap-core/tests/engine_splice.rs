//! Splicing on the epoll backend: bytes nothing inspects (no parser, a
//! native redirect to one partner) move socket → pipe → socket in the
//! kernel once reads are bulk, with exact bytes, order, counters, FIN after
//! the last spliced byte, and backpressure from a slow target.
#![cfg(target_os = "linux")]

mod engine_util;

use std::net::Shutdown;

use engine_util::stream::*;
use engine_util::*;
use sockmap_core::config::BackendChoice;
use sockmap_core::EngineConfig;

/// One epoll shard (splicing is per shard, on epoll), with `splice_min`.
fn epoll(splice_min: Option<usize>) -> Harness {
    Harness::with_config(EngineConfig {
        backend: Some(BackendChoice::Epoll),
        shards: Some(1),
        splice_min,
        ..EngineConfig::default()
    })
}

#[test]
fn bulk_bytes_between_partners_are_spliced_exactly() {
    let h = epoll(EngineConfig::default().splice_min);
    let (mut pa, a, mut pb, b, _) = h.proxy_pair();
    const TOTAL: usize = 64 << 20;
    exchange(
        (pa.try_clone().unwrap(), &mut pa),
        (pb.try_clone().unwrap(), &mut pb),
        TOTAL,
    );
    assert!(h.engine.backend_stats().spliced > 0, "nothing was spliced");
    for (src, dst) in [(a, b), (b, a)] {
        let s = h.settled_until(src, |s| {
            s.bytes_in == TOTAL as u64 && s.redirected_egress == s.messages_in
        });
        assert_eq!(s.dropped, 0);
        h.stats_eq(dst, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
    }
}

#[test]
fn a_fin_after_spliced_bytes_arrives_after_them() {
    let h = epoll(EngineConfig::default().splice_min);
    let (pa, _a, mut pb, _b, _) = h.proxy_pair();
    const TOTAL: usize = 8 << 20;
    // The writer ends its stream itself, while this thread reads (the bytes exceed what the kernel buffers).
    let writer = std::thread::spawn(move || {
        let pa = pump(pa, TOTAL).join().unwrap();
        pa.shutdown(Shutdown::Write).unwrap();
        pa
    });
    let got = read_to_end(&mut pb);
    drop(writer.join().unwrap());
    assert_eq!(got.len(), TOTAL);
    assert!(got.iter().enumerate().all(|(i, &x)| x == pattern(i)));
    assert!(h.engine.backend_stats().spliced > 0, "nothing was spliced");
}

#[test]
fn a_slow_target_stops_a_spliced_source() {
    let h = epoll(EngineConfig::default().splice_min);
    let (pa, a, mut pb, _b, _) = h.proxy_pair();
    const TOTAL: usize = 64 << 20;
    let writer = pump(pa, TOTAL);
    // Nobody reads the target's peer yet: the source must stop with the bytes in the kernel (a
    // loaded machine may pause the flow before that, so the stall is waited for first).
    h.stats_until(a, |s| s.backpressure_stalls >= 1);
    let stopped = h.stats_still(a, std::time::Duration::from_millis(100));
    assert!(
        stopped.bytes_in < TOTAL as u64 / 2,
        "the source was read on: {stopped:?}"
    );
    expect_pattern(&mut pb, TOTAL, 256 << 10);
    drop(writer.join().unwrap());
    assert!(h.engine.backend_stats().spliced > 0, "nothing was spliced");
}

#[test]
fn without_a_threshold_nothing_is_spliced() {
    let h = epoll(None);
    round_trip(&h, 8 << 20);
    assert_eq!(h.engine.backend_stats().spliced, 0);
    assert!(!h.engine.backend_info().features.contains(&"splice"));
}
