//! Over a real network: an upstream host in its own network namespace,
//! behind a veth pair shaped by `tc` (a bandwidth limit with a short queue
//! that drops, and `netem` delay, jitter, loss and reordering where the
//! kernel has it), reached through the engine as a 1:1 proxy. Skipped, with
//! a message, where the process is not root or iproute2 is missing.
#![cfg(target_os = "linux")]

mod engine_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use engine_util::netns::NetHost;
use engine_util::stream::*;
use engine_util::*;
use sockmap_core::config::BackendChoice;
use sockmap_core::{EngineConfig, Errno, Event, Hooks, KeySource, Rule, SockId};

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

/// What became of one client of an overflowing backlog.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// Accepted and echoed, exactly.
    Served,
    /// Reset by the host's kernel: its accept queue was full when the handshake completed.
    Reset,
    /// The host's kernel never answered its SYNs (dropped while the queue was full, retransmitted in vain until the
    /// connect timeout): the engine never saw it.
    Unanswered,
    /// Anything else (must not happen).
    Other(String),
}

/// How long a client of the backlog test tries to connect: SYN retransmissions at 1 s and 3 s.
const BACKLOG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One client: connects, sends a line and expects it back.
fn client_fate(to: SocketAddr, i: usize) -> Fate {
    let line = format!("client {i:04}\n");
    let mut s = match TcpStream::connect_timeout(&to, BACKLOG_CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Fate::Unanswered,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Fate::Reset,
        Err(e) => return Fate::Other(format!("connect: {e}")),
    };
    let mut echo = || -> std::io::Result<Vec<u8>> {
        s.set_read_timeout(Some(DEADLINE))?;
        s.write_all(line.as_bytes())?;
        let mut got = vec![0u8; line.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    };
    match echo() {
        Ok(got) if got == line.as_bytes() => Fate::Served,
        Ok(got) => Fate::Other(format!("echoed {got:?}")),
        Err(e) => match e.kind() {
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => Fate::Reset,
            _ => Fate::Other(e.to_string()),
        },
    }
}

/// A small backlog on a host whose kernel resets what overflows its accept
/// queue (`net.ipv4.tcp_abort_on_overflow=1`, and no SYN cookies, whose
/// overflowing handshakes the kernel drops without a reset; both set in its
/// namespace only), flooded while the engine's I/O thread is held busy. The
/// kernel drops the SYNs that come while the queue is full (the client
/// retransmits them) and resets a connection whose handshake completes while
/// it is full. The engine must accept and serve, exactly, every connection the
/// kernel completed (the queue's worth while held, the retransmitted ones
/// after); the other clients are reset or never answered by the kernel;
/// nothing else happens to anyone.
#[test]
fn a_backlog_overflow_serves_exactly_what_the_kernel_completed() {
    const CLIENTS: usize = 32;
    const BACKLOG: u32 = 4;
    for cfg in backends() {
        let Some(host) = NetHost::new() else { return };
        host.sysctl("net.ipv4.tcp_abort_on_overflow", "1").unwrap();
        host.sysctl("net.ipv4.tcp_syncookies", "0").unwrap();
        let overflows_before = host.tcp_ext("ListenOverflows");
        let resets_before = host.tcp_ext("EmbryonicRsts");
        // The I/O thread waits in its notify hook while `hold` is set: an engine too busy to accept.
        let hold = Arc::new(AtomicBool::new(true));
        let held = Arc::new(AtomicBool::new(false));
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let ip = host.addr();
        let (h_hold, h_held) = (hold.clone(), held.clone());
        let gateway = host.spawn(move || {
            let notify = move || {
                let end = Instant::now() + DEADLINE;
                while h_hold.load(Ordering::Acquire) && Instant::now() < end {
                    h_held.store(true, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(1));
                }
            };
            let hooks = Hooks {
                notify: Some(Box::new(notify)),
                external: None,
            };
            let h = Harness::with_hooks(cfg, hooks);
            let echo = h.hash_with(|m| Rule::Redirect {
                map: m,
                key: KeySource::Socket,
                ingress: false,
            });
            let (_l, local) = h
                .h()
                .listen(SocketAddr::new(ip.into(), 0), BACKLOG)
                .unwrap();
            addr_tx.send(local).unwrap();
            let mut accepted = 0;
            let mut errors = Vec::new();
            while stop_rx.try_recv().is_err() {
                match h.engine.next_event(Duration::from_millis(10)) {
                    Some(Event::Accepted { sock, .. }) => {
                        h.put(echo, sock, sock);
                        accepted += 1;
                    }
                    Some(Event::Error { code, detail, .. }) => errors.push((code, detail)),
                    _ => {}
                }
            }
            (accepted, errors)
        });
        let addr = addr_rx.recv_timeout(DEADLINE).unwrap();
        // The first connection's accept is the turn after which the I/O thread is held.
        let first = std::thread::spawn(move || client_fate(addr, 0));
        until("the I/O thread is held", || held.load(Ordering::Acquire));
        let clients: Vec<_> = (1..=CLIENTS)
            .map(|i| std::thread::spawn(move || client_fate(addr, i)))
            .collect();
        // Let go once the host's kernel has overflowed the queue.
        until("the accept queue overflowed", || {
            host.tcp_ext("ListenOverflows") != overflows_before
        });
        hold.store(false, Ordering::Release);
        let mut fates: Vec<Fate> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        fates.push(first.join().unwrap());
        stop_tx.send(()).unwrap();
        let (accepted, errors) = gateway.join().unwrap();
        let count = |fate: Fate| fates.iter().filter(|f| **f == fate).count();
        let (served, reset, unanswered) = (
            count(Fate::Served),
            count(Fate::Reset),
            count(Fate::Unanswered),
        );
        eprintln!(
            "backlog {BACKLOG}, {} clients: {served} served, {reset} reset, {unanswered} unanswered; \
             {} overflows, {} resets by the kernel",
            CLIENTS + 1,
            host.tcp_ext("ListenOverflows") - overflows_before,
            host.tcp_ext("EmbryonicRsts") - resets_before
        );
        assert_eq!(served + reset + unanswered, CLIENTS + 1, "{fates:?}");
        assert_eq!(accepted, served, "accepted {accepted}, served {served}");
        // The first client, and the queue's worth completed while the engine was held.
        assert!(served > BACKLOG as usize + 1, "{fates:?}");
        assert_eq!(errors, vec![]);
    }
}
