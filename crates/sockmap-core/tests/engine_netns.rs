//! Over a real network: an upstream host in its own network namespace,
//! behind a veth pair shaped by `tc` (a bandwidth limit with a short queue
//! that drops, and `netem` delay, jitter, loss and reordering where the
//! kernel has it), reached through the engine as a 1:1 proxy. Skipped, with
//! a message, where the process is not root or iproute2 is missing.
#![cfg(target_os = "linux")]

mod engine_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use engine_util::netns::NetHost;
use engine_util::stream::*;
use engine_util::*;
use sockmap_core::config::BackendChoice;
use sockmap_core::{EngineConfig, Errno, Event, KeySource, Rule, SockId};

fn backends() -> Vec<EngineConfig> {
    let mut v = vec![EngineConfig {
        backend: Some(BackendChoice::Epoll),
        ..EngineConfig::default()
    }];
    if io_uring_allowed() {
        v.push(uring(EngineConfig::default()));
    }
    v
}

/// An echo server on the host: returns its address; the thread ends with the connection.
fn echo_on(host: &NetHost) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    let ip = host.addr();
    host.spawn(move || {
        let l = TcpListener::bind((ip, 0)).unwrap();
        tx.send(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut r = s.try_clone().unwrap();
        let _ = std::io::copy(&mut r, &mut s);
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    rx.recv_timeout(DEADLINE).unwrap()
}

/// The engine connects to `upstream` and proxies it 1:1 with a new loopback
/// client: returns the client's end and the two engine sockets.
fn proxy_to(h: &mut Harness, upstream: SocketAddr) -> (TcpStream, SockId, SockId) {
    let up = h.h().connect(upstream, Some(DEADLINE)).unwrap();
    let result = h.wait(|e| match e {
        Event::Connected { sock, result } if *sock == up => Some(*result),
        _ => None,
    });
    assert_eq!(result, Ok(()), "connect to {upstream}");
    let map = h.hash_with(|m| Rule::Redirect {
        map: m,
        key: KeySource::Socket,
        ingress: false,
    });
    let (client, down) = h.pair();
    h.put(map, down, up);
    h.put(map, up, down);
    (client, down, up)
}

/// Bytes through the engine to a host across a lossy, rate-limited link and
/// back, exact: every loss is the kernel's to repair, none may show.
#[test]
fn exact_bytes_through_a_proxy_across_a_lossy_link() {
    let Some(host) = NetHost::new() else { return };
    // A 40 Mbit/s link whose queue holds 20 packets: bursts above it are dropped.
    host.shape("tbf rate 40mbit burst 16kb limit 30000")
        .unwrap();
    let netem = "netem delay 4ms 2ms loss 1% reorder 5% 50% rate 40mbit limit 200";
    match host.shape(netem) {
        Ok(()) => eprintln!("link: {netem}"),
        Err(e) => {
            eprintln!("SKIPPED netem (delay, jitter, loss, reordering): {e}; the link is tbf only")
        }
    }
    for cfg in backends() {
        let mut h = Harness::with_config(cfg);
        let (client, _, _) = proxy_to(&mut h, echo_on(&host));
        const TOTAL: usize = 2 << 20;
        let writer = pump(client.try_clone().unwrap(), TOTAL);
        let mut client = client;
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        expect_pattern(&mut client, TOTAL, 64 << 10);
        drop(writer.join().unwrap());
    }
    let dropped = host.dropped();
    eprintln!("the link dropped {dropped} packets");
    assert!(
        dropped > 0,
        "the link lost nothing: the test proves less than it says"
    );
}

/// A connect to a host that never answers (its frames go to a MAC address
/// nobody has) fails with `ETIMEDOUT` after the connect's timeout.
#[test]
fn a_connect_to_a_blackholed_host_times_out() {
    let Some(host) = NetHost::new() else { return };
    host.blackhole(3);
    for cfg in backends() {
        let mut h = Harness::with_config(cfg);
        let to = SocketAddr::from((host.ip(3), 80));
        let started = std::time::Instant::now();
        let id = h.h().connect(to, Some(Duration::from_millis(300))).unwrap();
        let result = h.wait(|e| match e {
            Event::Connected { sock, result } if *sock == id => Some(*result),
            _ => None,
        });
        assert_eq!(result, Err(Errno::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(h.closed(id), Some(Errno::TimedOut));
    }
}

/// The upstream host disappears (its link down) in the middle of a stream:
/// what reached the client is an exact prefix, and the engine goes on
/// serving other connections; the application can still close the
/// stranded pair.
#[test]
fn a_host_that_disappears_mid_stream_strands_only_its_connection() {
    for cfg in backends() {
        let Some(host) = NetHost::new() else { return };
        let mut h = Harness::with_config(cfg);
        let (mut client, down, up) = proxy_to(&mut h, echo_on(&host));
        let block: Vec<u8> = (0..64 << 10).map(pattern).collect();
        client.write_all(&block).unwrap();
        let mut got = vec![0u8; block.len()];
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, block);
        host.link_down();
        // Bytes written now go nowhere: the upstream keeps them queued for retransmission.
        client.write_all(&block).unwrap();
        round_trip(&h, 1 << 20);
        h.h().destroy(up);
        h.h().destroy(down);
        assert_eq!(h.closed(up), None);
        assert_eq!(h.closed(down), None);
    }
}
