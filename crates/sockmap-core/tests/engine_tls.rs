//! TLS through the engine on both backends, one and two shards, against
//! rustls peers on loopback: termination (a rustls client, its bytes echoed
//! as plaintext by a native verdict), termination plus origination (a proxy
//! between a rustls client and a rustls server, exact bytes both ways), and
//! passthrough routed natively by the ClientHello's server name
//! (`ParserKind::TlsRecords`, `KeySource::Sni`). Certificates are made with
//! `openssl` at test time (the tests are skipped without it).
#![cfg(target_os = "linux")]

mod engine_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use engine_util::stream::*;
use engine_util::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};
use sockmap_core::map::MapKind;
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg};
use sockmap_core::tls::{CertPem, ClientOptions, ClientTls, ServerOptions, ServerTls};
use sockmap_core::{Event, KeySource, MapId, Rule, SockId};

/// A CA, and leaves for `localhost` and `b.test` signed by it (PEM).
struct Pki {
    ca: Vec<u8>,
    localhost: CertPem,
    other: CertPem,
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The test PKI (made once per process: the tests run in parallel), or
/// `None` without a working `openssl`.
fn pki() -> Option<&'static Pki> {
    static PKI: OnceLock<Option<Pki>> = OnceLock::new();
    PKI.get_or_init(make_pki).as_ref()
}

fn make_pki() -> Option<Pki> {
    let dir = std::env::temp_dir().join(format!("sockmap-engine-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=test CA",
        ],
    ]
    .concat();
    if !openssl(&dir, &ca) {
        eprintln!("engine_tls: no openssl, skipped");
        return None;
    }
    let leaf = |name: &str| -> Option<CertPem> {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let ext = dir.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("subjectAltName=DNS:{name}\n")).ok()?;
        let subj = format!("/CN={name}");
        let req = [
            &["req", "-new"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", &subj],
        ]
        .concat();
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str()?,
            "-out",
            &pem,
        ];
        (openssl(&dir, &req) && openssl(&dir, &sign)).then_some(())?;
        Some(CertPem {
            cert: std::fs::read(dir.join(&pem)).ok()?,
            key: std::fs::read(dir.join(&key)).ok()?,
        })
    };
    let pki = Pki {
        ca: std::fs::read(dir.join("ca.pem")).ok()?,
        localhost: leaf("localhost")?,
        other: leaf("b.test")?,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Some(pki)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration trusting `ca`.
fn client_config(ca: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// A blocking rustls client of `addr` asking for `name`.
fn tls_client(addr: SocketAddr, name: &str, ca: &[u8]) -> Client {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from(name.to_owned()).expect("name");
    StreamOwned::new(
        ClientConnection::new(client_config(ca), name).expect("client"),
        tcp,
    )
}

/// A rustls server on loopback with `cert` that answers each connection
/// with `tag` and then echoes it; returns its address and thread.
fn tls_echo_server(
    cert: &CertPem,
    tag: &'static [u8],
    conns: usize,
) -> (SocketAddr, JoinHandle<()>) {
    let chain = CertificateDer::pem_slice_iter(&cert.cert)
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(&cert.key).expect("key");
    let cfg = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config"),
    );
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        for _ in 0..conns {
            let (tcp, _) = l.accept().expect("accept");
            tcp.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut s = StreamOwned::new(ServerConnection::new(cfg.clone()).expect("server"), tcp);
            std::thread::spawn(move || {
                s.write_all(tag).expect("tag");
                let mut buf = vec![0; 64 << 10];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).expect("echo"),
                    }
                }
            });
        }
    });
    (addr, t)
}

/// Reads `tag`, then writes `total` pattern bytes on `s` in pieces, each
/// read back before the next is written: every byte must come back, in order.
fn expect_echo(s: &mut Client, tag: &[u8], total: usize) {
    let mut head = vec![0; tag.len()];
    s.read_exact(&mut head).expect("tag");
    assert_eq!(head, tag);
    let data: Vec<u8> = (0..total).map(pattern).collect();
    let mut back = vec![0; 32 << 10];
    for (i, chunk) in data.chunks(back.len()).enumerate() {
        s.write_all(chunk).expect("write");
        let got = &mut back[..chunk.len()];
        s.read_exact(got).expect("read back");
        assert!(got == chunk, "piece {i} came back different");
    }
}

/// Waits for the socket `listener` accepted, after its handshake.
fn accepted(h: &mut Harness, listener: SockId) -> SockId {
    h.wait(|e| match e {
        Event::Accepted {
            listener: l, sock, ..
        } if *l == listener => Some(*sock),
        _ => None,
    })
}

/// A SockHash whose sockets run `rule` after `parser`.
fn hash_parsed(h: &Harness, parser: Option<ParserKind>, rule: impl FnOnce(MapId) -> Rule) -> MapId {
    let m = h.h().create_map(MapKind::SockHash, 64).unwrap();
    let progs = Programs {
        parser: parser.map(|k| Arc::new(ParserProg::new(k))),
        verdict: Some(Arc::new(StreamVerdictProg::rule(rule(m)))),
        ..Programs::default()
    };
    h.h().attach(m, progs).unwrap();
    m
}

/// A TLS client's stream, returned by its thread so the test decides when it closes.
type Client = StreamOwned<ClientConnection, TcpStream>;

/// A TLS listener of the engine and a rustls client of it (a thread) that
/// writes `first`, then expects `tag` and the echo of 1 MiB.
fn tls_front(
    h: &Harness,
    p: &Pki,
    first: &'static [u8],
    tag: &'static [u8],
) -> (SockId, JoinHandle<Client>) {
    let (l, addr) = h
        .h()
        .listen_tls("127.0.0.1:0".parse().unwrap(), 16, Some(server_tls(p)))
        .unwrap();
    let ca = p.ca.clone();
    let client = std::thread::spawn(move || {
        let mut c = tls_client(addr, "localhost", &ca);
        c.write_all(first).unwrap();
        expect_echo(&mut c, tag, 1 << 20);
        c
    });
    (l, client)
}

fn server_tls(p: &Pki) -> ServerTls {
    ServerTls::new(
        &ServerOptions {
            cert: p.localhost.clone(),
            sni: vec![("b.test".into(), p.other.clone())],
            ..ServerOptions::default()
        },
        None,
    )
    .expect("server tls")
}

#[test]
fn terminates_tls_and_echoes_plaintext_exactly() {
    let Some(p) = pki() else { return };
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg.clone());
        let (l, client) = tls_front(&h, p, b"hello", b"hello");
        let sni = h.wait(|e| match e {
            Event::Tls {
                result: Ok(info), ..
            } => Some(info.sni.clone()),
            _ => None,
        });
        assert_eq!(sni.as_deref(), Some("localhost"), "{cfg:?}");
        let sock = accepted(&mut h, l);
        // The socket redirects its plaintext to itself: an echo through the record layer both ways.
        let map = h.hash_with(|m| Rule::Redirect {
            map: m,
            key: KeySource::Socket,
            ingress: false,
        });
        h.put(map, sock, sock);
        let _open = client.join().expect("client");
        let s = h.stats_until(sock, |s| s.bytes_in == 5 + (1 << 20));
        assert_eq!(s.dropped, 0, "{cfg:?}");
        assert_eq!(h.h().tls_stats().handshakes, 1, "{cfg:?}");
    }
}

#[test]
fn proxies_tls_to_tls_with_exact_bytes_both_ways() {
    let Some(p) = pki() else { return };
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg.clone());
        let (upstream, server) = tls_echo_server(&p.localhost, b"upstream:", 1);
        let (l, client) = tls_front(&h, p, b"", b"upstream:");
        let c = accepted(&mut h, l);
        let up_tls = ClientTls::new(&ClientOptions {
            server_name: "localhost".into(),
            ca: Some(p.ca.clone()),
            ..ClientOptions::default()
        })
        .unwrap();
        let u = h
            .h()
            .connect_tls(upstream, None, Some(c), Some(up_tls))
            .unwrap();
        let r = h.wait(|e| match e {
            Event::Connected { sock, result } if *sock == u => Some(*result),
            _ => None,
        });
        assert_eq!(r, Ok(()), "{cfg:?}");
        h.redirect_pair(c, u);
        let _open = client.join().expect("client");
        server.join().expect("server");
        for (src, dst) in [(c, u), (u, c)] {
            let s = h.settled_until(src, |s| {
                s.bytes_in >= 1 << 20 && s.redirected_egress == s.messages_in
            });
            assert_eq!(s.dropped, 0, "{cfg:?}");
            h.settled_until(dst, |s| s.bytes_out >= 1 << 20);
        }
        assert_eq!(h.h().tls_stats().handshakes, 2, "{cfg:?}");
    }
}

#[test]
fn routes_passed_through_tls_by_the_client_hello_name() {
    let Some(p) = pki() else { return };
    for cfg in backend_configs() {
        let mut h = Harness::with_config(cfg.clone());
        let (a, ta) = tls_echo_server(&p.localhost, b"A:", 1);
        let (b, tb) = tls_echo_server(&p.other, b"B:", 1);
        let (l, addr) = h.h().listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        // Client records go by their ClientHello's name; the upstreams' bytes go back by socket (`back`).
        let by_name = h.h().create_map(MapKind::SockHash, 8).unwrap();
        let back = h.h().create_map(MapKind::SockHash, 8).unwrap();
        let front = hash_parsed(&h, Some(ParserKind::TlsRecords), |_| Rule::Redirect {
            map: by_name,
            key: KeySource::Sni,
            ingress: false,
        });
        let ups = hash_parsed(&h, None, |_| Rule::Redirect {
            map: back,
            key: KeySource::Socket,
            ingress: false,
        });
        let mut pairs = Vec::new();
        for (name, upstream, tag) in [("b.test", b, &b"B:"[..]), ("localhost", a, &b"A:"[..])] {
            let u = h.h().connect(upstream, None).unwrap();
            h.wait(|e| {
                matches!(e, Event::Connected { sock, result: Ok(()) } if *sock == u).then_some(())
            });
            h.put(by_name, name, u);
            h.put(ups, u, u);
            let ca = p.ca.clone();
            let client = std::thread::spawn(move || {
                let mut c = tls_client(addr, name, &ca);
                expect_echo(&mut c, tag, 256 << 10);
                c
            });
            let c = accepted(&mut h, l);
            h.put(back, u, c);
            h.put(front, c, c);
            pairs.push((c, client.join().expect("client")));
        }
        ta.join().unwrap();
        tb.join().unwrap();
        for (c, _open) in pairs {
            // Each message is one record, every one of them redirected (counted at the
            // acknowledgement when the upstream is on another shard).
            let s = h.settled_until(c, |s| {
                s.bytes_in >= 256 << 10 && s.redirected_egress == s.messages_in
            });
            assert_eq!(s.dropped, 0, "{cfg:?}");
        }
        assert_eq!(h.h().tls_stats().handshakes, 0, "{cfg:?}");
    }
}
