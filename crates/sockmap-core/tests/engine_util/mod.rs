//! Shared helpers for the engine's tests: the loopback [`Harness`], the
//! channel that plays the binding's external side ([`ChanSink`]), and the
//! simulated-backend helpers of [`sim`] and the external programs of
//! [`programs`].
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod os;
pub mod programs;
pub mod resp_upstream;
pub mod sim;
pub mod stream;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockmap_core::batch::{Batch, ExternalVerdicts};
use sockmap_core::event::frags_to_vec;
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg, VerdictKind};
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{
    Engine, EngineConfig, EngineHandle, Event, Hooks, Key, KeySource, MapId, Rule, SockId,
};

/// Programs whose stream verdict is external (`tag`, showing the first `peek_bytes` of each message), after `parser`
/// when one is given.
pub fn external_programs(
    tag: u32,
    peek_bytes: usize,
    propagate_fin: bool,
    parser: Option<ParserKind>,
) -> Programs {
    Programs {
        parser: parser.map(|k| Arc::new(ParserProg::new(k))),
        verdict: Some(Arc::new(StreamVerdictProg {
            on_error: Default::default(),
            kind: VerdictKind::External { tag, peek_bytes },
            propagate_fin,
        })),
        ..Programs::default()
    }
}

/// Every wait in the tests ends by then.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `f` holds, polling; fails after [`DEADLINE`] saying `what` never happened.
pub fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(
            Instant::now() < end,
            "never happened within {DEADLINE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks that `f` holds throughout `window` (something that must not happen
/// does not, for as long as the test looks); fails saying `what` broke.
pub fn holds_for(window: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + window;
    loop {
        assert!(f(), "{what} stopped holding");
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Polls `read` until `done` holds; fails after [`DEADLINE`] with `get` of
/// the last counters read against `want`.
fn counters_eq<T: Debug>(
    whose: &str,
    read: impl Fn() -> StatsSnapshot,
    done: impl Fn(&StatsSnapshot) -> bool,
    get: impl Fn(&StatsSnapshot) -> T,
    want: &T,
) -> StatsSnapshot {
    let end = Instant::now() + DEADLINE;
    loop {
        let s = read();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < end,
            "the counters of {whose} never reached {want:?}: {:?} in {s:?}",
            get(&s)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The external side of an engine as a channel: every batch of external
/// verdicts and parses goes to the receiving end, where the test answers
/// it as a binding would.
pub struct ChanSink(pub Sender<Batch>);

impl ExternalVerdicts for ChanSink {
    fn submit(&mut self, batch: Batch) {
        let _ = self.0.send(batch);
    }

    fn fork(&self) -> Option<Box<dyn ExternalVerdicts>> {
        Some(Box::new(ChanSink(self.0.clone())))
    }
}

impl ChanSink {
    /// A sink and the receiving end of its batches.
    pub fn new() -> (Box<ChanSink>, Receiver<Batch>) {
        let (tx, rx) = channel();
        (Box::new(ChanSink(tx)), rx)
    }
}

/// An engine plus the events the test has seen but not consumed.
pub struct Harness {
    pub engine: Engine,
    pub backlog: VecDeque<Event>,
    listener: TcpListener,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(EngineConfig::default())
    }

    pub fn with_config(cfg: EngineConfig) -> Harness {
        Harness::with_hooks(cfg, Hooks::default())
    }

    pub fn with_hooks(cfg: EngineConfig, hooks: Hooks) -> Harness {
        Harness {
            engine: Engine::start(cfg, hooks).expect("engine"),
            backlog: VecDeque::new(),
            listener: TcpListener::bind("127.0.0.1:0").expect("bind"),
        }
    }

    /// An engine whose external verdicts and parsers go to the returned
    /// channel (a [`ChanSink`]).
    pub fn with_external(cfg: EngineConfig) -> (Harness, Receiver<Batch>) {
        let (sink, rx) = ChanSink::new();
        let hooks = Hooks {
            notify: None,
            external: Some(sink),
        };
        (Harness::with_hooks(cfg, hooks), rx)
    }

    pub fn h(&self) -> &EngineHandle {
        self.engine.handle()
    }

    /// A connected pair: the test's end (blocking, with timeouts) and the engine's end.
    pub fn pair(&self) -> (TcpStream, SockId) {
        let peer = TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
        let (mine, _) = self.listener.accept().unwrap();
        peer.set_read_timeout(Some(DEADLINE)).unwrap();
        peer.set_nodelay(true).unwrap();
        let id = self.h().adopt(mine).expect("adopt");
        (peer, id)
    }

    /// Waits for the first event matching `f` (others are kept for later).
    pub fn wait<T>(&mut self, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        if let Some(i) = self.backlog.iter().position(|e| f(e).is_some()) {
            let ev = self.backlog.remove(i).unwrap();
            return f(&ev).unwrap();
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let ev = self.engine.next_event(left).unwrap_or_else(|| {
                panic!(
                    "no matching event within {DEADLINE:?}; seen {:?}",
                    self.backlog
                )
            });
            if let Some(t) = f(&ev) {
                return t;
            }
            self.backlog.push_back(ev);
        }
    }

    /// Collects message bytes for `sock` until `len` bytes arrived; returns them and the message count.
    pub fn messages(&mut self, sock: SockId, len: usize) -> (Vec<u8>, usize) {
        let mut got = Vec::new();
        let mut n = 0;
        while got.len() < len {
            let data = self.wait(|e| match e {
                Event::Message { sock: s, data } if *s == sock => Some(frags_to_vec(data)),
                _ => None,
            });
            got.extend_from_slice(&data);
            n += 1;
        }
        (got, n)
    }

    /// Collects `n` messages for `sock`, each as one vector.
    pub fn take_messages(&mut self, sock: SockId, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                self.wait(|e| match e {
                    Event::Message { sock: s, data } if *s == sock => Some(frags_to_vec(data)),
                    _ => None,
                })
            })
            .collect()
    }

    pub fn closed(&mut self, sock: SockId) -> Option<sockmap_core::Errno> {
        self.wait(|e| match e {
            Event::Closed { sock: s, error } if *s == sock => Some(*error),
            _ => None,
        })
    }

    /// Waits until the socket's counters satisfy `f`.
    ///
    /// `f` names every counter the test then relies on: the I/O thread
    /// updates counters one by one (a read's bytes before its verdict's
    /// counts, a write's bytes before the queue gauge, a socket's counter
    /// before its map's), so a counter seen at its final value says nothing
    /// of the others.
    pub fn stats_until(&self, sock: SockId, f: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        self.counters_until(sock, f, false)
    }

    /// Waits until the socket's counters satisfy `f` and are settled: no
    /// bytes of it are still unacknowledged by another shard, so its redirect
    /// and drop counters are final (with one shard, the same as `stats_until`).
    pub fn settled_until(&self, sock: SockId, f: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        self.counters_until(sock, f, true)
    }

    /// Waits until `get` of the socket's counters equals `want`; returns the counters.
    pub fn stats_eq<T: PartialEq + Debug>(
        &self,
        sock: SockId,
        get: impl Fn(&StatsSnapshot) -> T,
        want: T,
    ) -> StatsSnapshot {
        let read = || self.h().sock_stats(sock).expect("socket exists");
        counters_eq(&format!("{sock:?}"), read, |s| get(s) == want, &get, &want)
    }

    /// [`Harness::stats_eq`] on settled counters (see [`Harness::settled_until`]).
    pub fn settled_eq<T: PartialEq + Debug>(
        &self,
        sock: SockId,
        get: impl Fn(&StatsSnapshot) -> T,
        want: T,
    ) -> StatsSnapshot {
        let read = || self.h().sock_stats(sock).expect("socket exists");
        let done = |s: &StatsSnapshot| s.remote_bytes == 0 && get(s) == want;
        counters_eq(&format!("{sock:?} (settled)"), read, done, &get, &want)
    }

    /// Waits until `get` of the map's counters (the sum over every shard,
    /// each counted after its socket's) equals `want`; returns the counters.
    pub fn map_stats_eq<T: PartialEq + Debug>(
        &self,
        map: MapId,
        get: impl Fn(&StatsSnapshot) -> T,
        want: T,
    ) -> StatsSnapshot {
        let read = || self.h().map_stats(map).expect("map exists");
        counters_eq(&format!("{map}"), read, |s| get(s) == want, &get, &want)
    }

    /// Waits until the socket's counters stay unchanged for `window` (its
    /// traffic stopped), and returns them. A loaded machine can pause any
    /// flow for that long: wait first for what stops it (a stall), then for this.
    pub fn stats_still(&self, sock: SockId, window: Duration) -> StatsSnapshot {
        let end = Instant::now() + DEADLINE;
        let read = || self.h().sock_stats(sock).expect("socket exists");
        let (mut last, mut since) = (read(), Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(1));
            let now = read();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= window {
                return last;
            }
            assert!(
                Instant::now() < end,
                "the counters of {sock:?} never stayed still for {window:?}: {last:?}"
            );
        }
    }

    fn counters_until(
        &self,
        sock: SockId,
        f: impl Fn(&StatsSnapshot) -> bool,
        settled: bool,
    ) -> StatsSnapshot {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = self.h().sock_stats(sock).expect("socket exists");
            if f(&s) && (!settled || s.remote_bytes == 0) {
                return s;
            }
            assert!(Instant::now() < end, "counters never matched: {s:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A SockHash with a stream verdict running `rule`.
    pub fn hash_with(&self, rule: impl FnOnce(MapId) -> Rule) -> MapId {
        self.hash_sized(64, rule)
    }

    /// [`Harness::hash_with`] holding at most `max_entries` sockets.
    pub fn hash_sized(&self, max_entries: u32, rule: impl FnOnce(MapId) -> Rule) -> MapId {
        let m = self.h().create_map(MapKind::SockHash, max_entries).unwrap();
        let progs = Programs {
            verdict: Some(Arc::new(StreamVerdictProg::rule(rule(m)))),
            ..Programs::default()
        };
        self.h().attach(m, progs).unwrap();
        m
    }

    /// Two adopted sockets redirecting to each other (a SockHash keyed by
    /// socket): the test's ends, the engine's ends and the map.
    pub fn proxy_pair(&self) -> (TcpStream, SockId, TcpStream, SockId, MapId) {
        let (pa, a) = self.pair();
        let (pb, b) = self.pair();
        let map = self.redirect_pair(a, b);
        (pa, a, pb, b, map)
    }

    /// A SockHash whose native rule redirects each message to the socket
    /// stored under its source's id (egress).
    pub fn hash_by_socket(&self) -> MapId {
        self.hash_with(|m| Rule::Redirect {
            map: m,
            key: KeySource::Socket,
            ingress: false,
        })
    }

    /// Makes `a` and `b` redirect every message to each other (egress),
    /// through a SockHash keyed by socket; returns it.
    pub fn redirect_pair(&self, a: SockId, b: SockId) -> MapId {
        let map = self.hash_by_socket();
        self.put(map, a, b);
        self.put(map, b, a);
        map
    }

    pub fn put(&self, map: MapId, key: impl Into<Key>, sock: SockId) {
        self.h()
            .map_update(map, &key.into(), sock, UpdateFlag::Any)
            .unwrap();
    }
}

/// A frame with a 4-byte big-endian length header.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    s.read_exact(&mut v).expect("read_exact");
    v
}

/// Writes all of `data`.
pub fn write(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("write_all");
}

/// Reads until end of stream.
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read_to_end");
    v
}

impl Harness {
    /// A SockHash whose sockets take a msg verdict running `f`.
    pub fn msg_map(&self, f: sockmap_core::program::MsgVerdictFn) -> MapId {
        use sockmap_core::program::{MsgVerdictKind, MsgVerdictProg};
        let m = self.h().create_map(MapKind::SockHash, 64).unwrap();
        let progs = Programs {
            msg_verdict: Some(Arc::new(MsgVerdictProg::new(MsgVerdictKind::Func(f)))),
            ..Programs::default()
        };
        self.h().attach(m, progs).unwrap();
        m
    }

    /// Sends and waits for the outcome.
    pub fn send(&mut self, sock: SockId, data: &[u8]) -> Result<usize, sockmap_core::Errno> {
        static REQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let req = REQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.h()
            .send(sock, bytes::Bytes::copy_from_slice(data), req);
        self.wait(|e| match e {
            Event::SendDone {
                sock: s,
                req: r,
                result,
            } if *s == sock && *r == req => Some(*result),
            _ => None,
        })
    }
}
