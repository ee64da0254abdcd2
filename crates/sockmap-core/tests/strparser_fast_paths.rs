//! The front-fragment fast paths (strparser and framers) against the general
//! paths: the same stream fed whole (fast paths taken) and cut into pieces
//! (general paths taken) must give the same events.

use std::time::Instant;

use bytes::Bytes;
use proptest::prelude::*;

mod framer_common;

use framer_common::{out, Out};
use sockmap_core::framer::{
    Delimiter, Framer, Http1, LengthField, LengthFieldOptions, Resp, RespOptions,
};
use sockmap_core::strparser::{Event, StrParser, StrParserConfig};
use sockmap_core::Errno;

/// Feeds `stream` cut at `cuts` (offsets, any order), polling after each
/// piece: the events and the bytes left unparsed.
fn run(framer: Box<dyn Framer>, stream: &[u8], cuts: &[usize]) -> (Vec<Out>, Vec<u8>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut p = StrParser::new(framer, StrParserConfig::default());
    let now = Instant::now();
    let stream = Bytes::copy_from_slice(stream);
    let mut outs = Vec::new();
    let mut at = 0;
    for c in cuts {
        p.handle_data(stream.slice(at..c), now);
        at = c;
        for ev in std::iter::from_fn(|| p.poll_event(now)) {
            // A skip may be reported in pieces as bytes arrive: add them up.
            match (outs.last_mut(), out(ev)) {
                (Some(Out::Skipped(a)), Out::Skipped(b)) => *a += b,
                (_, o) => outs.push(o),
            }
        }
    }
    // Bytes arriving after a hand-back are queued for `done`.
    let mut left = p.done().concat();
    if let Some(Out::Handback(rest, _)) = outs.last_mut() {
        rest.append(&mut left);
    }
    (outs, left)
}

/// Whole, byte by byte and at `cuts`: all three agree.
fn check(make: fn() -> Box<dyn Framer>, stream: &[u8], cuts: &[usize]) {
    let whole = run(make(), stream, &[]);
    let bytes: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(whole, run(make(), stream, &bytes), "byte by byte");
    assert_eq!(whole, run(make(), stream, cuts), "cut at {cuts:?}");
}

fn length() -> Box<dyn Framer> {
    let o = LengthFieldOptions {
        length_field_offset: 1,
        length_field_length: 2,
        initial_bytes_to_strip: 3,
        ..LengthFieldOptions::default()
    };
    Box::new(LengthField::new(o).expect("valid"))
}

fn lines() -> Box<dyn Framer> {
    Box::new(Delimiter::lines(16))
}

fn resp() -> Box<dyn Framer> {
    Box::new(Resp::new(RespOptions {
        max_depth: 2,
        max_line_length: 64,
    }))
}

fn http() -> Box<dyn Framer> {
    Box::new(Http1::requests())
}

/// Pieces a stream is made of for each framer: valid messages, the
/// corner cases the fast paths hand to the general ones, and garbage.
fn pieces(kind: usize) -> &'static [&'static [u8]] {
    match kind {
        0 => &[
            b"\x07\x00\x02ab",
            b"\x07\x00\x00",
            b"\x00\x00\x05hello",
            b"\x01\x00\x01",
            b"\x00\x00",
        ],
        1 => &[
            b"line\n",
            b"crlf\r\n",
            b"\n",
            b"\r\n",
            b"a much longer line than sixteen\n",
            b"tail\r",
        ],
        2 => &[
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
            b"*1\r\n$4\r\nPING\r\n",
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            b"*2\r\n$-1\r\n$1\r\nx\r\n",
            b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n",
            b"*0\r\n",
            b"*001\r\n$01\r\nA\r\n",
            b"PING key\r\n",
            b"+OK\r\n",
            b"*1\r\n$3\r\nabcd\r\n",
            b"*1\r\n$1234567890123456789\r\n",
            b"*x\r\n",
        ],
        _ => &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost:\tb \r\nX-Y: z\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\nc\r\n\r\n",
            b"GET / HTTP/1.1\r\n fold\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ],
    }
}

fn make(kind: usize) -> fn() -> Box<dyn Framer> {
    [length, lines, resp, http][kind]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fast_paths_match_general_paths(
        kind in 0..4usize,
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..12),
        cuts in prop::collection::vec(0..400usize, 0..6),
    ) {
        let menu = pieces(kind);
        let stream: Vec<u8> = picks.iter().flat_map(|i| i.get(menu).iter().copied()).collect();
        check(make(kind), &stream, &cuts);
    }
}

#[test]
fn message_filling_the_whole_chunk_is_the_chunk_itself() {
    let now = Instant::now();
    let mut p = StrParser::new(lines(), StrParserConfig::default());
    let data = Bytes::from_static(b"one\ntwo\n");
    p.handle_data(data.clone(), now);
    let evs: Vec<Event> = std::iter::from_fn(|| p.poll_event(now)).collect();
    let ptrs: Vec<*const u8> = evs
        .iter()
        .map(|e| match e {
            Event::Message(m) => m.frags[0].as_ptr(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // SAFETY: 4 is within `data`.
    assert_eq!(ptrs, vec![data.as_ptr(), unsafe { data.as_ptr().add(4) }]);
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(p.stats().messages, 2);
    assert_eq!(p.stats().bytes, 8);
}

#[test]
fn fully_trimmed_message_has_no_fragment() {
    let now = Instant::now();
    let mut p = StrParser::new(lines(), StrParserConfig::default());
    p.handle_data(Bytes::from_static(b"\n\r\nx\n"), now);
    let evs: Vec<Event> = std::iter::from_fn(|| p.poll_event(now)).collect();
    let lens: Vec<(usize, usize)> = evs
        .iter()
        .map(|e| match e {
            Event::Message(m) => (m.len, m.frags.len()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(lens, vec![(0, 0), (0, 0), (1, 1)]);
}

#[test]
fn bare_cr_or_lf_in_a_field_line_is_eproto() {
    for head in [
        &b"GET / HTTP/1.1\r\nA: b\n\n\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nA: b\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nA\n: b\r\n\r\n",
    ] {
        let (outs, _) = run(http(), head, &[]);
        assert_eq!(outs, vec![Out::Error(Errno::Proto)], "{head:?}");
    }
}
