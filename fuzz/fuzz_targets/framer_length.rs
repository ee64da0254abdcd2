#![no_main]
//! LengthField with fuzzed options: no panic, same frames however the stream is cut.

use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{ByteOrder, LengthField, LengthFieldOptions};

#[path = "split_common.rs"]
mod split_common;

fuzz_target!(|input: (u8, u8, i8, u8, bool, bool, Vec<u8>, Vec<u8>)| {
    let (offset, width, adj, strip, le, discard, cuts, stream) = input;
    let opts = LengthFieldOptions {
        byte_order: if le { ByteOrder::LittleEndian } else { ByteOrder::BigEndian },
        length_field_offset: usize::from(offset % 8),
        length_field_length: [1, 2, 3, 4, 8][usize::from(width % 5)],
        length_adjustment: i64::from(adj),
        initial_bytes_to_strip: usize::from(strip % 16),
        max_frame_length: 4096,
        fail_fast: true,
        discard_oversize: discard,
    };
    let Ok(_) = LengthField::new(opts.clone()) else { return };
    split_common::check(|| Box::new(LengthField::new(opts.clone()).unwrap()), &stream, &cuts);
});
