//! Framing in the receive path: native framers between read and verdict.

mod engine_util;

use std::sync::Arc;
use std::time::Duration;

use engine_util::*;
use sockmap_core::framer::{Http1Options, LengthFieldOptions, RespOptions};
use sockmap_core::map::MapKind;
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg};
use sockmap_core::rules::MessageView;
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{Errno, Key, KeySource, MapId, Rule, Verdict};

/// A SockHash whose sockets take `parser` and a stream verdict running `rule`.
fn parsed_map(h: &Harness, parser: ParserProg, rule: impl FnOnce(MapId) -> Rule) -> MapId {
    let m = h.h().create_map(MapKind::SockHash, 64).unwrap();
    let progs = Programs {
        parser: Some(Arc::new(parser)),
        verdict: Some(Arc::new(StreamVerdictProg::rule(rule(m)))),
        ..Programs::default()
    };
    h.h().attach(m, progs).unwrap();
    m
}

fn length4() -> ParserProg {
    ParserProg::new(ParserKind::LengthField(LengthFieldOptions::default()))
}

#[test]
fn four_byte_header_frames_across_split_reads() {
    let mut h = Harness::new();
    let map = parsed_map(&h, length4(), |_| Rule::Pass);
    let (mut p, s) = h.pair();
    h.put(map, "s", s);
    let mut wire = frame(b"hello");
    wire.extend(frame(b""));
    wire.extend(frame(&[7u8; 300]));
    wire.extend(frame(b"end"));
    // Every split point gets its own read: the engine has counted the bytes
    // before the next piece is written.
    let cuts = [1, 3, 4, 6, 9, 10, 12, 13, 200, 313, 317, 320, wire.len()];
    let mut at = 0;
    for &cut in &cuts {
        write(&mut p, &wire[at..cut]);
        h.stats_until(s, |st| st.bytes_in == cut as u64);
        at = cut;
    }
    let got = h.take_messages(s, 4);
    assert_eq!(
        got,
        vec![
            frame(b"hello"),
            frame(b""),
            frame(&[7u8; 300]),
            frame(b"end")
        ]
    );
    h.stats_eq(
        s,
        |st| (st.messages_in, st.passed, st.parser_errors),
        (4, 4, 0),
    );
}

#[test]
fn hundred_frames_in_one_send_redirected_in_order() {
    let h = Harness::new();
    let map = parsed_map(&h, length4(), |m| Rule::Redirect {
        map: m,
        key: KeySource::Socket,
        ingress: false,
    });
    let (mut pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    h.put(map, a, b);
    h.put(map, b, a);
    let mut wire = Vec::new();
    for i in 0..100u32 {
        wire.extend(frame(format!("frame-{i:03}").as_bytes()));
    }
    write(&mut pa, &wire);
    assert_eq!(read_n(&mut pb, wire.len()), wire);
    let counts = |st: &StatsSnapshot| (st.messages_in, st.redirected_egress, st.dropped);
    h.settled_eq(a, counts, (100, 100, 0));
    // The queue gauge is set after the write that counted the bytes out: wait for both.
    h.stats_eq(
        b,
        |st| (st.bytes_out, st.queued_bytes),
        (wire.len() as u64, 0),
    );
}

#[test]
fn dispatch_framed_messages_by_size_to_two_targets() {
    let h = Harness::new();
    let targets = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let by_size: sockmap_core::rules::VerdictFn =
        Arc::new(move |m: &MessageView<'_>| Verdict::Redirect {
            map: targets,
            key: Key::from(if m.len > 20 { "big" } else { "small" }),
            ingress: false,
        });
    let src = parsed_map(&h, length4(), |_| Rule::Func(by_size));
    let (mut ps, s) = h.pair();
    let (mut pbig, big) = h.pair();
    let (mut psmall, small) = h.pair();
    h.put(targets, "big", big);
    h.put(targets, "small", small);
    h.put(src, "s", s);
    let (f1, f2, f3, f4) = (
        frame(b"tiny"),
        frame(&[b'B'; 40]),
        frame(b"x"),
        frame(&[b'C'; 17]),
    );
    let wire = [f1.clone(), f2.clone(), f3.clone(), f4.clone()].concat();
    write(&mut ps, &wire);
    assert_eq!(read_n(&mut pbig, f2.len() + f4.len()), [f2, f4].concat());
    assert_eq!(read_n(&mut psmall, f1.len() + f3.len()), [f1, f3].concat());
    h.settled_eq(s, |st| (st.messages_in, st.redirected_egress), (4, 4));
}

#[test]
fn resp_first_key_routes_commands() {
    let h = Harness::new();
    let shards = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let src = parsed_map(
        &h,
        ParserProg::new(ParserKind::Resp(RespOptions::default())),
        |_| Rule::Redirect {
            map: shards,
            key: KeySource::Resp,
            ingress: false,
        },
    );
    let (mut pc, c) = h.pair();
    let (mut p1, s1) = h.pair();
    let (mut p2, s2) = h.pair();
    h.put(shards, "user:1", s1);
    h.put(shards, "user:2", s2);
    h.put(src, "client", c);
    let set1 = b"*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$5\r\nalice\r\n".to_vec();
    let get2 = b"*2\r\n$3\r\nGET\r\n$6\r\nuser:2\r\n".to_vec();
    let get1 = b"*2\r\n$3\r\nGET\r\n$6\r\nuser:1\r\n".to_vec();
    let ping = b"*1\r\n$4\r\nPING\r\n".to_vec();
    let other = b"*2\r\n$3\r\nGET\r\n$6\r\nuser:9\r\n".to_vec();
    write(
        &mut pc,
        &[set1.clone(), get2.clone(), ping, other, get1.clone()].concat(),
    );
    assert_eq!(
        read_n(&mut p1, set1.len() + get1.len()),
        [set1, get1].concat()
    );
    assert_eq!(read_n(&mut p2, get2.len()), get2);
    let counts = |st: &StatsSnapshot| (st.messages_in, st.redirected_egress, st.dropped_no_key);
    h.settled_eq(c, counts, (5, 3, 2));
}

#[test]
fn http_host_routes_requests() {
    let h = Harness::new();
    let vhosts = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let src = parsed_map(
        &h,
        ParserProg::new(ParserKind::Http1(Http1Options::default())),
        |_| Rule::Redirect {
            map: vhosts,
            key: KeySource::HttpHost,
            ingress: false,
        },
    );
    let (mut pc, c) = h.pair();
    let (mut pa, a) = h.pair();
    let (mut pb, b) = h.pair();
    h.put(vhosts, "a.test", a);
    h.put(vhosts, "b.test", b);
    h.put(src, "client", c);
    let r1 = b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let r2 = b"GET /y HTTP/1.1\r\nHost: b.test\r\n\r\n".to_vec();
    let r3 = b"GET /z HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec();
    write(&mut pc, &[r1.clone(), r2.clone(), r3.clone()].concat());
    assert_eq!(read_n(&mut pa, r1.len() + r3.len()), [r1, r3].concat());
    assert_eq!(read_n(&mut pb, r2.len()), r2);
    h.settled_eq(c, |st| (st.messages_in, st.redirected_egress), (3, 3));
}

#[test]
fn oversize_frame_aborts_with_emsgsize_after_earlier_frames() {
    let mut h = Harness::new();
    let mut prog = length4();
    prog.max_message_bytes = 64;
    let map = parsed_map(&h, prog, |_| Rule::Pass);
    let (mut p, s) = h.pair();
    h.put(map, "s", s);
    write(&mut p, &[frame(b"ok"), frame(&[0u8; 100])].concat());
    assert_eq!(h.take_messages(s, 1), vec![frame(b"ok")]);
    assert_eq!(h.closed(s), Some(Errno::MsgSize));
    assert_eq!(read_to_end(&mut p), b"");
    assert_eq!(h.h().map_len(map), Ok(0));
}

#[test]
fn incomplete_message_times_out_with_etimedout() {
    let mut h = Harness::new();
    let mut prog = length4();
    prog.message_timeout = Some(Duration::from_millis(30));
    let map = parsed_map(&h, prog, |_| Rule::Pass);
    let (mut p, s) = h.pair();
    h.put(map, "s", s);
    write(&mut p, &frame(b"whole"));
    write(&mut p, &frame(b"cut short")[..6]);
    assert_eq!(h.take_messages(s, 1), vec![frame(b"whole")]);
    assert_eq!(h.closed(s), Some(Errno::TimedOut));
}

#[test]
fn oversize_frames_are_skipped_and_counted() {
    let mut h = Harness::new();
    let opts = LengthFieldOptions {
        max_frame_length: 16,
        discard_oversize: true,
        ..LengthFieldOptions::default()
    };
    let map = parsed_map(&h, ParserProg::new(ParserKind::LengthField(opts)), |_| {
        Rule::Pass
    });
    let (mut p, s) = h.pair();
    h.put(map, "s", s);
    write(
        &mut p,
        &[frame(b"a"), frame(&[9u8; 50]), frame(b"b")].concat(),
    );
    assert_eq!(h.take_messages(s, 2), vec![frame(b"a"), frame(b"b")]);
    let counts = |st: &StatsSnapshot| (st.skipped_frames, st.skipped_bytes, st.messages_in);
    h.stats_eq(s, counts, (1, 54, 2));
}

#[test]
fn upgrade_hands_the_rest_of_the_stream_back_raw() {
    let mut h = Harness::new();
    let map = parsed_map(
        &h,
        ParserProg::new(ParserKind::Http1(Http1Options::default())),
        |_| Rule::Pass,
    );
    let (mut p, s) = h.pair();
    h.put(map, "s", s);
    let plain = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    let upgrade =
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            .to_vec();
    // Not HTTP: after the upgrade the framer would reject these bytes.
    let tail = b"\x81\x05hello raw bytes\r\n\r\n".to_vec();
    write(
        &mut p,
        &[plain.clone(), upgrade.clone(), tail[..4].to_vec()].concat(),
    );
    h.stats_until(s, |st| st.handbacks == 1);
    write(&mut p, &tail[4..]);
    assert_eq!(h.take_messages(s, 2), vec![plain, upgrade]);
    let (got, _) = h.messages(s, tail.len());
    assert_eq!(got, tail);
    h.stats_eq(
        s,
        |st| (st.messages_in, st.passed, st.handbacks, st.parser_errors),
        (2, 2, 1, 0),
    );
}

#[test]
fn bytes_read_before_adoption_are_framed_first_in_order() {
    let mut h = Harness::new();
    let map = parsed_map(&h, length4(), |_| Rule::Pass);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut mine, _) = listener.accept().unwrap();
    let mut wire = frame(b"hello");
    wire.extend(frame(b"hi"));
    wire.extend(frame(b"there"));
    // The application read the first 7 bytes (a frame and a half) itself...
    write(&mut peer, &wire[..12]);
    let initial = read_n(&mut mine, 7);
    // ...and the next 5 wait in the kernel when the engine takes the stream.
    let s = h
        .h()
        .adopt_with(mine, bytes::Bytes::from(initial))
        .expect("adopt");
    h.put(map, "s", s);
    write(&mut peer, &wire[12..]);
    let got = h.take_messages(s, 3);
    assert_eq!(got, [frame(b"hello"), frame(b"hi"), frame(b"there")]);
    let counts = |st: &StatsSnapshot| (st.passed, st.bytes_in, st.messages_in);
    h.stats_eq(s, counts, (3, wire.len() as u64, 3));
}

#[test]
fn bytes_read_before_adoption_wait_for_the_socket_to_read() {
    let mut h = Harness::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut p2 = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mine, _) = listener.accept().unwrap();
    let s = h
        .h()
        .adopt_with(mine, bytes::Bytes::from_static(b"early:"))
        .expect("adopt");
    write(&mut p2, b"later");
    // Paused: nothing is received until the application resumes.
    assert_eq!(h.h().sock_stats(s).unwrap().bytes_in, 0);
    h.h().resume(s);
    let (got, _) = h.messages(s, 11);
    assert_eq!(got, b"early:later");
}
