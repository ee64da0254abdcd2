//! Backends: what drives the sans-IO [`Core`](crate::core::Core).
//!
//! A backend owns the sockets' I/O objects and turns what the kernel does
//! into `Core::handle_*` calls, and the core's [`Op`]s into system calls.
//! Every backend provides:
//! - registration of listeners, connected and connecting sockets by [`SockId`];
//! - reads into engine-owned buffers, reported with `handle_received` /
//!   `handle_eof` / `handle_error`, respecting `Core::wants_read` and a
//!   per-socket fairness budget per turn;
//! - writes of the send ring's iovecs, reported with `handle_sent`;
//! - write shutdown and close, reported with `handle_write_shut` / `handle_closed`;
//! - a wake-up from other threads, and a wait bounded by `Core::poll_timeout`.
//!
//! The epoll backend ([`epoll`]) imitates completions on top of readiness: on
//! readiness it reads until `EAGAIN` or the budget and writes until the ring
//! is empty or `EAGAIN`, through the [`SocketIo`] operations shared with the
//! simulated backend ([`sim`]). A completion-based backend (io_uring) feeds the
//! same `handle_*` calls from its completion queue instead.

pub mod epoll;
pub mod sim;

use std::io::{self, IoSlice};
use std::time::Instant;

use bytes::BytesMut;

use crate::core::{Core, Op};
use crate::error::Errno;
use crate::id::SockId;

/// The per-socket system calls a readiness backend makes.
pub trait SocketIo {
    /// Reads into the spare capacity of `buf`, extending its length; `Ok(0)` is end of stream.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is available; any other error closes the socket.
    fn read(&mut self, id: SockId, buf: &mut BytesMut) -> io::Result<usize>;
    /// Writes the slices in order, returning how many bytes were taken.
    ///
    /// # Errors
    /// `WouldBlock` when the socket buffer is full; any other error closes the socket.
    fn writev(&mut self, id: SockId, iov: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Shuts down the write side (sends FIN).
    ///
    /// # Errors
    /// When the socket is already gone.
    fn shutdown_write(&mut self, id: SockId) -> io::Result<()>;
    /// Closes and forgets the socket.
    fn close(&mut self, id: SockId);
}

/// The buffer reads land in: one per I/O thread, split into refcounted chunks,
/// so an idle socket holds no read buffer.
#[derive(Debug)]
pub struct ReadBuf {
    buf: BytesMut,
    size: usize,
}

impl ReadBuf {
    /// A read buffer that allocates `size` bytes at a time.
    pub fn new(size: usize) -> ReadBuf {
        ReadBuf {
            buf: BytesMut::with_capacity(size),
            size,
        }
    }

    /// Makes room for one read.
    fn prepare(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < self.size / 4 {
            self.buf = BytesMut::with_capacity(self.size);
        }
        &mut self.buf
    }
}

/// How a read pass over one socket ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The kernel has nothing more (EAGAIN, or a short read).
    Drained,
    /// The budget ran out with data possibly left: read again next turn.
    Budget,
    /// The core stopped wanting reads (paused, backpressure, closed).
    Stopped,
}

/// Reads one socket until it is drained, the budget is spent or the core stops wanting data.
///
/// With `short_is_drained`, a read that returns less than asked for ends the
/// pass without the extra `EAGAIN` read; a backend passes it only when the
/// kernel reports every later arrival (edge-triggered readiness) and no end
/// of stream is already pending.
pub fn drive_read<I: SocketIo>(
    core: &mut Core,
    io: &mut I,
    id: SockId,
    rb: &mut ReadBuf,
    budget: usize,
    short_is_drained: bool,
    now: Instant,
) -> ReadEnd {
    let mut total = 0;
    loop {
        if !core.wants_read(id) {
            return ReadEnd::Stopped;
        }
        if total >= budget {
            return ReadEnd::Budget;
        }
        let buf = rb.prepare();
        let room = buf.capacity() - buf.len();
        match io.read(id, buf) {
            Ok(0) => {
                core.handle_eof(id);
                return ReadEnd::Stopped;
            }
            Ok(n) => {
                total += n;
                let chunk = buf.split_to(n).freeze();
                core.handle_received(id, chunk, now);
                if short_is_drained && n < room {
                    return ReadEnd::Drained;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                core.handle_error(id, Errno::from_io(&e));
                return ReadEnd::Stopped;
            }
        }
    }
}

/// Entries of the iovec array one `writev` uses.
const IOV_BATCH: usize = 64;

/// Writes a socket's send ring until it is empty or the socket is full.
/// Returns true when bytes remain (wait for writability).
pub fn drive_flush<I: SocketIo>(core: &mut Core, io: &mut I, id: SockId) -> bool {
    loop {
        let result = {
            let mut iov = [IoSlice::new(&[]); IOV_BATCH];
            let n = core.fill_iovec(id, &mut iov);
            if n == 0 {
                return false;
            }
            let want: usize = iov[..n].iter().map(|s| s.len()).sum();
            io.writev(id, &iov[..n]).map(|w| (w, want))
        };
        match result {
            Ok((w, want)) => {
                core.handle_sent(id, w);
                if w < want {
                    return core.has_tx(id);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                core.handle_error(id, Errno::from_io(&e));
                return false;
            }
        }
    }
}

/// Carries out the core's ops; `Read` ops go to `on_read` (the backend's ready list).
pub fn drive_ops<I: SocketIo>(core: &mut Core, io: &mut I, mut on_read: impl FnMut(SockId)) {
    while let Some(op) = core.poll_op() {
        match op {
            Op::Read(id) => on_read(id),
            Op::Flush(id) => {
                drive_flush(core, io, id);
            }
            Op::ShutdownWrite(id) => match io.shutdown_write(id) {
                Ok(()) => core.handle_write_shut(id),
                Err(e) => core.handle_error(id, Errno::from_io(&e)),
            },
            Op::Close(id) => {
                io.close(id);
                core.handle_closed(id);
            }
        }
    }
}
