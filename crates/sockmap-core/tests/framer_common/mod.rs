//! Shared helpers for the strparser and framer tests: feed a byte stream in
//! given pieces and collect what the parser reports.
#![allow(dead_code)]

use std::time::Instant;

use bytes::Bytes;
use sockmap_core::framer::{Framer, MessageMeta};
use sockmap_core::strparser::{Event, StrParser, StrParserConfig};
use sockmap_core::Errno;

/// An event with its bytes copied out, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Msg(Vec<u8>, MessageMeta),
    Skipped(usize),
    Handback(Vec<u8>, bool),
    Error(Errno),
}

/// Converts an event, checking that a message's `len` matches its fragments.
pub fn out(ev: Event) -> Out {
    match ev {
        Event::Message(m) => {
            let v = m.to_vec();
            assert_eq!(
                v.len(),
                m.len,
                "Message::len must equal its fragments' length"
            );
            assert!(m.frags.iter().all(|f| !f.is_empty()), "no empty fragment");
            Out::Msg(v, m.meta)
        }
        Event::Skipped(n) => Out::Skipped(n),
        Event::Handback {
            rest,
            partial_consumed,
        } => Out::Handback(
            rest.iter().flat_map(|b| b.iter().copied()).collect(),
            partial_consumed,
        ),
        Event::Error(e) => Out::Error(e),
    }
}

/// Feeds `stream` cut into pieces of the given sizes (cycled; the remainder
/// last), polling after each piece. Returns the events and the bytes left.
pub fn run_split(
    framer: Box<dyn Framer>,
    config: StrParserConfig,
    stream: &[u8],
    sizes: &[usize],
) -> (Vec<Out>, usize) {
    let mut p = StrParser::new(framer, config);
    let now = Instant::now();
    let mut outs = Vec::new();
    let mut off = 0;
    let mut k = 0;
    while off < stream.len() {
        let n = if sizes.is_empty() {
            stream.len()
        } else {
            sizes[k % sizes.len()].max(1)
        };
        k += 1;
        let end = (off + n).min(stream.len());
        p.handle_data(Bytes::copy_from_slice(&stream[off..end]), now);
        off = end;
        while let Some(ev) = p.poll_event(now) {
            outs.push(out(ev));
        }
    }
    (merge_skips(outs), p.buffered_bytes())
}

/// Feeds the whole stream as one chunk.
pub fn run_whole(
    framer: Box<dyn Framer>,
    config: StrParserConfig,
    stream: &[u8],
) -> (Vec<Out>, usize) {
    run_split(framer, config, stream, &[])
}

/// Merges consecutive skips (a framer may skip one frame in pieces).
pub fn merge_skips(outs: Vec<Out>) -> Vec<Out> {
    let mut v: Vec<Out> = Vec::with_capacity(outs.len());
    for o in outs {
        if let (Some(Out::Skipped(a)), Out::Skipped(b)) = (v.last_mut(), &o) {
            *a += *b;
            continue;
        }
        v.push(o);
    }
    v
}

/// Messages only, as byte vectors.
pub fn msgs(outs: &[Out]) -> Vec<Vec<u8>> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Msg(v, _) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

/// `stream` fed whole, in pieces of `sizes` and byte by byte, each time to
/// a fresh framer from `make`: the events and bytes left of the three runs,
/// in that order, for the split-invariance checks.
pub fn three_ways<F: Framer + 'static>(
    make: impl Fn() -> Box<F>,
    stream: &[u8],
    sizes: &[usize],
) -> [(Vec<Out>, usize); 3] {
    [
        run_whole(make(), StrParserConfig::default(), stream),
        run_split(make(), StrParserConfig::default(), stream, sizes),
        run_split(make(), StrParserConfig::default(), stream, &[1]),
    ]
}

/// Asserts that every one of `inputs`, fed in pieces of each of `splits`
/// (`&[]`: whole) to a fresh framer from `make`, gives exactly one event:
/// the error `want`.
pub fn assert_each_fails<F: Framer + 'static>(
    make: impl Fn() -> Box<F>,
    inputs: &[&[u8]],
    splits: &[&[usize]],
    want: Errno,
) {
    for input in inputs {
        for sizes in splits {
            let (outs, _) = run_split(make(), StrParserConfig::default(), input, sizes);
            assert_eq!(
                outs,
                vec![Out::Error(want)],
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
