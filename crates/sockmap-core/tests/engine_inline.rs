//! Inline driving: a shard driven by its caller on the caller's thread, as the Node binding drives it from libuv:
//! wait for the descriptor to be readable (or the timeout), turn, answer the batches the turn handed off, turn again.
//! The backend is `auto` in the configuration, which wins over `SOCKMAP_BACKEND`: inline driving takes the readiness
//! backend whatever the environment asks of the threaded shards.
#![cfg(unix)]

mod engine_util;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::RawFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use engine_util::{external_programs, read_n, read_to_end, ChanSink, DEADLINE};
use sockmap_core::backend::select::BackendKind;
use sockmap_core::batch::Batch;
use sockmap_core::config::{BackendChoice, Drive};
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::{
    BatchConfig, Driven, Engine, EngineConfig, Event, Hooks, Key, MapId, SockId, Verdict,
};

/// Whether `fd` is readable within `ms` milliseconds.
fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// An inline engine with external verdicts, its shard and the batches it hands off.
fn inline_engine() -> (Engine, Driven, Receiver<Batch>) {
    let (sink, rx) = ChanSink::new();
    let cfg = EngineConfig {
        drive: Some(Drive::Inline),
        backend: Some(BackendChoice::Auto),
        // A batch would wait a second for company: a deadline left by a handed-off batch shows as about that.
        batch: BatchConfig {
            max_delay: Duration::from_secs(1),
            ..BatchConfig::default()
        },
        ..EngineConfig::default()
    };
    let hooks = Hooks {
        external: Some(sink),
        ..Hooks::default()
    };
    let (engine, driven) = Engine::start_driven(cfg, hooks).expect("an inline engine");
    (
        engine,
        driven.expect("inline driving returns the shard"),
        rx,
    )
}

/// Waits as the event loop does (for the descriptor, at most until the shard's timeout) and turns, until `done`.
fn drive_until<T>(d: &mut Driven, what: &str, mut done: impl FnMut(&mut Driven) -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = done(d) {
            return v;
        }
        assert!(Instant::now() < end, "deadline: {what}");
        let ms = d
            .timeout()
            .map_or(50, |t| t.as_millis().clamp(0, 50) as i32);
        readable(d.fd(), ms);
        d.turn();
    }
}

/// A map whose external verdict (tag 1) sends every message back out of its socket, stored under "c".
fn echo_map(engine: &Engine) -> MapId {
    let h = engine.handle();
    let m = h.create_map(MapKind::SockHash, 4).unwrap();
    h.attach(m, external_programs(1, 64, false, None)).unwrap();
    m
}

fn echo_answer(batch: Batch, map: MapId) {
    let answers = batch
        .items
        .iter()
        .map(|_| {
            Verdict::Redirect {
                map,
                key: Key::from("c"),
                ingress: false,
            }
            .into()
        })
        .collect::<Vec<_>>();
    batch.reply(answers);
}

/// Accepts one client and puts its socket in `map` under "c", resumed.
fn accept_into(engine: &Engine, d: &mut Driven, map: MapId) -> (TcpStream, SockId) {
    let (_, addr) = engine
        .handle()
        .listen("127.0.0.1:0".parse().unwrap(), 16)
        .unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let sock = drive_until(d, "the accept", |_| loop {
        match engine.try_event() {
            Some(Event::Accepted { sock, .. }) => break Some(sock),
            Some(_) => {}
            None => break None,
        }
    });
    engine
        .handle()
        .map_update(map, &Key::from("c"), sock, UpdateFlag::Any)
        .unwrap();
    engine.handle().resume(sock);
    (client, sock)
}

#[test]
fn runs_one_shard_on_the_readiness_backend_for_its_caller() {
    let (engine, _d, _rx) = inline_engine();
    assert_eq!(engine.shards(), 1);
    assert_eq!(engine.backend_info().kind, BackendKind::Epoll);
    // Engine::start has no caller to drive an inline shard.
    let cfg = EngineConfig {
        drive: Some(Drive::Inline),
        backend: Some(BackendChoice::Auto),
        ..EngineConfig::default()
    };
    let err = Engine::start(cfg.clone(), Hooks::default()).unwrap_err();
    assert_eq!(err.code, sockmap_core::Errno::Inval);
    let two = EngineConfig {
        shards: Some(2),
        ..cfg.clone()
    };
    assert_eq!(
        Engine::start_driven(two, Hooks::default())
            .unwrap_err()
            .code,
        sockmap_core::Errno::Inval
    );
    let uring = EngineConfig {
        backend: Some(BackendChoice::IoUring),
        ..cfg
    };
    assert_eq!(
        Engine::start_driven(uring, Hooks::default())
            .unwrap_err()
            .code,
        sockmap_core::Errno::OpNotSupp
    );
}

#[test]
fn answers_given_while_held_need_no_wake_and_the_next_turn_writes_them() {
    let (engine, mut d, rx) = inline_engine();
    let map = echo_map(&engine);
    let (mut client, _) = accept_into(&engine, &mut d, map);

    let verdict_timeout = sockmap_core::config::DEFAULT_VERDICT_TIMEOUT;
    for round in 0..3 {
        let msg = format!("ping {round}");
        // The batch opens after this, so its answer is due no sooner than a verdict timeout from now.
        let written = Instant::now();
        client.write_all(msg.as_bytes()).unwrap();
        // The descriptor becomes readable when the bytes arrive; a turn hands their batch off.
        let batch = drive_until(&mut d, "the batch", |_| match rx.try_recv() {
            Ok(b) => Some(b),
            Err(TryRecvError::Empty) => None,
            Err(e) => panic!("{e}"),
        });
        assert_eq!(batch.items.len(), 1);
        // Handed off at once when the loop went idle (not after max_delay), and the batch's own deadline is gone
        // with it, so nothing wakes the loop while the verdict runs (work left makes the wait 0; the answer's own
        // deadline is the verdict timeout, seconds away; a left batch deadline would be due within max_delay).
        let timeout = d.timeout();
        let due = timeout.map(|t| Instant::now() + t);
        assert!(
            timeout.is_none_or(|t| t < Duration::from_millis(500))
                || due.is_some_and(|due| due >= written + verdict_timeout),
            "a handed-off batch left its deadline: {timeout:?}"
        );
        if round % 2 == 0 {
            // Held (the binding runs JavaScript right after the turn): answering rings nothing.
            d.hold();
            echo_answer(batch, map);
            assert!(!readable(d.fd(), 0), "a held doorbell woke the descriptor");
        } else {
            // Not held: an answer from elsewhere wakes the descriptor.
            echo_answer(batch, map);
            assert!(
                readable(d.fd(), DEADLINE.as_millis() as i32),
                "an answer did not wake the descriptor"
            );
        }
        let turned = d.turn();
        assert!(!turned.finished);
        assert_eq!(read_n(&mut client, msg.len()), msg.as_bytes());
    }
}

#[test]
fn shutdown_finishes_after_queued_bytes_leave() {
    let (engine, mut d, rx) = inline_engine();
    let map = echo_map(&engine);
    let (mut client, _) = accept_into(&engine, &mut d, map);
    client.write_all(b"last words").unwrap();
    let batch = drive_until(&mut d, "the batch", |_| rx.try_recv().ok());
    echo_answer(batch, map);
    drop(engine);
    drive_until(&mut d, "the shutdown", |d| d.turn().finished.then_some(()));
    assert_eq!(read_to_end(&mut client), b"last words");
    // A finished shard stays finished.
    assert!(d.turn().finished);
}
