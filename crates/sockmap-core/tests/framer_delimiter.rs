//! `Delimiter` and `lines()`: shortest frame, stripping, over-long frames,
//! split invariance.

mod framer_common;

use framer_common::{msgs, run_split, run_whole, three_ways, Out};
use proptest::prelude::*;
use sockmap_core::framer::{Delimiter, DelimiterOptions, MessageMeta};
use sockmap_core::strparser::StrParserConfig;
use sockmap_core::Errno;

fn delim(o: DelimiterOptions) -> Box<Delimiter> {
    Box::new(Delimiter::new(o).expect("valid options"))
}

fn m(b: &[u8]) -> Out {
    Out::Msg(b.to_vec(), MessageMeta::None)
}

#[test]
fn lines_split_on_lf_and_crlf_and_strip() {
    let (outs, left) = run_whole(
        Box::new(Delimiter::lines(100)),
        StrParserConfig::default(),
        b"a\r\nbb\nc\rd\n\nrest",
    );
    assert_eq!(outs, vec![m(b"a"), m(b"bb"), m(b"c\rd"), m(b"")]);
    assert_eq!(left, 4);
}

#[test]
fn keep_delimiter_when_not_stripping() {
    let o = DelimiterOptions {
        strip_delimiter: false,
        ..Default::default()
    };
    let (outs, _) = run_whole(delim(o), StrParserConfig::default(), b"a\r\nb\n");
    assert_eq!(msgs(&outs), vec![b"a\r\n".to_vec(), b"b\n".to_vec()]);
}

#[test]
fn shortest_frame_wins_among_delimiters() {
    let o = DelimiterOptions {
        delimiters: vec![b"END".to_vec(), b";".to_vec()],
        ..Default::default()
    };
    let (outs, _) = run_whole(delim(o), StrParserConfig::default(), b"a;bENDc;");
    assert_eq!(
        msgs(&outs),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
}

#[test]
fn overlapping_delimiters_end_at_the_first_complete_one() {
    let o = DelimiterOptions {
        delimiters: vec![b"\r\n".to_vec(), b"\r".to_vec()],
        ..Default::default()
    };
    // Fed in pieces that end right after '\r': the result must not change.
    for sizes in [vec![], vec![2], vec![1]] {
        let (outs, left) = run_split(
            delim(o.clone()),
            StrParserConfig::default(),
            b"a\r\nb\rc\r\n",
            &sizes,
        );
        assert_eq!(
            msgs(&outs),
            vec![b"a".to_vec(), b"\nb".to_vec(), b"c".to_vec()],
            "sizes {sizes:?}"
        );
        assert_eq!(left, 1);
    }
}

#[test]
fn partial_longer_delimiter_does_not_end_a_frame() {
    let o = DelimiterOptions {
        delimiters: vec![b";;".to_vec(), b";x".to_vec()],
        ..Default::default()
    };
    for sizes in [vec![], vec![1], vec![2]] {
        let (outs, _) = run_split(
            delim(o.clone()),
            StrParserConfig::default(),
            b"a;;b;xc;;",
            &sizes,
        );
        assert_eq!(
            msgs(&outs),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            "sizes {sizes:?}"
        );
    }
}

#[test]
fn multi_byte_delimiter_across_fragments() {
    let o = DelimiterOptions {
        delimiters: vec![b"<EOF>".to_vec()],
        ..Default::default()
    };
    let (outs, _) = run_split(
        delim(o),
        StrParserConfig::default(),
        b"hello<EOF>world<EOF>",
        &[1, 2, 3],
    );
    assert_eq!(msgs(&outs), vec![b"hello".to_vec(), b"world".to_vec()]);
}

#[test]
fn line_exactly_max_length_passes() {
    let (outs, _) = run_whole(
        Box::new(Delimiter::lines(3)),
        StrParserConfig::default(),
        b"abc\n",
    );
    assert_eq!(outs, vec![m(b"abc")]);
}

#[test]
fn over_long_line_is_skipped_to_the_next_delimiter() {
    for sizes in [vec![], vec![1], vec![2, 3]] {
        let (outs, left) = run_split(
            Box::new(Delimiter::lines(3)),
            StrParserConfig::default(),
            b"ok\nabcdefgh\r\nyes\n",
            &sizes,
        );
        assert_eq!(
            outs,
            vec![m(b"ok"), Out::Skipped(10), m(b"yes")],
            "sizes {sizes:?}"
        );
        assert_eq!(left, 0);
    }
}

#[test]
fn over_long_line_aborts_with_emsgsize_when_not_discarding() {
    let o = DelimiterOptions {
        max_length: 3,
        discard_oversize: false,
        ..Default::default()
    };
    for sizes in [vec![], vec![1]] {
        let (outs, _) = run_split(
            delim(o.clone()),
            StrParserConfig::default(),
            b"ok\nabcdefgh\nyes\n",
            &sizes,
        );
        assert_eq!(
            outs,
            vec![m(b"ok"), Out::Error(Errno::MsgSize)],
            "sizes {sizes:?}"
        );
    }
}

#[test]
fn endless_line_is_discarded_as_it_arrives() {
    let stream = vec![b'x'; 1 << 20];
    let (outs, left) = run_split(
        Box::new(Delimiter::lines(1000)),
        StrParserConfig::default(),
        &stream,
        &[4096],
    );
    // The last byte is kept: it could be the '\r' of a "\r\n".
    assert_eq!(outs, vec![Out::Skipped(stream.len() - 1)]);
    assert_eq!(left, 1);
}

#[test]
fn unlimited_line_hits_the_strparser_limit() {
    let cfg = StrParserConfig {
        max_message_bytes: 1000,
        ..Default::default()
    };
    let (outs, _) = run_split(
        Box::new(Delimiter::lines(usize::MAX)),
        cfg,
        &[b'x'; 5000],
        &[300],
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
}

#[test]
fn empty_delimiter_list_or_delimiter_is_einval() {
    let o = DelimiterOptions {
        delimiters: vec![],
        ..Default::default()
    };
    assert_eq!(Delimiter::new(o).err(), Some(Errno::Inval));
    let o = DelimiterOptions {
        delimiters: vec![b"\n".to_vec(), vec![]],
        ..Default::default()
    };
    assert_eq!(Delimiter::new(o).err(), Some(Errno::Inval));
}

fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'\r', b'\n', b';', b'E', b'N', b'D']),
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn split_points_do_not_change_lines(
        stream in stream_bytes(),
        sizes in prop::collection::vec(1usize..40, 1..6),
        max in 1usize..30,
        strip in any::<bool>(),
        discard in any::<bool>(),
    ) {
        let o = DelimiterOptions { max_length: max, strip_delimiter: strip, discard_oversize: discard, ..Default::default() };
        let [(whole, wl), (split, sl), (bytewise, bl)] = three_ways(|| delim(o.clone()), &stream, &sizes);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!((wl, sl), (bl, bl));
    }

    #[test]
    fn split_points_do_not_change_multi_delimiter_frames(
        stream in stream_bytes(),
        sizes in prop::collection::vec(1usize..40, 1..6),
    ) {
        let o = DelimiterOptions { delimiters: vec![b"END".to_vec(), b";".to_vec(), b"\r\n".to_vec(), b"\r".to_vec()],
            max_length: 20, ..Default::default() };
        let [(whole, _), (split, _), (bytewise, _)] = three_ways(|| delim(o.clone()), &stream, &sizes);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
        // Reference: a naive splitter ending each frame at the earliest
        // complete delimiter (the longest one ending there).
        let mut by_len: Vec<&[u8]> = vec![b"END", b"\r\n", b";", b"\r"];
        by_len.sort_by_key(|d| std::cmp::Reverse(d.len()));
        let mut expect = Vec::new();
        let mut start = 0;
        for end in 1..=stream.len() {
            if end <= start { continue; }
            if let Some(d) = by_len.iter().find(|d| end - start >= d.len() && stream[..end].ends_with(d)) {
                expect.push((start, end - d.len()));
                start = end;
            }
        }
        if stream.len().saturating_sub(start).saturating_sub(2) > 20 {
            expect.push((start, stream.len()));
        }
        let want: Vec<Out> = expect.iter().map(|&(s, e)| if e - s > 20 { Out::Skipped(0) } else { Out::Msg(stream[s..e].to_vec(), MessageMeta::None) }).collect();
        let got: Vec<Out> = whole.iter().map(|o| match o { Out::Skipped(_) => Out::Skipped(0), x => x.clone() }).collect();
        prop_assert_eq!(got, framer_common::merge_skips(want));
    }
}
