#![no_main]
//! Delimiter with fuzzed delimiters and limits: no panic, same frames however the stream is cut.

use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{Delimiter, DelimiterOptions};

#[path = "split_common.rs"]
mod split_common;

fuzz_target!(|input: (Vec<Vec<u8>>, u8, bool, bool, Vec<u8>, Vec<u8>)| {
    let (delimiters, max, strip, discard, cuts, stream) = input;
    let delimiters: Vec<Vec<u8>> = delimiters.into_iter().take(4).map(|mut d| { d.truncate(4); d }).collect();
    let opts = DelimiterOptions {
        delimiters,
        max_length: usize::from(max),
        strip_delimiter: strip,
        discard_oversize: discard,
    };
    let Ok(_) = Delimiter::new(opts.clone()) else { return };
    split_common::check(|| Box::new(Delimiter::new(opts.clone()).unwrap()), &stream, &cuts);
});
