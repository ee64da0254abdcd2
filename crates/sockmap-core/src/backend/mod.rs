//! Backends: what carries out the sans-IO [`Core`]'s I/O.
//!
//! A backend owns the sockets' I/O objects and turns what the kernel does
//! into `Core::handle_*` calls, and the core's ops into system calls. The
//! loop around it is written once, in [`crate::driver`]; every backend
//! provides the same [`Backend`] operations:
//! - [`Backend::register`]: take a listener, connected or connecting socket by [`SockId`];
//! - [`Backend::wait`]: wait at most `timeout` for the kernel, reporting
//!   accepts, connects and writability to the core and remembering the
//!   readable sockets;
//! - [`Backend::read_ready`]: read the ready sockets into engine-owned
//!   buffers, each within the core's fairness budget;
//! - [`Backend::mark_ready`]: a socket the core wants read now;
//! - [`Backend::io`]: the per-socket calls ([`SocketIo`]: read, writev,
//!   shutdown, close) the driver carries the core's ops out with.
//!
//! The epoll backend ([`epoll`]) imitates completions on top of edge-triggered
//! readiness; the simulated backend ([`sim`]) plays the kernel from a
//! script. A completion-based backend (io_uring) fills the same seam.

pub mod epoll;
pub mod sim;

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::driver::Source;
use crate::id::SockId;
use crate::psock::{Core, NewSock};

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
    /// The per-socket calls.
    type Io: SocketIo;

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

    /// The per-socket calls.
    fn io(&mut self) -> &mut Self::Io;
}
