//! Accepts one connection and reads it at a fixed byte rate: a slow consumer.

use sockmap_bench::net::{self, ReadOutcome};
use sockmap_bench::{Args, Report};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
slow-sink --listen 127.0.0.1:PORT [options]
  --rate B        bytes per second to read (default 1000000)
  --duration S    exit after S seconds (default 10)
Prints `ready` once listening, then one JSON line on exit: bytes read, seconds, bytes/s.";

fn main() {
    let args = Args::from_env(USAGE);
    let addr = args.loopback("listen");
    let rate: u64 = args.get("rate", 1_000_000);
    let deadline = Instant::now() + args.secs("duration", 10.0);
    if rate == 0 {
        args.fail("--rate must be positive");
    }
    let listener = net::listen(addr).unwrap_or_else(|e| {
        eprintln!("slow-sink: listen {addr}: {e}");
        std::process::exit(1)
    });
    let mut total = 0u64;
    let mut start = None;
    let mut eof = false;
    if let Ok(Some(mut s)) = net::accept_until(&listener, deadline) {
        let t0 = Instant::now();
        start = Some(t0);
        let mut buf = vec![0u8; 64 * 1024];
        while Instant::now() < deadline {
            let due = (rate as f64 * t0.elapsed().as_secs_f64()) as u64;
            let allowed = due.saturating_sub(total).min(buf.len() as u64) as usize;
            if allowed == 0 {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            match net::read_tick(&mut s, &mut buf[..allowed]) {
                Ok(ReadOutcome::Data(n)) => total += n as u64,
                Ok(ReadOutcome::Idle) => {}
                Ok(ReadOutcome::Eof) | Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
    }
    let secs = start.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Report::new("slow-sink")
        .int("bytes", total)
        .num("secs", secs, 3)
        .num("bytes_per_sec", total as f64 / secs, 0)
        .int("eof", u64::from(eof))
        .print();
}
