#![no_main]
//! The RESP framer against the `redis-protocol` crate's RESP2 decoder, on
//! streams whose first value is RESP2: where both find a whole value they
//! must agree where it ends; neither may end a value where the other needs
//! more bytes. (Values one refuses and the other takes, such as RESP3 types
//! inside an array, which the framer frames and a RESP2 decoder refuses, are
//! not boundary questions.)

use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{Resp, RespOptions};
use sockmap_core::strparser::StrParserConfig;

#[path = "../../crates/sockmap-core/tests/framer_common/mod.rs"]
mod framer_common;

use framer_common::{run_split, Out};

fuzz_target!(|stream: &[u8]| {
    if !matches!(stream.first(), Some(b'+' | b'-' | b':' | b'$' | b'*')) {
        return;
    }
    let cfg = StrParserConfig { max_message_bytes: 1 << 20, message_timeout: None };
    let opts = RespOptions { max_depth: 64, max_line_length: 1 << 16 };
    let (outs, _) = run_split(Box::new(Resp::new(opts)), cfg, stream, &[]);
    let oracle = redis_protocol::resp2::decode::decode(stream);
    match (outs.first(), oracle) {
        (Some(Out::Msg(m, _)), Ok(Some((_, n)))) => {
            assert_eq!(m.len(), n, "the value ends elsewhere for redis-protocol")
        }
        (Some(Out::Msg(m, _)), Ok(None)) => {
            panic!("framed a {}-byte value redis-protocol finds incomplete", m.len())
        }
        (None, Ok(Some((_, n)))) => panic!("waits for more after a whole {n}-byte value"),
        _ => {}
    }
});
