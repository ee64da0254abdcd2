#![no_main]
//! The Redis planner: plan, split and merge never panic on framed requests,
//! however the request is cut into fragments, whatever the replies are.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{Chunks, Framer, Parse, Resp, RespOptions};
use sockmap_core::redis::{plan, ClientState, Plan, RedisConfig};

fuzz_target!(|input: (u8, Vec<u8>, Vec<Vec<u8>>)| {
    let (cut, stream, replies) = input;
    let cfg = RedisConfig {
        password: (cut & 1 == 1).then(|| Bytes::from_static(b"pw")),
        allow: vec![Bytes::from_static(b"keys"), Bytes::from_static(b"EVAL")],
    };
    let mut state = ClientState::new(&cfg);
    let stream = Bytes::from(stream);
    let mut framer = Resp::new(RespOptions { max_depth: 16, max_line_length: 256 });
    let mut at = 0;
    while at < stream.len() {
        let rest = [stream.slice(at..)];
        let Parse::Length(n) = framer.parse(&Chunks::new(&rest)) else {
            break;
        };
        let (_, meta) = framer.finish();
        let msg = stream.slice(at..at + n);
        let c = usize::from(cut).min(n);
        let frags = [msg.slice(..c), msg.slice(c..)];
        if let Plan::Split(split) = plan(&frags, n, &meta, &cfg, &mut state) {
            let keys = split.keys().len();
            let mut merger = split.merger();
            for (i, reply) in replies.iter().enumerate() {
                // Parts of every other key, and one index out of range.
                let part: Vec<usize> = (i % 2..keys + 1).step_by(2).collect();
                let _ = split.build(&part);
                let (a, b) = reply.split_at(reply.len() / 2);
                merger.add(&part, &[Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]);
            }
            let _ = merger.is_complete();
            let _ = merger.finish();
        }
        at += n;
    }
});
