//! The simulation: a core driven by the simulated network
//! ([`crate::backend::sim`]), one driver turn at a time, on a clock that
//! moves only when told.

use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::sim::SimBackend;
pub use crate::backend::sim::{SimNet, SimSocket, Step};
use crate::backend::Wake;
use crate::batch::{ExternalVerdicts, Replier};
use crate::config::EngineConfig;
use crate::driver::{replier, turn, Doorbell, EventOut, Inbox, LoopState};
use crate::engine::EngineHandle;
use crate::event::Event;
use crate::id::SockId;
use crate::psock::{Core, NewSock};
use crate::registry::SockState;

struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
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
        let backend = SimBackend::new(cfg.read_buffer, now);
        let replier = replier(tx.clone(), Arc::clone(&bell));
        let handle = EngineHandle::detached(Arc::clone(&shared), tx, Arc::clone(&bell));
        Sim {
            core: Core::new(shared, cfg, 0, now),
            backend,
            handle,
            replier,
            inbox: Inbox {
                rx,
                bell,
                peers: Vec::new(),
            },
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
        let id = self.handle.shared().lock().alloc(SockState::Established, 0);
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

    /// Forgets the socket's scripted reads and writes that have not run yet:
    /// its calls move as many bytes as they can again.
    pub fn clear_scripts(&mut self, id: SockId) {
        let s = self.sock(id);
        s.reads.clear();
        s.writes.clear();
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
