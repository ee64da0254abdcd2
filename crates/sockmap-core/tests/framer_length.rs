//! `LengthField`: Netty's documented `LengthFieldBasedFrameDecoder` examples,
//! errors, oversize handling and split invariance.

mod framer_common;

use framer_common::{msgs, run_split, run_whole, Out};
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

#[test]
fn netty_2_byte_length_at_offset_0_no_strip() {
    let o = LengthFieldOptions {
        length_field_length: 2,
        ..Default::default()
    };
    let input = cat(&[&[0x00, 0x0C], HW]);
    assert_eq!(one(o, &input), input);
}

#[test]
fn netty_2_byte_length_at_offset_0_strip_header() {
    let o = LengthFieldOptions {
        length_field_length: 2,
        initial_bytes_to_strip: 2,
        ..Default::default()
    };
    assert_eq!(one(o, &cat(&[&[0x00, 0x0C], HW])), HW);
}

#[test]
fn netty_2_byte_length_represents_whole_message() {
    let o = LengthFieldOptions {
        length_field_length: 2,
        length_adjustment: -2,
        ..Default::default()
    };
    let input = cat(&[&[0x00, 0x0E], HW]);
    assert_eq!(one(o, &input), input);
}

#[test]
fn netty_3_byte_length_at_end_of_5_byte_header() {
    let o = LengthFieldOptions {
        length_field_offset: 2,
        length_field_length: 3,
        ..Default::default()
    };
    let input = cat(&[&[0xCA, 0xFE], &[0x00, 0x00, 0x0C], HW]);
    assert_eq!(one(o, &input), input);
}

#[test]
fn netty_3_byte_length_at_start_of_5_byte_header() {
    let o = LengthFieldOptions {
        length_field_length: 3,
        length_adjustment: 2,
        ..Default::default()
    };
    let input = cat(&[&[0x00, 0x00, 0x0C], &[0xCA, 0xFE], HW]);
    assert_eq!(one(o, &input), input);
}

#[test]
fn netty_2_byte_length_at_offset_1_strip_first_field_and_length() {
    let o = LengthFieldOptions {
        length_field_offset: 1,
        length_field_length: 2,
        length_adjustment: 1,
        initial_bytes_to_strip: 3,
        ..Default::default()
    };
    let input = cat(&[&[0xCA], &[0x00, 0x0C], &[0xFE], HW]);
    assert_eq!(one(o, &input), cat(&[&[0xFE], HW]));
}

#[test]
fn netty_2_byte_length_at_offset_1_whole_message_strip_3() {
    let o = LengthFieldOptions {
        length_field_offset: 1,
        length_field_length: 2,
        length_adjustment: -3,
        initial_bytes_to_strip: 3,
        ..Default::default()
    };
    let input = cat(&[&[0xCA], &[0x00, 0x10], &[0xFE], HW]);
    assert_eq!(one(o, &input), cat(&[&[0xFE], HW]));
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

#[test]
fn zero_length_payload_with_strip_delivers_empty_messages() {
    let o = LengthFieldOptions {
        initial_bytes_to_strip: 4,
        ..Default::default()
    };
    let (outs, _) = run_whole(
        framer(o),
        StrParserConfig::default(),
        &[0, 0, 0, 0, 0, 0, 0, 1, b'x', 0, 0, 0, 0],
    );
    assert_eq!(
        outs,
        vec![
            Out::Msg(vec![], MessageMeta::None),
            Out::Msg(b"x".to_vec(), MessageMeta::None),
            Out::Msg(vec![], MessageMeta::None)
        ]
    );
}

#[test]
fn negative_8_byte_field_is_eproto() {
    let o = LengthFieldOptions {
        length_field_length: 8,
        ..Default::default()
    };
    let (outs, left) = run_whole(
        framer(o),
        StrParserConfig::default(),
        &[0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2],
    );
    assert_eq!(outs, vec![Out::Error(Errno::Proto)]);
    assert_eq!(left, 0);
}

#[test]
fn length_2_pow_63_minus_1_is_emsgsize_without_allocating() {
    let o = LengthFieldOptions {
        length_field_length: 8,
        ..Default::default()
    };
    let (outs, _) = run_whole(
        framer(o),
        StrParserConfig::default(),
        &[0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
}

#[test]
fn adjusted_length_below_header_end_is_eproto() {
    let o = LengthFieldOptions {
        length_field_length: 2,
        length_adjustment: -3,
        ..Default::default()
    };
    let (outs, _) = run_whole(framer(o), StrParserConfig::default(), &[0x00, 0x01, b'a']);
    assert_eq!(outs, vec![Out::Error(Errno::Proto)]);
}

#[test]
fn strip_above_frame_length_is_eproto() {
    let o = LengthFieldOptions {
        length_field_length: 1,
        initial_bytes_to_strip: 5,
        ..Default::default()
    };
    let (outs, _) = run_whole(framer(o), StrParserConfig::default(), &[0x02, b'a', b'b']);
    assert_eq!(outs, vec![Out::Error(Errno::Proto)]);
}

#[test]
fn oversize_frame_aborts_with_emsgsize() {
    let o = LengthFieldOptions {
        length_field_length: 1,
        max_frame_length: 4,
        ..Default::default()
    };
    let (outs, _) = run_whole(
        framer(o),
        StrParserConfig::default(),
        &[2, b'a', b'b', 4, b'a', b'b', b'c', b'd'],
    );
    assert_eq!(
        outs,
        vec![
            Out::Msg(vec![2, b'a', b'b'], MessageMeta::None),
            Out::Error(Errno::MsgSize)
        ]
    );
}

#[test]
fn frame_exactly_at_max_frame_length_passes() {
    let o = LengthFieldOptions {
        length_field_length: 1,
        max_frame_length: 4,
        ..Default::default()
    };
    let (outs, _) = run_whole(
        framer(o),
        StrParserConfig::default(),
        &[3, b'a', b'b', b'c'],
    );
    assert_eq!(msgs(&outs), vec![vec![3, b'a', b'b', b'c']]);
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
        let (whole, _) = run_whole(framer(o.clone()), StrParserConfig::default(), &stream);
        let (split, _) = run_split(framer(o.clone()), StrParserConfig::default(), &stream, &sizes);
        let (bytewise, _) = run_split(framer(o), StrParserConfig::default(), &stream, &[1]);
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
