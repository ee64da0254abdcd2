//! Sends length-prefixed frames with sequence numbers over C connections, as fast as
//! possible (large coalesced writes) or at a fixed rate, for a bounded time or count.

use sockmap_bench::net::{self, ReadOutcome, Stream};
use sockmap_bench::{Args, FrameBatch, Report};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
framed-client --connect 127.0.0.1:PORT|unix:PATH [options]
  --conns N          connections, one thread each (default 1)
  --frame-size B     bytes per frame on the wire, 4-byte header included (default 64)
  --duration S       stop sending after S seconds (default 5)
  --count N          stop after N frames in all, 0 = no count bound (default 0)
  --rate R           frames per second in all, 0 = as fast as possible (default 0)
  --batch-bytes B    bytes per write when not rate-bound (default 65536)
Prints one JSON line: frames and bytes sent, seconds, frames/s.";

/// Time allowed to finish a write that started before the deadline.
const GRACE: Duration = Duration::from_secs(1);
/// Time allowed after sending for the far side to close.
const DRAIN: Duration = Duration::from_secs(2);

struct Plan {
    frame_size: usize,
    batch_frames: usize,
    count: u64,
    rate: f64,
    start: Instant,
    deadline: Instant,
}

fn main() {
    let args = Args::from_env(USAGE);
    let addr = args.endpoint("connect");
    let conns: u64 = args.get("conns", 1);
    let frame_size: usize = args.get("frame-size", 64);
    let count: u64 = args.get("count", 0);
    let rate: f64 = args.get("rate", 0.0);
    let batch_bytes: usize = args.get("batch-bytes", 65536);
    let duration = args.secs("duration", 5.0);
    if conns == 0 || conns > 4096 {
        args.fail("--conns must be between 1 and 4096");
    }
    if rate.is_nan() || rate < 0.0 {
        args.fail("--rate must be positive or 0");
    }
    if let Err(e) = FrameBatch::new(frame_size, 1) {
        args.fail(&e);
    }

    let mut streams = Vec::new();
    for _ in 0..conns {
        match net::connect_to(&addr, Duration::from_secs(2)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                eprintln!("framed-client: connect {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    let start = Instant::now();
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let i = i as u64;
            // Split the count and the rate evenly; the first connections take the remainder.
            let share = count / conns + u64::from(i < count % conns);
            let plan = Plan {
                frame_size,
                batch_frames: (batch_bytes / frame_size).max(1),
                count: if count == 0 { u64::MAX } else { share },
                rate: rate / conns as f64,
                start,
                deadline: start + duration,
            };
            thread::spawn(move || send(s, &plan))
        })
        .collect();
    let mut frames = 0u64;
    let mut errors = 0u64;
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => frames += n,
            Ok(Err((n, e))) => {
                eprintln!("framed-client: {e}");
                frames += n;
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Report::new("framed-client")
        .int("conns", conns)
        .int("frame_size", frame_size as u64)
        .int("frames", frames)
        .int("bytes", frames * frame_size as u64)
        .num("secs", secs, 3)
        .num("frames_per_sec", frames as f64 / secs, 0)
        .int("errors", errors)
        .cpu()
        .print();
    std::process::exit(i32::from(errors > 0));
}

/// Sends frames on one connection; returns the complete frames written.
fn send(mut s: Stream, plan: &Plan) -> Result<u64, (u64, std::io::Error)> {
    let mut batch = FrameBatch::new(plan.frame_size, plan.batch_frames).map_err(|e| {
        let err = std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        (0, err)
    })?;
    let mut sent = 0u64;
    while sent < plan.count {
        let now = Instant::now();
        if now >= plan.deadline {
            break;
        }
        let mut n = (plan.count - sent).min(plan.batch_frames as u64);
        if plan.rate > 0.0 {
            let due = (plan.rate * (now - plan.start).as_secs_f64()) as u64;
            if due <= sent {
                thread::sleep(Duration::from_secs_f64(1.0 / plan.rate).min(net::TICK));
                continue;
            }
            n = n.min(due - sent);
        }
        let data = batch.stamp(sent, n as usize);
        let written =
            net::write_until(&mut s, data, plan.deadline + GRACE).map_err(|e| (sent, e))?;
        sent += (written / plan.frame_size) as u64;
        if written < data.len() {
            break;
        }
    }
    finish(s);
    Ok(sent)
}

/// Half-closes and waits (bounded) for the far side to close, so nothing in flight is reset.
fn finish(mut s: Stream) {
    let _ = s.shutdown(Shutdown::Write);
    let until = Instant::now() + DRAIN;
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match net::read_tick(&mut s, &mut buf) {
            Ok(ReadOutcome::Data(_)) | Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::Eof) | Err(_) => break,
        }
    }
}
