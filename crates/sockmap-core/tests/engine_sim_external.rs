//! Deterministic tests of external verdicts and parsers on the simulated
//! backend: half-close ordering, the pending-bytes bound.

mod engine_util;

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use engine_util::sim::{proxy_pair, put, read_ends, sim_with_external};
use sockmap_core::batch::{Answer, Batch, ItemKind};
use sockmap_core::framer::Parse;
use sockmap_core::map::MapKind;
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg, VerdictKind};
use sockmap_core::sim::Sim;
use sockmap_core::{EngineConfig, Key, MapId, SockId, Verdict};

/// A SockHash whose sockets take an external stream verdict that propagates FIN.
fn external_verdict_map(sim: &Sim) -> MapId {
    let h = sim.handle();
    let m = h.create_map(MapKind::SockHash, 16).unwrap();
    let progs = Programs {
        verdict: Some(Arc::new(StreamVerdictProg {
            kind: VerdictKind::External {
                tag: 1,
                peek_bytes: 64,
            },
            propagate_fin: true,
        })),
        ..Programs::default()
    };
    h.attach(m, progs).unwrap();
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
