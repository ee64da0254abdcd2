//! Partners declared with `EngineHandle::pair`, whatever the verdict: FINs
//! forwarded both ways after exact bytes through an external verdict, on one
//! shard and across two; closes and resets carried to the partner; both
//! leave their maps; errors of `pair`; changes held so that a pair's two
//! entries reach the I/O thread together.

mod engine_util;

use std::net::TcpStream;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;

use engine_util::*;
use sockmap_core::batch::{Answer, Batch};
use sockmap_core::map::MapKind;
use sockmap_core::program::{Programs, StreamVerdictProg, VerdictKind};
use sockmap_core::{
    EngineConfig, Errno, Event, Key, MapId, OnClose, PairOptions, Rule, SockId, Verdict,
};

/// An engine with `shards` I/O threads and external verdicts.
fn harness(shards: usize) -> (Harness, Receiver<Batch>) {
    Harness::with_external(EngineConfig {
        shards: Some(shards),
        ..EngineConfig::default()
    })
}

/// A SockHash whose stream verdict is external (`tag` 1).
fn external_map(h: &Harness) -> MapId {
    let m = h.h().create_map(MapKind::SockHash, 64).unwrap();
    let progs = Programs {
        verdict: Some(Arc::new(StreamVerdictProg::new(VerdictKind::External {
            tag: 1,
            peek_bytes: 0,
        }))),
        ..Programs::default()
    };
    h.h().attach(m, progs).unwrap();
    m
}

/// The external side of a proxy: every message goes to the socket stored
/// in `peers` under its source's id. Ends when batches stop for `DEADLINE`.
fn proxy_verdicts(rx: Receiver<Batch>, peers: MapId) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        while let Ok(b) = rx.recv_timeout(DEADLINE) {
            let answers: Vec<Answer> = b
                .items
                .iter()
                .map(|it| {
                    Verdict::Redirect {
                        map: peers,
                        key: Key::Num(it.sock.as_u64()),
                        ingress: false,
                    }
                    .into()
                })
                .collect();
            n += answers.len();
            b.reply(answers);
        }
        n
    })
}

/// A client and an upstream, each in `map` under the other's id, paired.
fn paired(h: &Harness, map: MapId, opts: PairOptions) -> (TcpStream, SockId, TcpStream, SockId) {
    let (pa, a) = h.pair();
    let (pb, b) = h.pair();
    h.h().pair(a, b, opts).expect("pair");
    h.put(map, a, b);
    h.put(map, b, a);
    (pa, a, pb, b)
}

fn read_end(h: &mut Harness, sock: SockId) {
    h.wait(|e| matches!(e, Event::ReadEnd { sock: s } if *s == sock).then_some(()));
}

/// The client sends a request and ends; the upstream reads exactly the
/// request and its end, then answers and ends; the client reads exactly the
/// answer and its end; both close cleanly.
fn half_close_both_ways(shards: usize) {
    let (mut h, rx) = harness(shards);
    let map = external_map(&h);
    let verdicts = proxy_verdicts(rx, map);
    let (mut client, a, mut upstream, b) = paired(&h, map, PairOptions::default());
    if shards > 1 {
        assert_ne!(h.h().shard_of(a), h.h().shard_of(b), "a pair across shards");
    }
    let request: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    write(&mut client, &request);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut upstream), request);
    read_end(&mut h, a);
    write(&mut upstream, b"the answer, after the request's end");
    upstream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_to_end(&mut client),
        b"the answer, after the request's end"
    );
    assert_eq!(h.closed(a), None);
    assert_eq!(h.closed(b), None);
    assert_eq!(h.h().map_len(map).unwrap(), 0);
    drop(h);
    assert!(verdicts.join().unwrap() >= 2);
}

#[test]
fn a_fin_reaches_the_partner_after_its_bytes_both_ways_through_an_external_verdict() {
    half_close_both_ways(1);
}

#[test]
fn a_fin_reaches_a_partner_on_another_shard_after_its_bytes() {
    half_close_both_ways(2);
}

#[test]
fn a_reset_destroys_the_partner() {
    for shards in [1, 2] {
        let (mut h, rx) = harness(shards);
        let map = external_map(&h);
        let verdicts = proxy_verdicts(rx, map);
        let (client, a, mut upstream, b) = paired(&h, map, PairOptions::default());
        // Bytes the client never reads make its close a reset.
        write(&mut upstream, b"unread");
        h.stats_until(a, |s| s.bytes_out == 6);
        drop(client);
        assert!(h.closed(a).is_some(), "the reset closes the client's side");
        assert_eq!(h.closed(b), None);
        assert_eq!(read_to_end(&mut upstream), b"");
        assert_eq!(h.h().map_len(map).unwrap(), 0);
        drop(h);
        verdicts.join().unwrap();
    }
}

#[test]
fn a_close_ends_the_partner_after_its_queued_bytes_or_destroys_it() {
    for shards in [1, 2] {
        let mut h = Harness::with_config(EngineConfig {
            shards: Some(shards),
            ..EngineConfig::default()
        });
        let map = h.hash_with(|_| Rule::Pass);
        // End (the default): the partner writes out what it was sent, then ends.
        let (_pa, a, mut pb, b) = paired(&h, map, PairOptions::default());
        assert_eq!(h.send(b, b"queued before the close"), Ok(23));
        h.h().destroy(a);
        assert_eq!(h.closed(a), None);
        assert_eq!(read_to_end(&mut pb), b"queued before the close");
        assert_eq!(
            h.h().map_len(map).unwrap(),
            1,
            "b reads on until its peer ends"
        );
        pb.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(h.closed(b), None);
        assert_eq!(h.h().map_len(map).unwrap(), 0);
        // Destroy: the partner closes at once.
        let opts = PairOptions {
            on_close: OnClose::Destroy,
        };
        let (_pc, c, mut pd, d) = paired(&h, map, opts);
        h.h().destroy(c);
        assert_eq!(h.closed(c), None);
        assert_eq!(h.closed(d), None);
        assert_eq!(read_to_end(&mut pd), b"");
        assert_eq!(h.h().map_len(map).unwrap(), 0);
    }
}

#[test]
fn a_fin_read_before_the_pair_was_made_goes_on_when_it_is() {
    let mut h = Harness::new();
    let map = h.hash_with(|_| Rule::Pass);
    let (mut pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    h.put(map, "a", a);
    pa.shutdown(std::net::Shutdown::Write).unwrap();
    read_end(&mut h, a);
    h.h().pair(a, b, PairOptions::default()).unwrap();
    assert_eq!(read_to_end(&mut pb), b"");
    // The pair carries the other way too: b's peer ends, a ends and closes.
    pb.shutdown(std::net::Shutdown::Write).unwrap();
    h.h().resume(b);
    assert_eq!(read_to_end(&mut pa), b"");
    assert_eq!(h.closed(a), None);
    assert_eq!(h.closed(b), None);
}

#[test]
fn pair_refuses_itself_listeners_closed_and_paired_sockets() {
    let mut h = Harness::new();
    let opts = PairOptions::default();
    let (_pa, a) = h.pair();
    let (_pb, b) = h.pair();
    let (_pc, c) = h.pair();
    let (listener, _) = h.h().listen("127.0.0.1:0".parse().unwrap(), 8).unwrap();
    assert_eq!(h.h().pair(a, a, opts), Err(Errno::Inval));
    assert_eq!(h.h().pair(a, listener, opts), Err(Errno::Inval));
    assert_eq!(h.h().partner(a), None);
    h.h().pair(a, b, opts).unwrap();
    assert_eq!((h.h().partner(a), h.h().partner(b)), (Some(b), Some(a)));
    assert_eq!(h.h().pair(a, c, opts), Err(Errno::Busy));
    assert_eq!(h.h().pair(c, b, opts), Err(Errno::Busy));
    assert!(h.h().unpair(b));
    assert!(!h.h().unpair(a));
    assert_eq!((h.h().partner(a), h.h().partner(b)), (None, None));
    h.h().pair(a, c, opts).unwrap();
    h.h().destroy(c);
    assert_eq!(h.closed(c), None);
    assert_eq!(h.h().partner(a), None, "a close dissolves the pair");
    assert_eq!(h.h().pair(a, c, opts), Err(Errno::NotConn));
    // An unpaired socket's close touches nobody.
    h.h().destroy(b);
    assert_eq!(h.closed(b), None);
    assert!(h.h().sock_stats(a).is_some());
}

/// Changes made under a hold reach the I/O thread together: a greeting the
/// upstream already received is not judged between its pair's two entries,
/// even when the application stops between them.
#[test]
fn held_changes_reach_the_io_thread_together() {
    let h = Harness::new();
    let map = h.hash_by_socket();
    let (mut pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    write(&mut pb, b"HELLO\n");
    let hold = h.h().hold_changes();
    h.put(map, a, b);
    // Were this change applied alone, the I/O thread would judge the
    // greeting now and find no socket under b's id.
    std::thread::sleep(std::time::Duration::from_millis(30));
    h.put(map, b, a);
    drop(hold);
    assert_eq!(read_n(&mut pa, 6), b"HELLO\n");
    assert_eq!(h.h().map_stats(map).unwrap().dropped_no_key, 0);
}
