#![no_main]
//! Http1 requests and responses: no panic, same messages however the stream is cut.

use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{Http1, Http1Options, Http1Role};

#[path = "split_common.rs"]
mod split_common;

fuzz_target!(|input: (bool, Vec<u8>, Vec<u8>)| {
    let (response, cuts, stream) = input;
    let role = if response { Http1Role::Response } else { Http1Role::Request };
    let opts = Http1Options { role, max_header_bytes: 1024, request_log: None };
    split_common::check(|| Box::new(Http1::new(opts.clone())), &stream, &cuts);
});
