//! `LengthField`: Netty's documented `LengthFieldBasedFrameDecoder` examples,
//! errors, oversize handling and split invariance.

mod framer_common;

use framer_common::{msgs, run_split, run_whole, three_ways, Out};
use proptest::prelude::*;
use sockmap_core::framer::{ByteOrder, LengthField, LengthFieldOptions, MessageMeta};
use sockmap_core::strparser::StrParserConfig;
use sockmap_core::Errno;

fn framer(o: LengthFieldOptions) -> Box<LengthField> {
    Box::new(LengthField::new(o).expect("valid options"))
}

fn one(o: LengthFieldOptions, input: &[u8]) -> Vec<u8> {
    let (outs, left) = run_whole(framer(o), StrParserConfig::default(), input);
    assert_eq!(left, 0);
    assert_eq!(outs.len(), 1, "{outs:?}");
    msgs(&outs).remove(0)
}

const HW: &[u8] = b"HELLO, WORLD";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// One of Netty's documented `LengthFieldBasedFrameDecoder` examples: the
/// options, the input and the one message it must give.
struct NettyCase {
    name: &'static str,
    options: LengthFieldOptions,
    input: Vec<u8>,
    message: Vec<u8>,
}

fn netty_cases() -> Vec<NettyCase> {
    vec![
        NettyCase {
            name: "2-byte length at offset 0, no strip",
            options: LengthFieldOptions {
                length_field_length: 2,
                ..Default::default()
            },
            input: cat(&[&[0x00, 0x0C], HW]),
            message: cat(&[&[0x00, 0x0C], HW]),
        },
        NettyCase {
            name: "2-byte length at offset 0, strip header",
            options: LengthFieldOptions {
                length_field_length: 2,
                initial_bytes_to_strip: 2,
                ..Default::default()
            },
            input: cat(&[&[0x00, 0x0C], HW]),
            message: HW.to_vec(),
        },
        NettyCase {
            name: "2-byte length represents the whole message",
            options: LengthFieldOptions {
                length_field_length: 2,
                length_adjustment: -2,
                ..Default::default()
            },
            input: cat(&[&[0x00, 0x0E], HW]),
            message: cat(&[&[0x00, 0x0E], HW]),
        },
        NettyCase {
            name: "3-byte length at the end of a 5-byte header",
            options: LengthFieldOptions {
                length_field_offset: 2,
                length_field_length: 3,
                ..Default::default()
            },
            input: cat(&[&[0xCA, 0xFE], &[0x00, 0x00, 0x0C], HW]),
            message: cat(&[&[0xCA, 0xFE], &[0x00, 0x00, 0x0C], HW]),
        },
        NettyCase {
            name: "3-byte length at the start of a 5-byte header",
            options: LengthFieldOptions {
                length_field_length: 3,
                length_adjustment: 2,
                ..Default::default()
            },
            input: cat(&[&[0x00, 0x00, 0x0C], &[0xCA, 0xFE], HW]),
            message: cat(&[&[0x00, 0x00, 0x0C], &[0xCA, 0xFE], HW]),
        },
        NettyCase {
            name: "2-byte length at offset 1, strip the first field and the length",
            options: LengthFieldOptions {
                length_field_offset: 1,
                length_field_length: 2,
                length_adjustment: 1,
                initial_bytes_to_strip: 3,
                ..Default::default()
            },
            input: cat(&[&[0xCA], &[0x00, 0x0C], &[0xFE], HW]),
            message: cat(&[&[0xFE], HW]),
        },
        NettyCase {
            name: "2-byte length at offset 1 of the whole message, strip 3",
            options: LengthFieldOptions {
                length_field_offset: 1,
                length_field_length: 2,
                length_adjustment: -3,
                initial_bytes_to_strip: 3,
                ..Default::default()
            },
            input: cat(&[&[0xCA], &[0x00, 0x10], &[0xFE], HW]),
            message: cat(&[&[0xFE], HW]),
        },
    ]
}

#[test]
fn netty_documented_examples() {
    let cases = netty_cases();
    assert_eq!(cases.len(), 7, "every documented example is in the table");
    for case in cases {
        assert_eq!(
            one(case.options, &case.input),
            case.message,
            "{}",
            case.name
        );
    }
}

#[test]
fn little_endian_and_every_width() {
    for w in [1usize, 2, 3, 4, 8] {
        for order in [ByteOrder::BigEndian, ByteOrder::LittleEndian] {
            let mut field = [0u8; 8];
            match order {
                ByteOrder::BigEndian => field[w - 1] = 5,
                ByteOrder::LittleEndian => field[0] = 5,
            }
            let input = cat(&[&field[..w], b"hello"]);
            let o = LengthFieldOptions {
                byte_order: order,
                length_field_length: w,
                ..Default::default()
            };
            assert_eq!(one(o, &input), input, "width {w} {order:?}");
        }
    }
}

#[test]
fn bad_width_is_einval() {
    for w in [0usize, 5, 6, 7, 9] {
        let o = LengthFieldOptions {
            length_field_length: w,
            ..Default::default()
        };
        assert_eq!(LengthField::new(o).err(), Some(Errno::Inval));
    }
}

/// A stream fed whole: the options, the input, what the parser reports and,
/// where the case checks it, the bytes left buffered.
struct WholeCase {
    name: &'static str,
    options: LengthFieldOptions,
    input: &'static [u8],
    outs: Vec<Out>,
    left: Option<usize>,
}

fn whole_cases() -> Vec<WholeCase> {
    vec![
        WholeCase {
            name: "a zero-length payload with strip delivers empty messages",
            options: LengthFieldOptions {
                initial_bytes_to_strip: 4,
                ..Default::default()
            },
            input: &[0, 0, 0, 0, 0, 0, 0, 1, b'x', 0, 0, 0, 0],
            outs: vec![
                Out::Msg(vec![], MessageMeta::None),
                Out::Msg(b"x".to_vec(), MessageMeta::None),
                Out::Msg(vec![], MessageMeta::None),
            ],
            left: None,
        },
        WholeCase {
            name: "a negative 8-byte field is EPROTO",
            options: LengthFieldOptions {
                length_field_length: 8,
                ..Default::default()
            },
            input: &[0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2],
            outs: vec![Out::Error(Errno::Proto)],
            left: Some(0),
        },
        WholeCase {
            name: "length 2^63-1 is EMSGSIZE without allocating",
            options: LengthFieldOptions {
                length_field_length: 8,
                ..Default::default()
            },
            input: &[0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            outs: vec![Out::Error(Errno::MsgSize)],
            left: None,
        },
        WholeCase {
            name: "an adjusted length below the header end is EPROTO",
            options: LengthFieldOptions {
                length_field_length: 2,
                length_adjustment: -3,
                ..Default::default()
            },
            input: &[0x00, 0x01, b'a'],
            outs: vec![Out::Error(Errno::Proto)],
            left: None,
        },
        WholeCase {
            name: "a strip above the frame length is EPROTO",
            options: LengthFieldOptions {
                length_field_length: 1,
                initial_bytes_to_strip: 5,
                ..Default::default()
            },
            input: &[0x02, b'a', b'b'],
            outs: vec![Out::Error(Errno::Proto)],
            left: None,
        },
        WholeCase {
            name: "an oversize frame aborts with EMSGSIZE",
            options: LengthFieldOptions {
                length_field_length: 1,
                max_frame_length: 4,
                ..Default::default()
            },
            input: &[2, b'a', b'b', 4, b'a', b'b', b'c', b'd'],
            outs: vec![
                Out::Msg(vec![2, b'a', b'b'], MessageMeta::None),
                Out::Error(Errno::MsgSize),
            ],
            left: None,
        },
        WholeCase {
            name: "a frame exactly at max_frame_length passes",
            options: LengthFieldOptions {
                length_field_length: 1,
                max_frame_length: 4,
                ..Default::default()
            },
            input: &[3, b'a', b'b', b'c'],
            outs: vec![Out::Msg(vec![3, b'a', b'b', b'c'], MessageMeta::None)],
            left: None,
        },
    ]
}

#[test]
fn zero_lengths_errors_and_the_frame_size_limit() {
    let cases = whole_cases();
    assert_eq!(cases.len(), 7, "every case is in the table");
    for case in cases {
        let (outs, left) = run_whole(framer(case.options), StrParserConfig::default(), case.input);
        assert_eq!(outs, case.outs, "{}", case.name);
        if let Some(want) = case.left {
            assert_eq!(left, want, "{}: bytes left", case.name);
        }
    }
}

#[test]
fn oversize_frame_is_skipped_in_discard_mode_across_reads() {
    let o = LengthFieldOptions {
        length_field_length: 1,
        max_frame_length: 4,
        discard_oversize: true,
        ..Default::default()
    };
    let stream = [1, b'a', 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 2, b'o', b'k'];
    for sizes in [vec![], vec![1], vec![3, 5]] {
        let (outs, left) = run_split(
            framer(o.clone()),
            StrParserConfig::default(),
            &stream,
            &sizes,
        );
        assert_eq!(
            outs,
            vec![
                Out::Msg(vec![1, b'a'], MessageMeta::None),
                Out::Skipped(10),
                Out::Msg(vec![2, b'o', b'k'], MessageMeta::None)
            ],
            "sizes {sizes:?}"
        );
        assert_eq!(left, 0);
    }
}

#[test]
fn huge_skip_never_buffers() {
    let o = LengthFieldOptions {
        length_field_length: 8,
        max_frame_length: 16,
        discard_oversize: true,
        ..Default::default()
    };
    let mut stream = vec![0x40, 0, 0, 0, 0, 0, 0, 0];
    stream.extend(std::iter::repeat(7u8).take(100_000));
    let (outs, left) = run_split(framer(o), StrParserConfig::default(), &stream, &[4096]);
    assert_eq!(outs, vec![Out::Skipped((1usize << 62) + 8)]);
    assert_eq!(left, 0, "skipped bytes are dropped as they arrive");
}

fn frames_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn split_points_do_not_change_messages(
        frames in frames_strategy(),
        sizes in prop::collection::vec(1usize..50, 1..8),
        strip in any::<bool>(),
    ) {
        let o = LengthFieldOptions { length_field_length: 2, initial_bytes_to_strip: if strip { 2 } else { 0 }, ..Default::default() };
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend_from_slice(&(f.len() as u16).to_be_bytes());
            stream.extend_from_slice(f);
        }
        let [(whole, _), (split, _), (bytewise, _)] = three_ways(|| framer(o.clone()), &stream, &sizes);
        let expect: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| if strip { f.clone() } else { [&(f.len() as u16).to_be_bytes()[..], f].concat() })
            .collect();
        prop_assert_eq!(msgs(&whole), expect);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
    }

    #[test]
    fn arbitrary_input_never_panics(
        input in prop::collection::vec(any::<u8>(), 0..200),
        w in prop::sample::select(vec![1usize, 2, 3, 4, 8]),
        adj in -10i64..10,
        strip in 0usize..12,
        discard in any::<bool>(),
        sizes in prop::collection::vec(1usize..20, 1..4),
    ) {
        let o = LengthFieldOptions { length_field_length: w, length_adjustment: adj, initial_bytes_to_strip: strip,
            max_frame_length: 64, discard_oversize: discard, ..Default::default() };
        let (a, _) = run_whole(framer(o.clone()), StrParserConfig::default(), &input);
        let (b, _) = run_split(framer(o), StrParserConfig::default(), &input, &sizes);
        prop_assert_eq!(a, b);
    }
}
