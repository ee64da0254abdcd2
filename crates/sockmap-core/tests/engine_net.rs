//! Socket families: TCP over IPv4 and IPv6, and Unix stream sockets with
//! filesystem and abstract names, on both backends and with one and two
//! shards. For every pair of families, a client accepted on one family is
//! proxied to an upstream the engine connected on the other: bytes exact
//! both ways, the client's FIN reaching the upstream after its last byte;
//! adopted Unix streams; a Unix listener's socket file removed on close.
#![cfg(target_os = "linux")]

mod engine_util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use engine_util::stream::*;
use engine_util::*;
use sockmap_core::config::BackendChoice;
use sockmap_core::{Addr, EngineConfig, Errno, Event, KeySource, Rule, SockId, UnixName};

/// A socket family the tests listen and connect on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fam {
    V4,
    V6,
    UnixPath,
    UnixAbstract,
}

const FAMS: [Fam; 4] = [Fam::V4, Fam::V6, Fam::UnixPath, Fam::UnixAbstract];

/// A test-side stream of any family.
trait Peer: Read + Write + Send + 'static {
    fn shut_write(&self);
    fn twin(&self) -> Box<dyn Peer>;
}

impl Peer for TcpStream {
    fn shut_write(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
    fn twin(&self) -> Box<dyn Peer> {
        Box::new(self.try_clone().unwrap())
    }
}

impl Peer for UnixStream {
    fn shut_write(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
    fn twin(&self) -> Box<dyn Peer> {
        Box::new(self.try_clone().unwrap())
    }
}

fn timed<P: Peer>(
    p: P,
    set: impl Fn(&P, Option<Duration>) -> std::io::Result<()>,
) -> Box<dyn Peer> {
    set(&p, Some(DEADLINE)).unwrap();
    Box::new(p)
}

/// A fresh Unix socket name of the family (a path under the temp dir, or an abstract name).
fn unix_name(fam: Fam) -> UnixName {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let base = format!("sockmap-net-{}-{n}", std::process::id());
    match fam {
        Fam::UnixAbstract => UnixName::Abstract(base.into_bytes()),
        _ => {
            let p = std::env::temp_dir().join(format!("{base}.sock"));
            let _ = std::fs::remove_file(&p);
            UnixName::Path(p)
        }
    }
}

fn std_unix_addr(name: &UnixName) -> std::os::unix::net::SocketAddr {
    match name {
        UnixName::Path(p) => std::os::unix::net::SocketAddr::from_pathname(p).unwrap(),
        UnixName::Abstract(n) => std::os::unix::net::SocketAddr::from_abstract_name(n).unwrap(),
        UnixName::Unnamed => unreachable!(),
    }
}

fn loopback(fam: Fam) -> SocketAddr {
    match fam {
        Fam::V4 => "127.0.0.1:0".parse().unwrap(),
        _ => "[::1]:0".parse().unwrap(),
    }
}

/// The engine listens on `fam`; the test connects a client. Returns the
/// test's end, the engine's accepted socket, the listener and its name.
fn accept_client(h: &mut Harness, fam: Fam) -> (Box<dyn Peer>, SockId, SockId, Addr) {
    let (listener, local) = match fam {
        Fam::V4 | Fam::V6 => {
            let (l, a) = h.h().listen(loopback(fam), 16).unwrap();
            (l, Addr::Inet(a))
        }
        Fam::UnixPath | Fam::UnixAbstract => {
            let name = unix_name(fam);
            let (l, local) = h.h().listen_unix(&name, 16).unwrap();
            assert_eq!(local, name);
            (l, Addr::Unix(local))
        }
    };
    let client = match &local {
        Addr::Inet(a) => timed(TcpStream::connect(a).unwrap(), TcpStream::set_read_timeout),
        Addr::Unix(n) => timed(
            UnixStream::connect_addr(&std_unix_addr(n)).unwrap(),
            UnixStream::set_read_timeout,
        ),
    };
    let (sock, peer) = h.wait(|e| match e {
        Event::Accepted {
            listener: l,
            sock,
            peer,
        } if *l == listener => Some((*sock, peer.clone())),
        _ => None,
    });
    match (fam, peer) {
        (Fam::V4, Addr::Inet(a)) => assert!(a.is_ipv4()),
        (Fam::V6, Addr::Inet(a)) => assert!(a.is_ipv6()),
        (Fam::UnixPath | Fam::UnixAbstract, Addr::Unix(n)) => assert_eq!(n, UnixName::Unnamed),
        (f, p) => panic!("{f:?} listener reported peer {p:?}"),
    }
    (client, sock, listener, local)
}

/// The engine connects to a test-side server on `fam`; returns the test's end and the engine's socket.
fn connect_upstream(h: &mut Harness, fam: Fam, near: Option<SockId>) -> (Box<dyn Peer>, SockId) {
    let (id, accept): (SockId, Box<dyn FnOnce() -> Box<dyn Peer>>) = match fam {
        Fam::V4 | Fam::V6 => {
            let l = TcpListener::bind(loopback(fam)).unwrap();
            let id = h
                .h()
                .connect_near(l.local_addr().unwrap(), None, near)
                .unwrap();
            (
                id,
                Box::new(move || timed(l.accept().unwrap().0, TcpStream::set_read_timeout)),
            )
        }
        Fam::UnixPath | Fam::UnixAbstract => {
            let name = unix_name(fam);
            let l = UnixListener::bind_addr(&std_unix_addr(&name)).unwrap();
            let id = h.h().connect_unix(&name, None, near).unwrap();
            (
                id,
                Box::new(move || {
                    let s = l.accept().unwrap().0;
                    if let UnixName::Path(p) = name {
                        let _ = std::fs::remove_file(p);
                    }
                    timed(s, UnixStream::set_read_timeout)
                }),
            )
        }
    };
    let peer = accept();
    let r = h.wait(|e| match e {
        Event::Connected { sock, result } if *sock == id => Some(*result),
        _ => None,
    });
    assert_eq!(r, Ok(()), "connect on {fam:?}");
    (peer, id)
}

#[test]
fn every_family_proxies_to_every_family_with_exact_bytes_and_fin() {
    const TOTAL: usize = 1 << 20;
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg.clone());
        for from in FAMS {
            for to in FAMS {
                let case = format!("{:?}×{:?} {from:?} → {to:?}", cfg.backend, cfg.shards);
                let (client, c, listener, _) = accept_client(&mut h, from);
                let (upstream, u) = connect_upstream(&mut h, to, Some(c));
                let map = h.redirect_pair(c, u);
                let there = pump(client.twin(), TOTAL);
                let back = pump(upstream.twin(), TOTAL);
                let (mut client, mut upstream) = (client, upstream);
                expect_pattern(&mut upstream, TOTAL, 64 << 10);
                expect_pattern(&mut client, TOTAL, 64 << 10);
                let (wc, wu) = (there.join().unwrap(), back.join().unwrap());
                // The client's FIN reaches the upstream after its last byte, and only then.
                wc.shut_write();
                let mut rest = Vec::new();
                upstream.read_to_end(&mut rest).unwrap();
                assert!(
                    rest.is_empty(),
                    "{case}: {} bytes after the pattern",
                    rest.len()
                );
                for (src, dst) in [(c, u), (u, c)] {
                    let s = h.settled_until(src, |s| {
                        s.bytes_in == TOTAL as u64 && s.redirected_egress == s.messages_in
                    });
                    assert_eq!(s.dropped, 0, "{case}");
                    h.stats_eq(dst, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
                }
                drop(wu);
                h.h().destroy(c);
                h.h().destroy(u);
                h.h().destroy(listener);
                for id in [c, u, listener] {
                    h.closed(id);
                }
                h.h().destroy_map(map).unwrap();
            }
        }
    }
}

#[test]
fn a_unix_listener_removes_its_socket_file_on_close_and_refuses_an_existing_one() {
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg);
        let name = unix_name(Fam::UnixPath);
        let UnixName::Path(path) = name.clone() else {
            unreachable!()
        };
        let (l, _) = h.h().listen_unix(&name, 16).unwrap();
        assert!(path.exists());
        // A second listener on the same path is refused and leaves the file alone.
        assert_eq!(h.h().listen_unix(&name, 16).err(), Some(Errno::AddrInUse));
        assert!(path.exists());
        h.h().destroy(l);
        h.closed(l);
        until("the socket file is removed", || !path.exists());
        // The path can be bound again.
        let (l, _) = h.h().listen_unix(&name, 16).unwrap();
        // A file that replaced the socket since is not the listener's: left alone.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"not a socket").unwrap();
        h.h().destroy(l);
        h.closed(l);
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn connecting_to_a_missing_or_dead_unix_socket_fails_with_its_code() {
    let h = Harness::new();
    let missing = UnixName::Path(PathBuf::from("/nonexistent-dir/sockmap.sock"));
    assert_eq!(
        h.h().connect_unix(&missing, None, None).err(),
        Some(Errno::NoEnt)
    );
    let name = unix_name(Fam::UnixPath);
    let UnixName::Path(path) = &name else {
        unreachable!()
    };
    drop(UnixListener::bind(path).unwrap()); // the file stays, nobody listens
    assert_eq!(
        h.h().connect_unix(&name, None, None).err(),
        Some(Errno::ConnRefused)
    );
    std::fs::remove_file(path).unwrap();
    let nobody = unix_name(Fam::UnixAbstract);
    assert_eq!(
        h.h().connect_unix(&nobody, None, None).err(),
        Some(Errno::ConnRefused)
    );
}

#[test]
fn adopted_unix_streams_proxy_to_tcp_with_bytes_received_before_first() {
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg);
        let (mut app, mine) = UnixStream::pair().unwrap();
        app.set_read_timeout(Some(DEADLINE)).unwrap();
        let a = h
            .h()
            .adopt_with(mine, bytes::Bytes::from_static(b"early-"))
            .unwrap();
        let (tcp, b) = h.pair();
        let map = h.hash_with(|m| Rule::Redirect {
            map: m,
            key: KeySource::Socket,
            ingress: false,
        });
        app.write_all(b"late").unwrap();
        h.put(map, a, b);
        h.put(map, b, a);
        let mut tcp = tcp;
        assert_eq!(read_n(&mut tcp, 10), b"early-late");
        write(&mut tcp, b"reply");
        let mut got = [0u8; 5];
        app.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"reply");
        // The Unix side's FIN reaches the TCP partner.
        app.shutdown(Shutdown::Write).unwrap();
        assert!(read_to_end(&mut tcp).is_empty());
        h.h().destroy(a);
        h.closed(a);
    }
}

#[test]
fn a_dual_stack_listener_accepts_ipv4_clients() {
    if std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").map_or(true, |s| s.trim() != "0") {
        return; // the OS keeps IPv6 sockets IPv6-only
    }
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg);
        let (l, local) = h.h().listen("[::]:0".parse().unwrap(), 16).unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", local.port())).unwrap();
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        let (sock, peer) = h.wait(|e| match e {
            Event::Accepted {
                listener,
                sock,
                peer: Addr::Inet(p),
            } if *listener == l => Some((*sock, *p)),
            _ => None,
        });
        // A v4 client of a dual-stack socket shows as a v4-mapped IPv6 address.
        let SocketAddr::V6(p6) = peer else {
            panic!("peer {peer}")
        };
        assert_eq!(p6.ip().to_ipv4_mapped(), Some([127, 0, 0, 1].into()));
        let map = h.hash_with(|_| Rule::Pass);
        h.put(map, 1u64, sock);
        write(&mut client, b"v4 over v6");
        assert_eq!(h.messages(sock, 10).0, b"v4 over v6");
        h.h().destroy(l);
        h.closed(l);
    }
}

/// Two adopted Unix streams redirecting to each other (keyed by socket,
/// FIN forwarded): the test's ends and the engine's ends.
fn unix_proxy_pair(h: &Harness) -> (UnixStream, SockId, UnixStream, SockId) {
    let map = h.hash_with(|m| Rule::Redirect {
        map: m,
        key: KeySource::Socket,
        ingress: false,
    });
    let mut ends = Vec::new();
    for _ in 0..2 {
        let (test, engine) = UnixStream::pair().unwrap();
        test.set_read_timeout(Some(DEADLINE)).unwrap();
        ends.push((test, h.h().adopt(engine).unwrap()));
    }
    let (pb, b) = ends.pop().unwrap();
    let (pa, a) = ends.pop().unwrap();
    h.put(map, a, b);
    h.put(map, b, a);
    (pa, a, pb, b)
}

#[test]
fn a_slow_unix_target_stops_its_source_with_bounded_memory_and_no_loss() {
    const HIGH: usize = 64 << 10;
    for cfg in backend_configs() {
        let h = Harness::with_config(EngineConfig {
            send_high_watermark: HIGH,
            send_low_watermark: 16 << 10,
            ..cfg
        });
        let (pa, a, mut pb, b) = unix_proxy_pair(&h);
        const TOTAL: usize = 16 << 20;
        let writer = pump(pa, TOTAL);
        // Nobody reads b's peer yet: a stalls with b's queue bounded by the
        // watermark plus one read budget and the cross-shard credit.
        let s = h.stats_until(a, |s| s.backpressure_stalls >= 1);
        assert!(s.bytes_in < TOTAL as u64, "the source was read to the end");
        let q = h.h().sock_stats(b).unwrap().queued_bytes;
        assert!(q as usize <= HIGH + (256 << 10) + (256 << 10), "queued {q}");
        expect_pattern(&mut pb, TOTAL, 64 << 10);
        drop(writer.join().unwrap());
        h.stats_eq(b, |s| (s.bytes_out, s.queued_bytes), (TOTAL as u64, 0));
        h.settled_eq(a, |s| (s.bytes_in, s.dropped), (TOTAL as u64, 0));
    }
}

#[test]
fn bulk_bytes_between_unix_partners_are_spliced_on_epoll() {
    let h = Harness::with_config(EngineConfig {
        backend: Some(BackendChoice::Epoll),
        shards: Some(1),
        ..EngineConfig::default()
    });
    let (mut pa, a, mut pb, b) = unix_proxy_pair(&h);
    const TOTAL: usize = 32 << 20;
    exchange(
        (pa.try_clone().unwrap(), &mut pa),
        (pb.try_clone().unwrap(), &mut pb),
        TOTAL,
    );
    assert!(h.engine.backend_stats().spliced > 0, "nothing was spliced");
    for src in [a, b] {
        let s = h.settled_until(src, |s| {
            s.bytes_in == TOTAL as u64 && s.redirected_egress == s.messages_in
        });
        assert_eq!(s.dropped, 0);
    }
}

#[test]
fn only_stream_sockets_can_be_taken_over_by_descriptor() {
    use sockmap_core::Stream;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;
    let code = |fd: OwnedFd| {
        Stream::from_socket_fd(fd)
            .map(|s| match s {
                Stream::Tcp(_) => "tcp",
                Stream::Unix(_) => "unix",
            })
            .map_err(|e| Errno::from_io(&e))
    };
    let (tcp, _) = {
        let l = TcpListener::bind("[::1]:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (c, l)
    };
    assert_eq!(code(tcp.into()), Ok("tcp"));
    assert_eq!(code(UnixStream::pair().unwrap().0.into()), Ok("unix"));
    // Datagram sockets are not streams: refused, as the kernel's sockmap refuses an unsupported socket type.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(code(udp.into()), Err(Errno::OpNotSupp));
    assert_eq!(
        code(UnixDatagram::pair().unwrap().0.into()),
        Err(Errno::OpNotSupp)
    );
    // Not a socket at all.
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(code(file.into()).is_err());
}

#[test]
fn a_unix_listener_with_a_full_backlog_refuses_at_once_with_eagain() {
    use std::os::fd::AsRawFd;
    let h = Harness::new();
    let name = unix_name(Fam::UnixAbstract);
    let full = UnixListener::bind_addr(&std_unix_addr(&name)).unwrap();
    // SAFETY: `listen` on a valid, bound socket descriptor only shrinks its accept backlog.
    assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
    // Nobody accepts: the first connects fill the backlog, then the next is refused without waiting.
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        outcomes.push(h.h().connect_unix(&name, None, None).err());
        if outcomes.last() != Some(&None) {
            break;
        }
    }
    assert_eq!(outcomes.last(), Some(&Some(Errno::Again)), "{outcomes:?}");
    assert!(outcomes.len() > 1, "{outcomes:?}");
}
