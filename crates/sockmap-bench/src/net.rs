//! Bounded blocking socket helpers: every call returns by a deadline.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long a blocking read or write may wait before the caller looks at its deadline again.
pub const TICK: Duration = Duration::from_millis(50);

/// Accept backlog of the listeners (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Binds a listener with a deep accept backlog and announces it with a `ready` line on stdout.
///
/// # Errors
/// Returns the bind error.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    // SAFETY: the fd is a bound, listening TCP socket owned by `listener`; calling listen()
    // again only resizes its accept queue.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    println!("ready");
    io::stdout().flush()?;
    Ok(listener)
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
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                prepare(&s)?;
                return Ok(Some(s));
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        wait_readable(listener.as_raw_fd(), (deadline - now).min(TICK));
    }
}

/// Writes `data`, retrying short writes and timeouts until all is written or `deadline`
/// passes; returns the bytes written.
///
/// # Errors
/// Returns socket errors (a reset peer, say).
pub fn write_until(s: &mut TcpStream, data: &[u8], deadline: Instant) -> io::Result<usize> {
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
pub fn read_tick(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<ReadOutcome> {
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
pub fn read_exact_until(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
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
}
