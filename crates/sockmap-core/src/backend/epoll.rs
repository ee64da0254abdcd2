//! The epoll backend (through mio): edge-triggered readiness turned into the
//! core's completions, on the engine's I/O thread.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::{drive_flush, drive_ops, drive_read, ReadBuf, ReadEnd, SocketIo};
use crate::core::{Core, NewSock};
use crate::engine::{Command, Doorbell, EventOut};
use crate::error::Errno;
use crate::id::SockId;

/// The token of the cross-thread waker.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// An I/O object handed to the backend by the application thread.
#[derive(Debug)]
pub(crate) enum IoSource {
    /// A listening socket.
    Listener(TcpListener),
    /// A connected or connecting stream.
    Stream(TcpStream),
}

struct Io {
    id: SockId,
    src: IoSource,
    /// The socket is in the ready list.
    queued: bool,
    /// The kernel reported end of stream or an error: read until it shows.
    hup: bool,
}

/// The sockets, by slot.
#[derive(Default)]
struct IoTable {
    ios: Vec<Option<Io>>,
}

impl IoTable {
    fn get(&self, id: SockId) -> Option<&Io> {
        self.ios
            .get(id.slot())
            .and_then(Option::as_ref)
            .filter(|io| io.id == id)
    }

    fn get_mut(&mut self, id: SockId) -> Option<&mut Io> {
        self.ios
            .get_mut(id.slot())
            .and_then(Option::as_mut)
            .filter(|io| io.id == id)
    }

    fn stream(&mut self, id: SockId) -> io::Result<&mut TcpStream> {
        match self.get_mut(id).map(|io| &mut io.src) {
            Some(IoSource::Stream(s)) => Ok(s),
            _ => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }
}

impl SocketIo for IoTable {
    fn read(&mut self, id: SockId, buf: &mut BytesMut) -> io::Result<usize> {
        let fd = self.stream(id)?.as_raw_fd();
        let spare = buf.spare_capacity_mut();
        // SAFETY: `recv` writes at most `spare.len()` bytes into the buffer's
        // spare capacity, which is valid for writes of that length.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the kernel initialized the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    fn writev(&mut self, id: SockId, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream(id)?.write_vectored(iov)
    }

    fn shutdown_write(&mut self, id: SockId) -> io::Result<()> {
        match self.stream(id)?.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        }
    }

    fn close(&mut self, id: SockId) {
        if self.get(id).is_some() {
            self.ios[id.slot()] = None;
        }
    }
}

/// The epoll backend.
pub(crate) struct EpollBackend {
    poll: Poll,
    events: Events,
    table: IoTable,
    ready: VecDeque<SockId>,
    rb: ReadBuf,
}

/// How long a shutting-down engine waits for queued bytes to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl EpollBackend {
    /// A backend and the waker other threads ring.
    pub(crate) fn new(read_buffer: usize) -> io::Result<(EpollBackend, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok((
            EpollBackend {
                poll,
                events: Events::with_capacity(1024),
                table: IoTable::default(),
                ready: VecDeque::new(),
                rb: ReadBuf::new(read_buffer),
            },
            waker,
        ))
    }

    fn register(
        &mut self,
        core: &mut Core,
        id: SockId,
        mut src: IoSource,
        kind: NewSock,
        deadline: Option<Instant>,
    ) {
        let token = Token(id.slot());
        let r = match &mut src {
            IoSource::Listener(l) => self.poll.registry().register(l, token, Interest::READABLE),
            IoSource::Stream(s) => {
                let _ = s.set_nodelay(true);
                self.poll
                    .registry()
                    .register(s, token, Interest::READABLE | Interest::WRITABLE)
            }
        };
        core.handle_new_socket(id, kind, deadline);
        let slot = id.slot();
        if self.table.ios.len() <= slot {
            self.table.ios.resize_with(slot + 1, || None);
        }
        self.table.ios[slot] = Some(Io {
            id,
            src,
            queued: false,
            hup: false,
        });
        if let Err(e) = r {
            core.handle_error(id, Errno::from_io(&e));
        }
    }

    fn enqueue(&mut self, id: SockId) {
        if let Some(io) = self.table.get_mut(id) {
            if !io.queued {
                io.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    fn accept_all(&mut self, core: &mut Core, listener: SockId) {
        loop {
            let Some(Io {
                src: IoSource::Listener(l),
                ..
            }) = self.table.get(listener)
            else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => {
                    let id = core.handle_accepted(listener, peer);
                    self.register_accepted(core, id, stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_transient_accept_error(&e) => return,
                Err(e) => {
                    core.handle_error(listener, Errno::from_io(&e));
                    return;
                }
            }
        }
    }

    fn register_accepted(&mut self, core: &mut Core, id: SockId, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let token = Token(id.slot());
        let r = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        );
        let slot = id.slot();
        if self.table.ios.len() <= slot {
            self.table.ios.resize_with(slot + 1, || None);
        }
        self.table.ios[slot] = Some(Io {
            id,
            src: IoSource::Stream(stream),
            queued: false,
            hup: false,
        });
        if let Err(e) = r {
            core.handle_error(id, Errno::from_io(&e));
        }
    }

    fn check_connect(&mut self, core: &mut Core, id: SockId) {
        let Ok(s) = self.table.stream(id) else { return };
        match s.take_error() {
            Ok(Some(e)) | Err(e) => core.handle_connected(id, Err(Errno::from_io(&e))),
            Ok(None) => match s.peer_addr() {
                Ok(_) => core.handle_connected(id, Ok(())),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => core.handle_connected(id, Err(Errno::from_io(&e))),
            },
        }
    }

    /// Runs the loop until shutdown. Returns when every socket is closed after
    /// a `Shutdown` command (or the grace period ends).
    pub(crate) fn run(
        &mut self,
        core: &mut Core,
        rx: &Receiver<Command>,
        bell: &Doorbell,
        out: &EventOut,
    ) -> io::Result<()> {
        let budget = core.config().read_budget;
        let mut shutdown_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let timeout = if !self.ready.is_empty() {
                Some(Duration::ZERO)
            } else {
                let t = core
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(now));
                match shutdown_at {
                    Some(_) => Some(t.map_or(Duration::from_millis(10), |t| {
                        t.min(Duration::from_millis(10))
                    })),
                    None => t,
                }
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let mut turn = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for ev in turn.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let Some(io) = self.table.ios.get(ev.token().0).and_then(Option::as_ref) else {
                    continue;
                };
                let id = io.id;
                if matches!(io.src, IoSource::Listener(_)) {
                    self.accept_all(core, id);
                    continue;
                }
                if core.is_connecting(id)
                    && (ev.is_writable() || ev.is_error() || ev.is_write_closed())
                {
                    self.check_connect(core, id);
                }
                if ev.is_read_closed() || ev.is_error() {
                    if let Some(io) = self.table.get_mut(id) {
                        io.hup = true;
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.enqueue(id);
                }
                if ev.is_writable() && core.has_tx(id) {
                    drive_flush(core, &mut self.table, id);
                }
            }
            turn.clear();
            self.events = turn;

            bell.clear();
            while let Ok(cmd) = rx.try_recv() {
                match cmd {
                    Command::Register {
                        id,
                        src,
                        kind,
                        deadline,
                        initial,
                    } => {
                        self.register(core, id, src, kind, deadline);
                        core.handle_adopted_bytes(id, initial);
                    }
                    Command::Shutdown => {
                        core.handle_shutdown();
                        shutdown_at.get_or_insert_with(Instant::now);
                    }
                    other => other.apply(core),
                }
            }

            let now = Instant::now();
            for _ in 0..self.ready.len() {
                let Some(id) = self.ready.pop_front() else {
                    break;
                };
                let Some(io) = self.table.get_mut(id) else {
                    continue;
                };
                io.queued = false;
                let short_is_drained = !io.hup;
                if drive_read(
                    core,
                    &mut self.table,
                    id,
                    &mut self.rb,
                    budget,
                    short_is_drained,
                    now,
                ) == ReadEnd::Budget
                {
                    self.enqueue(id);
                }
            }
            core.handle_timeout(Instant::now());
            if self.ready.is_empty() {
                core.handle_idle();
            }
            let mut kicked = Vec::new();
            drive_ops(core, &mut self.table, |id| kicked.push(id));
            for id in kicked {
                self.enqueue(id);
            }
            out.publish(core);
            if let Some(t) = shutdown_at {
                if core.socket_count() == 0 || t.elapsed() > SHUTDOWN_GRACE {
                    return Ok(());
                }
            }
        }
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
        )
    )
}
