//! A simulated backend: no sockets, a scripted kernel, for deterministic
//! tests of the core.
//!
//! Each simulated socket has what its peer sent (bytes, then maybe FIN or
//! RST), and scripts for reads and writes: a step either limits the next
//! call to some bytes (a short read or write), makes it fail with `EAGAIN`,
//! or resets the connection. [`Sim::step`] runs the driver's one loop turn
//! ([`crate::driver::turn`]) over this backend, exactly as the engine runs it
//! over epoll, so every path of the core can be driven and checked without
//! timing or sockets.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Backend, SocketIo};
use crate::batch::{ExternalVerdicts, Replier};
use crate::config::EngineConfig;
use crate::driver::{
    drive_flush, drive_read, turn, Doorbell, EventOut, Inbox, LoopState, ReadBuf, Source, Wake,
};
use crate::engine::EngineHandle;
use crate::event::Event;
use crate::id::SockId;
use crate::psock::{Core, NewSock};
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

/// The simulated network as a backend: readable sockets are those whose
/// peer sent something (or ended, or reset); every socket with queued bytes
/// is writable.
struct SimBackend {
    net: SimNet,
    rb: ReadBuf,
    ready: VecDeque<SockId>,
    now: Instant,
}

impl Backend for SimBackend {
    type Io = SimNet;

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
            drive_read(core, &mut self.net, id, &mut self.rb, false, now);
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

    fn io(&mut self) -> &mut SimNet {
        &mut self.net
    }
}

/// A core driven by the simulated network, one turn at a time.
pub struct Sim {
    core: Core,
    backend: SimBackend,
    handle: EngineHandle,
    replier: Replier,
    inbox: Inbox,
    out: EventOut,
    state: LoopState,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("net", &self.backend.net)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A simulation with `cfg`.
    pub fn new(cfg: EngineConfig) -> Sim {
        let (tx, rx) = channel();
        let bell = Arc::new(Doorbell::new(Box::new(NoWake)));
        let shared = Arc::default();
        let now = Instant::now();
        let backend = SimBackend {
            net: SimNet::default(),
            rb: ReadBuf::new(cfg.read_buffer),
            ready: VecDeque::new(),
            now,
        };
        let replier = Replier {
            tx: tx.clone(),
            bell: Arc::clone(&bell),
        };
        let handle = EngineHandle::detached(Arc::clone(&shared), tx, Arc::clone(&bell));
        Sim {
            core: Core::new(shared, cfg, now),
            backend,
            handle,
            replier,
            inbox: Inbox { rx, bell },
            out: EventOut::Collect(Vec::new()),
            state: LoopState::default(),
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
        self.backend.net.socks.insert(id, SimSocket::default());
        id
    }

    /// The simulated sockets.
    pub fn net(&mut self) -> &mut SimNet {
        &mut self.backend.net
    }

    /// The simulated socket.
    ///
    /// # Panics
    /// If `id` was never created by [`Sim::add_socket`].
    pub fn sock(&mut self, id: SockId) -> &mut SimSocket {
        self.backend
            .net
            .socks
            .get_mut(&id)
            .expect("a simulated socket")
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
        match &mut self.out {
            EventOut::Collect(v) => std::mem::take(v),
            EventOut::Channel { .. } => Vec::new(),
        }
    }

    /// One loop turn of the driver over the simulated network.
    pub fn step(&mut self) {
        let _ = turn(
            &mut self.backend,
            &mut self.core,
            &self.inbox,
            &mut self.out,
            &mut self.state,
        );
    }

    /// Runs `turns` turns.
    pub fn run(&mut self, turns: usize) {
        for _ in 0..turns {
            self.step();
        }
    }
}
