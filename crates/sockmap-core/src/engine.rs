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
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::epoll::EpollBackend;
use crate::backend::Source;
use crate::batch::ExternalVerdicts;
use crate::config::EngineConfig;
pub use crate::driver::Notify;
use crate::driver::{replier, turn, Command, Doorbell, EventOut, Inbox, LoopState};
use crate::error::Errno;
use crate::event::Event;
use crate::id::{MapId, SockId};
use crate::key::Key;
use crate::map::{MapKind, UpdateFlag};
use crate::program::Programs;
use crate::psock::{Core, NewSock};
use crate::registry::{Registry, Relink, Shared, SockState};
use crate::stats::StatsSnapshot;

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
    tx: Sender<Command>,
    bell: Arc<Doorbell>,
    dead: Arc<AtomicBool>,
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
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts an engine with the epoll backend.
    ///
    /// # Errors
    /// When the epoll instance or the thread cannot be created.
    pub fn start(cfg: EngineConfig, hooks: Hooks) -> io::Result<Engine> {
        let shared = Arc::new(Shared::default());
        let (backend, waker) = EpollBackend::new(cfg.read_buffer)?;
        let bell = Arc::new(Doorbell::new(Box::new(waker)));
        let (cmd_tx, cmd_rx) = channel();
        let (ev_tx, ev_rx) = channel();
        let dead = Arc::new(AtomicBool::new(false));
        let out = EventOut::Channel {
            tx: ev_tx,
            notify: hooks.notify,
        };
        let mut core = Core::new(shared.clone(), cfg, Instant::now());
        if let Some(ext) = hooks.external {
            let replier = replier(cmd_tx.clone(), bell.clone());
            core.set_external(ext, replier);
        }
        let thread = {
            let inbox = Inbox {
                rx: cmd_rx,
                bell: bell.clone(),
            };
            let dead = dead.clone();
            std::thread::Builder::new()
                .name("sockmap-io".into())
                .spawn(move || io_thread(backend, core, inbox, out, dead))?
        };
        Ok(Engine {
            handle: EngineHandle {
                shared,
                tx: cmd_tx,
                bell,
                dead,
            },
            events: ev_rx,
            thread: Some(thread),
        })
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
        if let Some(t) = self.thread.take() {
            self.handle.command(Command::Shutdown);
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
fn run_loop(
    backend: &mut EpollBackend,
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

fn io_thread(
    mut backend: EpollBackend,
    mut core: Core,
    inbox: Inbox,
    mut out: EventOut,
    dead: Arc<AtomicBool>,
) {
    use crate::event::Fatal;
    let result = catch_unwind(AssertUnwindSafe(|| {
        run_loop(&mut backend, &mut core, &inbox, &mut out)
    }));
    let (cause, code, detail) = match result {
        Ok(Ok(())) => return,
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
            (
                Fatal::Panic,
                Errno::Io,
                format!("I/O thread panicked: {msg}"),
            )
        }
    };
    dead.store(true, Ordering::Release);
    out.send(Event::Fatal {
        cause,
        code,
        detail,
    });
}

fn io_err(e: &io::Error) -> Errno {
    Errno::from_io(e)
}

impl EngineHandle {
    /// A handle whose commands a caller-driven backend drains itself.
    pub(crate) fn detached(
        shared: Arc<Shared>,
        tx: Sender<Command>,
        bell: Arc<Doorbell>,
    ) -> EngineHandle {
        EngineHandle {
            shared,
            tx,
            bell,
            dead: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn command(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            self.bell.ring();
        }
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
    /// threads arrive in the order the registry made them).
    fn publish(&self, mut reg: MutexGuard<'_, Registry>, relink: Relink) {
        let mut any = false;
        for change in reg.take_changes() {
            any |= self.tx.send(Command::Map(change)).is_ok();
        }
        for id in relink {
            any |= self.tx.send(Command::Relink(id)).is_ok();
        }
        drop(reg);
        if any {
            self.bell.ring();
        }
    }

    /// Listens on `addr` (port 0 picks one); returns the listener and its address.
    /// Accepted sockets arrive as [`Event::Accepted`], paused.
    ///
    /// # Errors
    /// The bind or listen error (`EADDRINUSE` shows as `EIO`...).
    pub fn listen(&self, addr: SocketAddr, backlog: u32) -> Result<(SockId, SocketAddr), Errno> {
        self.check_alive()?;
        let l = std::net::TcpListener::bind(addr).map_err(|e| io_err(&e))?;
        let backlog = i32::try_from(backlog.max(1)).unwrap_or(i32::MAX);
        crate::sys::set_backlog(&l, backlog).map_err(|e| io_err(&e))?;
        l.set_nonblocking(true).map_err(|e| io_err(&e))?;
        let local = l.local_addr().map_err(|e| io_err(&e))?;
        let id = self.shared.lock().alloc(SockState::Listening);
        self.command(Command::Register {
            id,
            src: Source::Listener(l),
            kind: NewSock::Listener,
            deadline: None,
            initial: Bytes::new(),
        });
        Ok((id, local))
    }

    /// Starts a non-blocking connect; [`Event::Connected`] reports the outcome
    /// (`ECONNREFUSED`, or `ETIMEDOUT` after `timeout`).
    ///
    /// # Errors
    /// Errors the connect reports at once (e.g. `ENETUNREACH` as `EIO`).
    pub fn connect(&self, addr: SocketAddr, timeout: Option<Duration>) -> Result<SockId, Errno> {
        self.check_alive()?;
        let s = mio::net::TcpStream::connect(addr).map_err(|e| io_err(&e))?;
        let s = std::net::TcpStream::from(s);
        let id = self.shared.lock().alloc(SockState::Connecting);
        self.command(Command::Register {
            id,
            src: Source::Stream(s),
            kind: NewSock::Connecting,
            deadline: timeout.map(|t| Instant::now() + t),
            initial: Bytes::new(),
        });
        Ok(id)
    }

    /// Takes over a connected stream; it starts paused.
    ///
    /// # Errors
    /// `ENOTCONN` if the stream is not connected.
    pub fn adopt(&self, stream: std::net::TcpStream) -> Result<SockId, Errno> {
        self.adopt_with(stream, Bytes::new())
    }

    /// Takes over a connected stream from which the application had already
    /// read `initial` (bytes it buffered and did not consume). Once the socket
    /// starts reading (inserted into a map with programs, or resumed),
    /// `initial` goes through its parser and verdict first, in order, before
    /// anything read from the stream. It starts paused.
    ///
    /// # Errors
    /// `ENOTCONN` if the stream is not connected.
    pub fn adopt_with(&self, stream: std::net::TcpStream, initial: Bytes) -> Result<SockId, Errno> {
        self.check_alive()?;
        stream.peer_addr().map_err(|_| Errno::NotConn)?;
        stream.set_nonblocking(true).map_err(|e| io_err(&e))?;
        let id = self.shared.lock().alloc(SockState::Established);
        self.command(Command::Register {
            id,
            src: Source::Stream(stream),
            kind: NewSock::Established,
            deadline: None,
            initial,
        });
        Ok(id)
    }

    /// Sends `data` on the sk_msg path; [`Event::SendDone`] with `req` reports the outcome.
    pub fn send(&self, sock: SockId, data: Bytes, req: u64) {
        self.command(Command::Send { sock, data, req });
    }

    /// The application consumed `bytes` of the messages delivered to `sock`
    /// (with [`EngineConfig::app_high_watermark`] set; ignored otherwise).
    /// Acknowledge in any grouping, e.g. once per batch of events.
    pub fn ack(&self, sock: SockId, bytes: usize) {
        self.command(Command::Ack(sock, bytes));
    }

    /// Starts (or restarts) reading and delivering messages.
    pub fn resume(&self, sock: SockId) {
        self.command(Command::Resume(sock));
    }

    /// Stops reading.
    pub fn pause(&self, sock: SockId) {
        self.command(Command::Pause(sock));
    }

    /// Writes what is queued, then shuts down the write side.
    pub fn end(&self, sock: SockId) {
        self.command(Command::End(sock));
    }

    /// Closes at once (for a listener: stops listening).
    pub fn destroy(&self, sock: SockId) {
        self.command(Command::Destroy(sock));
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
        let mut reg = self.shared.lock();
        let relink = reg.update(map, key, sock, flag)?;
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
