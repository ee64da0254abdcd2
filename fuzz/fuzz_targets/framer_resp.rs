#![no_main]
//! Resp: no panic, same values however the stream is cut.

use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{Resp, RespOptions};

#[path = "split_common.rs"]
mod split_common;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (cuts, stream) = input;
    let opts = RespOptions { max_depth: 16, max_line_length: 256 };
    split_common::check(|| Box::new(Resp::new(opts)), &stream, &cuts);
});
