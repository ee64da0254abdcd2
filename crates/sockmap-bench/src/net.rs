//! Bounded blocking socket helpers: every call returns by a deadline. Streams are
//! loopback TCP or Unix-domain stream sockets ([`Endpoint`]); the framed programs take
//! either, the others TCP only.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long a blocking read or write may wait before the caller looks at its deadline again.
pub const TICK: Duration = Duration::from_millis(50);

/// Accept backlog of the listeners (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Where a program listens or connects: a TCP address, or a Unix stream socket's path
/// (written `unix:PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain stream socket's filesystem path.
    Unix(PathBuf),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Endpoint, String> {
        match s.strip_prefix("unix:") {
            Some("") => Err("a Unix socket path is empty".into()),
            Some(path) => Ok(Endpoint::Unix(PathBuf::from(path))),
            None => s.parse().map(Endpoint::Tcp).map_err(|e| format!("{e}")),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connected stream of either [`Endpoint`] kind.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream connection.
    Unix(UnixStream),
}

impl Stream {
    /// Shuts down the read side, the write side or both.
    ///
    /// # Errors
    /// Returns the `shutdown` error.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Makes the stream blocking with [`TICK`] read and write timeouts (and `TCP_NODELAY` for TCP).
    fn prepare(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => prepare(s),
            Stream::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TICK))?;
                s.set_write_timeout(Some(TICK))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A listener of either [`Endpoint`] kind.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix-domain stream listener; its path is removed when it is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Accepts one connection, or returns `None` once `deadline` has passed.
    ///
    /// # Errors
    /// As [`accept_until`].
    pub fn accept_until(&self, deadline: Instant) -> io::Result<Option<Stream>> {
        let s = match self {
            Listener::Tcp(l) => accept_loop(l.as_raw_fd(), deadline, || {
                l.accept().map(|a| Stream::Tcp(a.0))
            }),
            Listener::Unix(l, _) => accept_loop(l.as_raw_fd(), deadline, || {
                l.accept().map(|a| Stream::Unix(a.0))
            }),
        }?;
        s.as_ref().map(Stream::prepare).transpose()?;
        Ok(s)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a listener with a deep accept backlog and announces it with a `ready` line on stdout.
///
/// # Errors
/// Returns the bind error.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    deepen_backlog(listener.as_raw_fd())?;
    listener.set_nonblocking(true)?;
    announce()?;
    Ok(listener)
}

/// [`listen`] on either kind of [`Endpoint`]. A Unix socket's path must not exist yet.
///
/// # Errors
/// Returns the bind error (`EADDRINUSE` for an existing path).
pub fn listen_at(at: &Endpoint) -> io::Result<Listener> {
    match at {
        Endpoint::Tcp(addr) => listen(*addr).map(Listener::Tcp),
        Endpoint::Unix(path) => {
            let listener = UnixListener::bind(path)?;
            let listener = Listener::Unix(listener, path.clone());
            if let Listener::Unix(l, _) = &listener {
                deepen_backlog(l.as_raw_fd())?;
                l.set_nonblocking(true)?;
            }
            announce()?;
            Ok(listener)
        }
    }
}

/// Calls `listen()` again on a bound, listening socket to deepen its accept queue to [`BACKLOG`].
fn deepen_backlog(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` is a bound, listening socket its caller owns; calling listen() again only
    // resizes its accept queue.
    if unsafe { libc::listen(fd, BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Prints the `ready` line a harness waits for.
fn announce() -> io::Result<()> {
    println!("ready");
    io::stdout().flush()
}

/// [`connect`] to either kind of [`Endpoint`] (a Unix connect does not wait: `timeout` is for TCP).
///
/// # Errors
/// Returns the connect error.
pub fn connect_to(at: &Endpoint, timeout: Duration) -> io::Result<Stream> {
    let s = match at {
        Endpoint::Tcp(addr) => Stream::Tcp(TcpStream::connect_timeout(addr, timeout)?),
        Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
    };
    s.prepare()?;
    Ok(s)
}

/// Connects with a timeout and prepares the stream for bounded blocking use
/// (`TCP_NODELAY`, read and write timeouts of [`TICK`]).
///
/// # Errors
/// Returns the connect error.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    prepare(&s)?;
    Ok(s)
}

/// Sets `TCP_NODELAY` and [`TICK`] read/write timeouts on a blocking stream.
///
/// # Errors
/// Returns the first failing `setsockopt`.
pub fn prepare(s: &TcpStream) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(TICK))?;
    s.set_write_timeout(Some(TICK))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
fn wait_readable(fd: i32, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(1000) as i32;
    // SAFETY: `pfd` is a valid pollfd that outlives the call, and we pass a count of 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// Accepts one connection, or returns `None` once `deadline` has passed.
///
/// # Errors
/// Returns accept errors other than "would block" and interruptions.
pub fn accept_until(listener: &TcpListener, deadline: Instant) -> io::Result<Option<TcpStream>> {
    let s = accept_loop(listener.as_raw_fd(), deadline, || {
        listener.accept().map(|a| a.0)
    })?;
    s.as_ref().map(prepare).transpose()?;
    Ok(s)
}

/// Calls `accept` on the non-blocking listener `fd` until it returns a connection or
/// `deadline` passes, waiting for readability in between.
fn accept_loop<T>(
    fd: RawFd,
    deadline: Instant,
    mut accept: impl FnMut() -> io::Result<T>,
) -> io::Result<Option<T>> {
    loop {
        match accept() {
            Ok(s) => return Ok(Some(s)),
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        wait_readable(fd, (deadline - now).min(TICK));
    }
}

/// Writes `data`, retrying short writes and timeouts until all is written or `deadline`
/// passes; returns the bytes written.
///
/// # Errors
/// Returns socket errors (a reset peer, say).
pub fn write_until<S: Write>(s: &mut S, data: &[u8], deadline: Instant) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match s.write(&data[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Outcome of a bounded read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes (at least one) arrived.
    Data(usize),
    /// The peer closed its write side.
    Eof,
    /// Nothing arrived within one tick.
    Idle,
}

/// Reads once into `buf`, waiting at most one [`TICK`].
///
/// # Errors
/// Returns socket errors (a reset peer, say).
pub fn read_tick<S: Read>(s: &mut S, buf: &mut [u8]) -> io::Result<ReadOutcome> {
    match s.read(buf) {
        Ok(0) => Ok(ReadOutcome::Eof),
        Ok(n) => Ok(ReadOutcome::Data(n)),
        Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => Ok(ReadOutcome::Idle),
        Err(e) => Err(e),
    }
}

/// Fills `buf` completely unless EOF or `deadline` comes first; returns the bytes read.
///
/// # Errors
/// Returns socket errors (a reset peer, say).
pub fn read_exact_until<S: Read>(
    s: &mut S,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_tick(s, &mut buf[done..])? {
            ReadOutcome::Data(n) => done += n,
            ReadOutcome::Eof => break,
            ReadOutcome::Idle if Instant::now() >= deadline => break,
            ReadOutcome::Idle => {}
        }
    }
    Ok(done)
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the kernel fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit read back from the kernel; the soft limit equals the hard one.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    // SAFETY: as above.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_accept_read_and_write_over_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let soon = Instant::now() + Duration::from_millis(120);
        assert!(accept_until(&listener, soon).unwrap().is_none());

        let mut client = connect(addr, Duration::from_secs(1)).unwrap();
        let later = Instant::now() + Duration::from_secs(2);
        let mut server = accept_until(&listener, later).unwrap().unwrap();
        assert_eq!(write_until(&mut client, b"hello", later).unwrap(), 5);
        let mut buf = [0u8; 5];
        assert_eq!(read_exact_until(&mut server, &mut buf, later).unwrap(), 5);
        assert_eq!(&buf, b"hello");
        assert_eq!(read_tick(&mut server, &mut buf).unwrap(), ReadOutcome::Idle);
        drop(client);
        assert_eq!(read_tick(&mut server, &mut buf).unwrap(), ReadOutcome::Eof);
    }

    #[test]
    fn endpoints_parse_and_unix_streams_carry_bytes() {
        assert_eq!(
            "127.0.0.1:9".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("127.0.0.1:9".parse().unwrap())
        );
        assert!("unix:".parse::<Endpoint>().is_err());
        assert!("nowhere".parse::<Endpoint>().is_err());
        let path = std::env::temp_dir().join(format!("sockmap-bench-net-{}", std::process::id()));
        let at: Endpoint = format!("unix:{}", path.display()).parse().unwrap();
        assert_eq!(at, Endpoint::Unix(path.clone()));
        let listener = listen_at(&at).unwrap();
        let later = Instant::now() + Duration::from_secs(2);
        let mut client = connect_to(&at, Duration::from_secs(1)).unwrap();
        let mut server = listener.accept_until(later).unwrap().unwrap();
        assert_eq!(write_until(&mut client, b"hello", later).unwrap(), 5);
        let mut buf = [0u8; 5];
        assert_eq!(read_exact_until(&mut server, &mut buf, later).unwrap(), 5);
        assert_eq!(&buf, b"hello");
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_tick(&mut server, &mut buf).unwrap(), ReadOutcome::Eof);
        drop(listener);
        assert!(!path.exists(), "the listener removes its path");
    }
}
