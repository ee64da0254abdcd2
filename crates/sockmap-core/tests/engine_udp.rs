//! Datagram sockets in maps, on both backends and with one and two shards:
//! a UDP gateway with sessions redirecting each client's datagrams to an
//! upstream the engine connected, and the replies back to the right client
//! (exact bytes, datagram boundaries kept); a bound socket's PASS with the
//! sender and its `send_to`; a full datagram queue dropping and counting;
//! idle sessions closing; Unix datagram sockets the same way.
#![cfg(target_os = "linux")]

mod engine_util;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine_util::stream::backend_configs;
use engine_util::*;
use sockmap_core::dgram::SessionConfig;
use sockmap_core::event::frags_to_vec;
use sockmap_core::framer::{DelimiterOptions, LengthFieldOptions};
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg};
use sockmap_core::{
    Addr, EngineConfig, Event, Key, KeySource, MapKind, Rule, SockId, UnixName, UpdateFlag,
};

fn udp_peer(host: &str) -> UdpSocket {
    let s = UdpSocket::bind((host, 0)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 65536];
    let (n, from) = s.recv_from(&mut buf).expect("datagram within the deadline");
    buf.truncate(n);
    (buf, from)
}

/// A bound UDP socket on the IPv4 loopback (no sessions), resumed: its id and address.
fn reading_bound(h: &Harness) -> (SockId, SocketAddr) {
    let (bound, local) = h
        .h()
        .bind_udp("127.0.0.1:0".parse().unwrap(), None)
        .unwrap();
    h.h().resume(bound);
    (bound, local)
}

/// The next session the bound socket announces: its id and client.
fn session(h: &mut Harness, bound: SockId) -> (SockId, Addr) {
    h.wait(|e| match e {
        Event::Accepted {
            listener,
            sock,
            peer,
        } if *listener == bound => Some((*sock, peer.clone())),
        _ => None,
    })
}

/// A SockHash keyed by socket whose native rule redirects each session to
/// its upstream and each upstream to its session.
fn proxy_map(h: &Harness) -> sockmap_core::MapId {
    h.hash_with(|m| Rule::Redirect {
        map: m,
        key: KeySource::Socket,
        ingress: false,
    })
}

#[test]
fn gateway_sessions_carry_each_client_to_its_upstream_and_back() {
    for host in ["127.0.0.1", "::1"] {
        for cfg in backend_configs() {
            let case = format!("{host} {:?}×{:?}", cfg.backend, cfg.shards);
            let mut h = Harness::with_config(cfg);
            let sessions = SessionConfig {
                idle_timeout: Duration::from_secs(30),
                max_sessions: 16,
            };
            let any: SocketAddr = format!("[{}]:0", host.trim_matches(['[', ']']))
                .parse()
                .unwrap_or_else(|_| format!("{host}:0").parse().unwrap());
            let (bound, local) = h.h().bind_udp(any, Some(sessions)).unwrap();
            let map = proxy_map(&h);
            let upstream = udp_peer(host);
            let clients: Vec<UdpSocket> = (0..3).map(|_| udp_peer(host)).collect();
            for (i, c) in clients.iter().enumerate() {
                c.send_to(format!("hello {i}").as_bytes(), local).unwrap();
                let (s, peer) = session(&mut h, bound);
                assert_eq!(peer, Addr::Inet(c.local_addr().unwrap()), "{case}");
                let (up, _) = h
                    .h()
                    .connect_udp(upstream.local_addr().unwrap(), None, Some(s))
                    .unwrap();
                h.put(map, s, up);
                h.put(map, up, s);
                let (got, from) = recv(&upstream);
                assert_eq!(got, format!("hello {i}").as_bytes(), "{case}");
                // Two datagrams back: boundaries kept, to the right client.
                upstream.send_to(b"reply-a", from).unwrap();
                upstream.send_to(&vec![i as u8; 1200], from).unwrap();
                assert_eq!(recv(c), (b"reply-a".to_vec(), local), "{case}");
                assert_eq!(recv(c).0, vec![i as u8; 1200], "{case}");
            }
            // A second datagram of a known client goes to its session, no new one.
            clients[1].send_to(b"again", local).unwrap();
            let (got, _) = recv(&upstream);
            assert_eq!(got, b"again", "{case}");
            let st = h.stats_eq(bound, |s| s.bytes_out, 3 * (7 + 1200));
            assert_eq!(st.dropped, 0, "{case}");
            assert!(
                h.backlog
                    .iter()
                    .all(|e| !matches!(e, Event::Accepted { listener, .. } if *listener == bound)),
                "{case}: a session too many"
            );
            h.engine.shutdown();
        }
    }
}

#[test]
fn a_bound_socket_passes_datagrams_with_their_sender_and_sends_to_any() {
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg);
        let (bound, local) = reading_bound(&h);
        let a = udp_peer("127.0.0.1");
        let b = udp_peer("127.0.0.1");
        a.send_to(b"from a", local).unwrap();
        b.send_to(b"from b", local).unwrap();
        for (peer, want) in [(&a, b"from a"), (&b, b"from b")] {
            let (data, from) = h.wait(|e| match e {
                Event::Datagram { sock, data, from } if *sock == bound => {
                    Some((frags_to_vec(data), from.clone()))
                }
                _ => None,
            });
            assert_eq!(data, want);
            assert_eq!(from, Addr::Inet(peer.local_addr().unwrap()));
            h.h().send_to(bound, Bytes::from_static(b"back"), from, 7);
        }
        assert_eq!(recv(&a), (b"back".to_vec(), local));
        assert_eq!(recv(&b), (b"back".to_vec(), local));
        h.engine.shutdown();
    }
}

#[test]
fn a_full_datagram_queue_drops_and_counts_and_idle_sessions_close() {
    for cfg in backend_configs() {
        let cfg = EngineConfig {
            dgram_queue_datagrams: 4,
            ..cfg
        };
        let mut h = Harness::with_config(cfg);
        let sessions = SessionConfig {
            idle_timeout: Duration::from_millis(200),
            max_sessions: 1,
        };
        let (bound, local) = h
            .h()
            .bind_udp("127.0.0.1:0".parse().unwrap(), Some(sessions))
            .unwrap();
        let c = udp_peer("127.0.0.1");
        let other = udp_peer("127.0.0.1");
        // Datagrams held by a session not yet in a map: 4 kept, the rest counted.
        for i in 0..10u8 {
            c.send_to(&[i], local).unwrap();
        }
        let (s, _) = session(&mut h, bound);
        h.stats_eq(s, |st| (st.dropped_overflow, st.dropped), (6, 6));
        // A second client beyond max_sessions: dropped on the bound socket.
        other.send_to(b"x", local).unwrap();
        h.stats_until(bound, |st| st.dropped_overflow == 1);
        h.h().resume(s);
        let got: Vec<Vec<u8>> = h.take_messages(s, 4);
        assert_eq!(got, vec![vec![0], vec![1], vec![2], vec![3]]);
        // Idle: the session closes.
        assert_eq!(h.closed(s), None);
        h.engine.shutdown();
    }
}

#[test]
fn unix_datagram_sessions_answer_bound_clients() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr as UnixAddr;
    let dir = std::env::temp_dir().join(format!("sockmap-udp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (k, cfg) in backend_configs().into_iter().enumerate() {
        let mut h = Harness::with_config(cfg);
        let path = dir.join(format!("gw-{k}"));
        let (bound, _) = h
            .h()
            .bind_unix_dgram(
                &UnixName::Path(path.clone()),
                Some(SessionConfig::default()),
            )
            .unwrap();
        let map = proxy_map(&h);
        let up_name = format!("sockmap-udp-up-{}-{k}", std::process::id());
        let upstream =
            UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(up_name.as_bytes()).unwrap())
                .unwrap();
        upstream.set_read_timeout(Some(DEADLINE)).unwrap();
        let cpath = dir.join(format!("client-{k}"));
        let client = UnixDatagram::bind(&cpath).unwrap();
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        client.send_to(b"ping", &path).unwrap();
        let (s, peer) = session(&mut h, bound);
        assert_eq!(peer, Addr::Unix(UnixName::Path(cpath.clone())));
        let gw_side =
            UnixName::Abstract(format!("sockmap-udp-gw-{}-{k}", std::process::id()).into_bytes());
        let up = h
            .h()
            .connect_unix_dgram(
                &UnixName::Abstract(up_name.into_bytes()),
                Some(&gw_side),
                Some(s),
            )
            .unwrap();
        h.put(map, s, up);
        h.put(map, up, s);
        let mut buf = [0; 64];
        let (n, from) = upstream.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        upstream.send_to_addr(b"pong", &from).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
        h.engine.shutdown();
        assert!(!path.exists(), "the socket file is removed on close");
        std::fs::remove_file(&cpath).unwrap();
    }
}

#[test]
fn offloads_keep_every_datagram_whole() {
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg);
        let (bound, local) = reading_bound(&h);
        let (c, _) = h.h().connect_udp(local, None, None).unwrap();
        // Datagrams of one size (and a shorter last one) that queue together go as one segmented send, coalesced
        // on receipt; bursts until one did (the I/O thread may take a burst's sends over several turns).
        let mut req = 0;
        for round in 0..50u8 {
            let sent: Vec<Vec<u8>> = (0..40u8)
                .map(|i| vec![i ^ round; if i == 39 { 300 } else { 1200 }])
                .collect();
            for d in &sent {
                req += 1;
                h.h().send(c, Bytes::from(d.clone()), req);
            }
            for want in &sent {
                let got = h.wait(|e| match e {
                    Event::Datagram { sock, data, .. } if *sock == bound => {
                        Some(frags_to_vec(data))
                    }
                    _ => None,
                });
                assert_eq!(&got, want, "round {round}");
            }
            let st = h.engine.backend_stats();
            if st.segmented > 0 && st.coalesced > 0 {
                break;
            }
            assert!(round < 49, "never segmented and coalesced: {st:?}");
        }
        h.engine.shutdown();
    }
}

/// A bound socket (no sessions) whose map runs `parser` and passes every
/// message, resumed: its id and address.
fn framing_bound(h: &Harness, parser: ParserProg) -> (SockId, SocketAddr) {
    let m = h.h().create_map(MapKind::SockHash, 4).unwrap();
    let progs = Programs {
        parser: Some(Arc::new(parser)),
        verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Pass))),
        ..Programs::default()
    };
    h.h().attach(m, progs).unwrap();
    let (bound, local) = reading_bound(h);
    h.h()
        .map_update(m, &Key::Num(0), bound, UpdateFlag::Any)
        .unwrap();
    (bound, local)
}

/// The next `n` messages a bound socket passes: their bytes and senders.
fn passed(h: &mut Harness, bound: SockId, n: usize) -> Vec<(Vec<u8>, Addr)> {
    (0..n)
        .map(|_| {
            h.wait(|e| match e {
                Event::Datagram { sock, data, from } if *sock == bound => {
                    Some((frags_to_vec(data), from.clone()))
                }
                _ => None,
            })
        })
        .collect()
}

/// A length-prefixed record: a 4-byte big-endian length, then `body`.
fn record(body: &[u8]) -> Vec<u8> {
    let mut r = (body.len() as u32).to_be_bytes().to_vec();
    r.extend_from_slice(body);
    r
}

#[test]
fn a_native_parser_frames_each_datagram_alone() {
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg);
        // Lines: several per datagram, the last one ended by the datagram's end.
        let (lines, at) = framing_bound(
            &h,
            ParserProg::new(ParserKind::Delimiter(DelimiterOptions::lines())),
        );
        let (a, b) = (udp_peer("127.0.0.1"), udp_peer("127.0.0.1"));
        let (from_a, from_b) = (
            Addr::Inet(a.local_addr().unwrap()),
            Addr::Inet(b.local_addr().unwrap()),
        );
        a.send_to(b"a:1|c\nbb:2|c\r\nccc:3|g", at).unwrap();
        let got = passed(&mut h, lines, 3);
        b.send_to(b"dd:4|ms\n", at).unwrap();
        let got: Vec<_> = got.into_iter().chain(passed(&mut h, lines, 1)).collect();
        let want = [
            (&b"a:1|c"[..], &from_a),
            (b"bb:2|c", &from_a),
            (b"ccc:3|g", &from_a),
            (b"dd:4|ms", &from_b),
        ];
        assert_eq!(
            got,
            want.map(|(d, f)| (d.to_vec(), f.clone())).to_vec(),
            "lines"
        );
        h.stats_eq(lines, |s| (s.messages_in, s.dropped), (4, 0));

        // Length-prefixed records: one cut by the datagram's end is dropped,
        // one over the limit drops the rest of its datagram alone.
        let mut prog = ParserProg::new(ParserKind::LengthField(LengthFieldOptions::default()));
        prog.max_message_bytes = 64;
        let (records, at) = framing_bound(&h, prog);
        let cut = [
            record(b"one"),
            record(b"two"),
            record(b"three")[..6].to_vec(),
        ]
        .concat();
        a.send_to(&cut, at).unwrap();
        let big = [record(b"four"), record(&[7; 100])].concat();
        a.send_to(&big, at).unwrap();
        a.send_to(&record(b"five"), at).unwrap();
        let got: Vec<Vec<u8>> = passed(&mut h, records, 4)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let want = [b"one".as_slice(), b"two", b"four", b"five"].map(record);
        assert_eq!(got, want.to_vec(), "records");
        h.stats_eq(
            records,
            |s| {
                (
                    s.messages_in,
                    s.dropped_parser,
                    s.dropped_bytes,
                    s.parser_errors,
                )
            },
            (4, 2, 6 + 104, 1),
        );
        h.engine.shutdown();
    }
}
