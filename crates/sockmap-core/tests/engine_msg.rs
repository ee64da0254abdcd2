//! The sk_msg send path: msg verdicts with apply_bytes, cork_bytes and pull/push/pop.

mod engine_util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine_util::*;
use sockmap_core::event::frags_to_vec;
use sockmap_core::program::MsgVerdictFn;
use sockmap_core::{Errno, Event, Key, MapId, SkMsg, SockId, Verdict};

/// Records the size of every message the verdict sees.
fn recorder() -> Arc<Mutex<Vec<usize>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn redirect(map: MapId, key: &str, ingress: bool) -> Verdict {
    Verdict::Redirect {
        map,
        key: Key::from(key),
        ingress,
    }
}

/// Asserts nothing more arrives on `peer` within a short time.
fn nothing_more(peer: &mut std::net::TcpStream) {
    peer.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut b = [0u8; 16];
    match std::io::Read::read(peer, &mut b) {
        Ok(n) => assert_eq!(n, usize::MAX, "unexpected bytes {:?}", &b[..n]),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
}

#[test]
fn pass_transmits_and_drop_refuses_with_eacces() {
    let mut h = Harness::new();
    let pass: MsgVerdictFn = Arc::new(|_, m: &mut SkMsg| {
        if m.size() == 4 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    let map = h.msg_map(pass);
    let (mut peer, s) = h.pair();
    h.put(map, "s", s);
    assert_eq!(h.send(s, b"hello"), Ok(5));
    assert_eq!(read_n(&mut peer, 5), b"hello");
    assert_eq!(h.send(s, b"nope"), Err(Errno::Acces));
    nothing_more(&mut peer);
    // The bytes out are counted when the write completes, maybe after the peer read them.
    h.stats_eq(
        s,
        |st| (st.sends, st.sends_refused, st.dropped_verdict, st.bytes_out),
        (2, 1, 1, 5),
    );
}

#[test]
fn redirect_egress_and_ingress_and_epipe() {
    let mut h = Harness::new();
    let targets = h
        .h()
        .create_map(sockmap_core::MapKind::SockHash, 8)
        .unwrap();
    let f: MsgVerdictFn = Arc::new(move |_, m: &mut SkMsg| {
        let first = m.sg.to_vec()[0];
        match first {
            b'E' => redirect(targets, "b", false),
            b'I' => redirect(targets, "b", true),
            _ => redirect(targets, "absent", false),
        }
    });
    let map = h.msg_map(f);
    let (mut pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    h.put(map, "a", a);
    h.put(targets, "b", b);
    assert_eq!(h.send(a, b"Egress"), Ok(6));
    assert_eq!(read_n(&mut pb, 6), b"Egress");
    assert_eq!(h.send(a, b"Ingress"), Ok(7));
    let got = h.wait(|e| match e {
        Event::Message { sock, data } if *sock == b => Some(frags_to_vec(data)),
        _ => None,
    });
    assert_eq!(got, b"Ingress");
    // A missing key is a DROP in the kernel: EACCES.
    assert_eq!(h.send(a, b"?"), Err(Errno::Acces));
    // A target that is shutting down is gone: EPIPE.
    h.h().end(b);
    assert_eq!(read_to_end(&mut pb), b"");
    assert_eq!(h.send(a, b"Egress"), Err(Errno::Pipe));
    nothing_more(&mut pa);
    h.settled_eq(
        a,
        |st| (st.redirected_egress, st.redirected_ingress, st.bytes_out),
        (1, 1, 0),
    );
}

#[test]
fn apply_bytes_one_reruns_the_verdict_per_byte() {
    let mut h = Harness::new();
    let seen = recorder();
    let rec = seen.clone();
    let f: MsgVerdictFn = Arc::new(move |_, m: &mut SkMsg| {
        rec.lock().unwrap().push(m.size());
        m.apply_bytes(1);
        Verdict::Pass
    });
    let map = h.msg_map(f);
    let (mut peer, s) = h.pair();
    h.put(map, "s", s);
    assert_eq!(h.send(s, b"abcde"), Ok(5));
    assert_eq!(read_n(&mut peer, 5), b"abcde");
    assert_eq!(*seen.lock().unwrap(), vec![5, 4, 3, 2, 1]);
}

#[test]
fn apply_bytes_beyond_the_message_covers_later_sends() {
    let mut h = Harness::new();
    let seen = recorder();
    let rec = seen.clone();
    let targets = h
        .h()
        .create_map(sockmap_core::MapKind::SockHash, 8)
        .unwrap();
    let f: MsgVerdictFn = Arc::new(move |_, m: &mut SkMsg| {
        let mut r = rec.lock().unwrap();
        r.push(m.size());
        if r.len() == 1 {
            m.apply_bytes(10);
            redirect(targets, "b", false)
        } else {
            Verdict::Pass
        }
    });
    let map = h.msg_map(f);
    let (mut pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    h.put(map, "a", a);
    h.put(targets, "b", b);
    assert_eq!(h.send(a, b"abc"), Ok(3));
    assert_eq!(h.send(a, b"defg"), Ok(4));
    assert_eq!(h.send(a, b"hijKL"), Ok(5));
    assert_eq!(read_n(&mut pb, 10), b"abcdefghij");
    assert_eq!(read_n(&mut pa, 2), b"KL");
    assert_eq!(*seen.lock().unwrap(), vec![3, 2]);
}

#[test]
fn cork_bytes_holds_until_enough_then_reruns_on_the_whole() {
    let mut h = Harness::new();
    let seen = recorder();
    let rec = seen.clone();
    let f: MsgVerdictFn = Arc::new(move |_, m: &mut SkMsg| {
        rec.lock().unwrap().push(m.size());
        if m.size() < 8 {
            m.cork_bytes(8);
        }
        Verdict::Pass
    });
    let map = h.msg_map(f);
    let (mut peer, s) = h.pair();
    h.put(map, "s", s);
    assert_eq!(h.send(s, b"abc"), Ok(3));
    nothing_more(&mut peer);
    assert_eq!(h.send(s, b"de"), Ok(2));
    assert_eq!(h.send(s, b"fgh"), Ok(3));
    assert_eq!(read_n(&mut peer, 8), b"abcdefgh");
    // The verdict ran on 3 bytes (cork), then only once 8 were there.
    assert_eq!(*seen.lock().unwrap(), vec![3, 8]);
}

#[test]
fn cork_never_satisfied_is_discarded_on_close() {
    let mut h = Harness::new();
    let f: MsgVerdictFn = Arc::new(|_, m: &mut SkMsg| {
        m.cork_bytes(100);
        Verdict::Pass
    });
    let map = h.msg_map(f);
    let (mut peer, s) = h.pair();
    h.put(map, "s", s);
    assert_eq!(h.send(s, &[7u8; 10]), Ok(10));
    nothing_more(&mut peer);
    let before = h.h().sock_stats(s).unwrap();
    assert_eq!(before.bytes_out, 0);
    h.h().destroy(s);
    assert_eq!(h.closed(s), None);
    assert_eq!(read_to_end(&mut peer), b"");
}

#[test]
fn push_pull_pop_with_redirect_and_cork() {
    let mut h = Harness::new();
    let targets = h
        .h()
        .create_map(sockmap_core::MapKind::SockHash, 8)
        .unwrap();
    let pulled = Arc::new(Mutex::new(Vec::new()));
    let p = pulled.clone();
    let f: MsgVerdictFn = Arc::new(move |_, m: &mut SkMsg| {
        if m.size() < 6 {
            m.cork_bytes(6);
            return Verdict::Pass;
        }
        m.pop(0, 2).unwrap(); // strip a 2-byte header: "abcd"
        m.push(0, 1).unwrap(); // a zero byte in front: "\0abcd"
        assert_eq!(m.pull(0, 0), Err(Errno::Inval));
        p.lock().unwrap().push(m.pull(1, 3).unwrap().to_vec()); // "ab"
        m.pop(4, 1).unwrap(); // drop the last byte: "\0abc"
        redirect(targets, "b", false)
    });
    let map = h.msg_map(f);
    let (_pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    h.put(map, "a", a);
    h.put(targets, "b", b);
    assert_eq!(h.send(a, b"HD"), Ok(2));
    assert_eq!(h.send(a, b"abcd"), Ok(4));
    assert_eq!(read_n(&mut pb, 4), b"\0abc");
    assert_eq!(*pulled.lock().unwrap(), vec![b"ab".to_vec()]);
    let _: SockId = b;
}
