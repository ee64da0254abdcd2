#![no_main]
//! The ClientHello peek (`tls::hello::peek`): never panics, and a prefix of the input never contradicts it: it asks for
//! exactly the bytes still missing, or gives the same answer once the first record is whole; and `sni_range` (what
//! `parsers.tlsRecords()` keeps) names, in the input, exactly the server name the peek reads.

use libfuzzer_sys::fuzz_target;
use sockmap_core::tls::hello::{peek, sni_range, Peek};

fuzz_target!(|data: &[u8]| {
    let full = peek(data);
    match (sni_range(data), &full) {
        (Some(r), Peek::Hello { sni: Some(name) }) => {
            assert_eq!(data[r].to_ascii_lowercase(), name.as_bytes(), "the range and the peek disagree")
        }
        (None, Peek::Hello { sni: Some(name) }) => panic!("the peek reads {name:?}, the range finds none"),
        (Some(r), other) => panic!("a range {r:?} where the peek answers {other:?}"),
        (None, _) => {}
    }
    for cut in 0..=data.len() {
        match peek(&data[..cut]) {
            Peek::NeedMore(n) => assert!(n > 0 && cut + n <= 5 + 65535, "cut {cut} asks for {n}"),
            answer if cut >= 5 => {
                if let Peek::NeedMore(_) = full {
                    panic!("cut {cut} answered {answer:?} but the whole input needs more");
                }
                assert_eq!(answer, full, "cut {cut}");
            }
            _ => {}
        }
    }
});
