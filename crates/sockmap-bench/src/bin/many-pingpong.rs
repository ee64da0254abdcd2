//! Many connections doing small request/response ping-pong, closed loop, on one thread
//! (non-blocking sockets, mio), and the echo server it talks to.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sockmap_bench::{net, Args, FrameBatch, Histogram, Report};
use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

const USAGE: &str = "\
many-pingpong client --connect 127.0.0.1:PORT [options]
  --conns N       connections, each with one request in flight (default 1000)
  --size B        request and response bytes, a valid length-prefixed frame (default 64)
  --warmup S      seconds of unmeasured round trips once all are connected (default 1)
  --duration S    measured seconds after the warm-up (default 5)
  --connect-timeout S  seconds for all connections to be established (default 10)
  Opens every connection, then each sends a message, waits for its echo (checked byte
  for byte) and sends the next. Prints one JSON line: round trips per second (msgs_per_sec),
  all round trips including the warm-up (all_msgs),
  round-trip p50/p99/p99.9/max/mean in microseconds, mismatches and errors.
many-pingpong echo --listen 127.0.0.1:PORT [options]
  --duration S    exit after S seconds at most (default 60)
  --conns N       exit once N connections have ended (default: only the duration)
  Prints `ready` once listening; echoes every byte back, any number of connections,
  on one thread.";

fn main() {
    Args::dispatch(USAGE, &[("client", client), ("echo", echo)]);
}

fn die(what: &str, e: &io::Error) -> ! {
    sockmap_bench::die("many-pingpong", what, e)
}

/// One client connection: the message in flight and how much of it went out and came back.
struct Conn {
    sock: TcpStream,
    msg: FrameBatch,
    seq: u64,
    sent_at: Instant,
    written: usize,
    got: usize,
    reply: Vec<u8>,
    connected: bool,
    dead: bool,
}

impl Conn {
    /// Stamps and starts sending the next message.
    fn start(&mut self) {
        self.seq += 1;
        self.msg.stamp(self.seq, 1);
        self.written = 0;
        self.got = 0;
        self.sent_at = Instant::now();
    }

    /// Writes what remains of the message; false on a socket error.
    fn flush(&mut self) -> bool {
        let size = self.msg.frame_size();
        while self.written < size {
            let out = &self.msg.stamp(self.seq, 1)[self.written..];
            match self.sock.write(out) {
                Ok(0) => return false,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

fn client(args: &Args) {
    let addr = args.loopback("connect");
    let conns: usize = args.get("conns", 1000);
    let size: usize = args.get("size", 64);
    let warmup = args.secs("warmup", 1.0);
    let duration = args.secs("duration", 5.0);
    let connect_timeout = args.secs("connect-timeout", 10.0);
    if conns == 0 || conns > 100_000 {
        args.fail("--conns must be between 1 and 100000");
    }
    FrameBatch::new(size, 1).unwrap_or_else(|e| args.fail(&e));
    net::raise_nofile_limit();

    let mut poll = Poll::new().unwrap_or_else(|e| die("epoll", &e));
    let mut events = Events::with_capacity(1024);
    let mut all: Vec<Conn> = Vec::with_capacity(conns);
    let connect_deadline = Instant::now() + connect_timeout;
    let mut connected = 0usize;
    let mut errors = 0u64;
    // Connects in bursts small enough for the accept queues, waiting for each burst.
    while all.len() < conns || connected + (errors as usize) < all.len() {
        let now = Instant::now();
        if now >= connect_deadline {
            break;
        }
        if all.len() < conns && all.len() < connected + errors as usize + 256 {
            let sock = TcpStream::connect(addr).unwrap_or_else(|e| die("connect", &e));
            let token = Token(all.len());
            let mut sock = sock;
            poll.registry()
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                .unwrap_or_else(|e| die("register", &e));
            all.push(Conn {
                sock,
                msg: FrameBatch::new(size, 1).unwrap_or_else(|e| args.fail(&e)),
                seq: 0,
                sent_at: now,
                written: 0,
                got: 0,
                reply: vec![0u8; size],
                connected: false,
                dead: false,
            });
            continue;
        }
        let wait = (connect_deadline - now).min(net::TICK);
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != ErrorKind::Interrupted {
                die("poll", &e);
            }
        }
        for ev in &events {
            let c = &mut all[ev.token().0];
            if c.connected || c.dead {
                continue;
            }
            if ev.is_error() || matches!(c.sock.take_error(), Ok(Some(_)) | Err(_)) {
                c.dead = true;
                errors += 1;
            } else if ev.is_writable() && c.sock.peer_addr().is_ok() {
                c.connected = true;
                let _ = c.sock.set_nodelay(true);
                connected += 1;
            }
        }
    }
    let connect_secs = connect_timeout.as_secs_f64()
        - connect_deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();

    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut hist = Histogram::new();
    let mut mismatches = 0u64;
    let mut round_trips = 0u64;
    for c in all.iter_mut().filter(|c| c.connected) {
        c.start();
        if !c.flush() {
            c.dead = true;
            errors += 1;
        }
    }
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some((end - now).min(net::TICK))) {
            if e.kind() != ErrorKind::Interrupted {
                die("poll", &e);
            }
        }
        for ev in &events {
            let c = &mut all[ev.token().0];
            if !c.connected || c.dead {
                continue;
            }
            if ev.is_writable() && c.written < size && !c.flush() {
                c.dead = true;
                errors += 1;
                continue;
            }
            if !ev.is_readable() {
                continue;
            }
            // Edge-triggered: read until the socket is drained.
            loop {
                let got = c.got;
                match c.sock.read(&mut c.reply[got..]) {
                    Ok(0) => {
                        c.dead = true;
                        errors += 1;
                        break;
                    }
                    Ok(n) => {
                        c.got += n;
                        if c.got < size {
                            continue;
                        }
                        let done = Instant::now();
                        round_trips += 1;
                        if c.reply[..] != *c.msg.stamp(c.seq, 1) {
                            mismatches += 1;
                        }
                        if done >= measure_from && done < end {
                            hist.record((done - c.sent_at).as_nanos() as u64);
                        }
                        if done >= end {
                            break;
                        }
                        c.start();
                        if !c.flush() {
                            c.dead = true;
                            errors += 1;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.dead = true;
                        errors += 1;
                        break;
                    }
                }
            }
        }
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let secs = duration.as_secs_f64();
    Report::new("many-pingpong")
        .int("conns", conns as u64)
        .int("connected", connected as u64)
        .num("connect_secs", connect_secs, 3)
        .int("size", size as u64)
        .num("secs", secs, 3)
        .int("msgs", hist.len())
        .num("msgs_per_sec", hist.len() as f64 / secs, 0)
        .int("all_msgs", round_trips)
        .num("p50_us", us(hist.quantile(0.5)), 2)
        .num("p99_us", us(hist.quantile(0.99)), 2)
        .num("p999_us", us(hist.quantile(0.999)), 2)
        .num("max_us", us(hist.max()), 2)
        .num("mean_us", hist.mean() / 1000.0, 2)
        .int("mismatches", mismatches)
        .int("errors", errors)
        .cpu()
        .print();
    let failed = connected < conns || errors > 0 || mismatches > 0 || hist.is_empty();
    std::process::exit(i32::from(failed));
}

/// One echo connection: bytes read and not yet written back.
struct Echo {
    sock: TcpStream,
    buf: Vec<u8>,
    pending: usize,
    written: usize,
}

/// Writes back what is pending; Ok(false) when the socket is full.
fn echo_flush(e: &mut Echo) -> io::Result<bool> {
    while e.written < e.pending {
        match e.sock.write(&e.buf[e.written..e.pending]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => e.written += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    e.pending = 0;
    e.written = 0;
    Ok(true)
}

/// Reads and echoes until the socket is drained or full; Ok(false) once the peer is gone.
fn echo_turn(e: &mut Echo, bytes: &mut u64) -> io::Result<bool> {
    loop {
        if !echo_flush(e)? {
            return Ok(true);
        }
        match e.sock.read(&mut e.buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                e.pending = n;
                *bytes += n as u64;
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

fn echo(args: &Args) {
    let addr = args.loopback("listen");
    let deadline = Instant::now() + args.secs("duration", 60.0);
    let until_ended: Option<u64> = args.opt("conns");
    net::raise_nofile_limit();
    let std_listener = net::listen(addr).unwrap_or_else(|e| die("listen", &e));
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new().unwrap_or_else(|e| die("epoll", &e));
    const LISTENER: Token = Token(usize::MAX);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap_or_else(|e| die("register", &e));
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Echo>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let (mut accepted, mut ended, mut bytes) = (0u64, 0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= deadline || until_ended.is_some_and(|n| ended >= n) {
            break;
        }
        if let Err(e) = poll.poll(
            &mut events,
            Some((deadline - now).min(Duration::from_millis(200))),
        ) {
            if e.kind() != ErrorKind::Interrupted {
                die("poll", &e);
            }
        }
        for ev in &events {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            if poll
                                .registry()
                                .register(
                                    &mut sock,
                                    Token(slot),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .is_err()
                            {
                                free.push(slot);
                                continue;
                            }
                            accepted += 1;
                            conns[slot] = Some(Echo {
                                sock,
                                buf: vec![0u8; 16 * 1024],
                                pending: 0,
                                written: 0,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("many-pingpong: accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let slot = ev.token().0;
            let Some(e) = conns[slot].as_mut() else {
                continue;
            };
            if !matches!(echo_turn(e, &mut bytes), Ok(true)) {
                if let Some(mut gone) = conns[slot].take() {
                    let _ = poll.registry().deregister(&mut gone.sock);
                }
                free.push(slot);
                ended += 1;
            }
        }
    }
    Report::new("many-pingpong-echo")
        .int("accepted", accepted)
        .int("ended", ended)
        .int("bytes", bytes)
        .cpu()
        .print();
}
