//! The few socket calls that differ between operating systems.
//!
//! Everything else goes through `std::net` and mio, which drive epoll on
//! Linux, kqueue on macOS and the BSDs, and IOCP (AFD polling) on Windows.
//! On Unix these calls are plain `libc` system calls; elsewhere they take
//! the portable path through the standard library and mio.

use std::io;
use std::net::TcpListener;

use bytes::BytesMut;
use mio::net::TcpStream;

/// Sets the accept backlog of a bound, listening socket.
///
/// # Errors
/// The `listen` error.
#[cfg(unix)]
pub(crate) fn set_backlog(l: &TcpListener, backlog: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `listen` on a valid, owned, bound socket descriptor; it only
    // adjusts the accept backlog of a socket that is already listening.
    if unsafe { libc::listen(l.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the accept backlog of a bound, listening socket.
///
/// Winsock keeps the backlog of the first `listen` call (the standard
/// library's, `SOMAXCONN`-sized), so there is nothing to change.
///
/// # Errors
/// None.
#[cfg(not(unix))]
pub(crate) fn set_backlog(_l: &TcpListener, _backlog: i32) -> io::Result<()> {
    Ok(())
}

/// Reads from `s` into the spare capacity of `buf`, extending its length;
/// `Ok(0)` is end of stream.
///
/// # Errors
/// `WouldBlock` when nothing is available, or the read error.
#[cfg(unix)]
pub(crate) fn recv_into(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let spare = buf.spare_capacity_mut();
    // SAFETY: `recv` writes at most `spare.len()` bytes into the buffer's
    // spare capacity, which is valid for writes of that length.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Reads from `s` into the spare capacity of `buf`, extending its length;
/// `Ok(0)` is end of stream.
///
/// The read goes through mio's stream, which re-arms its readiness emulation
/// when the read would block (a raw `recv` would leave it disarmed).
///
/// # Errors
/// `WouldBlock` when nothing is available, or the read error.
#[cfg(not(unix))]
pub(crate) fn recv_into(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    use std::io::Read;
    let start = buf.len();
    let room = buf.capacity() - start;
    buf.resize(start + room, 0);
    let r = s.read(&mut buf[start..]);
    buf.truncate(start + *r.as_ref().unwrap_or(&0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn recv_into_appends_to_the_buffer_and_reports_end_of_stream() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        set_backlog(&l, 16).unwrap();
        let mut tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (rx, _) = l.accept().unwrap();
        tx.write_all(b"hello").unwrap();
        drop(tx);
        let mut rx = TcpStream::from_std(rx);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b">");
        let mut total = 0;
        loop {
            match recv_into(&mut rx, &mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(total, 5);
        assert_eq!(&buf[..], b">hello");
    }
}
