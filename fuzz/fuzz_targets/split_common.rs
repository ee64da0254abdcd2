//! Shared by the framer fuzz targets: run a framer over a stream fed whole and
//! fed in pieces, and require the same events. The events are the `Out` of
//! the framer tests (crates/sockmap-core/tests/framer_common), included by path.

#[path = "../../crates/sockmap-core/tests/framer_common/mod.rs"]
pub mod framer_common;

use framer_common::{run_split, Out};
use sockmap_core::framer::Framer;
use sockmap_core::strparser::StrParserConfig;

/// The events of `stream` cut by `cuts` (piece sizes, cycled; none: whole),
/// consecutive skips merged. Whether a hand-back came after part of a message
/// was consumed depends on where the stream was cut, so it is not compared.
fn run(framer: Box<dyn Framer>, stream: &[u8], cuts: &[u8]) -> Vec<Out> {
    let cfg = StrParserConfig { max_message_bytes: 1 << 16, message_timeout: None };
    let sizes: Vec<usize> = cuts.iter().map(|&c| usize::from(c)).collect();
    let (outs, _) = run_split(framer, cfg, stream, &sizes);
    outs.into_iter()
        .map(|o| match o {
            Out::Handback(rest, _) => Out::Handback(rest, false),
            o => o,
        })
        .collect()
}

/// Feeds `stream` whole and cut by `cuts` (piece sizes, cycled): same events,
/// which it returns.
pub fn check(make: impl Fn() -> Box<dyn Framer>, stream: &[u8], cuts: &[u8]) -> Vec<Out> {
    let whole = run(make(), stream, &[]);
    let split = run(make(), stream, cuts);
    assert_eq!(whole, split);
    whole
}
