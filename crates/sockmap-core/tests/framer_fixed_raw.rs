//! `Fixed` and `Raw` (`parsers.none()`).

mod framer_common;

use std::time::Instant;

use bytes::Bytes;
use framer_common::{msgs, out, run_split, three_ways};
use proptest::prelude::*;
use sockmap_core::framer::{Fixed, Raw};
use sockmap_core::strparser::{StrParser, StrParserConfig};
use sockmap_core::Errno;

#[test]
fn fixed_zero_is_einval() {
    assert_eq!(Fixed::new(0).err(), Some(Errno::Inval));
}

#[test]
fn raw_makes_each_chunk_a_message_even_when_queued_while_paused() {
    let now = Instant::now();
    let mut p = StrParser::new(Box::new(Raw::new()), StrParserConfig::default());
    p.pause();
    for c in [&b"ab"[..], b"c", b"def"] {
        p.handle_data(Bytes::copy_from_slice(c), now);
    }
    p.handle_data(Bytes::new(), now);
    p.unpause();
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| p.poll_event(now))
        .map(out)
        .map(|o| msgs(&[o]).remove(0))
        .collect();
    assert_eq!(got, vec![b"ab".to_vec(), b"c".to_vec(), b"def".to_vec()]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn fixed_split_points_do_not_change_messages(
        stream in prop::collection::vec(any::<u8>(), 0..300),
        n in 1usize..20,
        sizes in prop::collection::vec(1usize..40, 1..6),
    ) {
        let [(whole, wl), (split, sl), (bytewise, _)] = three_ways(|| Box::new(Fixed::new(n).unwrap()), &stream, &sizes);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(wl, sl);
        prop_assert_eq!(msgs(&whole), stream.chunks_exact(n).map(<[u8]>::to_vec).collect::<Vec<_>>());
    }

    #[test]
    fn raw_messages_are_the_chunks(
        stream in prop::collection::vec(any::<u8>(), 0..300),
        sizes in prop::collection::vec(1usize..40, 1..6),
    ) {
        let (outs, left) = run_split(Box::new(Raw::new()), StrParserConfig::default(), &stream, &sizes);
        prop_assert_eq!(left, 0);
        let got = msgs(&outs);
        prop_assert_eq!(got.concat(), stream.clone());
        let mut expect = Vec::new();
        let mut off = 0;
        for k in 0.. {
            if off >= stream.len() { break; }
            let end = (off + sizes[k % sizes.len()]).min(stream.len());
            expect.push(stream[off..end].to_vec());
            off = end;
        }
        prop_assert_eq!(got, expect);
    }
}
