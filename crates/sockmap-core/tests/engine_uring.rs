//! The io_uring backend: what `auto` picks, the fallback chain, and the
//! traps of completion I/O (buffer-ring exhaustion, cancelled receives,
//! closes with operations in flight, stale completions on reused slots).
#![cfg(target_os = "linux")]

mod engine_util;

use std::io::{Read, Write};

use engine_util::stream::*;
use engine_util::*;
use sockmap_core::backend::select::BackendKind;
use sockmap_core::config::BackendChoice;
use sockmap_core::EngineConfig;

#[test]
fn auto_runs_io_uring_with_its_features_here() {
    let h = Harness::with_config(EngineConfig {
        backend: Some(BackendChoice::Auto),
        ..EngineConfig::default()
    });
    let info = h.engine.backend_info();
    assert_eq!(info.requested, BackendChoice::Auto);
    if !io_uring_allowed() {
        assert_eq!(info.kind, BackendKind::Epoll);
        assert_eq!(info.fallbacks.len(), 1, "{info:?}");
        return;
    }
    assert_eq!(info.kind, BackendKind::IoUring, "{info:?}");
    for f in ["multishot-accept", "multishot-recv", "buffer-ring"] {
        assert!(info.features.contains(&f), "{f} missing: {info:?}");
    }
    let epoll = Harness::with_config(EngineConfig {
        backend: Some(BackendChoice::Epoll),
        ..EngineConfig::default()
    });
    assert_eq!(epoll.engine.backend_info().kind, BackendKind::Epoll);
    assert!(epoll.engine.backend_info().fallbacks.is_empty());
}

/// With two tiny provided buffers, held by a slow target's send ring, the
/// ring runs dry again and again: every `ENOBUFS` must be backpressure (the
/// receive armed again when buffers come back), never an error or a loss.
#[test]
fn an_exhausted_buffer_ring_is_backpressure_with_exact_bytes() {
    if !io_uring_allowed() {
        return;
    }
    let h = Harness::with_config(uring(EngineConfig {
        recv_buffers: 2,
        read_buffer: 4096,
        send_high_watermark: 16 << 10,
        send_low_watermark: 4 << 10,
        ..EngineConfig::default()
    }));
    let (pa, a, mut pb, b, _) = h.proxy_pair();
    const TOTAL: usize = 8 << 20;
    let writer = pump(pa, TOTAL);
    // A slow consumer: small reads with pauses, while the engine's queue stays bounded.
    let mut got = 0;
    let mut buf = vec![0u8; 3000];
    let mut max_queued = 0;
    let mut reads = 0;
    while got < TOTAL {
        let n = pb.read(&mut buf).unwrap();
        assert!(n > 0);
        for (k, &x) in buf[..n].iter().enumerate() {
            assert_eq!(x, pattern(got + k), "byte {} differs", got + k);
        }
        got += n;
        reads += 1;
        if reads % 512 == 0 {
            let q = h.h().sock_stats(b).unwrap().queued_bytes;
            max_queued = max_queued.max(q);
        }
    }
    drop(writer.join().unwrap());
    assert!(max_queued <= 64 << 10, "queued up to {max_queued}");
    let starved = h.engine.backend_stats().starved;
    assert!(
        starved >= 1,
        "the ring never ran dry: the test proves nothing"
    );
    h.stats_eq(b, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
    h.settled_eq(a, |s| (s.bytes_in, s.dropped), (TOTAL as u64, 0));
}

/// Pausing a socket cancels its multishot receive at the next arrival;
/// what was on its way is parked, and resuming delivers it first, then
/// arms the receive again. Run several times over, so that the pause lands
/// at different points of the stream.
#[test]
fn pause_cancels_the_receive_and_resume_loses_nothing() {
    if !io_uring_allowed() {
        return;
    }
    let h = Harness::with_config(uring(EngineConfig::default()));
    let (mut pa, a, mut pb, _b, _) = h.proxy_pair();
    pa.write_all(b"before").unwrap();
    assert_eq!(read_n(&mut pb, 6), b"before");
    for _ in 0..20 {
        h.h().pause(a);
        let writer = pump(pa.try_clone().unwrap(), 256 << 10);
        drop(writer.join().unwrap());
        h.h().resume(a);
        expect_pattern(&mut pb, 256 << 10, 64 << 10);
    }
    pa.write_all(b"after").unwrap();
    assert_eq!(read_n(&mut pb, 5), b"after");
    assert_eq!(h.h().sock_stats(a).unwrap().dropped, 0);
}

/// Sockets closed with receives and sends in flight, hundreds of times, so
/// that slots (and descriptors) are reused while stale completions may still
/// arrive: every new pair carries exactly its own bytes.
#[test]
fn closes_with_operations_in_flight_leave_reused_slots_clean() {
    if !io_uring_allowed() {
        return;
    }
    let h = Harness::with_config(uring(EngineConfig::default()));
    for round in 0..300u32 {
        let (mut pa, a, mut pb, b, map) = h.proxy_pair();
        let tag = format!("round {round}:");
        pa.write_all(tag.as_bytes()).unwrap();
        assert_eq!(read_n(&mut pb, tag.len()), tag.as_bytes());
        // Data in flight both ways, then the engine closes one end at once.
        pa.write_all(&vec![b'x'; 200 << 10]).unwrap_or(());
        h.h().destroy(if round % 2 == 0 { a } else { b });
        h.h().destroy(if round % 2 == 0 { b } else { a });
        h.h().destroy_map(map).unwrap();
        drop((pa, pb));
    }
    // The engine is healthy and the slots clean: a last pair moves exact bytes.
    round_trip(&h, 1 << 20);
    let stale = h.engine.backend_stats().stale;
    assert!(
        stale >= 1,
        "no completion arrived after its close: the test proves nothing"
    );
}
