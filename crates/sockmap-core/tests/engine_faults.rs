//! Faults the engine must survive, on both backends: the process out of
//! descriptors while connections flood in, peers that reset mid-message or
//! while the engine writes, a peer that never reads, bursts of connections.
#![cfg(target_os = "linux")]

mod engine_util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use engine_util::os::*;
use engine_util::stream::*;
use engine_util::*;
use sockmap_core::config::BackendChoice;
use sockmap_core::map::UpdateFlag;
use sockmap_core::{EngineConfig, Errno, Event, Key, KeySource, Rule, SockId};

fn epoll() -> EngineConfig {
    EngineConfig {
        backend: Some(BackendChoice::Epoll),
        ..EngineConfig::default()
    }
}

/// Connections the child opens into a listener with `ROOM_AFTER` descriptors to spare.
const ROOM_AFTER: usize = 4;

/// In a process with a low descriptor limit, a flood of connections exhausts
/// the table: the engine accepts what fits, tells the application once
/// (`EMFILE` on the listener), does not spin while exhausted, and accepts the
/// rest as soon as descriptors are free, each connection working.
fn descriptors_run_out(cfg: EngineConfig) {
    let (old, _) = leave_room(64);
    let mut h = Harness::with_config(cfg);
    let (l, addr) = h.h().listen("127.0.0.1:0".parse().unwrap(), 256).unwrap();
    let SocketAddr::V4(addr) = addr else {
        unreachable!()
    };
    // The clients' descriptors first (the engine accepts as soon as they
    // connect), so that exactly `ROOM_AFTER` are left for the engine.
    let free = nofile().0 as usize - open_fds().len();
    assert!(free > ROOM_AFTER + 8, "only {free} descriptors free");
    let n = free - ROOM_AFTER;
    let fds: Vec<_> = (0..n).map(|_| tcp_socket()).collect();
    let clients: Vec<TcpStream> = fds.into_iter().map(|fd| connect(fd, addr)).collect();
    let mut accepted = HashMap::new();
    accept_until(&mut h, l, &mut accepted, ROOM_AFTER);
    let code = h.wait(|e| match e {
        Event::Error { sock, code, .. } if *sock == Some(l) => Some(*code),
        _ => None,
    });
    assert_eq!(code, Errno::MFile);
    // Exhausted: the engine retries with a backoff, it does not spin.
    let cpu = cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time() - cpu;
    assert!(
        used < Duration::from_millis(150),
        "{used:?} of CPU in 500 ms while exhausted"
    );
    while let Some(ev) = h.engine.try_event() {
        h.backlog.push_back(ev);
    }
    let early = h
        .backlog
        .iter()
        .filter(|e| matches!(e, Event::Accepted { .. }))
        .count();
    assert_eq!(early, 0, "accepted without descriptors");
    // Descriptors free again: every queued connection is accepted, no second error.
    set_nofile(old);
    accept_until(&mut h, l, &mut accepted, n);
    let errors = h
        .backlog
        .iter()
        .filter(|e| matches!(e, Event::Error { .. }))
        .count();
    assert_eq!(
        errors, 0,
        "the error reached the application again: {:?}",
        h.backlog
    );
    for mut c in clients.into_iter().rev().take(3) {
        let id = accepted[&c.local_addr().unwrap()];
        h.h().resume(id);
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        c.write_all(b"ping").unwrap();
        assert_eq!(h.messages(id, 4).0, b"ping");
        assert_eq!(h.send(id, b"pong"), Ok(4));
        let mut got = [0u8; 4];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
    }
}

/// Waits until `accepted` holds `want` connections of listener `l`, by peer address.
fn accept_until(
    h: &mut Harness,
    l: SockId,
    accepted: &mut HashMap<SocketAddr, SockId>,
    want: usize,
) {
    while accepted.len() < want {
        let (sock, peer) = h.wait(|e| match e {
            Event::Accepted {
                listener,
                sock,
                peer,
            } if *listener == l => match peer {
                sockmap_core::Addr::Inet(a) => Some((*sock, *a)),
                sockmap_core::Addr::Unix(_) => None,
            },
            _ => None,
        });
        accepted.insert(peer, sock);
    }
}

#[test]
fn descriptor_exhaustion_epoll() {
    if in_child("descriptor_exhaustion_epoll") {
        return descriptors_run_out(epoll());
    }
    run_in_child("descriptor_exhaustion_epoll");
}

#[test]
fn descriptor_exhaustion_io_uring() {
    if !io_uring_allowed() {
        return;
    }
    if in_child("descriptor_exhaustion_io_uring") {
        return descriptors_run_out(uring(EngineConfig::default()));
    }
    run_in_child("descriptor_exhaustion_io_uring");
}

/// Both backends where they can run: the settings for each.
fn backends() -> Vec<EngineConfig> {
    let mut v = vec![epoll()];
    if io_uring_allowed() {
        v.push(uring(EngineConfig::default()));
    }
    v
}

/// `cfg` without splicing: every byte a socket holds for its peer is in its
/// send ring, where the counters see it (a pipe is bounded by its own size).
fn copying(cfg: EngineConfig) -> EngineConfig {
    EngineConfig {
        splice_min: None,
        ..cfg
    }
}

/// A peer that resets in the middle of a frame: the whole frames before it
/// are delivered, the socket closes with `ECONNRESET` by its name.
#[test]
fn a_reset_mid_message_closes_with_econnreset() {
    use sockmap_core::framer::LengthFieldOptions;
    use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg};
    use sockmap_core::Rule;
    for cfg in backends() {
        let mut h = Harness::with_config(cfg);
        let m = h
            .h()
            .create_map(sockmap_core::map::MapKind::SockHash, 4)
            .unwrap();
        let progs = Programs {
            parser: Some(std::sync::Arc::new(ParserProg::new(
                ParserKind::LengthField(LengthFieldOptions::default()),
            ))),
            verdict: Some(std::sync::Arc::new(StreamVerdictProg::rule(Rule::Pass))),
            ..Programs::default()
        };
        h.h().attach(m, progs).unwrap();
        let (mut p, s) = h.pair();
        h.put(m, "s", s);
        let whole = [frame(b"one"), frame(b"two")].concat();
        write(&mut p, &[&whole[..], &frame(&[7u8; 100])[..40]].concat());
        assert_eq!(h.take_messages(s, 2), vec![frame(b"one"), frame(b"two")]);
        reset(p);
        assert_eq!(h.closed(s), Some(Errno::ConnReset));
        assert_eq!(
            h.h().map_len(m).unwrap(),
            0,
            "the closed socket left its map"
        );
    }
}

/// A peer that resets while the engine writes to it (its receive buffer
/// full): the engine's write fails, the socket closes with the error's name
/// (`ECONNRESET`, or `EPIPE` once the reset was seen), and the source of the
/// redirected bytes keeps working.
#[test]
fn a_reset_while_the_engine_writes_closes_with_its_name() {
    for cfg in backends() {
        let mut h = Harness::with_config(copying(cfg));
        let (pa, a, pb, b, _) = h.proxy_pair();
        let writer = flood(pa.try_clone().unwrap());
        // The engine holds bytes for b: b's peer is full and not reading.
        h.stats_until(b, |s| s.queued_bytes > 0);
        reset(pb);
        let err = h.closed(b);
        assert!(
            matches!(err, Some(Errno::ConnReset | Errno::Pipe)),
            "closed with {err:?}"
        );
        // a's bytes now go nowhere (its target is gone) but a lives on.
        let mut pa = pa;
        assert_eq!(h.send(a, b"still here"), Ok(10));
        assert_eq!(read_n(&mut pa, 10), b"still here");
        // Shutting the write side wakes the blocked writer with EPIPE.
        pa.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(writer.join().unwrap() > 0);
    }
}

/// A peer that never reads: the engine's queue for it stays under the send
/// ring's high watermark (plus two reads, and a source's cross-shard credit
/// with several shards), its source is stopped instead, and
/// other sockets keep moving bytes exactly.
#[test]
fn a_peer_that_never_reads_holds_bounded_memory() {
    for cfg in backends() {
        let cfg = copying(cfg);
        let high = cfg.send_high_watermark;
        let read = cfg.read_buffer;
        let h = Harness::with_config(cfg);
        let (pa, a, _pb, b, _) = h.proxy_pair();
        let _writer = flood(pa);
        // The kernel's buffers fill first; then the engine queues, then stops the source.
        h.stats_until(a, |s| s.backpressure_stalls > 0);
        let mut peak = 0;
        for _ in 0..20 {
            peak = peak.max(h.h().sock_stats(b).unwrap().queued_bytes);
            std::thread::sleep(Duration::from_millis(10));
        }
        // A source on another shard may add its cross-shard credit (256 KiB unacknowledged).
        let credit = if h.engine.shards() > 1 { 256 << 10 } else { 0 };
        assert!(
            peak <= (high + credit + 2 * read) as u64,
            "{peak} bytes queued for a peer that never reads (high watermark {high})"
        );
        round_trip(&h, 4 << 20);
    }
}

/// Bursts of connections opened and closed (half by the peer's reset, half
/// by the application): every descriptor is closed again, every socket
/// leaves its map, slots are reused (the table does not grow) and no id
/// repeats while an old socket could still be held.
fn connection_bursts(cfg: EngineConfig) {
    const BURSTS: usize = 20;
    const PER_BURST: usize = 100;
    let mut h = Harness::with_config(cfg);
    let m = h
        .h()
        .create_map(sockmap_core::map::MapKind::SockHash, PER_BURST as u32)
        .unwrap();
    let base = open_fds().len();
    let mut ids = std::collections::HashSet::new();
    let mut top_slot = 0;
    for _ in 0..BURSTS {
        let mut socks = Vec::new();
        for i in 0..PER_BURST {
            let (p, id) = h.pair();
            assert!(ids.insert(id), "id {id:?} given twice");
            // The low 32 bits of an id are its slot in the engine's table.
            top_slot = top_slot.max(id.as_u64() & u64::from(u32::MAX));
            h.put(m, format!("k{i}").as_str(), id);
            h.h().resume(id);
            socks.push((p, id));
        }
        assert_eq!(h.h().map_len(m).unwrap(), PER_BURST);
        let mut closing = Vec::new();
        for (i, (p, id)) in socks.into_iter().enumerate() {
            if i % 2 == 0 {
                h.h().destroy(id);
            } else {
                reset(p);
            }
            closing.push(id);
        }
        for id in closing {
            h.closed(id);
        }
        assert_eq!(
            h.h().map_len(m).unwrap(),
            0,
            "closed sockets left in the map"
        );
    }
    until("every descriptor closed again (none leaked)", || {
        open_fds().len() <= base
    });
    assert!(
        top_slot < 4 * PER_BURST as u64,
        "slot {top_slot}: the table grows"
    );
}

#[test]
fn connection_bursts_epoll() {
    if in_child("connection_bursts_epoll") {
        return connection_bursts(epoll());
    }
    run_in_child("connection_bursts_epoll");
}

#[test]
fn connection_bursts_io_uring() {
    if !io_uring_allowed() {
        return;
    }
    if in_child("connection_bursts_io_uring") {
        return connection_bursts(uring(EngineConfig::default()));
    }
    run_in_child("connection_bursts_io_uring");
}

/// The kernel's errors reach the application by their names, not as `EIO`:
/// listen on an address in use or not on this host, connect to a network
/// with no route (a multicast address), to a port nobody listens on.
#[test]
fn os_errors_keep_their_names() {
    for cfg in backends() {
        let mut h = Harness::with_config(cfg);
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert_eq!(h.h().listen(addr, 16).err(), Some(Errno::AddrInUse));
        let elsewhere = "198.51.100.1:0".parse().unwrap();
        assert_eq!(h.h().listen(elsewhere, 16).err(), Some(Errno::AddrNotAvail));
        let multicast = "224.0.0.1:80".parse().unwrap();
        assert_eq!(
            h.h().connect(multicast, None).err(),
            Some(Errno::NetUnreach)
        );
        drop(taken);
        let id = h.h().connect(addr, Some(DEADLINE)).unwrap();
        let result = h.wait(|e| match e {
            Event::Connected { sock, result } if *sock == id => Some(*result),
            _ => None,
        });
        assert_eq!(result, Err(Errno::ConnRefused));
        assert_eq!(h.closed(id), Some(Errno::ConnRefused));
    }
}

/// An engine shut down right after it closed its sockets (the last one
/// closing ends the loop) still closes their descriptors: the peer of a
/// socket closed in that last turn sees its connection end. (On io_uring the
/// close was queued for the next submission, which never came.)
#[test]
fn shutdown_closes_the_sockets_of_the_last_turn() {
    for cfg in backends() {
        let mut h = Harness::with_config(copying(cfg));
        let (pa, _a, pb, b, _) = h.proxy_pair();
        let writer = flood(pa.try_clone().unwrap());
        h.stats_until(b, |s| s.queued_bytes > 0);
        reset(pb);
        h.closed(b);
        drop(h);
        until("the engine's socket closed with it", || {
            writer.is_finished()
        });
        drop(pa);
    }
}

/// Many sockets readable at once while reads have few buffers to land in
/// (on io_uring, a provided-buffer ring of 2, held by slow targets' send
/// rings): the ring runs dry and every `ENOBUFS` is backpressure, the
/// receives armed again as buffers come back; every stream arrives exact,
/// nothing is dropped, no error is raised.
#[test]
fn many_sockets_readable_at_once_share_few_buffers_without_loss() {
    const PAIRS: usize = 12;
    const TOTAL: usize = 1 << 20;
    for cfg in backends() {
        let uring = cfg.backend == Some(BackendChoice::IoUring);
        let h = Harness::with_config(copying(EngineConfig {
            recv_buffers: 2,
            read_buffer: 4096,
            send_high_watermark: 16 << 10,
            send_low_watermark: 4 << 10,
            ..cfg
        }));
        let pairs: Vec<_> = (0..PAIRS).map(|_| h.proxy_pair()).collect();
        // Every source is written at once; the readers start only once all are queued up.
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        let mut ids = Vec::new();
        for (pa, a, pb, b, _) in pairs {
            writers.push(pump(pa, TOTAL));
            readers.push(pb);
            ids.push((a, b));
        }
        for (a, _) in &ids {
            h.stats_until(*a, |s| s.bytes_in > 0);
        }
        let readers: Vec<_> = readers
            .into_iter()
            .map(|mut pb| {
                std::thread::spawn(move || {
                    expect_pattern(&mut pb, TOTAL, 3000);
                    pb
                })
            })
            .collect();
        // Both ends stay open until the counters are read.
        let _ends: Vec<_> = readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .zip(writers.into_iter().map(|w| w.join().unwrap()))
            .collect();
        for (a, b) in &ids {
            h.stats_eq(*b, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
            h.settled_eq(*a, |s| (s.bytes_in, s.dropped), (TOTAL as u64, 0));
        }
        if uring {
            let starved = h.engine.backend_stats().starved;
            assert!(
                starved >= 1,
                "the ring never ran dry: the test proves nothing"
            );
            eprintln!("io_uring: {PAIRS} sockets, 2 buffers: ran dry {starved} times");
        }
        while let Some(e) = h.engine.try_event() {
            assert!(
                !matches!(e, Event::Error { .. } | Event::Closed { .. }),
                "{e:?}"
            );
        }
    }
}

/// A full map (as the kernel's: `E2BIG` for one more key, an existing key
/// still replaceable) refuses the socket that does not fit, with its name,
/// while the sockets in it go on carrying bytes; a freed entry takes it.
#[test]
fn a_full_map_refuses_with_e2big_while_its_sockets_go_on() {
    for cfg in backends() {
        let h = Harness::with_config(cfg);
        let echo = h.hash_sized(2, |m| Rule::Redirect {
            map: m,
            key: KeySource::Socket,
            ingress: false,
        });
        let mut socks: Vec<_> = (0..3).map(|_| h.pair()).collect();
        for (_, s) in &socks[..2] {
            h.put(echo, *s, *s);
        }
        let one_more = |(_, s): &(TcpStream, SockId)| {
            h.h().map_update(echo, &Key::from(*s), *s, UpdateFlag::Any)
        };
        assert_eq!(one_more(&socks[2]), Err(Errno::TooBig));
        // An existing key is replaced in place, full or not.
        assert_eq!(one_more(&socks[0]), Ok(()));
        let echo_exact = |p: &mut TcpStream, n: usize| {
            let data: Vec<u8> = (0..n).map(pattern).collect();
            p.write_all(&data).unwrap();
            expect_pattern(p, n, 64 << 10);
        };
        for (p, _) in &mut socks[..2] {
            echo_exact(p, 256 << 10);
        }
        assert_eq!(h.h().map_len(echo), Ok(2));
        let (_, b) = socks[1];
        h.h().map_delete(echo, &Key::from(b)).unwrap();
        assert_eq!(one_more(&socks[2]), Ok(()));
        echo_exact(&mut socks[2].0, 256 << 10);
        echo_exact(&mut socks[0].0, 1024);
    }
}
