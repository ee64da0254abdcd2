//! Deterministic tests of external verdicts and parsers on the simulated
//! backend: half-close ordering, the pending-bytes bound, one answer per
//! batch to many targets.

mod engine_util;

use std::sync::mpsc::Receiver;

use engine_util::external_programs;
use engine_util::sim::{proxy_pair, put, read_ends, sim_with_external};
use sockmap_core::batch::{Answer, Answers, Batch, ItemKind};
use sockmap_core::framer::{LengthFieldOptions, Parse};
use sockmap_core::map::MapKind;
use sockmap_core::program::{ParserKind, ParserProg};
use sockmap_core::sim::Sim;
use sockmap_core::{EngineConfig, Errno, Event, Key, MapId, SockId, Verdict};

/// A SockHash whose sockets take an external stream verdict that propagates FIN.
fn external_verdict_map(sim: &Sim) -> MapId {
    let h = sim.handle();
    let m = h.create_map(MapKind::SockHash, 16).unwrap();
    h.attach(m, external_programs(1, 64, true, None)).unwrap();
    m
}

/// Answers every stream-verdict item of every batch handed off so far with
/// a redirect to `key` in `map`; returns how many items were answered.
fn answer_all(rx: &Receiver<Batch>, map: MapId, key: &str) -> usize {
    let mut n = 0;
    while let Ok(b) = rx.try_recv() {
        let answers: Vec<Answer> = b
            .items
            .iter()
            .map(|it| {
                assert_eq!(it.kind, ItemKind::StreamVerdict);
                Verdict::Redirect {
                    map,
                    key: Key::from(key),
                    ingress: false,
                }
                .into()
            })
            .collect();
        n += answers.len();
        b.reply(answers);
    }
    n
}

#[test]
fn a_gateway_client_ending_never_ends_the_shared_upstream() {
    let (mut sim, rx) = sim_with_external(EngineConfig::default());
    let ups = sim.handle().create_map(MapKind::SockHash, 4).unwrap();
    let gw = external_verdict_map(&sim);
    let u = sim.add_socket();
    put(&sim, ups, "up", u);
    let clients: Vec<SockId> = (0..3).map(|_| sim.add_socket()).collect();
    for (i, &c) in clients.iter().enumerate() {
        put(&sim, gw, i as u64, c);
    }
    // Round 1: every client's first message reaches the shared upstream.
    for (i, &c) in clients.iter().enumerate() {
        sim.peer_send(c, format!("c{i}:1;").as_bytes());
    }
    sim.step();
    assert_eq!(answer_all(&rx, ups, "up"), 3);
    sim.step();
    assert_eq!(sim.take_output(u), b"c0:1;c1:1;c2:1;");
    // Round 2: each client sends once more and ends while its verdict is out.
    for (i, &c) in clients.iter().enumerate() {
        sim.peer_send(c, format!("c{i}:2;").as_bytes());
        sim.peer_fin(c);
    }
    sim.run(3);
    assert!(!sim.sock(u).write_shut, "a client's FIN ended the upstream");
    let ev = sim.take_events();
    assert_eq!(read_ends(&ev), [], "end of stream before its messages");
    assert_eq!(answer_all(&rx, ups, "up"), 3);
    sim.run(2);
    assert_eq!(sim.take_output(u), b"c0:2;c1:2;c2:2;");
    assert!(!sim.sock(u).write_shut && !sim.sock(u).closed);
    let ev = sim.take_events();
    assert_eq!(read_ends(&ev), clients);
    for &c in &clients {
        let s = sim.handle().sock_stats(c).unwrap();
        assert_eq!(
            (s.redirected_egress, s.dropped, s.pending_bytes),
            (2, 0, 0),
            "{s:?}"
        );
    }
    assert_eq!(sim.handle().sock_stats(u).unwrap().bytes_out, 30);
}

#[test]
fn a_paired_partner_gets_the_fin_after_externally_parsed_messages() {
    let (mut sim, rx) = sim_with_external(EngineConfig::default());
    let h = sim.handle().clone();
    let parser = ParserProg::new(ParserKind::External { tag: 9 });
    let (a, b, _) = proxy_pair(&mut sim, Some(parser));
    sim.peer_send(a, b"abcdef");
    sim.peer_fin(a);
    sim.run(3);
    assert!(
        !sim.sock(b).write_shut,
        "FIN overtook messages not yet framed"
    );
    assert_eq!(read_ends(&sim.take_events()), []);
    let batch = rx.try_recv().expect("a parse request");
    assert_eq!(batch.items.len(), 1);
    assert_eq!(
        (batch.items[0].kind, batch.items[0].len),
        (ItemKind::Parse, 6)
    );
    batch.reply(vec![Answer::parsed(vec![
        Parse::Length(4),
        Parse::Length(2),
    ])]);
    sim.run(3);
    assert_eq!(sim.take_output(b), b"abcdef");
    assert!(sim.sock(b).write_shut);
    assert_eq!(read_ends(&sim.take_events()), [a]);
    let s = h.sock_stats(a).unwrap();
    assert_eq!((s.messages_in, s.redirected_egress, s.dropped), (2, 2, 0));
    // The other way, then both close.
    sim.peer_send(b, b"xyz");
    sim.peer_fin(b);
    sim.run(2);
    let batch = rx.try_recv().expect("a parse request");
    batch.reply(vec![Answer::parsed(vec![Parse::Length(3)])]);
    sim.run(3);
    assert_eq!(sim.take_output(a), b"xyz");
    assert!(sim.sock(a).closed && sim.sock(b).closed);
}

#[test]
fn bytes_awaiting_external_verdicts_stop_reading_at_the_bound() {
    const BOUND: usize = 4096;
    const CHUNK: usize = 1024;
    let (mut sim, rx) = sim_with_external(EngineConfig {
        max_pending_bytes: BOUND,
        read_buffer: CHUNK,
        ..EngineConfig::default()
    });
    let gw = external_verdict_map(&sim);
    let targets = sim.handle().create_map(MapKind::SockHash, 4).unwrap();
    let c = sim.add_socket();
    let t = sim.add_socket();
    put(&sim, gw, "c", c);
    put(&sim, targets, "t", t);
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    sim.peer_send(c, &data);
    sim.run(3);
    // Reading stopped at the first read that took the pending bytes past the bound.
    let s = sim.handle().sock_stats(c).unwrap();
    assert!(
        s.pending_bytes > BOUND as u64 && s.pending_bytes <= (BOUND + CHUNK) as u64,
        "{s:?}"
    );
    assert_eq!(s.bytes_in, s.pending_bytes);
    // Answers bring the pending bytes down; reading resumes; nothing is lost.
    let mut peak = s.pending_bytes;
    let mut out = sim.take_output(t);
    for _ in 0..1000 {
        if out.len() == data.len() {
            break;
        }
        answer_all(&rx, targets, "t");
        sim.step();
        out.extend(sim.take_output(t));
        peak = peak.max(sim.handle().sock_stats(c).unwrap().pending_bytes);
    }
    assert_eq!(out, data);
    assert!(peak <= (BOUND + CHUNK) as u64, "peak {peak}");
    let s = sim.handle().sock_stats(c).unwrap();
    assert_eq!(
        (s.bytes_in, s.dropped, s.pending_bytes),
        (data.len() as u64, 0, 0)
    );
    assert_eq!(s.redirected_egress, s.messages_in);
}

/// Frames of the many-targets test: 4-byte big-endian length 4, then the
/// client, its sequence number, the route and a filler byte.
const ROUTED_FRAME: usize = 8;

#[test]
fn one_answer_per_batch_routes_to_many_targets_missing_keys_and_dead_targets_in_order() {
    const TARGETS: usize = 20; // more than the distinct targets remembered inline
    const CLIENTS: usize = 3;
    const FRAMES: usize = 120;
    let (mut sim, rx) = sim_with_external(EngineConfig::default());
    let h = sim.handle().clone();
    let ups = h.create_map(MapKind::SockHash, 64).unwrap();
    let gw = h.create_map(MapKind::SockHash, 16).unwrap();
    let framed = Some(ParserKind::LengthField(LengthFieldOptions::default()));
    h.attach(gw, external_programs(1, ROUTED_FRAME, false, framed))
        .unwrap();
    let targets: Vec<SockId> = (0..TARGETS).map(|_| sim.add_socket()).collect();
    for (i, &t) in targets.iter().enumerate() {
        put(&sim, ups, format!("u{i}").as_str(), t);
    }
    // A target whose write side is shut: in the map, but it takes no bytes.
    let dead = sim.add_socket();
    put(&sim, ups, "dead", dead);
    h.end(dead);
    let clients: Vec<SockId> = (0..CLIENTS).map(|_| sim.add_socket()).collect();
    for (i, &c) in clients.iter().enumerate() {
        put(&sim, gw, i as u64, c);
    }
    sim.run(2);
    assert!(sim.sock(dead).write_shut);
    // Routes: 0..TARGETS a target, then a missing key, the dead target, PASS, DROP, an invalid code.
    let route = |c: usize, i: usize| ((i * 7 + c * 3) % (TARGETS + 5)) as u8;
    let frame = |c: usize, i: usize| [0, 0, 0, 4, c as u8, i as u8, route(c, i), 0xee];
    for round in 0..4 {
        for (c, &sock) in clients.iter().enumerate() {
            let from = round * FRAMES / 4;
            let bytes: Vec<u8> = (from..from + FRAMES / 4)
                .flat_map(|i| frame(c, i))
                .collect();
            sim.peer_send(sock, &bytes);
        }
        sim.run(3);
        while let Ok(b) = rx.try_recv() {
            let mut descs = Vec::new();
            let mut buf = vec![0u8; b.payload_len()];
            b.copy_into(&mut buf, &mut descs);
            let mut answers = Answers::with_capacity(descs.len());
            for d in &descs {
                let r = usize::from(buf[d.offset + 6]);
                let key = match r {
                    r if r < TARGETS => format!("u{r}"),
                    r if r == TARGETS => "nokey".to_string(),
                    _ => "dead".to_string(),
                };
                match r.saturating_sub(TARGETS + 1) {
                    0 => answers.push(Verdict::Redirect {
                        map: ups,
                        key: Key::from(key.as_str()),
                        ingress: false,
                    }),
                    1 => answers.push(Verdict::Pass),
                    2 => answers.push(Verdict::Drop),
                    _ => answers.codes.push(Answers::REDIRECT + 10_000),
                }
            }
            assert!(
                answers.targets.len() <= TARGETS + 2,
                "{:?}",
                answers.targets
            );
            b.reply(answers);
        }
        sim.run(3);
    }
    let events = sim.take_events();
    let invalid = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Error {
                    code: Errno::Inval,
                    ..
                }
            )
        })
        .count();
    assert!(invalid > 0, "invalid codes reported");
    // Every target got exactly its frames, each client's in order.
    for (t, &sock) in targets.iter().enumerate() {
        let got = sim.take_output(sock);
        for (c, _) in clients.iter().enumerate() {
            let mine: Vec<u8> = got
                .chunks(ROUTED_FRAME)
                .filter(|f| usize::from(f[4]) == c)
                .flatten()
                .copied()
                .collect();
            let want: Vec<u8> = (0..FRAMES)
                .filter(|&i| usize::from(route(c, i)) == t)
                .flat_map(|i| frame(c, i))
                .collect();
            assert_eq!(mine, want, "target {t}, client {c}");
        }
    }
    let passed: Vec<(SockId, Vec<u8>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message { sock, data } => {
                Some((*sock, data.iter().flat_map(|b| b.to_vec()).collect()))
            }
            _ => None,
        })
        .collect();
    for (c, &sock) in clients.iter().enumerate() {
        let count = |r: usize| {
            (0..FRAMES)
                .filter(|&i| usize::from(route(c, i)) == r)
                .count()
        };
        let want_pass: Vec<u8> = (0..FRAMES)
            .filter(|&i| usize::from(route(c, i)) == TARGETS + 2)
            .flat_map(|i| frame(c, i))
            .collect();
        let got_pass: Vec<u8> = passed
            .iter()
            .filter(|(s, _)| *s == sock)
            .flat_map(|(_, d)| d.clone())
            .collect();
        assert_eq!(got_pass, want_pass, "client {c} passed, in order");
        let s = h.sock_stats(sock).unwrap();
        let routed: usize = (0..TARGETS).map(count).sum();
        assert_eq!(
            (
                s.messages_in,
                s.redirected_egress,
                s.dropped_no_key,
                s.dropped_dead_target,
                s.passed,
                s.dropped_verdict,
                s.pending_bytes
            ),
            (
                FRAMES as u64,
                routed as u64,
                count(TARGETS) as u64,
                count(TARGETS + 1) as u64,
                count(TARGETS + 2) as u64,
                (count(TARGETS + 3) + count(TARGETS + 4)) as u64,
                0
            ),
            "client {c}: {s:?}"
        );
    }
    assert_eq!(sim.take_output(dead), b"");
}
