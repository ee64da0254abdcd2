//! External programs the tests talk to (Debian's `redis-server`...): found on
//! `PATH` or skipped with a message, started on a free loopback port, and
//! killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of the executable `name` on `PATH` (or in `/usr/sbin`), if any.
pub fn program_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `program_path(name)`, or `None` after printing that the test is skipped
/// (CI installs the program, so the test runs there).
pub fn required(name: &str, test: &str) -> Option<PathBuf> {
    let p = program_path(name);
    if p.is_none() {
        eprintln!("skipping {test}: {name} is not installed");
    }
    p
}

/// A loopback port free now (the kernel's pick for port 0, released), for a
/// program that must be told its port.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Connects to `port` on loopback until it accepts, within `limit`.
pub fn connect_until(port: u16, limit: Duration) -> TcpStream {
    let end = Instant::now() + limit;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            // Polled until the deadline: the program gives no other sign it is ready.
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("port {port} not accepting within {limit:?}: {e}"),
        }
    }
}

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct RedisServer {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts `exe` and waits until it accepts connections.
    pub fn start(exe: &PathBuf) -> RedisServer {
        let port = free_port();
        let child = Command::new(exe)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer { child, port };
        drop(connect_until(port, Duration::from_secs(10)));
        server
    }

    /// A new connection to it.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
