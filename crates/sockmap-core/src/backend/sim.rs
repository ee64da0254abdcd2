//! A simulated backend: no sockets, a scripted kernel, for deterministic
//! tests of the core.
//!
//! Each simulated socket has what its peer sent (bytes, then maybe FIN or
//! RST), and scripts for reads and writes: a step either limits the next
//! call to some bytes (a short read or write), makes it fail with `EAGAIN`,
//! or resets the connection. [`Sim::step`] runs one loop turn exactly as the
//! epoll backend does (commands, reads, ops, timers, events), so every path
//! of the core can be driven and checked without timing.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::{drive_flush, drive_ops, drive_read, ReadBuf, SocketIo};
use crate::config::EngineConfig;
use crate::core::{Core, NewSock};
use crate::engine::{Command, Doorbell, EngineHandle, Wake};
use crate::event::Event;
use crate::external::{ExternalVerdicts, Replier};
use crate::id::SockId;
use crate::registry::SockState;

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
    inbound: VecDeque<u8>,
    fin: bool,
    reset: bool,
    reads: VecDeque<Step>,
    writes: VecDeque<Step>,
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
    socks: HashMap<SockId, SimSocket>,
}

impl SimNet {
    fn sock(&mut self, id: SockId) -> io::Result<&mut SimSocket> {
        self.socks
            .get_mut(&id)
            .filter(|s| !s.closed)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }
}

fn script(steps: &mut VecDeque<Step>) -> io::Result<usize> {
    match steps.pop_front() {
        None => Ok(usize::MAX),
        Some(Step::Max(n)) => Ok(n),
        Some(Step::Again) => Err(io::ErrorKind::WouldBlock.into()),
        Some(Step::Reset) => Err(io::Error::from_raw_os_error(libc::ECONNRESET)),
    }
}

impl SocketIo for SimNet {
    fn read(&mut self, id: SockId, buf: &mut BytesMut) -> io::Result<usize> {
        let s = self.sock(id)?;
        if s.reset && s.inbound.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ECONNRESET));
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

struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// A core driven by the simulated network, one turn at a time.
pub struct Sim {
    core: Core,
    /// The simulated sockets.
    pub net: SimNet,
    handle: EngineHandle,
    replier: Replier,
    rx: Receiver<Command>,
    rb: ReadBuf,
    events: Vec<Event>,
    now: Instant,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A simulation with `cfg`.
    pub fn new(cfg: EngineConfig) -> Sim {
        let (tx, rx) = channel();
        let bell = Arc::new(Doorbell::new(Box::new(NoWake)));
        let shared = Arc::default();
        let rb = ReadBuf::new(cfg.read_buffer);
        let replier = Replier {
            tx: tx.clone(),
            bell: Arc::clone(&bell),
        };
        let handle = EngineHandle::detached(Arc::clone(&shared), tx, bell);
        Sim {
            core: Core::new(shared, cfg),
            net: SimNet::default(),
            handle,
            replier,
            rx,
            rb,
            events: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Installs external verdicts and parsers: batches go to `sink` when the
    /// core hands them off; their answers run at the next [`Sim::step`].
    pub fn set_external(&mut self, sink: Box<dyn ExternalVerdicts>) {
        self.core.set_external(sink, self.replier.clone());
    }

    /// The handle: maps and socket commands (commands run at the next [`Sim::step`]).
    /// Its `listen`/`connect`/`adopt` create real sockets and are not for the simulation.
    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    /// A connected simulated socket (paused, like every new socket).
    pub fn add_socket(&mut self) -> SockId {
        let id = self.handle.shared().lock().alloc(SockState::Established);
        self.core.handle_new_socket(id, NewSock::Established, None);
        self.net.socks.insert(id, SimSocket::default());
        id
    }

    /// The simulated socket.
    ///
    /// # Panics
    /// If `id` was never created by [`Sim::add_socket`].
    pub fn sock(&mut self, id: SockId) -> &mut SimSocket {
        self.net.socks.get_mut(&id).expect("a simulated socket")
    }

    /// The peer sends bytes.
    pub fn peer_send(&mut self, id: SockId, data: &[u8]) {
        self.sock(id).inbound.extend(data);
    }

    /// The peer shuts down its write side.
    pub fn peer_fin(&mut self, id: SockId) {
        self.sock(id).fin = true;
    }

    /// The peer resets the connection (after the bytes already sent are read).
    pub fn peer_reset(&mut self, id: SockId) {
        self.sock(id).reset = true;
    }

    /// Scripts the next reads of a socket.
    pub fn script_reads(&mut self, id: SockId, steps: &[Step]) {
        self.sock(id).reads.extend(steps);
    }

    /// Scripts the next writes of a socket.
    pub fn script_writes(&mut self, id: SockId, steps: &[Step]) {
        self.sock(id).writes.extend(steps);
    }

    /// Takes the bytes the engine wrote to a socket so far.
    pub fn take_output(&mut self, id: SockId) -> Vec<u8> {
        std::mem::take(&mut self.sock(id).outbound)
    }

    /// Takes the events produced so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// One loop turn: commands, reads of every readable socket, ops, writes
    /// of every socket with queued bytes, timers, batch hand-off, events.
    pub fn step(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            cmd.apply(&mut self.core);
        }
        let budget = self.core.config().read_budget;
        let ids: Vec<SockId> = self.net.socks.keys().copied().collect();
        let mut ids = ids;
        ids.sort();
        for &id in &ids {
            let s = &self.net.socks[&id];
            if !s.closed && (!s.inbound.is_empty() || s.fin || s.reset) {
                drive_read(
                    &mut self.core,
                    &mut self.net,
                    id,
                    &mut self.rb,
                    budget,
                    false,
                    self.now,
                );
            }
        }
        self.drive();
        for &id in &ids {
            if self.core.has_tx(id) {
                drive_flush(&mut self.core, &mut self.net, id);
            }
        }
        self.drive();
        self.core.handle_timeout(self.now);
        self.core.handle_idle();
        self.drive();
    }

    fn drive(&mut self) {
        drive_ops(&mut self.core, &mut self.net, |_| {});
        while let Some(ev) = self.core.poll_event() {
            self.events.push(ev);
        }
    }

    /// Runs `turns` turns.
    pub fn run(&mut self, turns: usize) {
        for _ in 0..turns {
            self.step();
        }
    }
}
