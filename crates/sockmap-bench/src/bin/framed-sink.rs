//! Receives length-prefixed frames, counts them per connection and checks their
//! sequence numbers; prints frames/s and errors as one JSON line on exit.

use sockmap_bench::net::{self, ReadOutcome, Stream};
use sockmap_bench::{Args, FrameChecker, Report};
use std::thread;
use std::time::Instant;

const USAGE: &str = "\
framed-sink --listen 127.0.0.1:PORT|unix:PATH [options]
  --conns N       exit once N connections have ended (default 1)
  --duration S    exit after S seconds at most (default 30)
  --count N       exit once N frames arrived in all, 0 = no count bound (default 0)
Prints `ready` once listening, then one JSON line on exit: frames, bytes, the span from
first to last byte, frames/s, sequence and length errors, per-connection frame counts.";

const BUF: usize = 256 * 1024;

/// What one connection received.
#[derive(Default)]
struct ConnStats {
    checker: FrameChecker,
    bytes: u64,
    trailing: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    reset: bool,
}

fn main() {
    let args = Args::from_env(USAGE);
    let addr = args.endpoint("listen");
    let conns: usize = args.get("conns", 1);
    let count: u64 = args.get("count", 0);
    let deadline = Instant::now() + args.secs("duration", 30.0);
    let listener = net::listen_at(&addr).unwrap_or_else(|e| {
        eprintln!("framed-sink: listen {addr}: {e}");
        std::process::exit(1)
    });
    // Each reader stops early once its own share of the count arrived.
    let share = if count == 0 {
        u64::MAX
    } else {
        count.div_ceil(conns.max(1) as u64)
    };
    let mut readers = Vec::new();
    while readers.len() < conns {
        match listener.accept_until(deadline) {
            Ok(Some(s)) => readers.push(thread::spawn(move || receive(s, deadline, share))),
            Ok(None) => break,
            Err(e) => {
                eprintln!("framed-sink: accept: {e}");
                break;
            }
        }
    }
    let stats: Vec<ConnStats> = readers
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    report(&stats);
}

fn receive(mut s: Stream, deadline: Instant, share: u64) -> ConnStats {
    let mut st = ConnStats::default();
    let mut buf = vec![0u8; BUF];
    let mut fill = 0usize;
    while Instant::now() < deadline && st.checker.frames < share && !st.checker.is_broken() {
        match net::read_tick(&mut s, &mut buf[fill..]) {
            Ok(ReadOutcome::Data(n)) => {
                let now = Instant::now();
                st.first.get_or_insert(now);
                st.last = Some(now);
                st.bytes += n as u64;
                fill += n;
                let used = st.checker.check(&buf[..fill]);
                buf.copy_within(used..fill, 0);
                fill -= used;
            }
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::Eof) => break,
            Err(_) => {
                st.reset = true;
                break;
            }
        }
    }
    st.trailing = fill as u64;
    st
}

fn report(stats: &[ConnStats]) {
    let sum = |f: fn(&ConnStats) -> u64| stats.iter().map(f).sum::<u64>();
    let frames = sum(|c| c.checker.frames);
    let first = stats.iter().filter_map(|c| c.first).min();
    let last = stats.iter().filter_map(|c| c.last).max();
    let secs = match (first, last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let per_conn: Vec<u64> = stats.iter().map(|c| c.checker.frames).collect();
    Report::new("framed-sink")
        .int("conns", stats.len() as u64)
        .int("frames", frames)
        .int("bytes", sum(|c| c.bytes))
        .num("secs", secs, 4)
        .num("frames_per_sec", frames as f64 / secs, 0)
        .int("seq_errors", sum(|c| c.checker.seq_errors))
        .int("len_errors", sum(|c| c.checker.len_errors))
        .int("trailing_bytes", sum(|c| c.trailing))
        .int("resets", sum(|c| u64::from(c.reset)))
        .ints("per_conn", &per_conn)
        .cpu()
        .print();
}
