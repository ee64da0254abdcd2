//! `StrParser::take_whole` (boundary-only framing) against `poll_event`
//! alone: the same messages, skips, errors, counters and buffered bytes for
//! random frames, chunk splits, pauses and framer options.

mod framer_common;

use std::time::Instant;

use bytes::Bytes;
use framer_common::{out, Out};
use proptest::prelude::*;
use sockmap_core::framer::{
    ByteOrder, Fixed, Framer, LengthField, LengthFieldOptions, MessageMeta,
};
use sockmap_core::strparser::{StrParser, StrParserConfig};

/// Drains the parser, with or without `take_whole`.
fn drain(p: &mut StrParser, whole: bool, lens: &mut Vec<usize>, outs: &mut Vec<Out>) -> usize {
    let now = Instant::now();
    let mut scanned = 0;
    loop {
        if whole {
            if let Some(block) = p.take_whole(lens) {
                assert_eq!(lens.iter().sum::<usize>(), block.len());
                let mut at = 0;
                for &n in lens.iter() {
                    outs.push(Out::Msg(block[at..at + n].to_vec(), MessageMeta::None));
                    at += n;
                }
                scanned += lens.len();
            } else {
                assert!(lens.is_empty());
            }
        }
        match p.poll_event(now) {
            Some(ev) => outs.push(out(ev)),
            None => return scanned,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Data(usize),
    Pause,
    Unpause,
}

#[derive(Clone, Debug)]
struct Case {
    /// 0..4: length-field layouts, 4: fixed 7-byte messages.
    framer: u8,
    max: usize,
    wire: Vec<u8>,
    ops: Vec<Op>,
}

fn framer(kind: u8) -> Box<dyn Framer> {
    let mut o = LengthFieldOptions::default();
    match kind {
        0 => {}
        1 => {
            o.byte_order = ByteOrder::LittleEndian;
            o.length_field_offset = 1;
            o.length_field_length = 2;
            o.length_adjustment = -1;
        }
        2 => {
            o.length_field_length = 1;
            o.max_frame_length = 60;
            o.discard_oversize = true;
        }
        3 => {
            // A strip makes the scan unavailable: everything goes through parse.
            o.length_field_length = 1;
            o.initial_bytes_to_strip = 1;
        }
        _ => return Box::new(Fixed::new(7).unwrap()),
    }
    Box::new(LengthField::new(o).unwrap())
}

/// Frames of random bodies for `kind`; `bad` inserts a field value that is
/// a protocol error (layout 1) or oversize (others).
fn frames(kind: u8, bodies: &[(u8, bool)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &(len, bad)) in bodies.iter().enumerate() {
        let body: Vec<u8> = (0..len).map(|j| (i as u8).wrapping_mul(31) ^ j).collect();
        match kind {
            0 => {
                let field = if bad { u32::MAX } else { u32::from(len) };
                v.extend_from_slice(&field.to_be_bytes());
            }
            1 => {
                v.push(0xEE);
                let field = if bad { 0 } else { u16::from(len) + 1 };
                v.extend_from_slice(&field.to_le_bytes());
            }
            _ => v.push(if bad { 0xFF } else { len }),
        }
        v.extend_from_slice(&body);
    }
    v
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u8..5,
        prop_oneof![3 => Just(1usize << 20), 1 => 20usize..90],
        prop::collection::vec((0u8..80, prop::bool::weighted(0.02)), 0..80),
        prop::collection::vec(
            prop_oneof![
                8 => (1usize..300).prop_map(Op::Data),
                1 => Just(Op::Pause),
                1 => Just(Op::Unpause),
            ],
            1..40,
        ),
    )
        .prop_map(|(framer, max, bodies, ops)| Case {
            framer,
            max,
            wire: frames(framer, &bodies),
            ops,
        })
}

/// Runs the case; returns what came out, the counters, the bytes left and
/// how many messages `take_whole` gave.
fn run(case: &Case, whole: bool) -> (Vec<Out>, String, usize, usize) {
    let cfg = StrParserConfig {
        max_message_bytes: case.max,
        message_timeout: None,
    };
    let mut p = StrParser::new(framer(case.framer), cfg);
    let now = Instant::now();
    let (mut out, mut lens, mut at, mut scanned) = (Vec::new(), Vec::new(), 0, 0);
    let data = Bytes::from(case.wire.clone());
    let mut ops = case.ops.clone();
    // Whatever the script, the rest of the stream arrives at the end.
    ops.push(Op::Unpause);
    ops.push(Op::Data(usize::MAX));
    for op in &ops {
        match *op {
            Op::Data(n) => {
                let end = at + n.min(data.len() - at);
                p.handle_data(data.slice(at..end), now);
                at = end;
            }
            Op::Pause => p.pause(),
            Op::Unpause => p.unpause(),
        }
        scanned += drain(&mut p, whole, &mut lens, &mut out);
    }
    (out, format!("{:?}", p.stats()), p.buffered_bytes(), scanned)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn take_whole_matches_poll_event(case in case()) {
        let (fast, fast_stats, fast_left, scanned) = run(&case, true);
        let (slow, slow_stats, slow_left, none) = run(&case, false);
        prop_assert_eq!(none, 0);
        prop_assert_eq!(fast, slow);
        prop_assert_eq!(fast_stats, slow_stats);
        prop_assert_eq!(fast_left, slow_left);
        if case.framer == 3 {
            prop_assert_eq!(scanned, 0);
        }
    }
}

#[test]
fn take_whole_takes_every_whole_message_of_the_front_fragment() {
    let mut p = StrParser::new(framer(0), StrParserConfig::default());
    let wire = frames(0, &[(3, false), (0, false), (5, false), (9, false)]);
    // The last frame is cut short: the first three are whole.
    p.handle_data(Bytes::from(wire[..wire.len() - 2].to_vec()), Instant::now());
    let mut lens = vec![99];
    let block = p.take_whole(&mut lens).expect("whole messages");
    assert_eq!(lens, [7, 4, 9]);
    assert_eq!(&block[..], &wire[..20]);
    assert_eq!(p.buffered_bytes(), wire.len() - 2 - 20);
    assert_eq!((p.stats().messages, p.stats().bytes), (3, 20));
    // The partial frame waits: nothing more now, and `poll_event` agrees.
    assert!(p.take_whole(&mut lens).is_none() && lens.is_empty());
    assert!(p.poll_event(Instant::now()).is_none());
    // Paused: nothing is taken.
    p.handle_data(Bytes::from(wire[wire.len() - 2..].to_vec()), Instant::now());
    p.pause();
    assert!(p.take_whole(&mut lens).is_none());
}

fn options() -> impl Strategy<Value = LengthFieldOptions> {
    (
        prop::sample::select(vec![1usize, 2, 3, 4, 8]),
        prop::bool::ANY,
        0usize..3,
        prop_oneof![8 => -12i64..12, 1 => Just(i64::MIN), 1 => Just(i64::MAX)],
        prop_oneof![Just(8usize << 20), 1usize..300],
        prop::bool::ANY,
    )
        .prop_map(
            |(width, be, offset, adjustment, max_frame, discard)| LengthFieldOptions {
                byte_order: if be {
                    ByteOrder::BigEndian
                } else {
                    ByteOrder::LittleEndian
                },
                length_field_offset: offset,
                length_field_length: width,
                length_adjustment: adjustment,
                max_frame_length: max_frame,
                discard_oversize: discard,
                ..LengthFieldOptions::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `scan_whole` finds exactly the frames `parse` gives `Length` for, in
    /// order, stopping where `parse` would answer anything else.
    #[test]
    fn length_scan_agrees_with_parse(
        opts in options(),
        max in prop_oneof![Just(usize::MAX), 1usize..400],
        // Small values make many short frames; a few bytes are anything.
        bytes in prop::collection::vec(prop_oneof![6 => 0u8..6, 1 => any::<u8>()], 0..300),
    ) {
        use sockmap_core::framer::{Chunks, Parse};
        let mut f = LengthField::new(opts).unwrap();
        let mut lens = Vec::new();
        let covered = f.scan_whole(&bytes, max, &mut lens);
        let mut expect = Vec::new();
        let mut at = 0;
        loop {
            let rest = [Bytes::copy_from_slice(&bytes[at..])];
            match f.parse(&Chunks::new(&rest)) {
                Parse::Length(n) if n <= max && n <= bytes.len() - at => {
                    expect.push(n);
                    at += n;
                }
                _ => break,
            }
        }
        prop_assert_eq!(&lens, &expect);
        prop_assert_eq!(covered, at);
    }
}
