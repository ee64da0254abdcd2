//! A Redis-like upstream written for the tests: it answers RESP commands
//! in order on each connection, `GET k` with the bulk string `<name>:<k>`
//! and anything else with `+OK`. Keys steer it: `slow*` waits
//! [`RespUpstream::SLOW`] before answering, `tick*` 10 ms, `hang*` is never answered (the
//! connection reads on), `die*` closes the connection at once.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the upstream saw.
#[derive(Default)]
pub struct Seen {
    /// Commands received.
    pub received: AtomicUsize,
    /// Replies written.
    pub answered: AtomicUsize,
    /// The most commands received and not yet answered at once.
    pub max_outstanding: AtomicUsize,
}

/// A listening upstream; its connections are served on their own threads.
pub struct RespUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl RespUpstream {
    /// How long a `slow*` key waits.
    pub const SLOW: Duration = Duration::from_millis(150);

    /// Starts an upstream that names itself `name` in its replies.
    pub fn start(name: &'static str) -> RespUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let s = s.clone();
                thread::spawn(move || serve(name, conn, &s));
            }
        });
        RespUpstream { addr, seen }
    }
}

/// The bulk-string reply the upstream `name` gives to `GET key`.
pub fn get_reply(name: &str, key: &str) -> Vec<u8> {
    let v = format!("{name}:{key}");
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

/// `GET key` as a RESP array.
pub fn get(key: &str) -> Vec<u8> {
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
}

/// Reads one command (an array of bulk strings); `None` at end of stream.
fn read_command(r: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0; len + 2];
        std::io::Read::read_exact(r, &mut buf).ok()?;
        buf.truncate(len);
        args.push(String::from_utf8(buf).ok()?);
    }
    Some(args)
}

fn serve(name: &'static str, conn: TcpStream, seen: &Seen) {
    conn.set_nodelay(true).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some(args) = read_command(&mut r) {
        let received = seen.received.fetch_add(1, Ordering::SeqCst) + 1;
        let outstanding = received - seen.answered.load(Ordering::SeqCst);
        seen.max_outstanding
            .fetch_max(outstanding, Ordering::SeqCst);
        let key = args.get(1).map(String::as_str).unwrap_or("");
        if key.starts_with("die") {
            return;
        }
        if key.starts_with("hang") {
            continue;
        }
        if key.starts_with("slow") {
            thread::sleep(RespUpstream::SLOW);
        }
        if key.starts_with("tick") {
            thread::sleep(Duration::from_millis(10));
        }
        let reply = match args.first().map(String::as_str) {
            Some("GET") => get_reply(name, key),
            _ => b"+OK\r\n".to_vec(),
        };
        seen.answered.fetch_add(1, Ordering::SeqCst);
        if w.write_all(&reply).is_err() {
            return;
        }
    }
}
