//! In-memory throughput of `StrParser` + each native framer, delivering
//! messages from a stream fed in 64 KiB chunks.
//!
//! Run: `cargo bench -p sockmap-core --bench framers` (optionally a case name
//! as argument to run only that case). Prints frames/s and GB/s, the median of
//! several samples after a warm-up.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sockmap_core::framer::{Delimiter, Framer, Http1, LengthField, LengthFieldOptions, Resp};
use sockmap_core::strparser::{Event, StrParser, StrParserConfig};

const CHUNK: usize = 64 << 10;
const STREAM_BYTES: usize = 32 << 20;
const SAMPLES: usize = 7;

struct Case {
    name: &'static str,
    framer: fn() -> Box<dyn Framer>,
    frame: fn(usize) -> Vec<u8>,
}

fn length_frame(_: usize) -> Vec<u8> {
    let mut v = 60u32.to_be_bytes().to_vec();
    v.extend_from_slice(&[b'x'; 60]);
    v
}

fn line_frame(i: usize) -> Vec<u8> {
    let mut v = format!("line {i:010} ").into_bytes();
    v.resize(63, b'.');
    v.push(b'\n');
    v
}

fn resp_frame(i: usize) -> Vec<u8> {
    format!(
        "*3\r\n$3\r\nSET\r\n$8\r\nkey:{:04}\r\n$5\r\nvalue\r\n",
        i % 10_000
    )
    .into_bytes()
}

fn http_frame(i: usize) -> Vec<u8> {
    format!(
        "GET /item/{:04} HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n",
        i % 10_000
    )
    .into_bytes()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "length-prefixed 64 B",
            framer: || Box::new(LengthField::new(LengthFieldOptions::default()).expect("valid")),
            frame: length_frame,
        },
        Case {
            name: "lines 64 B",
            framer: || Box::new(Delimiter::lines(65536)),
            frame: line_frame,
        },
        Case {
            name: "RESP SET key:NNNN value",
            framer: || Box::new(Resp::default()),
            frame: resp_frame,
        },
        Case {
            name: "HTTP/1 GET",
            framer: || Box::new(Http1::requests()),
            frame: http_frame,
        },
    ]
}

/// One pass over the stream: (frames delivered, elapsed).
fn pass(case: &Case, chunks: &[Bytes]) -> (u64, Duration) {
    let mut p = StrParser::new((case.framer)(), StrParserConfig::default());
    let now = Instant::now();
    let start = Instant::now();
    let mut frames = 0u64;
    for c in chunks {
        p.handle_data(c.clone(), now);
        while let Some(ev) = p.poll_event(now) {
            if let Event::Message(m) = ev {
                frames += 1;
                black_box(m);
            }
        }
    }
    (frames, start.elapsed())
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "{:<26} {:>8} {:>14} {:>8}",
        "case", "frame B", "frames/s", "GB/s"
    );
    for case in cases() {
        if filter.as_deref().is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let mut stream = Vec::with_capacity(STREAM_BYTES + 256);
        let mut n = 0usize;
        while stream.len() < STREAM_BYTES {
            stream.extend_from_slice(&(case.frame)(n));
            n += 1;
        }
        let avg = stream.len() as f64 / n as f64;
        let stream = Bytes::from(stream);
        let chunks: Vec<Bytes> = (0..stream.len())
            .step_by(CHUNK)
            .map(|s| stream.slice(s..(s + CHUNK).min(stream.len())))
            .collect();
        let (frames, _) = pass(&case, &chunks); // warm-up
        assert_eq!(frames as usize, n, "{}: every frame delivered", case.name);
        let mut times: Vec<Duration> = (0..SAMPLES).map(|_| pass(&case, &chunks).1).collect();
        times.sort();
        let t = times[SAMPLES / 2].as_secs_f64();
        println!(
            "{:<26} {:>8.0} {:>14.0} {:>8.2}",
            case.name,
            avg,
            n as f64 / t,
            stream.len() as f64 / t / 1e9
        );
    }
}
