#![no_main]
//! The strparser state machine against a reference model: fuzzed data, pause,
//! unpause and poll operations over a 1-byte length-prefixed protocol with
//! oversize frames skipped.

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{LengthField, LengthFieldOptions};
use sockmap_core::strparser::{Event, StrParser, StrParserConfig};
use sockmap_core::Errno;

const MAX_FRAME: usize = 40;

#[derive(Arbitrary, Debug)]
enum Op {
    Data(Vec<u8>),
    Pause,
    Unpause,
    Poll(u8),
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Msg(Vec<u8>),
    Skipped(usize),
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
    fn poll(&mut self) -> Option<Out> {
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
                return Some(Out::Error(Errno::Proto));
            }
            if len > MAX_FRAME {
                self.skip = len;
                return Some(Out::Skipped(len));
            }
            if self.buf.len() < len {
                return None;
            }
            return Some(Out::Msg(self.buf.drain(..len).collect()));
        }
    }
}

fn out(ev: Event) -> Out {
    match ev {
        Event::Message(m) => Out::Msg(m.to_vec()),
        Event::Skipped(n) => Out::Skipped(n),
        Event::Error(e) => Out::Error(e),
        Event::Handback { .. } => panic!("this framer never hands back"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let now = Instant::now();
    let opts = LengthFieldOptions {
        length_field_length: 1,
        length_adjustment: -1,
        max_frame_length: MAX_FRAME,
        discard_oversize: true,
        ..Default::default()
    };
    let mut p = StrParser::new(Box::new(LengthField::new(opts).unwrap()), StrParserConfig::default());
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Data(d) => {
                if !m.dead {
                    m.buf.extend_from_slice(&d);
                }
                p.handle_data(Bytes::from(d), now);
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
                    assert_eq!(p.poll_event(now).map(out), m.poll());
                }
            }
        }
        assert_eq!(p.buffered_bytes(), m.buf.len());
    }
    p.unpause();
    m.paused = false;
    loop {
        let (a, b) = (p.poll_event(now).map(out), m.poll());
        assert_eq!(a, b);
        if a.is_none() {
            break;
        }
    }
});
