//! External verdicts answered asynchronously in batches by another thread.

mod engine_util;

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use engine_util::*;
use sockmap_core::batch::{Answer, Batch, ItemDesc};
use sockmap_core::map::MapKind;
use sockmap_core::program::{ErrorVerdict, ParserKind, StreamVerdictProg, VerdictKind};
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{BatchConfig, EngineConfig, Errno, Event, Key, MapId, Verdict};

fn harness(batch: BatchConfig) -> (Harness, Receiver<Batch>) {
    Harness::with_external(EngineConfig {
        batch,
        ..EngineConfig::default()
    })
}

fn harness_on_one_shard(batch: BatchConfig) -> (Harness, Receiver<Batch>) {
    Harness::with_external(EngineConfig {
        batch,
        shards: Some(1),
        ..EngineConfig::default()
    })
}

fn external_map(h: &Harness, tag: u32) -> MapId {
    let m = h.h().create_map(MapKind::SockHash, 64).unwrap();
    h.h()
        .attach(m, external_programs(tag, 4, false, None))
        .unwrap();
    m
}

fn next_batch(rx: &Receiver<Batch>) -> Batch {
    rx.recv_timeout(DEADLINE).expect("a batch")
}

/// Takes the next batch and answers it with [`decide`].
fn answer_next(rx: &Receiver<Batch>, targets: MapId) {
    let b = next_batch(rx);
    let ans = decide(&b, targets);
    b.reply(ans);
}

/// The "JS side": copy the batch into one buffer and decide from the bytes.
fn decide(batch: &Batch, targets: MapId) -> Vec<Answer> {
    let mut buf = vec![0u8; 1 << 16];
    let mut descs: Vec<ItemDesc> = Vec::new();
    batch.copy_into(&mut buf, &mut descs);
    descs
        .iter()
        .map(|d| {
            let head = &buf[d.offset..d.offset + d.copied];
            match head.first() {
                Some(b'P') => Verdict::Pass,
                Some(b'D') => Verdict::Drop,
                _ => Verdict::Redirect {
                    map: targets,
                    key: Key::from("t"),
                    ingress: false,
                },
            }
            .into()
        })
        .collect()
}

#[test]
fn answers_out_of_order_keep_per_socket_order() {
    let (mut h, rx) = harness(BatchConfig {
        max_messages: 64,
        max_delay: Duration::from_micros(50),
        max_in_flight: 4,
        ..BatchConfig::default()
    });
    let map = external_map(&h, 7);
    let targets = h.h().create_map(MapKind::SockHash, 4).unwrap();
    let (mut pa, a) = h.pair();
    let (mut pt, t) = h.pair();
    h.put(map, "a", a);
    h.put(targets, "t", t);
    write(&mut pa, b"R-first;");
    let b1 = next_batch(&rx);
    assert_eq!(b1.items.len(), 1);
    assert_eq!(
        (b1.items[0].sock, b1.items[0].tag, b1.items[0].len),
        (a, 7, 8)
    );
    write(&mut pa, b"R-second");
    let b2 = next_batch(&rx);
    let st = h.h().sock_stats(a).unwrap();
    assert_eq!(st.pending_bytes, 16);
    // Answer the later batch first: nothing may overtake the first message.
    let a2 = decide(&b2, targets);
    b2.reply(a2);
    holds_for(
        Duration::from_millis(20),
        "nothing overtakes the first message",
        || h.h().sock_stats(t).unwrap().bytes_out == 0,
    );
    let a1 = decide(&b1, targets);
    b1.reply(a1);
    assert_eq!(read_n(&mut pt, 16), b"R-first;R-second");
    h.stats_eq(a, |s| (s.redirected_egress, s.pending_bytes), (2, 0));
    // PASS and DROP from the external side.
    write(&mut pa, b"Pass");
    answer_next(&rx, targets);
    let (got, _) = h.messages(a, 4);
    assert_eq!(got, b"Pass");
    write(&mut pa, b"Drop");
    answer_next(&rx, targets);
    h.stats_until(a, |s| s.dropped_verdict == 1);
}

#[test]
fn batches_are_bounded_in_flight_and_collect_many_messages() {
    // The bound holds per shard (each I/O thread batches its own sockets): this checks it on one.
    let (h, rx) = harness_on_one_shard(BatchConfig {
        max_messages: 1000,
        max_delay: Duration::from_micros(50),
        max_in_flight: 1,
        ..BatchConfig::default()
    });
    let map = external_map(&h, 1);
    let targets = h.h().create_map(MapKind::SockHash, 4).unwrap();
    let (mut pt, t) = h.pair();
    h.put(targets, "t", t);
    let mut peers = Vec::new();
    for i in 0..8u32 {
        let (p, s) = h.pair();
        h.put(map, i as u64, s);
        peers.push((p, s));
    }
    // The first message opens batch 1; while it is out, everything else collects.
    write(&mut peers[0].0, b"R0");
    let first = next_batch(&rx);
    assert_eq!(first.items.iter().map(|i| i.len).sum::<usize>(), 2);
    for round in 0..5u8 {
        for (p, _) in peers.iter_mut() {
            write(p, &[b'R', b'a' + round]);
        }
    }
    for (i, (_, s)) in peers.iter().enumerate() {
        let want = if i == 0 { 12 } else { 10 };
        h.stats_until(*s, |st| st.bytes_in == want);
    }
    assert!(
        rx.try_recv().is_err(),
        "a second batch went out while one was in flight"
    );
    let ans = decide(&first, targets);
    first.reply(ans);
    let second = next_batch(&rx);
    let total: usize = second.items.iter().map(|i| i.len).sum();
    assert_eq!(total, 80, "everything else came in one batch");
    assert!(second.items.len() >= 8);
    // Within the batch each socket's bytes are in order.
    for (_, s) in &peers {
        let mine: Vec<u8> = second
            .items
            .iter()
            .filter(|i| i.sock == *s)
            .flat_map(|i| second.bytes(i).flatten().copied().collect::<Vec<u8>>())
            .collect();
        let expect: Vec<u8> = (0..5u8).flat_map(|r| [b'R', b'a' + r]).collect();
        assert_eq!(mine, expect);
    }
    let ans = decide(&second, targets);
    second.reply(ans);
    assert_eq!(read_n(&mut pt, 82).len(), 82);
}

#[test]
fn missing_answers_drop_and_report() {
    let (mut h, rx) = harness(BatchConfig::default());
    let map = external_map(&h, 3);
    let (mut pa, a) = h.pair();
    h.put(map, "a", a);
    write(&mut pa, b"xyz");
    let b = next_batch(&rx);
    b.reply(Vec::new());
    let detail = h.wait(|e| match e {
        Event::Error { detail, .. } => Some(detail.clone()),
        _ => None,
    });
    assert!(detail.contains("no answer"), "{detail}");
    let counts = |s: &StatsSnapshot| (s.dropped, s.dropped_verdict, s.pending_bytes);
    h.stats_eq(a, counts, (1, 1, 0));
}

/// A map like [`external_map`] whose verdict propagates FIN (as the Node binding sets it).
fn external_map_fin(h: &Harness, tag: u32) -> MapId {
    let m = h.h().create_map(MapKind::SockHash, 64).unwrap();
    h.h()
        .attach(m, external_programs(tag, 4, true, None))
        .unwrap();
    m
}

/// A slow external verdict on another thread: each batch waits `delay`,
/// then every message is redirected to `targets["t"]`. Ends when the engine
/// stops handing off batches for `DEADLINE`.
fn slow_verdicts(
    rx: Receiver<Batch>,
    targets: MapId,
    delay: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while let Ok(b) = rx.recv_timeout(DEADLINE) {
            std::thread::sleep(delay);
            let ans = decide(&b, targets);
            b.reply(ans);
        }
    })
}

#[test]
fn gateway_clients_ending_keep_the_shared_upstream_open_and_lose_nothing() {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 40_000;
    let (mut h, rx) = harness(BatchConfig {
        max_messages: 64,
        max_delay: Duration::from_micros(50),
        max_in_flight: 2,
        ..BatchConfig::default()
    });
    let gw = external_map_fin(&h, 5);
    let targets = h.h().create_map(MapKind::SockHash, 4).unwrap();
    let (mut pu, u) = h.pair();
    h.put(targets, "t", u);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (p, s) = h.pair();
        h.put(gw, i as u64, s);
        clients.push((p, s));
    }
    let verdicts = slow_verdicts(rx, targets, Duration::from_millis(5));
    // Each client's first bytes reach the shared upstream...
    for (i, (p, _)) in clients.iter_mut().enumerate() {
        write(p, &[b'a' + i as u8]);
    }
    for (_, s) in &clients {
        h.stats_until(*s, |st| st.redirected_egress == 1);
    }
    assert_eq!(read_n(&mut pu, CLIENTS).len(), CLIENTS);
    // ...then each sends the rest and ends while its verdicts are still out.
    for (i, (p, _)) in clients.iter_mut().enumerate() {
        write(p, &vec![b'a' + i as u8; PER_CLIENT - 1]);
        p.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let got = read_n(&mut pu, CLIENTS * (PER_CLIENT - 1));
    for i in 0..CLIENTS {
        let n = got.iter().filter(|&&b| b == b'a' + i as u8).count();
        assert_eq!(n, PER_CLIENT - 1, "client {i}");
    }
    for (_, s) in &clients {
        h.wait(|e| matches!(e, Event::ReadEnd { sock } if sock == s).then_some(()));
        // Redirects to another shard count once that shard acknowledged them.
        let st = h.settled_until(*s, |st| {
            st.pending_bytes == 0 && st.redirected_egress == st.messages_in
        });
        assert_eq!(
            (st.bytes_in, st.dropped, st.pending_bytes),
            (PER_CLIENT as u64, 0, 0),
            "{st:?}"
        );
    }
    // The upstream is still open: a new client's bytes still reach it.
    let (mut pn, n) = h.pair();
    h.put(gw, 99u64, n);
    write(&mut pn, b"Znew");
    assert_eq!(read_n(&mut pu, 4), b"Znew");
    assert_eq!(h.h().sock_stats(u).unwrap().dropped, 0);
    drop(h);
    verdicts.join().unwrap();
}

#[test]
fn a_slow_external_verdict_bounds_the_pending_bytes_and_loses_nothing() {
    const BOUND: usize = 16 << 10;
    const CHUNK: usize = 4 << 10;
    const TOTAL: usize = 1 << 20;
    let (h, rx) = Harness::with_external(EngineConfig {
        max_pending_bytes: BOUND,
        read_buffer: CHUNK,
        ..EngineConfig::default()
    });
    let gw = external_map(&h, 2);
    let targets = h.h().create_map(MapKind::SockHash, 4).unwrap();
    let (mut pt, t) = h.pair();
    let (pc, c) = h.pair();
    h.put(targets, "t", t);
    h.put(gw, "c", c);
    // The verdict thread looks at the source's pending bytes at every batch.
    let handle = h.h().clone();
    let verdicts = std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(b) = rx.recv_timeout(DEADLINE) {
            std::thread::sleep(Duration::from_micros(500));
            peak = peak.max(handle.sock_stats(c).map_or(0, |s| s.pending_bytes));
            let ans = decide(&b, targets);
            b.reply(ans);
        }
        peak
    });
    let data: Vec<u8> = (0..TOTAL as u32).map(|i| b'a' + (i % 13) as u8).collect();
    let writer = {
        let mut pc = pc;
        let data = data.clone();
        std::thread::spawn(move || write(&mut pc, &data))
    };
    assert_eq!(read_n(&mut pt, TOTAL), data);
    writer.join().unwrap();
    let st = h.settled_until(c, |s| {
        s.pending_bytes == 0 && s.redirected_egress == s.messages_in
    });
    assert_eq!(
        (st.bytes_in, st.dropped, st.pending_bytes),
        (TOTAL as u64, 0, 0)
    );
    drop(h);
    let peak = verdicts.join().unwrap();
    assert!(peak > 0 && peak <= (BOUND + CHUNK) as u64, "peak {peak}");
}

/// A batch deadline short enough for a test, long enough for a loaded machine to hand a batch off well before it.
const VERDICT_TIMEOUT: Duration = Duration::from_millis(300);

fn harness_with_deadline(max_in_flight: usize) -> (Harness, Receiver<Batch>) {
    harness_on_one_shard(BatchConfig {
        max_in_flight,
        verdict_timeout: VERDICT_TIMEOUT,
        ..BatchConfig::default()
    })
}

/// Waits for the engine's error event of a timed-out batch; returns its detail.
fn timed_out(h: &mut Harness) -> String {
    h.wait(|e| match e {
        Event::Error {
            sock: None,
            code: Errno::TimedOut,
            detail,
        } => Some(detail.clone()),
        _ => None,
    })
}

#[test]
fn an_unanswered_batch_times_out_into_the_error_verdict_in_order() {
    let (mut h, rx) = harness_with_deadline(2);
    let map = external_map(&h, 3);
    let (mut pa, a) = h.pair();
    h.put(map, "a", a);
    // Before the write: the batch is handed off after it, and times out VERDICT_TIMEOUT after that.
    let written = std::time::Instant::now();
    write(&mut pa, b"Pone");
    let b1 = next_batch(&rx);
    write(&mut pa, b"Ptwo");
    let b2 = next_batch(&rx);
    assert_eq!((b1.items.len(), b2.items.len()), (1, 1));
    // The later batch is answered at once; its message waits behind the first, which never is.
    let ans = decide(&b2, map);
    b2.reply(ans);
    let (got, n) = h.messages(a, 4);
    assert!(
        written.elapsed() >= VERDICT_TIMEOUT,
        "{:?}",
        written.elapsed()
    );
    assert_eq!((got.as_slice(), n), (&b"Ptwo"[..], 1));
    assert!(timed_out(&mut h).contains("1 items got the error verdict"));
    h.stats_eq(
        a,
        |s| {
            let counts = (s.messages_in, s.passed, s.dropped_verdict, s.dropped_bytes);
            (s.verdict_timeouts, counts, s.pending_bytes)
        },
        (1, (2, 1, 1, 4), 0),
    );
    // The first batch's answer comes late: counted, not applied (it would have passed the message).
    let ans = decide(&b1, map);
    b1.reply(ans);
    h.stats_eq(a, |s| (s.verdicts_late, s.passed, s.dropped), (1, 1, 1));
    // The socket goes on: the next batch is answered in time.
    write(&mut pa, b"Pthree");
    answer_next(&rx, map);
    let (got, _) = h.messages(a, 6);
    assert_eq!(got, b"Pthree");
    let counts = |s: &StatsSnapshot| (s.passed, s.verdict_timeouts, s.verdicts_late, s.dropped);
    h.stats_eq(a, counts, (2, 1, 1, 1));
}

#[test]
fn a_sink_that_never_answers_stalls_no_socket_and_the_error_verdict_may_pass() {
    let (mut h, rx) = harness_with_deadline(1);
    let map = h.h().create_map(MapKind::SockHash, 64).unwrap();
    let mut progs = external_programs(
        4,
        4,
        false,
        Some(ParserKind::LengthField(Default::default())),
    );
    progs.verdict = Some(Arc::new(StreamVerdictProg {
        on_error: ErrorVerdict::Pass,
        ..StreamVerdictProg::new(VerdictKind::External {
            tag: 4,
            peek_bytes: 4,
        })
    }));
    h.h().attach(map, progs).unwrap();
    let (mut pa, a) = h.pair();
    h.put(map, "a", a);
    // Three frames, each in its own batch: with one in flight, each is handed off once the one before timed out.
    let frames: Vec<Vec<u8>> = ["one", "two", "three"]
        .iter()
        .map(|p| frame(p.as_bytes()))
        .collect();
    let mut held = Vec::new();
    for f in &frames {
        write(&mut pa, f);
        held.push(next_batch(&rx)); // never answered
    }
    let want: Vec<u8> = frames.concat();
    let (got, _) = h.messages(a, want.len());
    assert_eq!(got, want);
    h.stats_eq(
        a,
        |s| {
            let counts = (s.messages_in, s.passed, s.dropped, s.pending_bytes);
            (s.verdict_timeouts, counts)
        },
        (3, (3, 3, 0, 0)),
    );
    for _ in 0..3 {
        timed_out(&mut h);
    }
    assert_eq!(held.iter().map(|b| b.items.len()).sum::<usize>(), 3);
}
