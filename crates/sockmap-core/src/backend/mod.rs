//! Backends: what carries out the sans-IO [`Core`]'s I/O.
//!
//! A backend owns the sockets' I/O objects and turns what the kernel does
//! into `Core::handle_*` calls, and the core's ops into system calls. The
//! loop around it is written once, in `crate::driver`; every backend
//! provides the same `Backend` operations:
//! - `Backend::register`: take a listener, connected or connecting socket by [`SockId`];
//! - `Backend::wait`: wait at most `timeout` for the kernel, reporting
//!   accepts, connects and writability to the core and remembering the
//!   readable sockets;
//! - `Backend::read_ready`: read the ready sockets into engine-owned
//!   buffers, each within the core's fairness budget;
//! - `Backend::mark_ready`: a socket the core wants read now;
//! - `Backend::flush`, `Backend::shutdown_write`, `Backend::close`: the
//!   core's write-side ops, started (a completion backend) or carried out at
//!   once (a readiness backend), the core told of each outcome.
//!
//! The epoll backend ([`epoll`]) imitates completions on top of edge-triggered
//! readiness, through the per-socket calls of [`SocketIo`] and the shared
//! [`drive_read`]/[`drive_flush`] loops; the simulated backend ([`sim`]) plays
//! the kernel from a script through the same calls. The io_uring backend
//! (`uring`, Linux) submits operations and feeds their completions to the core.

#[cfg(target_os = "linux")]
pub(crate) mod dgram;
pub mod epoll;
pub mod select;
pub mod sim;
#[cfg(target_os = "linux")]
pub(crate) mod splice;
#[cfg(target_os = "linux")]
pub(crate) mod uring;

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::error::Errno;
use crate::id::SockId;
use crate::psock::{Core, NewSock};
use crate::sock::{Addr, Listener, Stream};

/// How long a listener waits before accepting again when the process is out
/// of descriptors (`EMFILE`...): an exhausted table is retried, never spun on.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Counters a backend keeps on the I/O thread, readable from any thread.
#[derive(Debug, Default)]
pub struct BackendCounters {
    waits: AtomicU64,
    starved: AtomicU64,
    stale: AtomicU64,
    spliced: AtomicU64,
    segmented: AtomicU64,
    coalesced: AtomicU64,
}

/// A reading of [`BackendCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Times the I/O thread entered the kernel to wait (`epoll_wait`, or
    /// `io_uring_enter`, which also submits).
    pub waits: u64,
    /// Receives that ended because the provided-buffer ring ran dry
    /// (`ENOBUFS`) and were armed again once buffers came back (io_uring).
    pub starved: u64,
    /// Completions of operations whose socket had closed, ignored (io_uring).
    pub stale: u64,
    /// Read passes that spliced bytes nothing inspects instead of copying them (epoll).
    pub spliced: u64,
    /// Datagrams sent as segments of `UDP_SEGMENT` sends (GSO).
    pub segmented: u64,
    /// Datagrams received coalesced with others by `UDP_GRO`.
    pub coalesced: u64,
}

impl BackendCounters {
    pub(crate) fn waited(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // counted by io_uring only
    pub(crate) fn starved(&self) {
        self.starved.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // counted by io_uring only
    pub(crate) fn stale(&self) {
        self.stale.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn spliced(&self) {
        self.spliced.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn segmented(&self, n: u64) {
        self.segmented.fetch_add(n, Ordering::Relaxed);
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn coalesced(&self, n: u64) {
        self.coalesced.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn read(&self) -> BackendStats {
        BackendStats {
            waits: self.waits.load(Ordering::Relaxed),
            starved: self.starved.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            spliced: self.spliced.load(Ordering::Relaxed),
            segmented: self.segmented.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
        }
    }
}

/// Something that wakes the I/O thread from another thread.
pub(crate) trait Wake: Send + Sync {
    /// Makes the backend's wait return soon.
    fn wake(&self);
}

impl<W: Wake + ?Sized> Wake for std::sync::Arc<W> {
    fn wake(&self) {
        (**self).wake();
    }
}

impl Wake for mio::Waker {
    fn wake(&self) {
        let _ = mio::Waker::wake(self);
    }
}

/// An I/O object handed to the I/O thread by an application thread.
#[derive(Debug)]
pub(crate) enum Source {
    /// A listening socket (non-blocking), TCP or Unix.
    Listener(Listener),
    /// A connected or connecting stream (non-blocking), TCP or Unix.
    Stream(Stream),
    /// A datagram socket (non-blocking), UDP or Unix, with its role.
    #[cfg(target_os = "linux")]
    Dgram(dgram::DgramIo),
}

/// A connection a listener of this shard accepted for another shard: the
/// driver hands its I/O object over, and that shard reports the accept.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) shard: usize,
    pub(crate) id: SockId,
    pub(crate) src: Source,
    pub(crate) listener: SockId,
    pub(crate) peer: Addr,
}

/// The per-socket system calls.
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

/// What the driver needs from a backend. See the module documentation.
pub(crate) trait Backend {
    /// The time now, as this backend's clock reads it.
    fn now(&self) -> Instant;

    /// Takes over a socket the registry allocated.
    fn register(
        &mut self,
        core: &mut Core,
        id: SockId,
        src: Source,
        kind: NewSock,
        deadline: Option<Instant>,
    );

    /// Waits at most `timeout` (`None`: until something happens) and reports
    /// what the kernel did.
    ///
    /// # Errors
    /// When waiting itself fails.
    fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<()>;

    /// Reads the sockets found ready, each within the core's budget.
    fn read_ready(&mut self, core: &mut Core, now: Instant);

    /// Whether sockets are still ready (a budget ran out, or the core asked for a read).
    fn has_ready(&self) -> bool;

    /// The core wants `id` read now.
    fn mark_ready(&mut self, id: SockId);

    /// Writes (or starts writing) the socket's queued bytes; the core hears
    /// of each write through `Core::handle_sent`.
    fn flush(&mut self, core: &mut Core, id: SockId);

    /// Shuts the socket's write side down (sends FIN), then tells the core.
    fn shutdown_write(&mut self, core: &mut Core, id: SockId);

    /// Closes the socket's I/O object, then tells the core.
    fn close(&mut self, core: &mut Core, id: SockId);

    /// Moves out the connections accepted for other shards.
    fn take_handoffs(&mut self, out: &mut Vec<Handoff>);
}

/// The buffer reads land in: one per I/O thread, split into refcounted chunks,
/// so an idle socket holds no read buffer.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    buf: BytesMut,
    size: usize,
}

impl ReadBuf {
    /// A read buffer that allocates `size` bytes at a time.
    pub(crate) fn new(size: usize) -> ReadBuf {
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
pub(crate) enum ReadEnd {
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
/// of stream is already pending. Returns how the pass ended and its largest
/// single read (which tells a backend whether the socket's traffic is bulk).
pub(crate) fn drive_read<I: SocketIo + ?Sized>(
    core: &mut Core,
    io: &mut I,
    id: SockId,
    rb: &mut ReadBuf,
    short_is_drained: bool,
    now: Instant,
) -> (ReadEnd, usize) {
    let budget = core.config().read_budget;
    let (mut total, mut largest) = (0, 0);
    loop {
        if !core.wants_read(id) {
            return (ReadEnd::Stopped, largest);
        }
        if total >= budget {
            return (ReadEnd::Budget, largest);
        }
        let buf = rb.prepare();
        let room = buf.capacity() - buf.len();
        match io.read(id, buf) {
            Ok(0) => {
                core.handle_eof(id);
                return (ReadEnd::Stopped, largest);
            }
            Ok(n) => {
                total += n;
                largest = largest.max(n);
                let chunk = buf.split_to(n).freeze();
                core.handle_received(id, chunk, now);
                if short_is_drained && n < room {
                    return (ReadEnd::Drained, largest);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (ReadEnd::Drained, largest),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                core.handle_error(id, Errno::from_io(&e));
                return (ReadEnd::Stopped, largest);
            }
        }
    }
}

/// Entries of the iovec array one `writev` uses.
const IOV_BATCH: usize = 64;

/// Writes a socket's send ring until it is empty or the socket is full.
/// Returns true when bytes remain (wait for writability).
pub(crate) fn drive_flush<I: SocketIo + ?Sized>(core: &mut Core, io: &mut I, id: SockId) -> bool {
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

/// Shuts down a socket's write side through its per-socket calls and tells the core.
pub(crate) fn drive_shutdown<I: SocketIo + ?Sized>(core: &mut Core, io: &mut I, id: SockId) {
    match io.shutdown_write(id) {
        Ok(()) => core.handle_write_shut(id),
        Err(e) => core.handle_error(id, Errno::from_io(&e)),
    }
}

/// Closes a socket through its per-socket calls and tells the core; the
/// socket's farewell ([`Core::take_farewell`]) is written first, best effort.
pub(crate) fn drive_close<I: SocketIo + ?Sized>(core: &mut Core, io: &mut I, id: SockId) {
    if let Some(b) = core.take_farewell(id) {
        let _ = io.writev(id, &[IoSlice::new(&b)]);
    }
    io.close(id);
    core.handle_closed(id);
}
