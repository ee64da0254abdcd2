//! UDP round trips through a proxy: a load client (several sockets, each a window of datagrams
//! in flight, closed loop) and the echo server it talks to, both on one thread with datagrams
//! in batches (`recvmmsg`/`sendmmsg`).

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use sockmap_bench::dgram::{self, Batch};
use sockmap_bench::{net, Args, Histogram, Report};
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const USAGE: &str = "\
udp-load client --connect 127.0.0.1:PORT [options]
  --sockets N        client sockets, each its own source port (default 8)
  --window W         datagrams in flight per socket, 1..1024 (default 16)
  --size B           datagram bytes, 16..65507 (default 64)
  --warmup S         seconds of unmeasured round trips first (default 1)
  --duration S       measured seconds after the warm-up (default 5)
  --loss-timeout MS  a datagram whose echo has not come after MS milliseconds counts as
                     timed out and its place in the window goes to a new one (default 200)
  Each datagram carries its socket's sequence number and its send time; each echo is
  checked byte for byte and its round trip recorded. Prints one JSON line: echoes per
  second over the measured span (dgrams_per_sec), round-trip p50/p99/p99.9/max in
  microseconds, datagrams sent and echoes received over the whole run, lost (sent minus
  received after a drain of up to 0.5 s), timeouts, late echoes, mismatches.
udp-load echo --listen 127.0.0.1:PORT [--duration S]
  Prints `ready` once bound; sends every datagram back to its source, on one thread,
  until S seconds passed (default 60); then prints one JSON line with the count.";

/// Bytes of the header every client datagram starts with: sequence number, send time.
const HEADER: usize = 16;
/// Datagrams taken from the kernel per `recvmmsg`.
const RX_BATCH: usize = 64;
/// Socket buffer sizes asked for (capped by the kernel's maxima).
const SOCK_BUF: usize = 4 << 20;
/// How long the client waits for the last echoes once it stopped sending.
const DRAIN: Duration = Duration::from_millis(500);

fn main() {
    Args::dispatch(USAGE, &[("client", client), ("echo", echo)]);
}

fn die(what: &str, e: &io::Error) -> ! {
    sockmap_bench::die("udp-load", what, e)
}

/// One client socket and its window.
struct Flow {
    sock: UdpSocket,
    next_seq: u64,
    /// The datagrams in flight, oldest first: sequence number and send time. An echo of a
    /// sequence number not in it was given up on (timed out): it is late.
    in_flight: VecDeque<(u64, Instant)>,
}

impl Flow {
    /// Takes `seq` out of the window; false when it was not in flight (a late echo).
    fn acknowledge(&mut self, seq: u64) -> bool {
        // Echoes come back mostly in order: the match is almost always at the front.
        match self.in_flight.iter().position(|&(s, _)| s == seq) {
            Some(i) => {
                self.in_flight.remove(i);
                true
            }
            None => false,
        }
    }

    /// Gives up on the datagrams sent before `cutoff`; returns how many.
    fn expire(&mut self, cutoff: Instant) -> u64 {
        let mut n = 0;
        while self.in_flight.front().is_some_and(|&(_, at)| at < cutoff) {
            self.in_flight.pop_front();
            n += 1;
        }
        n
    }
}

/// What the client counts over the run.
#[derive(Default)]
struct Tally {
    sent: u64,
    received: u64,
    measured: u64,
    timeouts: u64,
    late: u64,
    mismatches: u64,
}

/// The client's fixed parameters and its reusable buffers.
struct Load {
    size: usize,
    window: usize,
    template: Vec<u8>,
    tx: Batch,
    rx: Batch,
    start: Instant,
}

impl Load {
    /// Fills the window of `f` again; returns false on a socket error.
    fn refill(&mut self, f: &mut Flow, t: &mut Tally) -> bool {
        let k = self.window - f.in_flight.len();
        if k == 0 {
            return true;
        }
        let now = Instant::now();
        let now_ns = (now - self.start).as_nanos() as u64;
        for j in 0..k {
            let d = self.tx.fill(j, self.size);
            d.copy_from_slice(&self.template);
            d[..8].copy_from_slice(&(f.next_seq + j as u64).to_be_bytes());
            d[8..HEADER].copy_from_slice(&now_ns.to_be_bytes());
        }
        match self.tx.send(f.sock.as_raw_fd(), k, false) {
            Ok(n) => {
                f.in_flight
                    .extend((f.next_seq..f.next_seq + n as u64).map(|seq| (seq, now)));
                f.next_seq += n as u64;
                t.sent += n as u64;
                true
            }
            Err(_) => false,
        }
    }

    /// Reads every echo waiting on `f`, recording round trips that end inside `measure`.
    fn receive(
        &mut self,
        f: &mut Flow,
        t: &mut Tally,
        hist: &mut Histogram,
        measure: (Instant, Instant),
    ) -> io::Result<()> {
        loop {
            let n = self.rx.recv(f.sock.as_raw_fd())?;
            if n == 0 {
                return Ok(());
            }
            let now = Instant::now();
            let now_ns = (now - self.start).as_nanos() as u64;
            let counted = now >= measure.0 && now < measure.1;
            for i in 0..n {
                let d = self.rx.datagram(i);
                if d.len() != self.size || d[HEADER..] != self.template[HEADER..] {
                    t.mismatches += 1;
                    continue;
                }
                let seq = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
                let sent_ns = u64::from_be_bytes(d[8..HEADER].try_into().expect("8 bytes"));
                t.received += 1;
                if !f.acknowledge(seq) {
                    t.late += 1;
                    continue;
                }
                if counted {
                    t.measured += 1;
                    hist.record(now_ns.saturating_sub(sent_ns));
                }
            }
        }
    }
}

fn client(args: &Args) {
    let addr = args.loopback("connect");
    let sockets: usize = args.get("sockets", 8);
    let window: usize = args.get("window", 16);
    let size: usize = args.get("size", 64);
    let warmup = args.secs("warmup", 1.0);
    let duration = args.secs("duration", 5.0);
    let loss_timeout = Duration::from_millis(args.get("loss-timeout", 200));
    if sockets == 0 || sockets > 4096 {
        args.fail("--sockets must be between 1 and 4096");
    }
    if window == 0 || window > 1024 {
        args.fail("--window must be between 1 and 1024");
    }
    if !(HEADER..=65507).contains(&size) {
        args.fail("--size must be between 16 and 65507");
    }

    let mut poll = Poll::new().unwrap_or_else(|e| die("epoll", &e));
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let mut flows: Vec<Flow> = (0..sockets)
        .map(|i| {
            let mut sock = UdpSocket::bind("127.0.0.1:0".parse().expect("an address"))
                .unwrap_or_else(|e| die("bind", &e));
            sock.connect(addr).unwrap_or_else(|e| die("connect", &e));
            let _ = dgram::set_buffers(sock.as_raw_fd(), SOCK_BUF);
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .unwrap_or_else(|e| die("register", &e));
            Flow {
                sock,
                next_seq: 0,
                in_flight: VecDeque::with_capacity(window),
            }
        })
        .collect();
    let mut load = Load {
        size,
        window,
        template: (0..size).map(|i| (i % 251) as u8).collect(),
        tx: Batch::new(window, size),
        rx: Batch::new(RX_BATCH, size.max(2048)),
        start,
    };
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut hist = Histogram::new();
    let mut t = Tally::default();
    let mut errors = 0u64;
    for f in &mut flows {
        if !load.refill(f, &mut t) {
            errors += 1;
        }
    }
    let check_every = (loss_timeout / 4).clamp(Duration::from_millis(1), net::TICK);
    let mut next_check = start + check_every;
    let drain_until = end + DRAIN;
    loop {
        let now = Instant::now();
        let sending = now < end;
        if now >= drain_until || (!sending && t.received + t.mismatches >= t.sent) {
            break;
        }
        let wake = if sending {
            next_check.min(end)
        } else {
            drain_until
        };
        if let Err(e) = poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            if e.kind() != ErrorKind::Interrupted {
                die("poll", &e);
            }
        }
        for ev in &events {
            let f = &mut flows[ev.token().0];
            if load
                .receive(f, &mut t, &mut hist, (measure_from, end))
                .is_err()
            {
                errors += 1;
            }
            if Instant::now() < end && !load.refill(f, &mut t) {
                errors += 1;
            }
        }
        let now = Instant::now();
        if sending && now >= next_check {
            next_check = now + check_every;
            // A datagram whose echo did not come in time was lost on the way: give its
            // place to a new one (its echo, if it comes, is late).
            for f in &mut flows {
                if let Some(cutoff) = now.checked_sub(loss_timeout) {
                    t.timeouts += f.expire(cutoff);
                }
                if !load.refill(f, &mut t) {
                    errors += 1;
                }
            }
        }
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let secs = duration.as_secs_f64();
    Report::new("udp-load")
        .int("sockets", sockets as u64)
        .int("window", window as u64)
        .int("size", size as u64)
        .num("secs", secs, 3)
        .int("dgrams", t.measured)
        .num("dgrams_per_sec", t.measured as f64 / secs, 0)
        .num("p50_us", us(hist.quantile(0.5)), 2)
        .num("p99_us", us(hist.quantile(0.99)), 2)
        .num("p999_us", us(hist.quantile(0.999)), 2)
        .num("max_us", us(hist.max()), 2)
        .int("sent", t.sent)
        .int("received", t.received)
        .int("lost", t.sent.saturating_sub(t.received + t.mismatches))
        .int("timeouts", t.timeouts)
        .int("late", t.late)
        .int("mismatches", t.mismatches)
        .int("errors", errors)
        .cpu()
        .print();
    let failed = errors > 0 || t.mismatches > 0 || hist.is_empty();
    std::process::exit(i32::from(failed));
}

fn echo(args: &Args) {
    let addr = args.loopback("listen");
    let deadline = Instant::now() + args.secs("duration", 60.0);
    let sock = std::net::UdpSocket::bind(addr).unwrap_or_else(|e| die("bind", &e));
    let _ = dgram::set_buffers(sock.as_raw_fd(), SOCK_BUF);
    sock.set_read_timeout(Some(net::TICK))
        .unwrap_or_else(|e| die("timeout", &e));
    println!("ready");
    let mut batch = Batch::new(RX_BATCH, 65536);
    let mut echoed = 0u64;
    let mut peek = [0u8; 1];
    while Instant::now() < deadline {
        // Block (one tick at most) until a datagram is waiting, then echo in batches until
        // none is.
        if sock.peek(&mut peek).is_err() {
            continue;
        }
        loop {
            let n = batch
                .recv(sock.as_raw_fd())
                .unwrap_or_else(|e| die("recvmmsg", &e));
            if n == 0 {
                break;
            }
            echoed += batch
                .send(sock.as_raw_fd(), n, true)
                .unwrap_or_else(|e| die("sendmmsg", &e)) as u64;
        }
    }
    Report::new("udp-load-echo")
        .int("echoed", echoed)
        .cpu()
        .print();
}
