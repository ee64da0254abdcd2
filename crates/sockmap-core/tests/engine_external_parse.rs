//! External parsers and external msg verdicts, answered by another thread;
//! bounded application queues.

mod engine_util;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use engine_util::*;
use sockmap_core::batch::{Answer, Answers, ItemDesc, ItemKind, MsgEdit};
use sockmap_core::framer::Parse;
use sockmap_core::map::MapKind;
use sockmap_core::program::{
    ErrorVerdict, MsgVerdictKind, MsgVerdictProg, ParserKind, ParserProg, Programs,
    StreamVerdictProg,
};
use sockmap_core::{BatchConfig, EngineConfig, Errno, Event, Key, MapId, Rule, Verdict};

/// What the responder saw of one item: its kind, length and copied bytes.
type Seen = Arc<Mutex<Vec<(ItemKind, usize, Vec<u8>)>>>;

/// An engine whose external side is a thread answering every item with
/// `decide(kind, bytes)`, as a binding would after `copy_into`.
fn external_harness(
    cfg: EngineConfig,
    decide: impl Fn(ItemKind, &[u8]) -> Answer + Send + 'static,
) -> (Harness, Seen, JoinHandle<()>) {
    let (h, rx) = Harness::with_external(cfg);
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut descs: Vec<ItemDesc> = Vec::new();
        while let Ok(batch) = rx.recv() {
            batch.copy_into(&mut buf, &mut descs);
            let answers: Answers = descs
                .iter()
                .map(|d| {
                    let bytes = &buf[d.offset..d.offset + d.copied];
                    log.lock().unwrap().push((d.kind, d.len, bytes.to_vec()));
                    decide(d.kind, bytes)
                })
                .collect();
            batch.reply(answers);
        }
    });
    (h, seen, t)
}

/// A parse function over a 4-byte big-endian length-prefixed protocol:
/// the lengths of every whole frame in `data`, then `NeedMore` for a partial one.
fn parse_frames(data: &[u8]) -> Vec<Parse> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if data.len() - at < 4 {
            out.push(Parse::NeedMore { hint: None });
            return out;
        }
        let n = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize + 4;
        out.push(Parse::Length(n));
        at += n;
    }
    out
}

#[test]
fn external_parser_frames_many_messages_per_crossing() {
    let cfg = EngineConfig {
        batch: BatchConfig {
            max_messages: 64,
            max_delay: Duration::from_micros(50),
            max_in_flight: 2,
            ..BatchConfig::default()
        },
        ..EngineConfig::default()
    };
    let (mut h, seen, _t) = external_harness(cfg, |kind, bytes| {
        assert_eq!(kind, ItemKind::Parse);
        Answer::parsed(parse_frames(bytes))
    });
    let m = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let mut prog = ParserProg::new(ParserKind::External { tag: 3 });
    prog.max_message_bytes = 1 << 16;
    let progs = Programs {
        parser: Some(Arc::new(prog)),
        verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Pass))),
        ..Programs::default()
    };
    h.h().attach(m, progs).unwrap();
    let (mut p, s) = h.pair();
    // 50 frames and 3 bytes of the 51st's header, all waiting before the socket reads.
    let frames: Vec<Vec<u8>> = (0..51u32)
        .map(|i| frame(format!("message number {i}").as_bytes()))
        .collect();
    let whole: Vec<u8> = frames[..50].concat();
    write(&mut p, &[whole.clone(), frames[50][..3].to_vec()].concat());
    h.put(m, "s", s);
    assert_eq!(h.take_messages(s, 50), frames[..50].to_vec());
    let crossings = seen.lock().unwrap().len();
    assert!(crossings <= 3, "50 frames took {crossings} parse crossings");
    // The 51st header is incomplete (NeedMore): a later read asks again.
    write(&mut p, &frames[50][3..]);
    assert_eq!(h.take_messages(s, 1), vec![frames[50].clone()]);
    h.stats_eq(
        s,
        |st| (st.messages_in, st.passed, st.parser_errors),
        (51, 51, 0),
    );
    // The last crossing carried exactly the 51st frame (the bytes from the current message on).
    assert_eq!(seen.lock().unwrap().last().unwrap().2, frames[50]);
}

/// A SockHash whose sockets take the external parser `tag` and pass every message.
fn external_parser_map(h: &Harness, tag: u32) -> MapId {
    let m = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let progs = Programs {
        parser: Some(Arc::new(ParserProg::new(ParserKind::External { tag }))),
        verdict: Some(Arc::new(StreamVerdictProg::rule(Rule::Pass))),
        ..Programs::default()
    };
    h.h().attach(m, progs).unwrap();
    m
}

#[test]
fn external_parser_error_aborts_the_socket() {
    let (mut h, _seen, _t) = external_harness(EngineConfig::default(), |_, bytes| {
        Answer::parsed(match bytes.first() {
            Some(b'!') => vec![Parse::Error(Errno::Proto)],
            _ => vec![Parse::Length(2)],
        })
    });
    let m = external_parser_map(&h, 1);
    let (mut p, s) = h.pair();
    h.put(m, "s", s);
    write(&mut p, b"ok");
    assert_eq!(h.take_messages(s, 1), vec![b"ok".to_vec()]);
    write(&mut p, b"!bad");
    assert_eq!(h.closed(s), Some(Errno::Proto));
}

fn msg_decide(targets: MapId) -> impl Fn(ItemKind, &[u8]) -> Answer {
    move |kind, bytes| {
        assert_eq!(kind, ItemKind::MsgVerdict);
        let (verdict, edits) = match bytes {
            b"hello world" => (Verdict::Pass, vec![MsgEdit::Pop(0, 6)]),
            b"DROPME" => (Verdict::Drop, vec![]),
            b"xyz123" => (Verdict::Pass, vec![MsgEdit::Apply(3)]),
            b"123" => (
                Verdict::Redirect {
                    map: targets,
                    key: Key::from("t"),
                    ingress: true,
                },
                vec![],
            ),
            b"ab" => (Verdict::Pass, vec![MsgEdit::Cork(10)]),
            b"abcdefghijkl" => (Verdict::Pass, vec![MsgEdit::Push(2, 1)]),
            _ => (Verdict::Pass, vec![MsgEdit::Pull(5, 1)]),
        };
        Answer {
            verdict,
            edits,
            ..Answer::default()
        }
    }
}

#[test]
fn external_msg_verdict_with_edits_in_order() {
    let targets_cell: Arc<Mutex<Option<MapId>>> = Arc::default();
    let cell = targets_cell.clone();
    let (mut h, seen, _t) = external_harness(EngineConfig::default(), move |k, b| {
        msg_decide(cell.lock().unwrap().expect("targets set"))(k, b)
    });
    let targets = h.h().create_map(MapKind::SockHash, 8).unwrap();
    *targets_cell.lock().unwrap() = Some(targets);
    let m = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let progs = Programs {
        msg_verdict: Some(Arc::new(MsgVerdictProg::new(MsgVerdictKind::External {
            tag: 9,
            peek_bytes: 64,
        }))),
        ..Programs::default()
    };
    h.h().attach(m, progs).unwrap();
    let (mut p, s) = h.pair();
    let (_pt, t) = h.pair();
    h.put(m, "s", s);
    h.put(targets, "t", t);
    h.h().resume(t);
    // Sent back to back: each waits behind the previous one's answer.
    let sends: [&[u8]; 6] = [
        b"hello world",
        b"DROPME",
        b"xyz123",
        b"ab",
        b"cdefghijkl",
        b"?",
    ];
    for (i, d) in sends.iter().enumerate() {
        h.h()
            .send(s, bytes::Bytes::copy_from_slice(d), 100 + i as u64);
    }
    let mut results = Vec::new();
    for _ in 0..sends.len() {
        results.push(h.wait(|e| match e {
            Event::SendDone { sock, req, result } if *sock == s => Some((*req, *result)),
            _ => None,
        }));
    }
    // Each send's outcome, by request: one whose bytes went to another shard
    // is reported when that shard acknowledges them, after later local ones.
    results.sort_by_key(|r| r.0);
    assert_eq!(
        results,
        vec![
            (100, Ok(11)),
            (101, Err(Errno::Acces)),
            (102, Ok(6)),
            (103, Ok(2)),
            (104, Ok(10)),
            (105, Err(Errno::Acces)),
        ]
    );
    // "hello world" minus its first 6 bytes, "xyz" (apply 3), then the cork
    // released as "abcdefghijkl" with one zero byte pushed at 2.
    assert_eq!(read_n(&mut p, 5 + 3 + 13), b"worldxyzab\0cdefghijkl");
    assert_eq!(h.take_messages(t, 1), vec![b"123".to_vec()]);
    let kinds: Vec<(usize, Vec<u8>)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l, b)| (*l, b.clone()))
        .collect();
    let asked: Vec<&[u8]> = kinds.iter().map(|(_, b)| &b[..]).collect();
    assert_eq!(
        asked,
        vec![
            &b"hello world"[..],
            b"DROPME",
            b"xyz123",
            b"123",
            b"ab",
            b"abcdefghijkl",
            b"?"
        ]
    );
    h.stats_eq(
        s,
        |st| (st.sends, st.sends_refused, st.redirected_ingress),
        (6, 2, 1),
    );
}

#[test]
fn slow_consumer_stops_reading_until_acknowledged_and_loses_nothing() {
    const HIGH: usize = 4096;
    const READ: usize = 1024;
    let cfg = EngineConfig {
        app_high_watermark: Some(HIGH),
        read_buffer: READ,
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(cfg);
    let (p, s) = h.pair();
    h.h().resume(s);
    let total = 256 * 1024;
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let writer = {
        let data = data.clone();
        let mut p2 = p.try_clone().unwrap();
        std::thread::spawn(move || write(&mut p2, &data))
    };
    // Stopped past the watermark, with everything read still queued for the application.
    let st = h.stats_until(s, |st| {
        st.backpressure_stalls == 1
            && st.bytes_in > HIGH as u64
            && st.app_queued_bytes == st.bytes_in
    });
    let first = st.bytes_in as usize;
    assert!(first <= HIGH + READ, "read {first} before stopping");
    // Nothing more is read while nothing is acknowledged.
    holds_for(
        Duration::from_millis(50),
        "nothing read while stopped",
        || h.h().sock_stats(s).unwrap().bytes_in as usize == first,
    );
    // Consume and acknowledge as a slow consumer would: everything arrives, in order.
    let mut got = Vec::new();
    while got.len() < total {
        let chunk = h.wait(|e| match e {
            Event::Message { sock, data } if *sock == s => {
                Some(sockmap_core::event::frags_to_vec(data))
            }
            _ => None,
        });
        h.h().ack(s, chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, data);
    writer.join().unwrap();
    let st = h.stats_eq(
        s,
        |st| (st.app_queued_bytes, st.bytes_in),
        (0, total as u64),
    );
    assert!(st.backpressure_stalls > 1);
    drop(p.shutdown(std::net::Shutdown::Both));
}

/// Batches nobody answers: a parse request times out into `ETIMEDOUT` (its
/// socket closes), a msg verdict into its program's error verdict (here
/// PASS: the send goes out), each counted once.
#[test]
fn unanswered_parse_and_msg_items_time_out() {
    let (mut h, rx) = Harness::with_external(EngineConfig {
        batch: BatchConfig {
            verdict_timeout: Duration::from_millis(200),
            ..BatchConfig::default()
        },
        ..EngineConfig::default()
    });
    let parsed = external_parser_map(&h, 3);
    let sent = h.h().create_map(MapKind::SockHash, 8).unwrap();
    let progs = Programs {
        msg_verdict: Some(Arc::new(MsgVerdictProg {
            on_error: ErrorVerdict::Pass,
            ..MsgVerdictProg::new(MsgVerdictKind::External {
                tag: 4,
                peek_bytes: 64,
            })
        })),
        ..Programs::default()
    };
    h.h().attach(sent, progs).unwrap();
    let (mut pp, p) = h.pair();
    let (mut pm, m) = h.pair();
    h.put(parsed, "p", p);
    h.put(sent, "m", m);
    write(&mut pp, b"\0\0\0\x02hi");
    h.h().send(m, bytes::Bytes::from_static(b"hello"), 7);
    let mut held = Vec::new();
    while held
        .iter()
        .map(|b: &sockmap_core::batch::Batch| b.items.len())
        .sum::<usize>()
        < 2
    {
        held.push(rx.recv_timeout(DEADLINE).expect("a batch"));
    }
    assert_eq!(h.closed(p), Some(Errno::TimedOut));
    let done = h.wait(|e| match e {
        Event::SendDone { sock, req, result } if *sock == m => Some((*req, *result)),
        _ => None,
    });
    assert_eq!(done, (7, Ok(5)));
    assert_eq!(read_n(&mut pm, 5), b"hello");
    h.stats_eq(m, |st| st.verdict_timeouts, 1);
    h.map_stats_eq(parsed, |st| st.verdict_timeouts, 1);
    drop(held);
}
