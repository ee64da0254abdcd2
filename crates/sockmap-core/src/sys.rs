//! The few socket calls that differ between operating systems.
//!
//! Everything else goes through `std::net` and mio, which drive epoll on
//! Linux, kqueue on macOS and the BSDs, and IOCP (AFD polling) on Windows.
//! On Unix these calls are plain `libc` system calls; elsewhere they take
//! the portable path through the standard library and mio.

use std::io;
#[cfg(unix)]
use std::os::fd::AsRawFd;

use bytes::BytesMut;

/// Sets the accept backlog of a bound, listening socket.
///
/// # Errors
/// The `listen` error.
#[cfg(unix)]
pub(crate) fn set_backlog<L: AsRawFd>(l: &L, backlog: i32) -> io::Result<()> {
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
pub(crate) fn set_backlog<L>(_l: &L, _backlog: i32) -> io::Result<()> {
    Ok(())
}

/// Reads from `s` into the spare capacity of `buf`, extending its length;
/// `Ok(0)` is end of stream.
///
/// # Errors
/// `WouldBlock` when nothing is available, or the read error.
#[cfg(unix)]
pub(crate) fn recv_into<S: AsRawFd>(s: &S, buf: &mut BytesMut) -> io::Result<usize> {
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
pub(crate) fn recv_into<S: std::io::Read>(s: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    let start = buf.len();
    let room = buf.capacity() - start;
    buf.resize(start + room, 0);
    let r = s.read(&mut buf[start..]);
    buf.truncate(start + *r.as_ref().unwrap_or(&0));
    r
}

/// The domain (`AF_INET`, `AF_INET6`, `AF_UNIX`...) and type (`SOCK_STREAM`...) of a socket descriptor.
///
/// # Errors
/// `ENOTSOCK` when the descriptor is not a socket, or the `getsockname`/`getsockopt` error.
#[cfg(unix)]
pub(crate) fn domain_and_type<S: AsRawFd>(s: &S) -> io::Result<(i32, i32)> {
    let fd = s.as_raw_fd();
    // SAFETY: an all-zero `sockaddr_storage` is a valid value of that plain C struct.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `getsockname` writes at most `len` bytes into `addr`, a struct of that size.
    if unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `getsockopt` writes at most `len` bytes into `ty`, an int of that size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((i32::from(addr.ss_family), ty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn recv_into_appends_to_the_buffer_and_reports_end_of_stream() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        set_backlog(&l, 16).unwrap();
        let mut tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (rx, _) = l.accept().unwrap();
        tx.write_all(b"hello").unwrap();
        drop(tx);
        let mut rx = mio::net::TcpStream::from_std(rx);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b">");
        let mut total = 0;
        loop {
            #[allow(clippy::unnecessary_mut_passed)] // the read path off Unix takes `&mut`
            let r = recv_into(&mut rx, &mut buf);
            match r {
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
