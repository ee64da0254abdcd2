//! A simulated backend: no sockets, a scripted kernel, for deterministic
//! tests of the core.
//!
//! Each simulated socket has what its peer sent (bytes, then maybe FIN or
//! RST), and scripts for reads and writes: a step either limits the next
//! call to some bytes (a short read or write), makes it fail with `EAGAIN`,
//! or resets the connection. [`crate::sim::Sim`] runs the driver's one loop
//! turn over this backend, exactly as the engine runs it over epoll, so every
//! path of the core can be driven and checked without timing or sockets.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{
    drive_close, drive_flush, drive_read, drive_shutdown, Backend, ReadBuf, SocketIo, Source,
};
use crate::error::Errno;
use crate::id::SockId;
use crate::psock::{Core, NewSock};

/// One scripted system-call outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The call moves at most this many bytes.
    Max(usize),
    /// The call fails with `EAGAIN`.
    Again,
    /// The call fails with `ECONNRESET`.
    Reset,
}

/// A simulated socket as its peer and the kernel see it.
#[derive(Debug, Default)]
pub struct SimSocket {
    pub(crate) inbound: VecDeque<u8>,
    pub(crate) fin: bool,
    pub(crate) reset: bool,
    pub(crate) reads: VecDeque<Step>,
    pub(crate) writes: VecDeque<Step>,
    /// Bytes the engine wrote, as the peer would read them.
    pub outbound: Vec<u8>,
    /// The engine shut down its write side.
    pub write_shut: bool,
    /// The engine closed the socket.
    pub closed: bool,
}

/// The simulated network.
#[derive(Debug, Default)]
pub struct SimNet {
    pub(crate) socks: HashMap<SockId, SimSocket>,
}

impl SimNet {
    fn sock(&mut self, id: SockId) -> io::Result<&mut SimSocket> {
        self.socks
            .get_mut(&id)
            .filter(|s| !s.closed)
            .ok_or_else(|| io::Error::from(Errno::BadF))
    }
}

fn script(steps: &mut VecDeque<Step>) -> io::Result<usize> {
    match steps.pop_front() {
        None => Ok(usize::MAX),
        Some(Step::Max(n)) => Ok(n),
        Some(Step::Again) => Err(io::ErrorKind::WouldBlock.into()),
        Some(Step::Reset) => Err(io::Error::from(Errno::ConnReset)),
    }
}

impl SocketIo for SimNet {
    fn read(&mut self, id: SockId, buf: &mut BytesMut) -> io::Result<usize> {
        let s = self.sock(id)?;
        if s.reset && s.inbound.is_empty() {
            return Err(io::Error::from(Errno::ConnReset));
        }
        let limit = script(&mut s.reads)?;
        if s.inbound.is_empty() {
            return if s.fin {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let room = buf.capacity() - buf.len();
        let n = limit.min(room).min(s.inbound.len());
        let chunk: Vec<u8> = s.inbound.drain(..n).collect();
        buf.extend_from_slice(&chunk);
        Ok(n)
    }

    fn writev(&mut self, id: SockId, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        let s = self.sock(id)?;
        let mut left = script(&mut s.writes)?;
        let mut n = 0;
        for sl in iov {
            let take = left.min(sl.len());
            s.outbound.extend_from_slice(&sl[..take]);
            n += take;
            left -= take;
            if left == 0 {
                break;
            }
        }
        Ok(n)
    }

    fn shutdown_write(&mut self, id: SockId) -> io::Result<()> {
        self.sock(id)?.write_shut = true;
        Ok(())
    }

    fn close(&mut self, id: SockId) {
        if let Some(s) = self.socks.get_mut(&id) {
            s.closed = true;
        }
    }
}

/// The simulated network as a backend: readable sockets are those whose
/// peer sent something (or ended, or reset); every socket with queued bytes
/// is writable.
pub(crate) struct SimBackend {
    pub(crate) net: SimNet,
    rb: ReadBuf,
    ready: VecDeque<SockId>,
    now: Instant,
}

impl SimBackend {
    /// A network of no sockets, its clock at `now`, reading `read_buffer` bytes at a time.
    pub(crate) fn new(read_buffer: usize, now: Instant) -> SimBackend {
        SimBackend {
            net: SimNet::default(),
            rb: ReadBuf::new(read_buffer),
            ready: VecDeque::new(),
            now,
        }
    }
}

impl Backend for SimBackend {
    fn now(&self) -> Instant {
        self.now
    }

    fn register(
        &mut self,
        core: &mut Core,
        id: SockId,
        _: Source,
        kind: NewSock,
        at: Option<Instant>,
    ) {
        core.handle_new_socket(id, kind, at);
        self.net.socks.entry(id).or_default();
    }

    fn wait(&mut self, core: &mut Core, _timeout: Option<Duration>) -> io::Result<()> {
        let mut ids: Vec<SockId> = self.net.socks.keys().copied().collect();
        ids.sort();
        for id in ids {
            let s = &self.net.socks[&id];
            if s.closed {
                continue;
            }
            if !s.inbound.is_empty() || s.fin || s.reset {
                self.mark_ready(id);
            }
            if core.has_tx(id) {
                drive_flush(core, &mut self.net, id);
            }
        }
        Ok(())
    }

    fn read_ready(&mut self, core: &mut Core, now: Instant) {
        while let Some(id) = self.ready.pop_front() {
            let _ = drive_read(core, &mut self.net, id, &mut self.rb, false, now);
        }
    }

    fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn mark_ready(&mut self, id: SockId) {
        if !self.ready.contains(&id) {
            self.ready.push_back(id);
        }
    }

    fn flush(&mut self, core: &mut Core, id: SockId) {
        drive_flush(core, &mut self.net, id);
    }

    fn shutdown_write(&mut self, core: &mut Core, id: SockId) {
        drive_shutdown(core, &mut self.net, id);
    }

    fn close(&mut self, core: &mut Core, id: SockId) {
        drive_close(core, &mut self.net, id);
    }

    fn take_handoffs(&mut self, _: &mut Vec<super::Handoff>) {}
}
