//! The engine: an I/O thread running the core over a backend, and a
//! thread-safe handle to command it.
//!
//! Commands travel to the I/O thread through a channel and a wake-up;
//! events come back through a channel, and a notify callback (the Node
//! binding turns it into a threadsafe-function call) runs once per loop turn
//! that produced events. Map operations run on the calling thread under the
//! registry's short-held lock and return at once: no call on the handle waits
//! for the I/O loop. The changes they make reach the I/O thread's view of the
//! maps as commands, queued in the order the registry made them.
//!
//! The engine never names a backend's internals: it picks one, and runs the
//! driver's loop turn (`crate::driver::turn`) over it until shutdown.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::select::{self, shards_from_env, BackendInfo, Opened, StartError};
use crate::backend::{Backend, BackendCounters, BackendStats, Source};
use crate::batch::ExternalVerdicts;
use crate::config::{Drive, EngineConfig};
use crate::dgram::{DgramOpen, DgramRole, DgramSock, SessionConfig};
pub use crate::driver::Notify;
use crate::driver::{replier, turn, wait_for, Command, Doorbell, EventOut, Inbox, LoopState, Peer};
use crate::error::Errno;
use crate::event::Event;
use crate::id::{MapId, SockId};
use crate::key::Key;
use crate::map::{EntryOptions, MapKind, UpdateFlag};
use crate::partner::PairOptions;
use crate::program::Programs;
use crate::psock::{Core, NewSock};
use crate::registry::{MapSink, Registry, Relink, Shared, SockState};
use crate::sock::{Addr, Listener, Stream, UnixName};
use crate::stats::StatsSnapshot;
use crate::tls::{ClientTls, ServerTls, SockTls, TlsStatsSnapshot};

/// What the application plugs into an engine.
#[derive(Default)]
pub struct Hooks {
    /// Runs on the I/O thread after each loop turn that produced events.
    pub notify: Option<Notify>,
    /// Decides external verdicts.
    pub external: Option<Box<dyn ExternalVerdicts>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("notify", &self.notify.is_some())
            .field("external", &self.external.is_some())
            .finish()
    }
}

/// A thread-safe handle to an engine: sockets, maps, commands.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
    /// Every shard's command queue, by shard.
    peers: Arc<[Peer]>,
    dead: Arc<AtomicBool>,
}

/// A hold on the application's map changes ([`EngineHandle::hold_changes`]):
/// dropping the last one sends what waited to the I/O threads.
#[must_use = "the changes wait until the hold is dropped"]
pub struct ChangeHold {
    handle: EngineHandle,
}

impl Drop for ChangeHold {
    fn drop(&mut self) {
        let mut reg = self.handle.shared.lock();
        reg.hold -= 1;
        if reg.hold == 0 {
            self.handle.shared.held.store(false, Ordering::Release);
            let relink: Relink = reg.held_relinks.drain(..).collect();
            self.handle.publish(reg, relink);
        }
    }
}

impl std::fmt::Debug for ChangeHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeHold").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

/// An engine running on its own I/O thread.
///
/// Dropping it shuts the engine down: queued bytes get a short grace period
/// to drain, then every socket is closed and the thread joined.
pub struct Engine {
    handle: EngineHandle,
    events: Receiver<Event>,
    threads: Vec<JoinHandle<()>>,
    info: BackendInfo,
    counters: Vec<Arc<BackendCounters>>,
    /// Shutdown was asked.
    stopped: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts an engine on the backend `cfg` chooses
    /// ([`crate::backend::select`]), with [`EngineConfig::shards`] I/O threads.
    /// Each thread opens its own backend, so that a backend bound to the
    /// thread that submits (io_uring) is created there.
    ///
    /// # Errors
    /// When the backend asked for cannot run, a thread cannot be created,
    /// several shards are asked with external verdicts that cannot be
    /// forked, or `cfg` asks for inline driving (`EINVAL`: use
    /// [`Engine::start_driven`]).
    pub fn start(cfg: EngineConfig, hooks: Hooks) -> Result<Engine, StartError> {
        match Engine::start_driven(cfg, hooks)? {
            (engine, None) => Ok(engine),
            (_, Some(_)) => Err(StartError {
                code: Errno::Inval,
                detail: "inline driving needs a caller that drives it: use Engine::start_driven"
                    .into(),
            }),
        }
    }

    /// [`Engine::start`], or with [`Drive::Inline`] one shard opened on the
    /// calling thread, returned for the caller to drive on this thread.
    ///
    /// # Errors
    /// As [`Engine::start`]; with inline driving, also more than one shard
    /// (`EINVAL`) or io_uring asked for (`EOPNOTSUPP`).
    pub fn start_driven(
        cfg: EngineConfig,
        hooks: Hooks,
    ) -> Result<(Engine, Option<Driven>), StartError> {
        let drive = select::drive_of(&cfg)?;
        let shards = match (drive, cfg.shards) {
            (Drive::Inline, Some(n)) if n > 1 => {
                return Err(StartError {
                    code: Errno::Inval,
                    detail: format!("inline driving runs one shard, not {n}"),
                })
            }
            (Drive::Inline, _) => 1,
            (Drive::Threads, Some(n)) => n.max(1),
            (Drive::Threads, None) => shards_from_env()?.unwrap_or(1),
        };
        let mut externals = Vec::with_capacity(shards);
        if let Some(ext) = hooks.external {
            for _ in 1..shards {
                externals.push(Some(ext.fork().ok_or_else(|| StartError {
                    code: Errno::Inval,
                    detail: "these external verdicts cannot serve several shards".into(),
                })?));
            }
            externals.insert(0, Some(ext));
        } else {
            externals.resize_with(shards, || None);
        }
        let shared = Arc::new(Shared::new(shards));
        let (ev_tx, ev_rx) = channel();
        let notify: Option<Arc<dyn Fn() + Send + Sync>> = hooks.notify.map(Arc::from);
        let dead = Arc::new(AtomicBool::new(false));
        if drive == Drive::Inline {
            let out = EventOut::Channel {
                tx: ev_tx,
                notify: notify.map(|n| Box::new(move || n()) as Notify),
            };
            let external = externals.pop().flatten();
            let (engine, driven) = Engine::start_inline(cfg, shared, external, out, dead, ev_rx)?;
            return Ok((engine, Some(driven)));
        }
        let mut threads = Vec::with_capacity(shards);
        let mut opened = Vec::with_capacity(shards);
        let mut starts = Vec::with_capacity(shards);
        for (shard, external) in externals.into_iter().enumerate() {
            let (cmd_tx, cmd_rx) = channel();
            let (ready_tx, ready_rx) = sync_channel(1);
            let (go_tx, go_rx) = sync_channel::<Arc<[Peer]>>(1);
            let out = EventOut::Channel {
                tx: ev_tx.clone(),
                notify: notify.clone().map(|n| Box::new(move || n()) as Notify),
            };
            let (shared, dead, cfg, replies) =
                (shared.clone(), dead.clone(), cfg.clone(), cmd_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("sockmap-io-{shard}"))
                .spawn(move || {
                    let (backend, waker, info) = match select::open(&cfg, Drive::Threads) {
                        Ok(opened) => opened,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let counters = backend.counters();
                    let bell = Arc::new(Doorbell::new(waker));
                    if ready_tx.send(Ok((bell.clone(), info, counters))).is_err() {
                        return;
                    }
                    let Ok(peers) = go_rx.recv() else { return };
                    let mut core = Core::new(shared, cfg, shard, Instant::now());
                    if let Some(ext) = external {
                        core.set_external(ext, replier(replies, bell.clone()));
                    }
                    let inbox = Inbox {
                        rx: cmd_rx,
                        bell,
                        peers: peers.to_vec(),
                    };
                    io_thread(backend, core, inbox, out, dead);
                })
                .map_err(|e| StartError::os("cannot start an I/O thread", &e))?;
            threads.push(thread);
            opened.push((cmd_tx, ready_rx));
            starts.push(go_tx);
        }
        let mut peers = Vec::with_capacity(shards);
        let mut counters = Vec::with_capacity(shards);
        let mut info = None;
        let mut failed = None;
        for (tx, ready) in opened {
            match ready.recv() {
                Ok(Ok((bell, i, c))) => {
                    peers.push(Peer { tx, bell });
                    counters.push(c);
                    info.get_or_insert(i);
                }
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(_) => {
                    failed.get_or_insert(StartError {
                        code: Errno::Io,
                        detail: "an I/O thread ended while opening its backend".into(),
                    });
                }
            }
        }
        if let Some(e) = failed {
            drop(starts);
            for t in threads {
                let _ = t.join();
            }
            return Err(e);
        }
        let peers: Arc<[Peer]> = peers.into();
        shared.set_sinks(
            peers
                .iter()
                .map(|p| {
                    let p = p.clone();
                    Box::new(move |c| p.send(Command::Map(c))) as MapSink
                })
                .collect(),
        );
        for go in starts {
            let _ = go.send(peers.clone());
        }
        let engine = Engine {
            handle: EngineHandle {
                shared,
                peers,
                dead,
            },
            events: ev_rx,
            threads,
            info: info.expect("at least one shard"),
            counters,
            stopped: false,
        };
        Ok((engine, None))
    }

    /// The one shard of an inline engine, opened on the calling thread.
    fn start_inline(
        cfg: EngineConfig,
        shared: Arc<Shared>,
        external: Option<Box<dyn ExternalVerdicts>>,
        out: EventOut,
        dead: Arc<AtomicBool>,
        events: Receiver<Event>,
    ) -> Result<(Engine, Driven), StartError> {
        let (backend, waker, info) = select::open(&cfg, Drive::Inline)?;
        let counters = backend.counters();
        let (tx, rx) = channel();
        let bell = Arc::new(Doorbell::new(waker));
        let peer = Peer {
            tx: tx.clone(),
            bell: bell.clone(),
        };
        let mut core = Core::new(shared.clone(), cfg, 0, Instant::now());
        if let Some(ext) = external {
            core.set_external(ext, replier(tx, bell.clone()));
        }
        let sink = peer.clone();
        shared.set_sinks(vec![Box::new(move |c| sink.send(Command::Map(c)))]);
        let inbox = Inbox {
            rx,
            bell,
            peers: vec![peer.clone()],
        };
        let engine = Engine {
            handle: EngineHandle {
                shared,
                peers: vec![peer].into(),
                dead: dead.clone(),
            },
            events,
            threads: Vec::new(),
            info,
            counters: vec![counters],
            stopped: false,
        };
        let driven = Driven {
            backend,
            core,
            inbox,
            out,
            state: LoopState::nonblocking(),
            dead,
        };
        Ok((engine, driven))
    }

    /// The backend the engine runs, and why.
    pub fn backend_info(&self) -> &BackendInfo {
        &self.info
    }

    /// The backends' counters now, summed over the shards.
    pub fn backend_stats(&self) -> BackendStats {
        self.counters.iter().fold(BackendStats::default(), |a, c| {
            let r = c.read();
            BackendStats {
                waits: a.waits + r.waits,
                starved: a.starved + r.starved,
                stale: a.stale + r.stale,
                spliced: a.spliced + r.spliced,
                segmented: a.segmented + r.segmented,
                coalesced: a.coalesced + r.coalesced,
            }
        })
    }

    /// The number of I/O threads.
    pub fn shards(&self) -> usize {
        self.handle.shared.shards.count()
    }

    /// The handle (clone it to share it between threads).
    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    /// The next event, if one is ready.
    pub fn try_event(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Shuts the engine down and joins its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        for p in self.handle.peers.iter() {
            p.send(Command::Shutdown);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the driver's loop turn until the engine shut down and its sockets closed.
fn run_loop<B: Backend>(
    backend: &mut B,
    core: &mut Core,
    inbox: &Inbox,
    out: &mut EventOut,
) -> io::Result<()> {
    let mut state = LoopState::default();
    loop {
        turn(backend, core, inbox, out, &mut state)?;
        if state.finished(core, Instant::now()) {
            return Ok(());
        }
    }
}

/// Evaluates `$body` with `$b` bound to the opened backend (statically dispatched).
macro_rules! with_opened {
    ($opened:expr, $b:ident => $body:expr) => {
        match $opened {
            Opened::Epoll($b) => $body,
            #[cfg(target_os = "linux")]
            Opened::IoUring($b) => $body,
        }
    };
}

/// Runs the loop over the opened backend.
fn run_opened(
    mut backend: Opened,
    core: &mut Core,
    inbox: &Inbox,
    out: &mut EventOut,
) -> io::Result<()> {
    with_opened!(&mut backend, b => run_loop(&mut **b, core, inbox, out))
}

fn io_thread(
    backend: Opened,
    mut core: Core,
    inbox: Inbox,
    mut out: EventOut,
    dead: Arc<AtomicBool>,
) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        run_opened(backend, &mut core, &inbox, &mut out)
    }));
    if let Some(ev) = fatal_of(result) {
        dead.store(true, Ordering::Release);
        out.send(ev);
    }
}

/// The fatal event of a loop that failed or panicked (`None` when it ended well).
fn fatal_of(result: std::thread::Result<io::Result<()>>) -> Option<Event> {
    use crate::event::Fatal;
    let (cause, code, detail) = match result {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => (
            Fatal::Io,
            Errno::from_io(&e),
            format!("I/O loop failed: {e}"),
        ),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (Fatal::Panic, Errno::Io, format!("I/O loop panicked: {msg}"))
        }
    };
    Some(Event::Fatal {
        cause,
        code,
        detail,
    })
}

/// The shard of an inline engine ([`Drive::Inline`]), driven by the
/// application's thread: it runs a loop turn that never waits
/// ([`Driven::turn`]) whenever the backend's descriptor ([`Driven::fd`])
/// is readable or the deadline of [`Driven::timeout`] passes. Commands from
/// any thread ring the descriptor. Dropping it closes every socket at once;
/// after [`Engine::shutdown`] or a drop of the engine, turn until
/// [`Turned::finished`] to let queued bytes drain first.
pub struct Driven {
    backend: Opened,
    core: Core,
    inbox: Inbox,
    out: EventOut,
    state: LoopState,
    dead: Arc<AtomicBool>,
}

impl std::fmt::Debug for Driven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driven").finish_non_exhaustive()
    }
}

/// What one [`Driven::turn`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Turned {
    /// It published events (and may have handed batches to the external verdicts).
    pub events: bool,
    /// Sockets are still ready: turn again soon, without waiting for the descriptor.
    pub again: bool,
    /// The engine shut down and its sockets closed (or its loop failed, with a fatal event).
    pub finished: bool,
}

impl Driven {
    /// The descriptor that is readable while the shard has work (its epoll
    /// or kqueue instance).
    #[cfg(unix)]
    pub fn fd(&self) -> std::os::fd::RawFd {
        with_opened!(&self.backend, b => b.poll_fd())
    }

    /// Runs one loop turn without waiting.
    pub fn turn(&mut self) -> Turned {
        if self.dead.load(Ordering::Acquire) {
            return Turned {
                finished: true,
                ..Turned::default()
            };
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            let (core, inbox, out, state) =
                (&mut self.core, &self.inbox, &mut self.out, &mut self.state);
            with_opened!(&mut self.backend, b => turn(&mut **b, core, inbox, out, state))
        }));
        if let Some(ev) = fatal_of(result) {
            self.dead.store(true, Ordering::Release);
            self.out.send(ev);
            return Turned {
                events: true,
                again: false,
                finished: true,
            };
        }
        Turned {
            events: self.state.published(),
            again: with_opened!(&self.backend, b => b.has_ready()),
            finished: self.state.finished(&self.core, Instant::now()),
        }
    }

    /// Runs one loop turn that does not ask the kernel for news first: it
    /// takes the commands queued (the answers of external verdicts the caller
    /// just ran), applies them and writes. The backend's descriptor stays
    /// readable for whatever the kernel has meanwhile.
    pub fn settle(&mut self) -> Turned {
        self.state.skip_next_wait();
        self.turn()
    }

    /// How long the shard may sleep before its next deadline (`None`: until
    /// its descriptor is readable).
    pub fn timeout(&self) -> Option<Duration> {
        with_opened!(&self.backend, b => wait_for(&**b, &self.core, &self.state))
    }

    /// Commands queued from now until the next turn need not ring the
    /// descriptor: the caller turns again right after (it is about to run
    /// external verdicts whose answers that turn takes).
    pub fn hold(&self) {
        self.inbox.bell.hold();
    }
}

fn io_err(e: &io::Error) -> Errno {
    Errno::from_io(e)
}

/// An IP address, as a UDP socket's local address is.
fn inet(a: Addr) -> Result<SocketAddr, Errno> {
    match a {
        Addr::Inet(a) => Ok(a),
        Addr::Unix(_) => Err(Errno::Inval),
    }
}

/// The role of a bound datagram socket, with or without sessions.
fn bound_role(sessions: Option<SessionConfig>) -> DgramRole {
    sessions.map_or(DgramRole::Bound, DgramRole::Sessions)
}

/// The `listen` backlog for a requested one (at least 1).
fn listen_backlog(backlog: u32) -> i32 {
    i32::try_from(backlog.max(1)).unwrap_or(i32::MAX)
}

impl EngineHandle {
    /// A handle whose commands a caller-driven backend drains itself.
    pub(crate) fn detached(
        shared: Arc<Shared>,
        tx: Sender<Command>,
        bell: Arc<Doorbell>,
    ) -> EngineHandle {
        let peer = Peer { tx, bell };
        let sink = peer.clone();
        shared.set_sinks(vec![Box::new(move |c| sink.send(Command::Map(c)))]);
        EngineHandle {
            shared,
            peers: vec![peer].into(),
            dead: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Queues a command for the shard that owns `sock`.
    /// Held map changes go first ([`EngineHandle::hold_changes`]): a command
    /// sees every change made before it.
    fn command(&self, sock: SockId, cmd: Command) {
        if self.shared.held.load(Ordering::Acquire) {
            self.flush_held();
        }
        self.queue(sock, cmd);
    }

    fn queue(&self, sock: SockId, cmd: Command) {
        self.peers[self.shared.shards.of(sock)].send(cmd);
    }

    /// Sends the held changes and relinks now; the hold goes on for later ones.
    fn flush_held(&self) {
        let mut reg = self.shared.lock();
        if reg.hold == 0 {
            return;
        }
        self.shared.fan_out(&mut reg, 0, None);
        for id in std::mem::take(&mut reg.held_relinks) {
            self.queue(id, Command::Relink(id));
        }
    }

    /// The shard (I/O thread) that owns `sock`.
    pub fn shard_of(&self, sock: SockId) -> usize {
        self.shared.shards.of(sock)
    }

    /// Allocates a socket on `near`'s shard, else on the least loaded one.
    fn alloc(&self, state: SockState, near: Option<SockId>) -> SockId {
        self.alloc_tls(state, near, None)
    }

    /// Allocates a socket id with its TLS role set before any command names it.
    fn alloc_tls(&self, state: SockState, near: Option<SockId>, tls: Option<SockTls>) -> SockId {
        let mut reg = self.shared.lock();
        let shard = match near {
            Some(n) => self.shared.shards.of(n),
            None => reg.least_loaded(),
        };
        let id = reg.alloc(state, shard);
        if tls.is_some() {
            reg.set_tls(id, tls);
        }
        id
    }

    fn check_alive(&self) -> Result<(), Errno> {
        if self.dead.load(Ordering::Acquire) {
            Err(Errno::Io)
        } else {
            Ok(())
        }
    }

    /// Sends the registry's map changes, then the relinks, to the I/O
    /// thread, while the registry is still locked (so changes of several
    /// threads arrive in the order the registry made them); while the
    /// changes are held ([`EngineHandle::hold_changes`]) they wait.
    fn publish(&self, mut reg: MutexGuard<'_, Registry>, relink: Relink) {
        if reg.hold > 0 {
            for id in relink {
                if !reg.held_relinks.contains(&id) {
                    reg.held_relinks.push(id);
                }
            }
            return;
        }
        self.shared.fan_out(&mut reg, 0, None);
        for id in relink {
            self.queue(id, Command::Relink(id));
        }
    }

    /// Holds the application's map changes and pairings until the returned
    /// guard (and every other hold) is dropped; then the I/O threads take
    /// them all at once, in order. The registry changes at once (lookups and
    /// errors are immediate); only the I/O threads wait, and any command
    /// (a send, a resume, a close...) first sends what waits. Use it around
    /// changes that make sense only together, such as two partners stored
    /// under each other's ids: without it, a message could be judged between
    /// the two and find no target. Holds nest.
    pub fn hold_changes(&self) -> ChangeHold {
        let mut reg = self.shared.lock();
        reg.hold += 1;
        self.shared.held.store(true, Ordering::Release);
        drop(reg);
        ChangeHold {
            handle: self.clone(),
        }
    }

    /// Listens on `addr` (port 0 picks one); returns the listener and its address.
    /// Accepted sockets arrive as [`Event::Accepted`], paused.
    ///
    /// # Errors
    /// The bind or listen error by its name (`EADDRINUSE`, `EACCES`...).
    pub fn listen(&self, addr: SocketAddr, backlog: u32) -> Result<(SockId, SocketAddr), Errno> {
        self.listen_tls(addr, backlog, None)
    }

    /// [`EngineHandle::listen`], terminating TLS with `tls` on every
    /// connection it accepts: each is announced (`Event::Tls`, then
    /// `Event::Accepted`) once its handshake finished, and only plaintext
    /// reaches its programs and application.
    ///
    /// # Errors
    /// As [`EngineHandle::listen`].
    pub fn listen_tls(
        &self,
        addr: SocketAddr,
        backlog: u32,
        tls: Option<ServerTls>,
    ) -> Result<(SockId, SocketAddr), Errno> {
        self.check_alive()?;
        let (l, local) =
            Listener::bind_tcp(addr, listen_backlog(backlog)).map_err(|e| io_err(&e))?;
        Ok((self.register_listener(l, tls), local))
    }

    /// Replaces a TLS listener's configuration: connections accepted from
    /// now on take `tls`; those already open keep theirs.
    ///
    /// # Errors
    /// `ENOENT` for a socket that is gone, `EINVAL` for one that is not a TLS listener.
    pub fn set_listener_tls(&self, listener: SockId, tls: ServerTls) -> Result<(), Errno> {
        let mut reg = self.shared.lock();
        let e = reg.sock(listener).ok_or(Errno::NoEnt)?;
        if e.state != SockState::Listening || !matches!(e.tls, Some(SockTls::Server(_))) {
            return Err(Errno::Inval);
        }
        reg.set_tls(listener, Some(SockTls::Server(tls)));
        Ok(())
    }

    /// A TLS listener's current configuration (to build a reload upon: its sessions carry over).
    pub fn listener_tls(&self, listener: SockId) -> Option<ServerTls> {
        match self
            .shared
            .lock()
            .sock(listener)
            .and_then(|e| e.tls.clone())
        {
            Some(SockTls::Server(s)) => Some(s),
            _ => None,
        }
    }

    /// A TLS listener's counters: its connections' handshakes, resumptions
    /// and failures (across reloads); `None` for a socket that is not one.
    pub fn listener_tls_stats(&self, listener: SockId) -> Option<TlsStatsSnapshot> {
        self.listener_tls(listener).map(|s| s.stats())
    }

    /// The engine's TLS counters.
    pub fn tls_stats(&self) -> TlsStatsSnapshot {
        self.shared.tls.snapshot()
    }

    /// Listens on a Unix-domain stream socket named `name` (a filesystem
    /// path, or an abstract name on Linux); returns the listener and its
    /// name. A path is removed again when the listener closes, if it still
    /// names this socket; an existing path is `EADDRINUSE` (remove a stale
    /// one first). Accepted sockets arrive as
    /// [`Event::Accepted`], paused.
    ///
    /// # Errors
    /// The bind or listen error; `EOPNOTSUPP` outside Unix, or for an
    /// abstract name outside Linux.
    pub fn listen_unix(&self, name: &UnixName, backlog: u32) -> Result<(SockId, UnixName), Errno> {
        self.check_alive()?;
        #[cfg(unix)]
        {
            let (l, local) =
                Listener::bind_unix(name, listen_backlog(backlog)).map_err(|e| io_err(&e))?;
            Ok((self.register_listener(l, None), local))
        }
        #[cfg(not(unix))]
        {
            let _ = (name, backlog);
            Err(Errno::OpNotSupp)
        }
    }

    /// Hands a bound, listening socket to its I/O thread.
    fn register_listener(&self, l: Listener, tls: Option<ServerTls>) -> SockId {
        let id = self.alloc_tls(SockState::Listening, None, tls.map(SockTls::Server));
        self.command(
            id,
            Command::Register {
                id,
                src: Source::Listener(l),
                kind: NewSock::Listener,
                deadline: None,
                initial: Bytes::new(),
                accepted: None,
            },
        );
        id
    }

    /// Starts a non-blocking connect; [`Event::Connected`] reports the outcome
    /// (`ECONNREFUSED`, or `ETIMEDOUT` after `timeout`).
    ///
    /// # Errors
    /// Errors the connect reports at once, by their name (`ENETUNREACH`, `EADDRNOTAVAIL`...).
    pub fn connect(&self, addr: SocketAddr, timeout: Option<Duration>) -> Result<SockId, Errno> {
        self.connect_near(addr, timeout, None)
    }

    /// [`EngineHandle::connect`] on the shard (I/O thread) that owns `near`,
    /// so that redirects between the two stay on one thread; `None`: the
    /// least loaded shard.
    ///
    /// # Errors
    /// As [`EngineHandle::connect`].
    pub fn connect_near(
        &self,
        addr: SocketAddr,
        timeout: Option<Duration>,
        near: Option<SockId>,
    ) -> Result<SockId, Errno> {
        self.connect_tls(addr, timeout, near, None)
    }

    /// [`EngineHandle::connect_near`], originating TLS with `tls`: the
    /// connect is reported (`Event::Tls`, then `Event::Connected`) once the
    /// handshake finished; bytes redirected or sent to the socket are
    /// encrypted as they leave.
    ///
    /// # Errors
    /// As [`EngineHandle::connect`].
    pub fn connect_tls(
        &self,
        addr: SocketAddr,
        timeout: Option<Duration>,
        near: Option<SockId>,
        tls: Option<ClientTls>,
    ) -> Result<SockId, Errno> {
        self.check_alive()?;
        let s = mio::net::TcpStream::connect(addr).map_err(|e| io_err(&e))?;
        self.register_connecting(Stream::Tcp(s.into()), timeout, near, tls)
    }

    /// [`EngineHandle::connect_near`] to a Unix-domain stream socket named
    /// `name`. A listener whose backlog is full refuses at once with
    /// `EAGAIN` (Unix sockets do not wait for room when non-blocking).
    ///
    /// # Errors
    /// `ENOENT` when no socket has that path, `ECONNREFUSED` when nothing
    /// listens on it, `EOPNOTSUPP` outside Unix.
    pub fn connect_unix(
        &self,
        name: &UnixName,
        timeout: Option<Duration>,
        near: Option<SockId>,
    ) -> Result<SockId, Errno> {
        self.check_alive()?;
        #[cfg(unix)]
        {
            let addr = name.to_addr().map_err(|e| io_err(&e))?;
            let s = mio::net::UnixStream::connect_addr(&addr).map_err(|e| io_err(&e))?;
            self.register_connecting(Stream::Unix(s.into()), timeout, near, None)
        }
        #[cfg(not(unix))]
        {
            let _ = (name, timeout, near);
            Err(Errno::OpNotSupp)
        }
    }

    /// Hands a socket whose connect is under way to its I/O thread.
    fn register_connecting(
        &self,
        s: Stream,
        timeout: Option<Duration>,
        near: Option<SockId>,
        tls: Option<ClientTls>,
    ) -> Result<SockId, Errno> {
        let id = self.alloc_tls(SockState::Connecting, near, tls.map(SockTls::Client));
        self.command(
            id,
            Command::Register {
                id,
                src: Source::Stream(s),
                kind: NewSock::Connecting,
                deadline: timeout.map(|t| Instant::now() + t),
                initial: Bytes::new(),
                accepted: None,
            },
        );
        Ok(id)
    }

    /// Takes over a connected stream (TCP, or Unix on Unix); it starts paused.
    ///
    /// # Errors
    /// `ENOTCONN` if the stream is not connected.
    pub fn adopt(&self, stream: impl Into<Stream>) -> Result<SockId, Errno> {
        self.adopt_with(stream, Bytes::new())
    }

    /// Takes over a connected stream from which the application had already
    /// read `initial` (bytes it buffered and did not consume). Once the socket
    /// starts reading (inserted into a map with programs, or resumed),
    /// `initial` goes through its parser and verdict first, in order, before
    /// anything read from the stream. It starts paused.
    ///
    /// # Errors
    /// `ENOTCONN` if the stream is not connected (or the errno the kernel
    /// gave for the stream otherwise, e.g. `ENOTSOCK`).
    pub fn adopt_with(&self, stream: impl Into<Stream>, initial: Bytes) -> Result<SockId, Errno> {
        self.check_alive()?;
        let stream = stream.into();
        stream.peer_addr().map_err(|e| io_err(&e))?;
        stream.set_nonblocking().map_err(|e| io_err(&e))?;
        let id = self.alloc(SockState::Established, None);
        self.command(
            id,
            Command::Register {
                id,
                src: Source::Stream(stream),
                kind: NewSock::Established,
                deadline: None,
                initial,
                accepted: None,
            },
        );
        Ok(id)
    }

    /// Binds a UDP socket on `addr` (port 0 picks one); returns it and its
    /// address. Without sessions it takes datagrams from anyone (each one
    /// message; a PASS reaches the application as [`Event::Datagram`] with
    /// its sender) and sends with [`EngineHandle::send_to`]; with `sessions`,
    /// each client address gets a session socket, announced as
    /// [`Event::Accepted`] with the bound socket as listener, on its first
    /// datagram. It starts paused, as an accepted socket does (a bound
    /// socket with sessions reads at once, for its sessions).
    ///
    /// # Errors
    /// The bind error by its name (`EADDRINUSE`...); `EOPNOTSUPP` outside Linux.
    pub fn bind_udp(
        &self,
        addr: SocketAddr,
        sessions: Option<SessionConfig>,
    ) -> Result<(SockId, SocketAddr), Errno> {
        let (id, local) = self.open_dgram(DgramOpen::BindUdp(addr), bound_role(sessions), None)?;
        Ok((id, inet(local)?))
    }

    /// A UDP socket connected to `peer` (bound to `local`, else any port),
    /// on `near`'s shard: each datagram it receives from its peer is one
    /// message, each send or redirect to it one datagram to its peer. It
    /// starts paused. Returns it and its local address.
    ///
    /// # Errors
    /// The bind or connect error; `EOPNOTSUPP` outside Linux.
    pub fn connect_udp(
        &self,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        near: Option<SockId>,
    ) -> Result<(SockId, SocketAddr), Errno> {
        let what = DgramOpen::ConnectUdp(peer, local);
        let (id, local) = self.open_dgram(what, DgramRole::Connected, near)?;
        Ok((id, inet(local)?))
    }

    /// [`EngineHandle::bind_udp`] for a Unix datagram socket named `name`
    /// (a path, removed again when it closes, or an abstract name). Sessions
    /// are per client name: a client that is not bound cannot be answered,
    /// and its datagrams are dropped (`dropped_no_key`).
    ///
    /// # Errors
    /// The bind error (`EADDRINUSE` for an existing path); `EOPNOTSUPP` outside Linux.
    pub fn bind_unix_dgram(
        &self,
        name: &UnixName,
        sessions: Option<SessionConfig>,
    ) -> Result<(SockId, UnixName), Errno> {
        let (id, local) = self.open_dgram(DgramOpen::BindUnix(name), bound_role(sessions), None)?;
        match local {
            Addr::Unix(n) => Ok((id, n)),
            Addr::Inet(_) => Err(Errno::Inval),
        }
    }

    /// [`EngineHandle::connect_udp`] for a Unix datagram socket named
    /// `peer`, bound to `local` if given (needed to receive replies).
    ///
    /// # Errors
    /// `ENOENT` when no socket has that path, `ECONNREFUSED` when nothing is
    /// bound there; `EOPNOTSUPP` outside Linux.
    pub fn connect_unix_dgram(
        &self,
        peer: &UnixName,
        local: Option<&UnixName>,
        near: Option<SockId>,
    ) -> Result<SockId, Errno> {
        let what = DgramOpen::ConnectUnix(peer, local);
        Ok(self.open_dgram(what, DgramRole::Connected, near)?.0)
    }

    /// Opens a datagram socket and hands it to its I/O thread; returns it and its local address.
    fn open_dgram(
        &self,
        what: DgramOpen<'_>,
        role: DgramRole,
        near: Option<SockId>,
    ) -> Result<(SockId, Addr), Errno> {
        self.check_alive()?;
        let (sock, local) = DgramSock::open(what).map_err(|e| io_err(&e))?;
        Ok((self.register_dgram(sock, role, near), local))
    }

    /// Hands a datagram socket to its I/O thread.
    #[cfg(target_os = "linux")]
    fn register_dgram(&self, sock: DgramSock, role: DgramRole, near: Option<SockId>) -> SockId {
        let id = self.alloc(SockState::Established, near);
        self.command(
            id,
            Command::Register {
                id,
                src: Source::Dgram(crate::backend::dgram::DgramIo { sock, role }),
                kind: NewSock::Established,
                deadline: None,
                initial: Bytes::new(),
                accepted: None,
            },
        );
        id
    }

    #[cfg(not(target_os = "linux"))]
    fn register_dgram(&self, sock: DgramSock, _: DgramRole, _: Option<SockId>) -> SockId {
        match sock {}
    }

    /// Sends one datagram from a bound datagram socket to `to`;
    /// [`Event::SendDone`] with `req` reports the outcome (`ENOBUFS` when its
    /// send queue is full, `EPIPE` when the socket is gone or not a datagram socket).
    pub fn send_to(&self, sock: SockId, data: Bytes, to: Addr, req: u64) {
        self.command(
            sock,
            Command::SendTo {
                sock,
                data,
                to,
                req,
            },
        );
    }

    /// Sends `data` on the sk_msg path; [`Event::SendDone`] with `req` reports the outcome.
    pub fn send(&self, sock: SockId, data: Bytes, req: u64) {
        self.command(sock, Command::Send { sock, data, req });
    }

    /// The application consumed `bytes` of the messages delivered to `sock`
    /// (with [`EngineConfig::app_high_watermark`] set; ignored otherwise).
    /// Acknowledge in any grouping, e.g. once per batch of events.
    pub fn ack(&self, sock: SockId, bytes: usize) {
        self.command(sock, Command::Ack(sock, bytes));
    }

    /// Starts (or restarts) reading and delivering messages.
    pub fn resume(&self, sock: SockId) {
        self.command(sock, Command::Resume(sock));
    }

    /// Stops reading.
    pub fn pause(&self, sock: SockId) {
        self.command(sock, Command::Pause(sock));
    }

    /// Writes what is queued, then shuts down the write side.
    pub fn end(&self, sock: SockId) {
        self.command(sock, Command::End(sock));
    }

    /// Closes at once (for a listener: stops listening).
    pub fn destroy(&self, sock: SockId) {
        self.command(sock, Command::Destroy(sock));
    }

    /// The socket's state as map operations see it.
    pub fn sock_state(&self, sock: SockId) -> SockState {
        self.shared
            .lock()
            .sock(sock)
            .map_or(SockState::Free, |e| e.state)
    }

    /// The socket's counters, while it exists.
    pub fn sock_stats(&self, sock: SockId) -> Option<StatsSnapshot> {
        self.shared.lock().sock(sock).map(|e| e.stats.snapshot())
    }

    /// Declares `a` and `b` partners ([`crate::partner`]), whatever their
    /// verdicts: a peer's FIN on one goes to the other after the bytes
    /// before it, and a close of one ends or destroys the other (`opts`).
    ///
    /// # Errors
    /// `EINVAL` when `a` is `b` or either is a listener, `ENOTCONN` when
    /// either is closed or unknown, `EBUSY` when either already has a partner.
    pub fn pair(&self, a: SockId, b: SockId, opts: PairOptions) -> Result<(), Errno> {
        let mut reg = self.shared.lock();
        let relink = reg.pair(a, b, opts)?;
        self.publish(reg, relink);
        Ok(())
    }

    /// Dissolves `sock`'s pair; false when it had no partner.
    pub fn unpair(&self, sock: SockId) -> bool {
        let mut reg = self.shared.lock();
        let relink = reg.unpair(sock);
        let had = !relink.is_empty();
        self.publish(reg, relink);
        had
    }

    /// The socket's partner, while both are paired.
    pub fn partner(&self, sock: SockId) -> Option<SockId> {
        self.shared.lock().partner(sock)
    }

    /// Creates a map.
    ///
    /// # Errors
    /// `EINVAL` when `max_entries` is 0.
    pub fn create_map(&self, kind: MapKind, max_entries: u32) -> Result<MapId, Errno> {
        let mut reg = self.shared.lock();
        let id = reg.create_map(kind, max_entries)?;
        self.publish(reg, Relink::new());
        Ok(id)
    }

    /// Attaches programs to a map: sockets inserted afterwards take them.
    ///
    /// # Errors
    /// `EBADF` for an unknown map, `EINVAL` for parser options its framer rejects.
    pub fn attach(&self, map: MapId, programs: Programs) -> Result<(), Errno> {
        self.shared.lock().attach(map, programs)
    }

    /// Stores `sock` under `key` (`bpf_map_update_elem`).
    ///
    /// # Errors
    /// `E2BIG` (index beyond the map, or a full hash), `EEXIST`/`ENOENT` per
    /// `flag`, `EOPNOTSUPP` for a socket that is not connected or listening,
    /// `EBUSY` when it carries another map's programs, `EINVAL` for a key a
    /// SockMap cannot read as an index, `EBADF` for an unknown map.
    pub fn map_update(
        &self,
        map: MapId,
        key: &Key,
        sock: SockId,
        flag: UpdateFlag,
    ) -> Result<(), Errno> {
        self.map_update_entry(map, key, sock, flag, &EntryOptions::default())
    }

    /// [`map_update`](Self::map_update) naming the server the entry is a
    /// connection to, and its weight, on the map's consistent-hash ring.
    ///
    /// # Errors
    /// As `map_update`; `EINVAL` for a weight of 0.
    pub fn map_update_entry(
        &self,
        map: MapId,
        key: &Key,
        sock: SockId,
        flag: UpdateFlag,
        opts: &EntryOptions,
    ) -> Result<(), Errno> {
        let mut reg = self.shared.lock();
        let relink = reg.update(map, key, sock, flag, opts)?;
        self.publish(reg, relink);
        Ok(())
    }

    /// Removes the entry under `key`.
    ///
    /// # Errors
    /// An absent key: `EINVAL` in a SockMap, `ENOENT` in a SockHash (as the kernel).
    pub fn map_delete(&self, map: MapId, key: &Key) -> Result<(), Errno> {
        let mut reg = self.shared.lock();
        let relink = reg.delete(map, key)?;
        self.publish(reg, relink);
        Ok(())
    }

    /// The socket under `key`.
    ///
    /// # Errors
    /// `EBADF` for an unknown map.
    pub fn map_lookup(&self, map: MapId, key: &Key) -> Result<Option<SockId>, Errno> {
        Ok(self.shared.lock().map(map)?.store.lookup(key))
    }

    /// The keys present, with their sockets.
    ///
    /// # Errors
    /// `EBADF` for an unknown map.
    pub fn map_entries(&self, map: MapId) -> Result<Vec<(Key, SockId)>, Errno> {
        let reg = self.shared.lock();
        let m = reg.map(map)?;
        Ok(m.store
            .entries()
            .into_iter()
            .map(|(slot, s)| (slot.to_key(), s))
            .collect())
    }

    /// The number of entries.
    ///
    /// # Errors
    /// `EBADF` for an unknown map.
    pub fn map_len(&self, map: MapId) -> Result<usize, Errno> {
        Ok(self.shared.lock().map(map)?.store.len())
    }

    /// The counters of the sockets that took this map's stream verdict.
    ///
    /// # Errors
    /// `EBADF` for an unknown map.
    pub fn map_stats(&self, map: MapId) -> Result<StatsSnapshot, Errno> {
        Ok(self.shared.lock().map(map)?.stats.snapshot())
    }

    /// Destroys a map; its sockets leave it.
    ///
    /// # Errors
    /// `EBADF` for an unknown map.
    pub fn destroy_map(&self, map: MapId) -> Result<(), Errno> {
        let mut reg = self.shared.lock();
        let relink = reg.destroy_map(map)?;
        self.publish(reg, relink);
        Ok(())
    }
}
