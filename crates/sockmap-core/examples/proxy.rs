//! A TCP (or Unix stream socket) proxy on the sockmap engine, used by the benchmarks.
//!
//! ```text
//! proxy --listen 127.0.0.1:PORT|unix:PATH --upstream 127.0.0.1:PORT|unix:PATH --mode raw|frames
//!       [--backend auto|epoll|io_uring] [--recv-buffers N] [--read-buffer BYTES]
//!       [--shards N] [--splice-min BYTES|off]
//! ```
//!
//! `unix:PATH` listens on or connects to a Unix-domain stream socket (a stale
//! listening path is removed first); the two sides may differ in kind.
//! For each accepted client it connects the upstream and stores the pair in a
//! SockHash, each socket under its partner's id; a native rule redirects
//! every message to the socket stored under the source's id (egress). `raw`
//! forwards each chunk read as it is; `frames` cuts the stream into 4-byte
//! big-endian length-prefixed frames first. `--backend` sets
//! [`EngineConfig::backend`] (without it, `SOCKMAP_BACKEND` or `auto` decides);
//! `--recv-buffers` and `--read-buffer` set [`EngineConfig::recv_buffers`] and
//! [`EngineConfig::read_buffer`], `--shards` [`EngineConfig::shards`] and
//! `--splice-min` [`EngineConfig::splice_min`] (defaults: the engine's). Each
//! upstream is connected near its client, on the client's I/O thread.
//! Prints `ready` once listening and runs until SIGTERM/SIGINT or end of
//! standard input; then it prints one line on standard error with the backend
//! that ran and its counters, for a harness to count kernel entries:
//!
//! ```text
//! proxy: backend=io_uring waits=123456 starved=0 stale=3 spliced=0
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sockmap_core::config::BackendChoice;
use sockmap_core::framer::LengthFieldOptions;
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg};
use sockmap_core::{
    Addr, Engine, EngineConfig, EngineHandle, Errno, Event, Key, KeySource, Rule, SockId, UnixName,
};

/// Set by the signal and standard-input threads; the event loop checks it
/// between events.
static STOP: AtomicBool = AtomicBool::new(false);

/// How long the event loop waits for an event before it looks at [`STOP`].
const STOP_CHECK: Duration = Duration::from_millis(100);

struct Args {
    listen: Addr,
    upstream: Addr,
    frames: bool,
    backend: Option<BackendChoice>,
    recv_buffers: Option<usize>,
    read_buffer: Option<usize>,
    shards: Option<usize>,
    /// `Some(None)`: splicing off.
    splice_min: Option<Option<usize>>,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut frames = false;
    let mut backend = None;
    let mut recv_buffers = None;
    let mut shards = None;
    let mut splice_min = None;
    let mut read_buffer = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = Some(addr(&val()?).map_err(|e| format!("--listen: {e}"))?),
            "--upstream" => upstream = Some(addr(&val()?).map_err(|e| format!("--upstream: {e}"))?),
            "--mode" => {
                frames = match val()?.as_str() {
                    "raw" => false,
                    "frames" => true,
                    m => return Err(format!("--mode: unknown mode {m:?} (raw|frames)")),
                }
            }
            "--backend" => {
                let v = val()?;
                backend = Some(BackendChoice::parse(&v).ok_or_else(|| {
                    format!("--backend: unknown backend {v:?} (auto|epoll|io_uring)")
                })?)
            }
            "--recv-buffers" => {
                recv_buffers = Some(val()?.parse().map_err(|e| format!("--recv-buffers: {e}"))?)
            }
            "--shards" => shards = Some(val()?.parse().map_err(|e| format!("--shards: {e}"))?),
            "--splice-min" => {
                splice_min = Some(match val()?.as_str() {
                    "off" => None,
                    v => Some(v.parse().map_err(|e| format!("--splice-min: {e}"))?),
                })
            }
            "--read-buffer" => {
                read_buffer = Some(val()?.parse().map_err(|e| format!("--read-buffer: {e}"))?)
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(Args {
        shards,
        splice_min,
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        frames,
        backend,
        recv_buffers,
        read_buffer,
    })
}

/// `unix:PATH` as a Unix socket's name, anything else as `HOST:PORT`.
fn addr(v: &str) -> Result<Addr, String> {
    match v.strip_prefix("unix:") {
        Some(path) => Ok(Addr::Unix(UnixName::Path(path.into()))),
        None => v
            .parse::<SocketAddr>()
            .map(Addr::Inet)
            .map_err(|e| e.to_string()),
    }
}

/// Listens on `at`; a stale Unix socket path is removed first.
fn listen(h: &EngineHandle, at: &Addr) -> Result<SockId, Errno> {
    match at {
        Addr::Inet(a) => h.listen(*a, 1024).map(|l| l.0),
        Addr::Unix(name) => {
            if let UnixName::Path(p) = name {
                let _ = std::fs::remove_file(p);
            }
            h.listen_unix(name, 1024).map(|l| l.0)
        }
    }
}

/// Connects `at` on the I/O thread of `near`.
fn connect(h: &EngineHandle, at: &Addr, near: SockId) -> Result<SockId, Errno> {
    let timeout = Some(Duration::from_secs(10));
    match at {
        Addr::Inet(a) => h.connect_near(*a, timeout, Some(near)),
        Addr::Unix(name) => h.connect_unix(name, timeout, Some(near)),
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread it
/// starts afterwards) and starts a thread that takes them with `sigwait` and
/// sets [`STOP`].
#[cfg(unix)]
fn catch_stop_signals() {
    // SAFETY: `set` is a valid sigset_t, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set = set;
        std::thread::spawn(move || {
            let mut sig = 0;
            // SAFETY: `set` is the initialised set blocked above; `sig` is writable.
            libc::sigwait(&set, &mut sig);
            STOP.store(true, Ordering::Relaxed);
        });
    }
}

/// No POSIX signals elsewhere: the standard-input thread alone sets [`STOP`].
#[cfg(not(unix))]
fn catch_stop_signals() {}

/// The 4-byte big-endian length-prefixed framer in `frames` mode.
fn parser(frames: bool) -> Option<Arc<ParserProg>> {
    frames.then(|| {
        Arc::new(ParserProg::new(ParserKind::LengthField(
            LengthFieldOptions::default(),
        )))
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "proxy: {e}\nusage: proxy --listen ADDR --upstream ADDR --mode raw|frames [--backend auto|epoll|io_uring] [--recv-buffers N] [--read-buffer BYTES]"
            );
            std::process::exit(2);
        }
    };
    catch_stop_signals();
    let defaults = EngineConfig::default();
    let config = EngineConfig {
        backend: args.backend,
        recv_buffers: args.recv_buffers.unwrap_or(defaults.recv_buffers),
        read_buffer: args.read_buffer.unwrap_or(defaults.read_buffer),
        shards: args.shards.or(defaults.shards),
        splice_min: args.splice_min.unwrap_or(defaults.splice_min),
        ..defaults
    };
    let engine = match Engine::start(config, sockmap_core::Hooks::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("proxy: start engine: {e}");
            std::process::exit(1);
        }
    };
    let h = engine.handle().clone();
    let _listener = listen(&h, &args.listen).expect("listen");
    let peers = h.create_map(MapKind::SockHash, 1 << 20).expect("map");
    let redirect = Rule::Redirect {
        map: peers,
        key: KeySource::Socket,
        ingress: false,
    };
    h.attach(
        peers,
        Programs {
            parser: parser(args.frames),
            verdict: Some(Arc::new(StreamVerdictProg::rule(redirect))),
            ..Programs::default()
        },
    )
    .expect("attach");
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        STOP.store(true, Ordering::Relaxed);
    });

    let mut connecting: HashMap<SockId, SockId> = HashMap::new();
    let mut partner: HashMap<SockId, SockId> = HashMap::new();
    while !STOP.load(Ordering::Relaxed) {
        let Some(ev) = engine.next_event(STOP_CHECK) else {
            continue;
        };
        match ev {
            Event::Accepted { sock: client, .. } => match connect(&h, &args.upstream, client) {
                Ok(up) => {
                    connecting.insert(up, client);
                }
                Err(_) => h.destroy(client),
            },
            Event::Connected { sock: up, result } => {
                let Some(client) = connecting.remove(&up) else {
                    continue;
                };
                if result.is_err() {
                    h.destroy(client);
                    continue;
                }
                let paired = h
                    .map_update(peers, &Key::from(client), up, UpdateFlag::NoExist)
                    .and_then(|()| {
                        h.map_update(peers, &Key::from(up), client, UpdateFlag::NoExist)
                    });
                if paired.is_err() {
                    h.destroy(client);
                    h.destroy(up);
                    continue;
                }
                partner.insert(client, up);
                partner.insert(up, client);
            }
            Event::Closed { sock, error } => {
                if let Some(client) = connecting.remove(&sock) {
                    h.destroy(client);
                }
                if let Some(p) = partner.remove(&sock) {
                    partner.remove(&p);
                    if error.is_some() {
                        h.destroy(p);
                    } else {
                        h.end(p);
                    }
                }
            }
            Event::Fatal { detail, .. } => {
                eprintln!("proxy: {detail}");
                std::process::exit(1);
            }
            _ => {}
        }
    }
    let stats = engine.backend_stats();
    eprintln!(
        "proxy: backend={} waits={} starved={} stale={} spliced={}",
        engine.backend_info().kind.name(),
        stats.waits,
        stats.starved,
        stats.stale,
        stats.spliced
    );
    std::process::exit(0);
}
