//! A reference model of the strparser, shared by the property test
//! (`tests/strparser.rs`) and the fuzz target (`fuzz/fuzz_targets/
//! strparser.rs`, which includes this file by path).
//!
//! The protocol: a 1-byte length that counts itself; 0 is a protocol error;
//! frames longer than [`MAX_FRAME`] are skipped. [`Harness::apply`] runs one
//! [`Op`] on a real [`StrParser`] and on the model, written the obvious way
//! over one contiguous buffer, and asserts that they agree.

use std::time::Instant;

use bytes::Bytes;
use sockmap_core::framer::{LengthField, LengthFieldOptions};
use sockmap_core::strparser::{Event, StrParser, StrParserConfig};
use sockmap_core::Errno;

/// Longest frame delivered; longer ones are skipped.
pub const MAX_FRAME: usize = 40;

/// One step of a scenario.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    /// Input bytes.
    Data(Vec<u8>),
    /// `pause()`.
    Pause,
    /// `unpause()`.
    Unpause,
    /// Poll this many events (mod 8).
    Poll(u8),
}

/// What either side produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ModelOut {
    /// A message's bytes.
    Msg(Vec<u8>),
    /// A skipped oversize frame.
    Skipped(usize),
    /// The parser aborted.
    Error(Errno),
}

#[derive(Default)]
struct Model {
    buf: Vec<u8>,
    paused: bool,
    dead: bool,
    skip: usize,
}

impl Model {
    fn poll(&mut self) -> Option<ModelOut> {
        loop {
            if self.paused || self.dead {
                return None;
            }
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len());
                self.buf.drain(..n);
                self.skip -= n;
                if self.skip > 0 {
                    return None;
                }
                continue;
            }
            let len = usize::from(*self.buf.first()?);
            if len == 0 {
                self.dead = true;
                self.buf.clear();
                return Some(ModelOut::Error(Errno::Proto));
            }
            if len > MAX_FRAME {
                self.skip = len;
                return Some(ModelOut::Skipped(len));
            }
            if self.buf.len() < len {
                return None;
            }
            return Some(ModelOut::Msg(self.buf.drain(..len).collect()));
        }
    }
}

fn model_out(ev: Event) -> ModelOut {
    match ev {
        Event::Message(m) => ModelOut::Msg(m.to_vec()),
        Event::Skipped(n) => ModelOut::Skipped(n),
        Event::Error(e) => ModelOut::Error(e),
        Event::Handback { .. } => panic!("this framer never hands back"),
    }
}

/// A real strparser and the model, driven in step.
pub struct Harness {
    parser: StrParser,
    model: Model,
    now: Instant,
}

impl Default for Harness {
    fn default() -> Self {
        let opts = LengthFieldOptions {
            length_field_length: 1,
            length_adjustment: -1,
            max_frame_length: MAX_FRAME,
            discard_oversize: true,
            ..Default::default()
        };
        let framer = LengthField::new(opts).expect("valid options");
        Harness {
            parser: StrParser::new(Box::new(framer), StrParserConfig::default()),
            model: Model::default(),
            now: Instant::now(),
        }
    }
}

impl Harness {
    /// Runs `op` on both sides; panics on the first disagreement.
    pub fn apply(&mut self, op: &Op) {
        let (p, m) = (&mut self.parser, &mut self.model);
        match op {
            Op::Data(d) => {
                if !m.dead {
                    m.buf.extend_from_slice(d);
                }
                p.handle_data(Bytes::copy_from_slice(d), self.now);
            }
            Op::Pause => {
                p.pause();
                m.paused = true;
            }
            Op::Unpause => {
                p.unpause();
                m.paused = false;
            }
            Op::Poll(n) => {
                for _ in 0..n % 8 {
                    assert_eq!(
                        p.poll_event(self.now).map(model_out),
                        m.poll(),
                        "after {op:?}"
                    );
                }
            }
        }
        assert_eq!(
            p.buffered_bytes(),
            m.buf.len(),
            "buffered bytes after {op:?}"
        );
    }

    /// Unpauses both sides and checks that they deliver the same rest.
    pub fn finish(mut self) {
        self.parser.unpause();
        self.model.paused = false;
        loop {
            let (a, b) = (
                self.parser.poll_event(self.now).map(model_out),
                self.model.poll(),
            );
            assert_eq!(a, b, "draining the rest");
            if a.is_none() {
                break;
            }
        }
    }
}
