//! The epoll backend (through mio): edge-triggered readiness turned into the
//! core's completions, on the engine's I/O thread.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

#[cfg(target_os = "linux")]
use super::dgram::{drive_dgram_flush, drive_dgram_read, DgramIo};
#[cfg(target_os = "linux")]
use super::splice::{Next, Splicer};
use super::{drive_close, drive_flush, drive_read, drive_shutdown, ReadBuf, ReadEnd, Source};
use super::{Backend, BackendCounters, Handoff, SocketIo, ACCEPT_BACKOFF};
use crate::error::Errno;
use crate::id::SockId;
use crate::psock::{Accepted, Core, NewSock};
use crate::sock::{Addr, Listener, Stream};

/// Runs `$body` with `$s` bound to the mio object inside a [`MioStream`] or
/// [`MioListener`], whatever its family.
macro_rules! each {
    ($kind:ident, $e:expr, $s:ident => $body:expr) => {
        match $e {
            $kind::Tcp($s) => $body,
            #[cfg(unix)]
            $kind::Unix($s, ..) => $body,
        }
    };
}

/// A stream socket as mio holds it: TCP or Unix, one set of calls.
#[derive(Debug)]
enum MioStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(mio::net::UnixStream),
}

impl MioStream {
    fn from_std(s: Stream) -> MioStream {
        match s {
            Stream::Tcp(s) => MioStream::Tcp(TcpStream::from_std(s)),
            #[cfg(unix)]
            Stream::Unix(s) => MioStream::Unix(mio::net::UnixStream::from_std(s)),
        }
    }

    fn into_std(self) -> Stream {
        match self {
            MioStream::Tcp(s) => Stream::Tcp(s.into()),
            #[cfg(unix)]
            MioStream::Unix(s) => Stream::Unix(s.into()),
        }
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            MioStream::Tcp(s) => drop(s.set_nodelay(true)),
            #[cfg(unix)]
            MioStream::Unix(_) => {}
        }

        let interest = Interest::READABLE | Interest::WRITABLE;
        each!(MioStream, self, s => registry.register(s, token, interest))
    }

    fn recv_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        each!(MioStream, self, s => crate::sys::recv_into(s, buf))
    }

    fn write_vectored(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        each!(MioStream, self, s => s.write_vectored(iov))
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        each!(MioStream, self, s => s.shutdown(std::net::Shutdown::Write))
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        each!(MioStream, self, s => s.take_error())
    }

    /// `Ok` once connected; `NotConnected` while a connect is in progress.
    fn connected(&self) -> io::Result<()> {
        each!(MioStream, self, s => s.peer_addr().map(drop))
    }

    #[cfg(target_os = "linux")]
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        each!(MioStream, self, s => s.as_raw_fd())
    }
}

/// A listener as mio holds it: TCP, or Unix with the socket file it removes when dropped.
#[derive(Debug)]
enum MioListener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(
        mio::net::UnixListener,
        #[allow(dead_code)] // held for its drop, which removes the file
        Option<crate::sock::SocketFile>,
    ),
}

impl MioListener {
    fn from_std(l: Listener) -> MioListener {
        match l {
            Listener::Tcp(l) => MioListener::Tcp(TcpListener::from_std(l)),
            #[cfg(unix)]
            Listener::Unix(l, file) => MioListener::Unix(mio::net::UnixListener::from_std(l), file),
        }
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        each!(MioListener, self, l => registry.register(l, token, Interest::READABLE))
    }

    fn accept(&self) -> io::Result<(MioStream, Addr)> {
        match self {
            MioListener::Tcp(l) => l.accept().map(|(s, a)| (MioStream::Tcp(s), Addr::Inet(a))),
            #[cfg(unix)]
            MioListener::Unix(l, _) => l.accept().map(|(s, a)| {
                (
                    MioStream::Unix(s),
                    Addr::Unix(crate::sock::UnixName::of(&a)),
                )
            }),
        }
    }
}

/// The token of the cross-thread waker.
const WAKER: Token = Token(usize::MAX);

/// A registered I/O object.
#[derive(Debug)]
enum IoSource {
    /// A listening socket.
    Listener(MioListener),
    /// A connected or connecting stream.
    Stream(MioStream),
    /// A datagram socket.
    #[cfg(target_os = "linux")]
    Dgram(DgramIo),
}
struct Io {
    id: SockId,
    src: IoSource,
    /// The socket is in the ready list.
    queued: bool,
    /// The kernel reported end of stream or an error: read until it shows.
    hup: bool,
    /// The last read pass brought a read of at least the splice threshold.
    bulk: bool,
}

/// The sockets, by slot.
#[derive(Default)]
pub(crate) struct IoTable {
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

    fn stream(&mut self, id: SockId) -> io::Result<&mut MioStream> {
        match self.get_mut(id).map(|io| &mut io.src) {
            Some(IoSource::Stream(s)) => Ok(s),
            _ => Err(Errno::BadF.into()),
        }
    }
}

impl SocketIo for IoTable {
    fn read(&mut self, id: SockId, buf: &mut BytesMut) -> io::Result<usize> {
        self.stream(id)?.recv_into(buf)
    }

    fn writev(&mut self, id: SockId, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream(id)?.write_vectored(iov)
    }

    fn shutdown_write(&mut self, id: SockId) -> io::Result<()> {
        match self.stream(id)?.shutdown_write() {
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
    counters: Arc<BackendCounters>,
    handoffs: Vec<Handoff>,
    /// Listeners out of descriptors, and when to accept on them again (their
    /// readiness is ignored until then: edge-triggered, the queued connections
    /// would not signal again).
    accept_later: Vec<(SockId, Instant)>,
    /// Reads of at least this many bytes switch a spliceable socket to splice.
    splice_min: Option<usize>,
    #[cfg(target_os = "linux")]
    splicer: Splicer,
    /// Datagram receive buffers, made on the first datagram socket.
    #[cfg(target_os = "linux")]
    dgram_slots: Option<Box<crate::dgram::RecvSlots>>,
    #[cfg(target_os = "linux")]
    dgram_got: Vec<crate::dgram::Received>,
}

impl EpollBackend {
    /// The poll instance's descriptor: readable while events are ready.
    #[cfg(unix)]
    pub(crate) fn poll_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.poll.as_raw_fd()
    }

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
                counters: Arc::default(),
                handoffs: Vec::new(),
                accept_later: Vec::new(),
                splice_min: None,
                #[cfg(target_os = "linux")]
                splicer: Splicer::default(),
                #[cfg(target_os = "linux")]
                dgram_slots: None,
                #[cfg(target_os = "linux")]
                dgram_got: Vec::new(),
            },
            waker,
        ))
    }

    /// Splices bytes nothing inspects from reads of at least `min` bytes (Linux; `None`: never).
    pub(crate) fn with_splice(mut self, min: Option<usize>) -> EpollBackend {
        self.splice_min = min.filter(|_| cfg!(target_os = "linux"));
        self
    }

    /// The backend's counters.
    pub(crate) fn counters(&self) -> Arc<BackendCounters> {
        self.counters.clone()
    }

    /// Registers an I/O object with epoll and the table; a failure closes the socket.
    fn insert(&mut self, core: &mut Core, id: SockId, mut src: IoSource) {
        let token = Token(id.slot());
        let r = match &mut src {
            IoSource::Listener(l) => l.register(self.poll.registry(), token),
            IoSource::Stream(s) => s.register(self.poll.registry(), token),
            #[cfg(target_os = "linux")]
            IoSource::Dgram(d) => self.poll.registry().register(
                &mut mio::unix::SourceFd(&d.sock.fd.as_raw_fd()),
                token,
                Interest::READABLE | Interest::WRITABLE,
            ),
        };
        let slot = id.slot();
        if self.table.ios.len() <= slot {
            self.table.ios.resize_with(slot + 1, || None);
        }
        self.table.ios[slot] = Some(Io {
            id,
            src,
            queued: false,
            hup: false,
            bulk: false,
        });
        if let Err(e) = r {
            core.handle_error(id, Errno::from_io(&e));
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
                Ok((stream, peer)) => match core.handle_accepted(listener, peer.clone()) {
                    Accepted::Here(id) => self.insert(core, id, IoSource::Stream(stream)),
                    Accepted::There { shard, id } => self.handoffs.push(Handoff {
                        shard,
                        id,
                        src: Source::Stream(stream.into_std()),
                        listener,
                        peer,
                    }),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The connection died in the queue: the next one may be fine.
                Err(e) if is_aborted_accept(&e) => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    core.handle_accept_starved(listener, Errno::from_io(&e));
                    self.accept_later
                        .push((listener, Instant::now() + ACCEPT_BACKOFF));
                    return;
                }
                Err(e) => {
                    core.handle_error(listener, Errno::from_io(&e));
                    return;
                }
            }
        }
    }

    fn check_connect(&mut self, core: &mut Core, id: SockId) {
        let Ok(s) = self.table.stream(id) else { return };
        match s.take_error() {
            Ok(Some(e)) | Err(e) => core.handle_connected(id, Err(Errno::from_io(&e))),
            Ok(None) => match s.connected() {
                Ok(_) => core.handle_connected(id, Ok(())),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => core.handle_connected(id, Err(Errno::from_io(&e))),
            },
        }
    }
}

impl EpollBackend {
    /// Sends a datagram socket's queue (the next writable edge goes on with what is left).
    #[cfg(target_os = "linux")]
    fn flush_dgram(&mut self, core: &mut Core, id: SockId) {
        if let Some(Io {
            src: IoSource::Dgram(d),
            ..
        }) = self.table.get_mut(id)
        {
            let fd = d.sock.fd.as_raw_fd();
            drive_dgram_flush(core, fd, &mut d.sock.offload.gso, id, &self.counters);
        }
    }

    /// The socket can take bytes: a pipe waiting on it drains first, then its send ring.
    fn writable(&mut self, core: &mut Core, id: SockId) {
        #[cfg(target_os = "linux")]
        if self.splicer.blocks(id) {
            let Ok(fd) = self.table.stream(id).map(|s| s.as_raw_fd()) else {
                return;
            };
            match self.splicer.on_writable(core, id, fd) {
                Some(src) => self.mark_ready(src),
                None if self.splicer.blocks(id) => return,
                None => {}
            }
        }
        if core.has_tx(id) {
            drive_flush(core, &mut self.table, id);
        }
    }

    /// Splices the socket's bytes when the core allows it and its reads are
    /// bulk; `None`: read it by copying.
    #[cfg(target_os = "linux")]
    fn try_splice(
        &mut self,
        core: &mut Core,
        id: SockId,
        hup: bool,
        bulk: bool,
    ) -> Option<ReadEnd> {
        if self.splicer.holds(id) {
            return Some(ReadEnd::Stopped);
        }
        let min = self.splice_min.filter(|_| bulk)?;
        let target = core.splice_route(id)?;
        let src_fd = self.table.stream(id).ok()?.as_raw_fd();
        let target_fd = self.table.stream(target).ok()?.as_raw_fd();
        match self
            .splicer
            .pass(core, id, src_fd, target, target_fd, min, hup)
        {
            Next::Read(end) => {
                self.counters.spliced();
                Some(end)
            }
            Next::WaitTarget => {
                self.counters.spliced();
                core.handle_splice_stalled(id);
                Some(ReadEnd::Stopped)
            }
            Next::Copy => {
                if let Some(io) = self.table.get_mut(id) {
                    io.bulk = false;
                }
                self.mark_ready(id);
                Some(ReadEnd::Stopped)
            }
        }
    }
}

impl Backend for EpollBackend {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn register(
        &mut self,
        core: &mut Core,
        id: SockId,
        src: Source,
        kind: NewSock,
        deadline: Option<Instant>,
    ) {
        let src = match src {
            Source::Listener(l) => IoSource::Listener(MioListener::from_std(l)),
            Source::Stream(s) => IoSource::Stream(MioStream::from_std(s)),
            #[cfg(target_os = "linux")]
            Source::Dgram(d) => {
                let role = d.role;
                core.handle_new_socket(id, kind, deadline);
                self.dgram_slots.get_or_insert_with(Box::default);
                self.insert(core, id, IoSource::Dgram(d));
                return core.handle_new_dgram(id, role);
            }
        };
        core.handle_new_socket(id, kind, deadline);
        self.insert(core, id, src);
    }

    fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = match self.accept_later.iter().map(|(_, at)| *at).min() {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                Some(timeout.map_or(left, |t| t.min(left)))
            }
            None => timeout,
        };
        self.counters.waited();
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
                if !self.accept_later.iter().any(|(l, _)| *l == id) {
                    self.accept_all(core, id);
                }
                continue;
            }
            #[cfg(target_os = "linux")]
            if matches!(io.src, IoSource::Dgram(_)) {
                if ev.is_writable() && core.has_tx(id) {
                    self.flush_dgram(core, id);
                }
                if ev.is_readable() || ev.is_error() {
                    self.mark_ready(id);
                }
                continue;
            }
            if core.is_connecting(id) && (ev.is_writable() || ev.is_error() || ev.is_write_closed())
            {
                self.check_connect(core, id);
            }
            if ev.is_read_closed() || ev.is_error() {
                if let Some(io) = self.table.get_mut(id) {
                    io.hup = true;
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                self.mark_ready(id);
            }
            if ev.is_writable() {
                self.writable(core, id);
            }
        }
        turn.clear();
        self.events = turn;
        if !self.accept_later.is_empty() {
            let now = Instant::now();
            let (due, later) = self.accept_later.drain(..).partition(|(_, at)| *at <= now);
            self.accept_later = later;
            for (id, _) in due {
                self.accept_all(core, id);
            }
        }
        Ok(())
    }

    fn read_ready(&mut self, core: &mut Core, now: Instant) {
        for _ in 0..self.ready.len() {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(io) = self.table.get_mut(id) else {
                continue;
            };
            io.queued = false;
            #[cfg(target_os = "linux")]
            if let IoSource::Dgram(d) = &io.src {
                let slots = self.dgram_slots.get_or_insert_with(Box::default);
                let bufs = (&mut **slots, &mut self.dgram_got);
                let end = drive_dgram_read(core, d.fd(), id, bufs, &self.counters, now);
                if end == ReadEnd::Budget {
                    self.mark_ready(id);
                }
                continue;
            }
            #[cfg_attr(not(target_os = "linux"), allow(unused_variables))] // bulk: for splicing
            let (hup, bulk) = (io.hup, io.bulk);
            #[cfg(target_os = "linux")]
            if let Some(end) = self.try_splice(core, id, hup, bulk) {
                if end == ReadEnd::Budget {
                    self.mark_ready(id);
                }
                continue;
            }
            let (end, largest) = drive_read(core, &mut self.table, id, &mut self.rb, !hup, now);
            if let (Some(min), Some(io)) = (self.splice_min, self.table.get_mut(id)) {
                io.bulk = largest >= min;
            }
            if end == ReadEnd::Budget {
                self.mark_ready(id);
            }
        }
    }

    fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn mark_ready(&mut self, id: SockId) {
        if let Some(io) = self.table.get_mut(id) {
            if !io.queued {
                io.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    fn flush(&mut self, core: &mut Core, id: SockId) {
        #[cfg(target_os = "linux")]
        if let Some(Io {
            src: IoSource::Dgram(_),
            ..
        }) = self.table.get(id)
        {
            return self.flush_dgram(core, id);
        }
        #[cfg(target_os = "linux")]
        if self.splicer.blocks(id) {
            // Spliced bytes go first: the ring follows once the pipe is empty.
            return self.writable(core, id);
        }
        drive_flush(core, &mut self.table, id);
    }

    fn shutdown_write(&mut self, core: &mut Core, id: SockId) {
        drive_shutdown(core, &mut self.table, id);
    }

    fn close(&mut self, core: &mut Core, id: SockId) {
        #[cfg(target_os = "linux")]
        if let Some(src) = self.splicer.forget(core, id) {
            self.mark_ready(src);
        }
        drive_close(core, &mut self.table, id);
    }

    fn take_handoffs(&mut self, out: &mut Vec<Handoff>) {
        out.append(&mut self.handoffs);
    }
}

/// ECONNABORTED or EPROTO: the connection at the head of the queue died before it was accepted.
fn is_aborted_accept(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionAborted || Errno::from_io(e) == Errno::Proto
}

/// EMFILE, ENFILE, ENOBUFS or ENOMEM: the process or system is out of descriptors or buffers.
#[cfg(unix)]
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// WSAEMFILE or WSAENOBUFS: the process or system is out of sockets or buffers.
#[cfg(not(unix))]
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(10024 | 10055)) || e.kind() == io::ErrorKind::OutOfMemory
}
