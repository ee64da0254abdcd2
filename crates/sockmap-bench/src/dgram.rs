//! Datagrams in batches: `recvmmsg` and `sendmmsg` over a UDP socket's descriptor, into and
//! out of buffers allocated once.
//!
//! Invariants: a [`Batch`] holds `count` buffers of `cap` bytes each, and for each the length
//! of its datagram and the address it came from (or goes to). The kernel's message headers
//! are rebuilt on every call from those vectors, so no pointer into them outlives a call.

use std::io;
use std::os::fd::RawFd;

/// `count` datagram buffers with their lengths and peer addresses.
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    /// A batch of `count` buffers of `cap` bytes (both at least 1).
    pub fn new(count: usize, cap: usize) -> Batch {
        let count = count.max(1);
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Batch {
            bufs: (0..count).map(|_| vec![0u8; cap.max(1)]).collect(),
            lens: vec![0; count],
            addrs: vec![zero_addr; count],
            addr_lens: vec![0; count],
            // SAFETY: as above.
            iovs: vec![unsafe { std::mem::zeroed() }; count],
            // SAFETY: as above.
            hdrs: vec![unsafe { std::mem::zeroed() }; count],
        }
    }

    /// How many datagrams the batch holds at most.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Datagram `i` as received or as filled for sending.
    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// The whole buffer `i`, to fill before [`Batch::send`]; its datagram is `len` bytes.
    pub fn fill(&mut self, i: usize, len: usize) -> &mut [u8] {
        let len = len.min(self.bufs[i].len());
        self.lens[i] = len;
        &mut self.bufs[i][..len]
    }

    /// Points the kernel's headers of the first `n` entries at the buffers (receive: the
    /// whole buffer; send: the datagram's length) and at the address slots.
    fn headers(&mut self, n: usize, receive: bool, with_addrs: bool) {
        for i in 0..n {
            let len = if receive {
                self.bufs[i].len()
            } else {
                self.lens[i]
            };
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: len,
            };
            if receive {
                self.addr_lens[i] =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            if with_addrs {
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = self.addr_lens[i];
            } else {
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
            }
            self.hdrs[i].msg_len = 0;
        }
    }

    /// Receives up to [`Batch::capacity`] datagrams without waiting (`MSG_DONTWAIT`), with
    /// their source addresses; returns how many arrived (0 when none was waiting).
    ///
    /// # Errors
    /// Errors of `recvmmsg` other than "would block" and interruptions.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.capacity();
        self.headers(n, true, true);
        // SAFETY: `hdrs[..n]` point at live buffers, iovecs and address slots of `self`, which
        // outlive the call; the kernel writes at most the lengths given.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = got as usize;
        for i in 0..got {
            self.lens[i] = self.hdrs[i].msg_len as usize;
            self.addr_lens[i] = self.hdrs[i].msg_hdr.msg_namelen;
        }
        Ok(got)
    }

    /// Sends the first `n` datagrams in one `sendmmsg` (more if the kernel takes fewer),
    /// each to the address it was received from when `to_sources`, else on the connected
    /// socket; returns how many went out before the socket was full.
    ///
    /// # Errors
    /// Errors of `sendmmsg` other than "would block", `ENOBUFS` and interruptions.
    pub fn send(&mut self, fd: RawFd, n: usize, to_sources: bool) -> io::Result<usize> {
        let n = n.min(self.capacity());
        self.headers(n, false, to_sources);
        let mut done = 0;
        while done < n {
            // SAFETY: `hdrs[done..n]` point at live buffers, iovecs and addresses of `self`,
            // which outlive the call; the kernel only reads them.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let e = io::Error::last_os_error();
                match (e.kind(), e.raw_os_error()) {
                    (io::ErrorKind::Interrupted, _) => continue,
                    (io::ErrorKind::WouldBlock, _) | (_, Some(libc::ENOBUFS)) => break,
                    _ => return Err(e),
                }
            }
            done += sent as usize;
        }
        Ok(done)
    }
}

/// Asks for `bytes` of receive and send buffer on socket `fd` (the kernel caps them at
/// `net.core.rmem_max` / `wmem_max`).
///
/// # Errors
/// The first failing `setsockopt`.
pub fn set_buffers(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: `v` is a live c_int and the length passed is its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    #[test]
    fn a_batch_echoes_datagrams_back_to_their_sources() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(server.local_addr().unwrap()).unwrap();
        b.connect(server.local_addr().unwrap()).unwrap();
        a.send(b"one").unwrap();
        b.send(b"two!").unwrap();
        a.send(b"three").unwrap();
        let mut batch = Batch::new(8, 64);
        let mut got = 0;
        let until = Instant::now() + Duration::from_secs(2);
        while got < 3 && Instant::now() < until {
            got += batch.recv(server.as_raw_fd()).unwrap();
        }
        assert_eq!(got, 3, "one recvmmsg takes the three queued datagrams");
        assert_eq!(batch.datagram(0), b"one");
        assert_eq!(batch.datagram(1), b"two!");
        assert_eq!(batch.datagram(2), b"three");
        assert_eq!(batch.send(server.as_raw_fd(), 3, true).unwrap(), 3);
        let mut buf = [0u8; 16];
        a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two!");
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 0, "nothing waits");
    }

    #[test]
    fn a_filled_batch_goes_out_on_a_connected_socket() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let mut batch = Batch::new(4, 16);
        batch.fill(0, 2).copy_from_slice(b"hi");
        batch.fill(1, 3).copy_from_slice(b"you");
        assert_eq!(batch.send(client.as_raw_fd(), 2, false).unwrap(), 2);
        let mut buf = [0u8; 16];
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"you");
    }
}
