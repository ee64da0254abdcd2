//! Passthrough, redirects, drop and map errors over loopback sockets.

mod engine_util;

use std::time::Duration;

use engine_util::*;
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::{Errno, Event, Key, KeySource, Rule};

#[test]
fn passthrough_delivers_in_order_after_resume() {
    let mut h = Harness::new();
    let (mut peer, id) = h.pair();
    write(&mut peer, b"before-");
    // Paused: nothing is read until the application resumes.
    holds_for(
        Duration::from_millis(20),
        "nothing read while paused",
        || h.h().sock_stats(id).unwrap().bytes_in == 0,
    );
    h.h().resume(id);
    write(&mut peer, b"after");
    let (got, _) = h.messages(id, 12);
    assert_eq!(got, b"before-after");
    let s = h.stats_until(id, |s| s.bytes_in == 12 && s.passed == s.messages_in);
    assert_eq!(s.dropped, 0);
}

#[test]
fn redirect_egress_pairs_sockets_by_id() {
    let mut h = Harness::new();
    let map = h.hash_with(|m| Rule::Redirect {
        map: m,
        key: KeySource::Socket,
        ingress: false,
    });
    let (mut pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    write(&mut pa, b"early");
    h.put(map, a, b);
    h.put(map, b, a);
    assert_eq!(read_n(&mut pb, 5), b"early");
    write(&mut pb, b"pong!");
    assert_eq!(read_n(&mut pa, 5), b"pong!");
    for i in 0..50u8 {
        write(&mut pa, &[i; 100]);
    }
    let got = read_n(&mut pb, 5000);
    for (i, chunk) in got.chunks(100).enumerate() {
        assert!(chunk.iter().all(|&x| x == i as u8));
    }
    let sa = h.settled_until(a, |s| {
        s.bytes_in == 5005 && s.redirected_egress == s.messages_in
    });
    assert_eq!(sa.passed, 0);
    h.stats_eq(b, |s| (s.bytes_out, s.queued_bytes), (5005, 0));
    h.map_stats_eq(map, |m| m.bytes_in, 5010);
    drop(h.backlog.drain(..));
    assert!(h.backlog.is_empty());
}

#[test]
fn redirect_ingress_reaches_the_target_application() {
    let mut h = Harness::new();
    let map = h.hash_with(|m| Rule::Redirect {
        map: m,
        key: KeySource::Fixed(Key::from("app")),
        ingress: true,
    });
    let (mut pa, a) = h.pair();
    let (_pb, b) = h.pair();
    h.put(map, "app", b);
    h.put(map, "src", a);
    write(&mut pa, b"to-b's-app");
    let (got, _) = h.messages(b, 10);
    assert_eq!(got, b"to-b's-app");
    h.settled_until(a, |s| {
        s.redirected_ingress >= 1 && s.redirected_ingress == s.messages_in
    });
    assert_eq!(h.h().sock_stats(b).unwrap().bytes_out, 0);
}

#[test]
fn drop_counts_and_missing_key_drops() {
    let h = Harness::new();
    let drop_map = h.hash_with(|_| Rule::Drop);
    let (mut pa, a) = h.pair();
    h.put(drop_map, "x", a);
    write(&mut pa, b"gone");
    // Counted in turn: bytes_in at the read, messages_in before the verdict, then the drop's counters.
    let s = h.stats_until(a, |s| {
        (s.bytes_in, s.dropped_bytes, s.dropped, s.dropped_verdict)
            == (4, 4, s.messages_in, s.messages_in)
    });
    assert!(s.messages_in > 0);

    let miss = h.hash_with(|m| Rule::Redirect {
        map: m,
        key: KeySource::Fixed(Key::from("absent")),
        ingress: false,
    });
    let (mut pc, c) = h.pair();
    h.put(miss, "c", c);
    write(&mut pc, b"nowhere");
    let s = h.settled_until(c, |s| {
        (s.bytes_in, s.dropped_bytes, s.dropped_no_key) == (7, 7, s.messages_in)
    });
    assert!(s.messages_in > 0);
    h.map_stats_eq(miss, |m| m.dropped_no_key, s.messages_in);
    assert!(h
        .backlog
        .iter()
        .all(|e| !matches!(e, Event::Message { .. })));
}

#[test]
fn map_errors_have_kernel_codes() {
    let h = Harness::new();
    let hh = h.h();
    let (_p, a) = h.pair();
    let (_q, b) = h.pair();
    let arr = hh.create_map(MapKind::SockMap, 4).unwrap();
    let hash = hh.create_map(MapKind::SockHash, 1).unwrap();
    assert_eq!(hh.create_map(MapKind::SockMap, 0), Err(Errno::Inval));
    assert_eq!(
        hh.map_update(arr, &Key::Num(4), a, UpdateFlag::Any),
        Err(Errno::TooBig)
    );
    assert_eq!(
        hh.map_update(arr, &Key::Num(1), a, UpdateFlag::Exist),
        Err(Errno::NoEnt)
    );
    hh.map_update(arr, &Key::Num(1), a, UpdateFlag::NoExist)
        .unwrap();
    assert_eq!(
        hh.map_update(arr, &Key::Num(1), b, UpdateFlag::NoExist),
        Err(Errno::Exist)
    );
    hh.map_update(hash, &Key::from("k"), a, UpdateFlag::Any)
        .unwrap();
    assert_eq!(
        hh.map_update(hash, &Key::from("k2"), b, UpdateFlag::Any),
        Err(Errno::TooBig)
    );
    assert_eq!(hh.map_delete(hash, &Key::from("k2")), Err(Errno::NoEnt));
    assert_eq!(hh.map_delete(arr, &Key::Num(2)), Err(Errno::Inval));
    assert_eq!(hh.map_lookup(arr, &Key::Num(1)), Ok(Some(a)));
    assert_eq!(hh.map_len(arr), Ok(1));

    // A listener whose accept queue is full drops further SYNs, so the
    // connect stays in progress (Linux retries for seconds).
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = full.local_addr().unwrap();
        // SAFETY: `listen` on a valid, bound socket only sets its accept backlog.
        assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let c = hh.connect(addr, None).unwrap();
        assert_eq!(hh.sock_state(c), sockmap_core::SockState::Connecting);
        assert_eq!(
            hh.map_update(arr, &Key::Num(3), c, UpdateFlag::Any),
            Err(Errno::OpNotSupp)
        );
    }

    let m1 = h.hash_with(|_| Rule::Pass);
    let m2 = h.hash_with(|_| Rule::Drop);
    hh.map_update(m1, &Key::Num(0), b, UpdateFlag::Any).unwrap();
    assert_eq!(
        hh.map_update(m2, &Key::Num(0), b, UpdateFlag::Any),
        Err(Errno::Busy)
    );

    hh.destroy(a);
    let mut h = h;
    assert_eq!(h.closed(a), None);
    assert_eq!(h.h().map_len(arr), Ok(0));
    assert_eq!(h.h().map_len(hash), Ok(0));
    assert_eq!(
        h.h().map_update(arr, &Key::Num(0), a, UpdateFlag::Any),
        Err(Errno::OpNotSupp)
    );
}

#[test]
fn connect_refused_is_reported() {
    let mut h = Harness::new();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = h.h().connect(addr, None).unwrap();
    let r = h.wait(|e| match e {
        Event::Connected { sock, result } if *sock == c => Some(*result),
        _ => None,
    });
    assert_eq!(r, Err(Errno::ConnRefused));
    assert_eq!(h.closed(c), Some(Errno::ConnRefused));
}
