//! Request/response pairing over real sockets: clients in requests mode
//! pipeline RESP commands through the engine to two upstreams written in the
//! test (one answering some keys slowly); every client gets exactly one
//! reply per request, in its request order, byte for byte, whichever
//! upstream answered first. Upstream death and timeouts answer with the
//! exact error replies, orphaned replies are counted, `max_pending` bounds
//! what a client has outstanding, and the application's send fills the slot
//! of a request passed to it. Runs on every backend and shard count.

mod engine_util;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine_util::resp_upstream::{get, get_reply, RespUpstream};
use engine_util::*;
use sockmap_core::framer::{LengthFieldOptions, MessageMeta, RespOptions};
use sockmap_core::map::MapKind;
use sockmap_core::program::{ParserKind, ParserProg, Programs, RequestsConfig, StreamVerdictProg};
use sockmap_core::rules::MessageView;
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{EngineConfig, Errno, Event, Key, MapId, Rule, SockId, Verdict};

/// An engine acting as a Redis gateway: clients on one map, upstreams `A`
/// and `B` (one connection each per shard) on another. Keys starting with
/// `f` go to `B`, with `p` to the application, with `x` are dropped, the
/// others go to `A`.
struct Gateway {
    h: Harness,
    ups: MapId,
    clients: MapId,
    shards: Arc<Mutex<HashMap<SockId, usize>>>,
    /// Upstream connections by name and shard.
    conns: HashMap<(&'static str, usize), SockId>,
}

fn route(ups: MapId, shards: &Mutex<HashMap<SockId, usize>>, v: &MessageView<'_>) -> Verdict {
    let MessageMeta::Resp { key: Some(k), .. } = v.meta else {
        return Verdict::Drop;
    };
    let mut key = smallvec::SmallVec::new();
    v.copy_range(k.start, k.len(), &mut key);
    let name = match key.first() {
        Some(b'f') => "B",
        Some(b'p') => return Verdict::Pass,
        Some(b'x') => return Verdict::Drop,
        _ => "A",
    };
    let shard = shards.lock().unwrap().get(&v.sock).copied().unwrap_or(0);
    Verdict::Redirect {
        map: ups,
        key: Key::from(format!("{name}-{shard}").as_str()),
        ingress: false,
    }
}

fn resp() -> Option<Arc<ParserProg>> {
    Some(Arc::new(ParserProg::new(ParserKind::Resp(
        RespOptions::default(),
    ))))
}

impl Gateway {
    fn new(requests: RequestsConfig) -> Gateway {
        Gateway::on(requests, EngineConfig::default())
    }

    fn on(requests: RequestsConfig, cfg: EngineConfig) -> Gateway {
        let h = Harness::with_config(cfg);
        let ups = h.h().create_map(MapKind::SockHash, 64).unwrap();
        h.h()
            .attach(
                ups,
                Programs {
                    parser: resp(),
                    verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Reply))),
                    ..Programs::default()
                },
            )
            .unwrap();
        let clients = h.h().create_map(MapKind::SockHash, 64).unwrap();
        let shards: Arc<Mutex<HashMap<SockId, usize>>> = Arc::default();
        let table = shards.clone();
        let f: sockmap_core::rules::VerdictFn = Arc::new(move |v| route(ups, &table, v));
        h.h()
            .attach(
                clients,
                Programs {
                    parser: resp(),
                    verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Func(f)))),
                    requests: Some(Arc::new(requests)),
                    ..Programs::default()
                },
            )
            .unwrap();
        Gateway {
            h,
            ups,
            clients,
            shards,
            conns: HashMap::new(),
        }
    }

    /// A client in requests mode, with connections to `a` and `b` on its shard.
    fn client(&mut self, a: &RespUpstream, b: &RespUpstream) -> (TcpStream, SockId) {
        let (peer, id) = self.h.pair();
        let shard = self.h.h().shard_of(id);
        self.shards.lock().unwrap().insert(id, shard);
        for (name, addr) in [("A", a.addr), ("B", b.addr)] {
            if !self.conns.contains_key(&(name, shard)) {
                let up = self.connect(addr, id);
                self.h.put(self.ups, format!("{name}-{shard}").as_str(), up);
                self.conns.insert((name, shard), up);
            }
        }
        self.h.put(self.clients, id, id);
        (peer, id)
    }

    /// An upstream connection on `near`'s shard.
    fn connect(&mut self, addr: SocketAddr, near: SockId) -> SockId {
        let up = self
            .h
            .h()
            .connect_near(addr, Some(DEADLINE), Some(near))
            .unwrap();
        let result = self.h.wait(|e| match e {
            Event::Connected { sock, result } if *sock == up => Some(*result),
            _ => None,
        });
        assert_eq!(result, Ok(()));
        up
    }

    fn upstream(&self, name: &'static str, client: SockId) -> SockId {
        self.conns[&(name, self.h.h().shard_of(client))]
    }
}

fn commands(keys: &[String]) -> Vec<u8> {
    keys.iter().flat_map(|k| get(k)).collect()
}

#[test]
fn replies_reach_each_client_in_request_order_across_two_upstreams() {
    let (a, b) = (RespUpstream::start("A"), RespUpstream::start("B"));
    let mut g = Gateway::new(RequestsConfig::default());
    let mut clients: Vec<_> = (0..8).map(|_| g.client(&a, &b)).collect();
    let mut expected = Vec::new();
    for (i, (peer, _)) in clients.iter_mut().enumerate() {
        // The first request of each client is slow on A; B answers the
        // following ones long before it.
        let keys: Vec<String> = (0..30)
            .map(|j| match j {
                0 => format!("slow{i}"),
                j if j % 2 == 0 => format!("a{i}-{j}"),
                j => format!("f{i}-{j}"),
            })
            .collect();
        let want: Vec<u8> = keys
            .iter()
            .flat_map(|k| get_reply(if k.starts_with('f') { "B" } else { "A" }, k))
            .collect();
        write(peer, &commands(&keys));
        expected.push(want);
    }
    for ((peer, id), want) in clients.iter_mut().zip(&expected) {
        assert_eq!(read_n(peer, want.len()), *want, "client {id}");
        let counts =
            |s: &StatsSnapshot| (s.requests, s.replies, s.error_replies, s.pending_requests);
        g.h.stats_eq(*id, counts, (30, 30, 0, 0));
    }
    // Eight clients shared at most one connection per upstream per shard.
    assert!(g.conns.len() <= 2 * g.h.engine.shards());
    assert_eq!(a.seen.received.load(Ordering::SeqCst), 8 * 15);
    assert_eq!(b.seen.received.load(Ordering::SeqCst), 8 * 15);
}

#[test]
fn an_upstream_that_closes_answers_its_pending_requests_with_error_replies() {
    let (a, b) = (RespUpstream::start("A"), RespUpstream::start("B"));
    let mut g = Gateway::new(RequestsConfig::default());
    let (mut peer, id) = g.client(&a, &b);
    let up = g.upstream("A", id);
    write(
        &mut peer,
        &commands(&["a1".into(), "f1".into(), "die1".into(), "f2".into()]),
    );
    let mut want = get_reply("A", "a1");
    want.extend(get_reply("B", "f1"));
    want.extend(b"-ERR sockmap: upstream closed\r\n");
    want.extend(get_reply("B", "f2"));
    assert_eq!(read_n(&mut peer, want.len()), want);
    assert_eq!(g.h.closed(up), None);
    // The closed upstream left its map: a request for it has no upstream.
    write(&mut peer, &get("a2"));
    let want = b"-ERR sockmap: no upstream\r\n";
    assert_eq!(read_n(&mut peer, want.len()), want);
    g.h.stats_eq(
        id,
        |s| {
            let replies = (s.requests, s.replies, s.error_replies);
            let errors = (
                s.error_upstream_closed,
                s.error_no_upstream,
                s.dropped_no_key,
            );
            (replies, errors)
        },
        ((5, 3, 2), (1, 1, 1)),
    );
}

#[test]
fn an_unanswered_request_times_out_and_its_upstream_closes_with_etimedout() {
    let (a, b) = (RespUpstream::start("A"), RespUpstream::start("B"));
    let mut g = Gateway::new(RequestsConfig {
        timeout: Duration::from_millis(300),
        ..RequestsConfig::default()
    });
    let (mut peer, id) = g.client(&a, &b);
    let up = g.upstream("A", id);
    let start = Instant::now();
    write(&mut peer, &commands(&["hang1".into(), "f1".into()]));
    let mut want = b"-ERR sockmap: upstream timed out\r\n".to_vec();
    want.extend(get_reply("B", "f1"));
    assert_eq!(read_n(&mut peer, want.len()), want);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(g.h.closed(up), Some(Errno::TimedOut));
    let counts = |s: &StatsSnapshot| (s.requests, s.replies, s.error_replies, s.error_timeout);
    g.h.stats_eq(id, counts, (2, 1, 1, 1));
}

#[test]
fn replies_for_a_closed_client_are_counted_as_orphans() {
    let (a, b) = (RespUpstream::start("A"), RespUpstream::start("B"));
    let mut g = Gateway::new(RequestsConfig::default());
    let (mut gone, gone_id) = g.client(&a, &b);
    let up = g.upstream("A", gone_id);
    write(&mut gone, &get("slow1"));
    until("A received the request", || {
        a.seen.received.load(Ordering::SeqCst) == 1
    });
    g.h.h().destroy(gone_id);
    assert_eq!(g.h.closed(gone_id), None);
    g.h.stats_eq(up, |s| (s.orphan_replies, s.pending_requests), (1, 0));
    // The upstream goes on pairing the next client's requests rightly.
    let (mut peer, _) = g.client(&a, &b);
    write(&mut peer, &get("a2"));
    let want = get_reply("A", "a2");
    assert_eq!(read_n(&mut peer, want.len()), want);
}

#[test]
fn max_pending_bounds_the_requests_a_client_has_outstanding() {
    let (a, b) = (RespUpstream::start("A"), RespUpstream::start("B"));
    let mut g = Gateway::new(RequestsConfig {
        max_pending: 4,
        ..RequestsConfig::default()
    });
    let (mut peer, id) = g.client(&a, &b);
    let keys: Vec<String> = (0..40).map(|i| format!("tick{i}")).collect();
    write(&mut peer, &commands(&keys));
    let want: Vec<u8> = keys.iter().flat_map(|k| get_reply("A", k)).collect();
    assert_eq!(read_n(&mut peer, want.len()), want);
    let max = a.seen.max_outstanding.load(Ordering::SeqCst);
    assert!((1..=4).contains(&max), "outstanding at most 4, saw {max}");
    let counts = |s: &StatsSnapshot| (s.requests, s.replies, s.pending_requests);
    g.h.stats_eq(id, counts, (40, 40, 0));
}

#[test]
fn passed_and_dropped_requests_get_their_replies_in_order() {
    let (a, b) = (RespUpstream::start("A"), RespUpstream::start("B"));
    let mut g = Gateway::new(RequestsConfig::default());
    let (mut peer, id) = g.client(&a, &b);
    write(
        &mut peer,
        &commands(&["slow1".into(), "p1".into(), "x1".into(), "f1".into()]),
    );
    let passed = g.h.take_messages(id, 1);
    assert_eq!(passed, vec![get("p1")]);
    assert_eq!(g.h.send(id, b"+LOCAL\r\n"), Ok(8));
    let mut want = get_reply("A", "slow1");
    want.extend(b"+LOCAL\r\n");
    want.extend(b"-ERR sockmap: denied\r\n");
    want.extend(get_reply("B", "f1"));
    assert_eq!(read_n(&mut peer, want.len()), want);
    g.h.stats_eq(
        id,
        |s| {
            let replies = (s.requests, s.pending_requests, s.replies, s.local_replies);
            (replies, s.error_denied, s.dropped_verdict, s.passed)
        },
        ((4, 0, 2, 1), 1, 1, 1),
    );
}

#[test]
fn a_client_without_an_error_reply_format_is_closed_with_the_errno() {
    let h = Harness::new();
    let m = h.h().create_map(MapKind::SockHash, 4).unwrap();
    h.h()
        .attach(
            m,
            Programs {
                parser: Some(Arc::new(ParserProg::new(ParserKind::LengthField(
                    LengthFieldOptions::default(),
                )))),
                verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Drop))),
                requests: Some(Arc::new(RequestsConfig::default())),
                ..Programs::default()
            },
        )
        .unwrap();
    let mut h = h;
    let (mut peer, id) = h.pair();
    h.put(m, id, id);
    write(&mut peer, &frame(b"hello"));
    assert_eq!(h.closed(id), Some(Errno::Acces));
}

#[test]
fn a_request_routed_to_an_upstream_of_another_shard_gets_an_error_reply() {
    let (a, b) = (RespUpstream::start("A"), RespUpstream::start("B"));
    let cfg = EngineConfig {
        shards: Some(2),
        ..EngineConfig::default()
    };
    let mut g = Gateway::on(RequestsConfig::default(), cfg);
    let (mut peer, id) = g.client(&a, &b);
    let shard = g.h.h().shard_of(id);
    // A socket on the other shard (the least loaded), and an upstream near it under the client's "A" key.
    let (_other_peer, other) = g.h.pair();
    assert_ne!(g.h.h().shard_of(other), shard);
    let far = g.connect(a.addr, other);
    g.h.put(g.ups, format!("A-{shard}").as_str(), far);
    write(&mut peer, &commands(&["a1".into(), "f1".into()]));
    let mut want = b"-ERR sockmap: no upstream\r\n".to_vec();
    want.extend(get_reply("B", "f1"));
    assert_eq!(read_n(&mut peer, want.len()), want);
    let counts = |s: &StatsSnapshot| (s.requests, s.replies, s.error_no_upstream);
    g.h.stats_eq(id, counts, (2, 1, 1));
    assert_eq!(a.seen.received.load(Ordering::SeqCst), 0);
}
