//! The strparser state machine: kernel edge cases, each a named test, and a
//! check against a simple reference model.

mod framer_common;
mod strparser_model;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framer_common::{out, Out};
use proptest::prelude::*;
use sockmap_core::framer::{
    Chunks, Fixed, Framer, LengthField, LengthFieldOptions, MessageMeta, Parse,
};
use sockmap_core::strparser::{Event, StrParser, StrParserConfig};
use sockmap_core::Errno;
use strparser_model::{Harness, Op};

/// A framer answering with a closure.
struct Script<F>(F);

impl<F: FnMut(&Chunks<'_>) -> Parse + Send + 'static> Framer for Script<F> {
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        (self.0)(data)
    }
}

fn parser<F: FnMut(&Chunks<'_>) -> Parse + Send + 'static>(
    f: F,
    config: StrParserConfig,
) -> StrParser {
    StrParser::new(Box::new(Script(f)), config)
}

/// 1-byte length prefix, length counts the prefix too.
fn len1() -> StrParser {
    let o = LengthFieldOptions {
        length_field_length: 1,
        length_adjustment: -1,
        ..Default::default()
    };
    StrParser::new(
        Box::new(LengthField::new(o).unwrap()),
        StrParserConfig::default(),
    )
}

/// A framer that needs `n` bytes, then answers `then`.
fn need_then(n: usize, then: Parse) -> StrParser {
    parser(
        move |c| {
            if c.len() < n {
                Parse::NeedMore { hint: None }
            } else {
                then
            }
        },
        StrParserConfig::default(),
    )
}

/// A framer answering `then` at a message starting with `first`, else a
/// 1-byte message.
fn on_first_byte(first: u8, then: Parse) -> StrParser {
    parser(
        move |c| {
            if c.first()[0] == first {
                then
            } else {
                Parse::Length(1)
            }
        },
        StrParserConfig::default(),
    )
}

fn drain(p: &mut StrParser, now: Instant) -> Vec<Out> {
    std::iter::from_fn(|| p.poll_event(now)).map(out).collect()
}

/// Hands `data` to the parser and drains what it reports.
fn feed(p: &mut StrParser, data: &'static [u8], now: Instant) -> Vec<Out> {
    p.handle_data(Bytes::from_static(data), now);
    drain(p, now)
}

fn msg(b: &[u8]) -> Out {
    Out::Msg(b.to_vec(), MessageMeta::None)
}

#[test]
fn length_zero_answer_is_eproto() {
    let now = Instant::now();
    let mut p = parser(|_| Parse::Length(0), StrParserConfig::default());
    assert_eq!(feed(&mut p, b"abc", now), vec![Out::Error(Errno::Proto)]);
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(p.stats().proto_errors, 1);
}

#[test]
fn length_not_beyond_seen_bytes_is_eproto() {
    let now = Instant::now();
    let mut p = need_then(5, Parse::Length(3));
    assert_eq!(feed(&mut p, b"abc", now), vec![]);
    assert_eq!(feed(&mut p, b"de", now), vec![Out::Error(Errno::Proto)]);
}

#[test]
fn length_beyond_seen_bytes_is_accepted() {
    let now = Instant::now();
    let mut p = need_then(5, Parse::Length(4));
    p.handle_data(Bytes::from_static(b"abc"), now);
    assert_eq!(feed(&mut p, b"de", now), vec![msg(b"abcd")]);
    assert_eq!(p.buffered_bytes(), 1);
}

#[test]
fn message_exactly_at_limit_passes_and_one_more_byte_is_emsgsize() {
    let now = Instant::now();
    let cfg = StrParserConfig {
        max_message_bytes: 8,
        ..Default::default()
    };
    let mut p = StrParser::new(Box::new(Fixed::new(8).unwrap()), cfg);
    assert_eq!(feed(&mut p, b"12345678", now), vec![msg(b"12345678")]);

    let mut p = StrParser::new(Box::new(Fixed::new(9).unwrap()), cfg);
    assert_eq!(feed(&mut p, b"123", now), vec![Out::Error(Errno::MsgSize)]);
    assert_eq!(p.stats().msg_too_big, 1);
    assert_eq!(p.buffered_bytes(), 0, "the partial message is freed");
}

#[test]
fn unframed_bytes_reaching_limit_is_emsgsize() {
    let now = Instant::now();
    let cfg = StrParserConfig {
        max_message_bytes: 4,
        ..Default::default()
    };
    let mut p = parser(|_| Parse::NeedMore { hint: None }, cfg);
    assert_eq!(feed(&mut p, b"123", now), vec![]);
    assert_eq!(feed(&mut p, b"4", now), vec![Out::Error(Errno::MsgSize)]);
}

#[test]
fn hint_above_limit_is_emsgsize() {
    let now = Instant::now();
    let cfg = StrParserConfig {
        max_message_bytes: 4,
        ..Default::default()
    };
    let mut p = parser(|_| Parse::NeedMore { hint: Some(5) }, cfg);
    assert_eq!(feed(&mut p, b"1", now), vec![Out::Error(Errno::MsgSize)]);
}

#[test]
fn hint_defers_the_next_parse_call() {
    let now = Instant::now();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let mut p = parser(
        move |c| {
            c2.fetch_add(1, Ordering::Relaxed);
            if c.len() < 10 {
                Parse::NeedMore { hint: Some(10) }
            } else {
                Parse::Length(10)
            }
        },
        StrParserConfig::default(),
    );
    for _ in 0..9 {
        assert_eq!(feed(&mut p, b"x", now), vec![]);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(feed(&mut p, b"x", now), vec![msg(b"xxxxxxxxxx")]);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[test]
fn timeout_aborts_an_incomplete_message() {
    let t0 = Instant::now();
    let cfg = StrParserConfig {
        message_timeout: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let mut p = StrParser::new(Box::new(Fixed::new(4).unwrap()), cfg);
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(feed(&mut p, b"12", t0), vec![]);
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(10)));
    p.handle_timeout(t0 + Duration::from_millis(9));
    assert_eq!(drain(&mut p, t0), vec![]);
    p.handle_timeout(t0 + Duration::from_millis(10));
    assert_eq!(drain(&mut p, t0), vec![Out::Error(Errno::TimedOut)]);
    assert_eq!(p.stats().timeouts, 1);
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(
        feed(&mut p, b"34", t0),
        vec![],
        "an aborted parser stays aborted"
    );
}

#[test]
fn timer_stops_when_the_message_completes() {
    let t0 = Instant::now();
    let cfg = StrParserConfig {
        message_timeout: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let mut p = StrParser::new(Box::new(Fixed::new(4).unwrap()), cfg);
    assert_eq!(feed(&mut p, b"12", t0), vec![]);
    assert_eq!(feed(&mut p, b"34", t0), vec![msg(b"1234")]);
    assert_eq!(p.poll_timeout(), None);
    p.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(drain(&mut p, t0), vec![]);
}

#[test]
fn pause_in_the_middle_of_a_batch_then_unpause() {
    let now = Instant::now();
    let mut p = len1();
    p.handle_data(Bytes::from_static(b"\x02a\x02b\x02c\x02d\x03e"), now);
    assert_eq!(p.poll_event(now).map(out), Some(msg(b"\x02a")));
    assert_eq!(p.poll_event(now).map(out), Some(msg(b"\x02b")));
    p.pause();
    assert!(p.is_paused());
    assert_eq!(p.poll_event(now), None);
    p.handle_data(Bytes::from_static(b"f\x02g"), now);
    assert_eq!(p.poll_event(now), None);
    p.unpause();
    assert_eq!(
        drain(&mut p, now),
        vec![msg(b"\x02c"), msg(b"\x02d"), msg(b"\x03ef"), msg(b"\x02g")]
    );
}

#[test]
fn many_messages_in_one_chunk_all_delivered_in_order() {
    let now = Instant::now();
    let mut p = len1();
    let mut input = Vec::new();
    for i in 0..200u8 {
        input.extend_from_slice(&[2, i]);
    }
    p.handle_data(Bytes::from(input), now);
    let got = drain(&mut p, now);
    assert_eq!(got.len(), 200);
    for (i, o) in got.iter().enumerate() {
        assert_eq!(o, &msg(&[2, i as u8]));
    }
}

#[test]
fn message_spanning_many_chunks_is_zero_copy() {
    let now = Instant::now();
    let mut p = StrParser::new(
        Box::new(Fixed::new(1000).unwrap()),
        StrParserConfig::default(),
    );
    let chunks: Vec<Bytes> = (0..1000u32).map(|i| Bytes::from(vec![i as u8])).collect();
    for c in &chunks {
        p.handle_data(c.clone(), now);
    }
    match p.poll_event(now) {
        Some(Event::Message(m)) => {
            assert_eq!(m.len, 1000);
            assert_eq!(m.frags.len(), 1000);
            for (f, c) in m.frags.iter().zip(&chunks) {
                assert_eq!(f.as_ptr(), c.as_ptr(), "fragments are slices of the input");
            }
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn messages_in_one_chunk_share_its_memory() {
    let now = Instant::now();
    let mut p = len1();
    let input = Bytes::from_static(b"\x02a\x02b");
    p.handle_data(input.clone(), now);
    let Some(Event::Message(m)) = p.poll_event(now) else {
        panic!("no message")
    };
    let Some(Event::Message(n)) = p.poll_event(now) else {
        panic!("no message")
    };
    assert_eq!(m.frags[0].as_ptr(), input.as_ptr());
    assert_eq!(n.frags[0].as_ptr(), input[2..].as_ptr());
}

#[test]
fn handback_before_partial_consumption_returns_everything() {
    let now = Instant::now();
    let mut p = on_first_byte(b'!', Parse::Handback);
    p.handle_data(Bytes::from_static(b"ab!cd"), now);
    assert_eq!(
        feed(&mut p, b"ef", now),
        vec![
            msg(b"a"),
            msg(b"b"),
            Out::Handback(b"!cdef".to_vec(), false)
        ]
    );
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(p.stats().handbacks, 1);
    assert_eq!(feed(&mut p, b"gh", now), vec![]);
    assert_eq!(p.done(), vec![Bytes::from_static(b"gh")]);
}

#[test]
fn handback_after_partial_consumption_keeps_the_bytes_and_flags_enodata() {
    let now = Instant::now();
    let mut p = need_then(4, Parse::Handback);
    assert_eq!(feed(&mut p, b"ab", now), vec![]);
    assert_eq!(
        feed(&mut p, b"cd", now),
        vec![Out::Handback(b"abcd".to_vec(), true)]
    );
}

#[test]
fn pending_answer_arrives_through_handle_deferred() {
    let now = Instant::now();
    let mut p = parser(|_| Parse::Pending, StrParserConfig::default());
    assert_eq!(feed(&mut p, b"abc", now), vec![]);
    assert_eq!(
        feed(&mut p, b"def", now),
        vec![],
        "still waiting for the deferred answer"
    );
    p.handle_deferred(Parse::Pending);
    assert_eq!(drain(&mut p, now), vec![], "Pending again keeps waiting");
    p.handle_deferred(Parse::Length(2));
    assert_eq!(drain(&mut p, now), vec![msg(b"ab")]);
    p.handle_deferred(Parse::Length(1));
    assert_eq!(drain(&mut p, now), vec![msg(b"c")]);
    p.handle_deferred(Parse::Error(Errno::Inval));
    assert_eq!(drain(&mut p, now), vec![Out::Error(Errno::Inval)]);
    assert_eq!(p.stats().other_errors, 1);
}

#[test]
fn stray_deferred_answer_is_ignored() {
    let now = Instant::now();
    let mut p = len1();
    p.handle_deferred(Parse::Length(5));
    assert_eq!(feed(&mut p, b"\x02a", now), vec![msg(b"\x02a")]);
}

#[test]
fn skip_discards_across_reads_and_is_counted() {
    let now = Instant::now();
    let mut p = on_first_byte(b'S', Parse::Skip(5));
    assert_eq!(feed(&mut p, b"aS12", now), vec![msg(b"a"), Out::Skipped(5)]);
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(feed(&mut p, b"34b", now), vec![msg(b"b")]);
    assert_eq!((p.stats().skipped_frames, p.stats().skipped_bytes), (1, 5));
}

#[test]
fn skip_zero_is_eproto() {
    let now = Instant::now();
    let mut p = parser(|_| Parse::Skip(0), StrParserConfig::default());
    assert_eq!(feed(&mut p, b"a", now), vec![Out::Error(Errno::Proto)]);
}

#[test]
fn error_frees_the_partial_message_and_later_input() {
    let now = Instant::now();
    let mut p = need_then(3, Parse::Error(Errno::Inval));
    assert_eq!(feed(&mut p, b"ab", now), vec![]);
    assert_eq!(p.buffered_bytes(), 2);
    assert_eq!(feed(&mut p, b"c", now), vec![Out::Error(Errno::Inval)]);
    assert_eq!(p.buffered_bytes(), 0);
    p.handle_data(Bytes::from_static(b"d"), now);
    assert_eq!(p.buffered_bytes(), 0);
    assert!(p.done().is_empty());
}

#[test]
fn stop_then_done_returns_the_unparsed_bytes() {
    let now = Instant::now();
    let mut p = len1();
    p.handle_data(Bytes::from_static(b"\x02a\x03b"), now);
    assert_eq!(p.poll_event(now).map(out), Some(msg(b"\x02a")));
    p.stop();
    p.handle_data(Bytes::from_static(b"c"), now);
    assert_eq!(p.poll_event(now), None);
    let rest: Vec<u8> = p.done().iter().flat_map(|b| b.to_vec()).collect();
    assert_eq!(rest, b"\x03bc");
    assert_eq!(p.buffered_bytes(), 0);
}

// ── reference model ─────────────────────────────────────────────────────────

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop_oneof![3 => 1u8..12, 1 => any::<u8>()], 1..12).prop_map(Op::Data),
        1 => Just(Op::Pause),
        1 => Just(Op::Unpause),
        3 => (0u8..5).prop_map(Op::Poll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// The strparser against the reference model of `strparser_model`.
    #[test]
    fn matches_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut h = Harness::default();
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }
}

/// What one datagram framed alone by [`len1`] gives: its whole messages,
/// then the bytes of a message its end cut (or after an error, nothing).
fn datagram_reference(d: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>, bool) {
    let (mut msgs, mut off) = (Vec::new(), 0);
    while off < d.len() {
        let n = d[off] as usize;
        if n == 0 {
            return (msgs, Vec::new(), true);
        }
        if off + n > d.len() {
            return (msgs, d[off..].to_vec(), false);
        }
        msgs.push(d[off..off + n].to_vec());
        off += n;
    }
    (msgs, Vec::new(), false)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Inputs ended by `end_input` (datagrams) are framed each alone: no
    /// message spans two, a cut one comes back from `end_input`, and an error
    /// costs the rest of its own input only.
    #[test]
    fn each_input_ended_by_end_input_is_framed_alone(
        datagrams in prop::collection::vec(
            prop::collection::vec(prop_oneof![4 => 1u8..9, 1 => any::<u8>()], 0..24), 1..12),
    ) {
        let mut p = len1();
        let now = Instant::now();
        for d in &datagrams {
            let (want, want_rest, want_error) = datagram_reference(d);
            p.handle_data(Bytes::copy_from_slice(d), now);
            let (mut got, mut error) = (Vec::new(), false);
            while let Some(ev) = p.poll_event(now) {
                match ev {
                    Event::Message(m) => got.push(m.to_vec()),
                    Event::Error(_) => error = true,
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            let rest: Vec<u8> = p.end_input().iter().flat_map(|b| b.to_vec()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(rest, want_rest);
            prop_assert_eq!(error, want_error);
        }
    }
}
