//! Request/response latency of a small message, and the echo server it talks to.

use sockmap_bench::net::{self, ReadOutcome};
use sockmap_bench::{Args, FrameBatch, Histogram, Report};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
pingpong client --connect 127.0.0.1:PORT [options]
  --iters N       measured round trips (default 100000)
  --warmup N      unmeasured round trips first (default 1000)
  --size B        message bytes, a valid length-prefixed frame (default 64)
  --duration S    stop after S seconds even if iterations remain (default 30)
  Prints one JSON line: half round trip p50/p99/p99.9/max/mean in microseconds
  (sockperf's convention) and the full round trip p50/p99/p99.9.
pingpong echo --listen 127.0.0.1:PORT [options]
  --conns N       exit once N connections have ended (default 1)
  --duration S    exit after S seconds at most (default 60)
  Prints `ready` once listening; echoes every byte back.";

fn main() {
    Args::dispatch(USAGE, &[("client", client), ("echo", echo)]);
}

fn client(args: &Args) {
    let addr = args.loopback("connect");
    let iters: u64 = args.get("iters", 100_000);
    let warmup: u64 = args.get("warmup", 1000);
    let size: usize = args.get("size", 64);
    let deadline = Instant::now() + args.secs("duration", 30.0);
    let mut msg = FrameBatch::new(size, 1).unwrap_or_else(|e| args.fail(&e));
    let mut s = net::connect(addr, Duration::from_secs(2)).unwrap_or_else(|e| {
        eprintln!("pingpong: connect {addr}: {e}");
        std::process::exit(1)
    });
    let mut reply = vec![0u8; size];
    let mut hist = Histogram::new();
    let mut mismatches = 0u64;
    let mut short = false;
    for i in 0..warmup + iters {
        if Instant::now() >= deadline {
            break;
        }
        let out = msg.stamp(i, 1);
        let t0 = Instant::now();
        let ok = net::write_until(&mut s, out, deadline).is_ok_and(|n| n == size)
            && net::read_exact_until(&mut s, &mut reply, deadline).is_ok_and(|n| n == size);
        let rtt = t0.elapsed();
        if !ok {
            short = true;
            break;
        }
        if reply != out {
            mismatches += 1;
        }
        if i >= warmup {
            hist.record(rtt.as_nanos() as u64);
        }
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let half = |q: f64| us(hist.quantile(q)) / 2.0;
    Report::new("pingpong")
        .int("iters", hist.len())
        .int("size", size as u64)
        .num("p50_us", half(0.5), 2)
        .num("p99_us", half(0.99), 2)
        .num("p999_us", half(0.999), 2)
        .num("max_us", us(hist.max()) / 2.0, 2)
        .num("mean_us", hist.mean() / 2000.0, 2)
        .num("rtt_p50_us", us(hist.quantile(0.5)), 2)
        .num("rtt_p99_us", us(hist.quantile(0.99)), 2)
        .num("rtt_p999_us", us(hist.quantile(0.999)), 2)
        .int("mismatches", mismatches)
        .int("errors", u64::from(short))
        .print();
    std::process::exit(i32::from(short || mismatches > 0 || hist.is_empty()));
}

fn echo(args: &Args) {
    let addr = args.loopback("listen");
    let conns: usize = args.get("conns", 1);
    let deadline = Instant::now() + args.secs("duration", 60.0);
    let listener = net::listen(addr).unwrap_or_else(|e| {
        eprintln!("pingpong: listen {addr}: {e}");
        std::process::exit(1)
    });
    let mut workers = Vec::new();
    while workers.len() < conns {
        match net::accept_until(&listener, deadline) {
            Ok(Some(s)) => workers.push(thread::spawn(move || echo_conn(s, deadline))),
            Ok(None) => break,
            Err(e) => {
                eprintln!("pingpong: accept: {e}");
                break;
            }
        }
    }
    let bytes: u64 = workers.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    Report::new("pingpong-echo")
        .int("bytes", bytes)
        .cpu()
        .print();
}

/// Echoes until EOF, an error or the deadline; returns the bytes echoed.
fn echo_conn(mut s: TcpStream, deadline: Instant) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while Instant::now() < deadline {
        match net::read_tick(&mut s, &mut buf) {
            Ok(ReadOutcome::Data(n)) => match net::write_until(&mut s, &buf[..n], deadline) {
                Ok(w) if w == n => total += n as u64,
                _ => break,
            },
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::Eof) | Err(_) => break,
        }
    }
    total
}
