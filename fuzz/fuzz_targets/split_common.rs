//! Shared by the framer fuzz targets: run a framer over a stream fed whole and
//! fed in pieces, and require the same events.

use std::time::Instant;

use bytes::Bytes;
use sockmap_core::framer::Framer;
use sockmap_core::strparser::{Event, StrParser, StrParserConfig};

/// Events with bytes copied out; consecutive skips merged.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Msg(Vec<u8>, String),
    Skipped(usize),
    Handback(Vec<u8>),
    Error(sockmap_core::Errno),
}

fn run(framer: Box<dyn Framer>, stream: &[u8], cuts: &[u8]) -> Vec<Out> {
    let cfg = StrParserConfig { max_message_bytes: 1 << 16, message_timeout: None };
    let mut p = StrParser::new(framer, cfg);
    let now = Instant::now();
    let mut outs: Vec<Out> = Vec::new();
    let mut off = 0;
    let mut k = 0;
    while off < stream.len() {
        let n = if cuts.is_empty() { stream.len() } else { usize::from(cuts[k % cuts.len()]).max(1) };
        k += 1;
        let end = (off + n).min(stream.len());
        p.handle_data(Bytes::copy_from_slice(&stream[off..end]), now);
        off = end;
        while let Some(ev) = p.poll_event(now) {
            let o = match ev {
                Event::Message(m) => {
                    let v = m.to_vec();
                    assert_eq!(v.len(), m.len);
                    Out::Msg(v, format!("{:?}", m.meta))
                }
                Event::Skipped(n) => Out::Skipped(n),
                Event::Handback { rest, .. } => Out::Handback(rest.iter().flat_map(|b| b.to_vec()).collect()),
                Event::Error(e) => Out::Error(e),
            };
            if let (Some(Out::Skipped(a)), Out::Skipped(b)) = (outs.last_mut(), &o) {
                *a += *b;
                continue;
            }
            outs.push(o);
        }
    }
    outs
}

/// Feeds `stream` whole and cut by `cuts` (piece sizes, cycled): same events.
pub fn check(make: impl Fn() -> Box<dyn Framer>, stream: &[u8], cuts: &[u8]) {
    let whole = run(make(), stream, &[]);
    let split = run(make(), stream, cuts);
    assert_eq!(whole, split);
}
