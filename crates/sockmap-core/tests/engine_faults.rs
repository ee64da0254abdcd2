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
use sockmap_core::{EngineConfig, Errno, Event, SockId};

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
            } if *listener == l => Some((*sock, *peer)),
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
