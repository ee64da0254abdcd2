//! Opens (or accepts) many connections and holds them idle for a bounded time.

use sockmap_bench::{net, Args, Report};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
idle-conns connect --connect 127.0.0.1:PORT [options]
  --conns N       connections to open, one after another (default 10000)
  --hold S        seconds to hold them once open (default 10)
  --burst N       pause 1 ms after every N connections, so accept queues keep up (default 64)
  Prints one JSON line once all are open (connected, failed, seconds), then holds.
idle-conns serve --listen 127.0.0.1:PORT [options]
  --expect N      print a JSON line once N connections are accepted (default 10000)
  --duration S    exit after S seconds (default 30)
  Prints `ready` once listening; accepts and holds connections, reading nothing.";

fn main() {
    Args::dispatch(USAGE, &[("connect", connect), ("serve", serve)]);
}

fn connect(args: &Args) {
    let addr = args.loopback("connect");
    let conns: u64 = args.get("conns", 10_000);
    let hold = args.secs("hold", 10.0);
    let burst: u64 = args.get("burst", 64);
    let limit = net::raise_nofile_limit();
    let start = Instant::now();
    let mut held = Vec::new();
    let mut failed = 0u64;
    let mut last_error = String::new();
    for i in 1..=conns {
        if burst > 0 && i % burst == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                last_error = e.to_string();
                if failed >= 100 {
                    break;
                }
            }
        }
    }
    Report::new("idle-conns")
        .int("connected", held.len() as u64)
        .int("failed", failed)
        .str("last_error", &last_error)
        .int("nofile", limit)
        .num("connect_secs", start.elapsed().as_secs_f64(), 3)
        .print();
    let _ = std::io::stdout().flush();
    thread::sleep(hold);
}

fn serve(args: &Args) {
    let addr = args.loopback("listen");
    let expect: u64 = args.get("expect", 10_000);
    let deadline = Instant::now() + args.secs("duration", 30.0);
    net::raise_nofile_limit();
    let listener = net::listen(addr).unwrap_or_else(|e| {
        eprintln!("idle-conns: listen {addr}: {e}");
        std::process::exit(1)
    });
    let mut held = Vec::new();
    let mut announced = false;
    loop {
        match net::accept_until(&listener, deadline) {
            Ok(Some(s)) => held.push(s),
            Ok(None) => break,
            Err(e) => {
                eprintln!("idle-conns: accept: {e}");
                thread::sleep(net::TICK);
            }
        }
        if !announced && held.len() as u64 >= expect {
            announced = true;
            Report::new("idle-conns-serve")
                .int("accepted", held.len() as u64)
                .print();
            let _ = std::io::stdout().flush();
        }
    }
}
