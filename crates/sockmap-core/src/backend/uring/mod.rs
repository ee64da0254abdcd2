//! The io_uring backend: the core's operations as submissions and their
//! completions as the core's inputs, on the engine's I/O thread.
//!
//! - Listeners: one multishot accept each, armed again when it ends.
//! - Reading: one multishot receive for each socket the core wants read,
//!   into the provided-buffer ring ([`buf_ring`]). What arrives while the
//!   core does not want it (paused, backpressure) is parked in the socket's
//!   entry and the receive is cancelled, so no more than what was already
//!   on its way is parked. A receive that ends — the ring ran dry
//!   (`ENOBUFS`, backpressure, not an error), a cancel, or any completion
//!   without `IORING_CQE_F_MORE` — is armed again once the core wants data
//!   and, after `ENOBUFS`, once buffers came back. In the basic mode (no
//!   buffer ring, or a kernel without multishot receives) each socket has
//!   one single-shot receive into a buffer of its own.
//! - Writing: at most one send in flight per socket (`SENDMSG` over clones
//!   of the send ring's leading fragments, or `SEND` for a single one), so
//!   bytes never reorder; the next starts when it completes. A connect in progress waits on a poll
//!   for writability.
//! - Closing: a socket with operations in flight has them cancelled by
//!   descriptor (`ASYNC_CANCEL`, all of them) hard-linked to an
//!   `IORING_OP_CLOSE`, so the descriptor cannot be reused before its
//!   operations are gone; whatever the cancel's result (it differs between
//!   kernel versions), the close runs.
//!
//! Invariants:
//! - every submission's `user_data` is a [`Token`]: an operation kind and
//!   the socket's id (slot and generation). A completion whose id is not
//!   the live socket of its slot is stale: it is ignored, its provided
//!   buffer goes back to the ring, and the memory the operation used
//!   (a send's fragments and iovecs, a basic receive's buffer) is kept in
//!   `orphans` until that operation's last completion;
//! - memory an operation in flight points at never moves or drops: send
//!   state is boxed and kept in the entry (or `orphans`) until completion;
//! - the io_uring instance drops before the buffer ring, which the kernel
//!   reads until the instance is gone.

mod buf_ring;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

use self::buf_ring::BufRing;
use super::dgram::{drive_dgram_flush, drive_dgram_read, DgramFd};
use super::{Backend, BackendCounters, Handoff, Source, Wake, ACCEPT_BACKOFF};
use crate::config::EngineConfig;
use crate::dgram::{DgramRole, Offload, Received, RecvSlots};
use crate::error::Errno;
use crate::error::StartError;
use crate::id::SockId;
use crate::psock::{Accepted, Core, NewSock};
use crate::sock::{Addr, Family, Listener, SocketFile, Stream, UnixName};

/// Submission queue entries; the completion queue has four times as many.
const SQ_ENTRIES: u32 = 1024;
/// The buffer group of the provided-buffer ring.
const BGID: u16 = 0;
/// Fragments one send carries at most.
const SEND_FRAGS: usize = 64;
/// Bytes a basic-mode receive asks for.
const BASIC_RECV: usize = 16 << 10;

/// What a submission is for: the top byte of its `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Accept = 1,
    Recv,
    Send,
    Connect,
    Wake,
    Cancel,
    Close,
    /// A datagram socket's readability (multishot poll).
    Poll,
    /// A datagram socket's writability, after a send found it full.
    PollOut,
}

/// A submission's `user_data`: its kind and the socket's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Token(u64);

impl Token {
    const ID_BITS: u32 = 56;

    fn new(kind: Kind, id: SockId) -> Token {
        Token((kind as u64) << Token::ID_BITS | id.as_u64())
    }

    fn kind(self) -> Option<Kind> {
        Some(match self.0 >> Token::ID_BITS {
            1 => Kind::Accept,
            2 => Kind::Recv,
            3 => Kind::Send,
            4 => Kind::Connect,
            5 => Kind::Wake,
            6 => Kind::Cancel,
            7 => Kind::Close,
            8 => Kind::Poll,
            9 => Kind::PollOut,
            _ => return None,
        })
    }

    fn id(self) -> SockId {
        SockId::from_u64(self.0 & ((1 << Token::ID_BITS) - 1))
    }
}

/// The eventfd other threads write to wake the I/O thread.
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

impl Wake for EventFd {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN) already wakes.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The state of a socket's receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recv {
    /// None in flight.
    Idle,
    /// In flight (multishot, or one basic receive).
    Armed,
    /// A cancel was asked; its last completion is on the way.
    Cancelling,
}

/// How a socket's receive side ended, delivered after its parked bytes.
#[derive(Clone, Copy, Debug)]
enum End {
    Eof,
    Error(Errno),
}

/// One send in flight: the fragments and the kernel's view of them.
struct SendOp {
    frags: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

impl SendOp {
    fn new() -> Box<SendOp> {
        Box::new(SendOp {
            frags: Vec::with_capacity(SEND_FRAGS),
            iov: Vec::with_capacity(SEND_FRAGS),
            // SAFETY: an all-zero msghdr is a valid empty one.
            msg: unsafe { std::mem::zeroed() },
        })
    }

    /// Points the message header at the fragments.
    fn prepare(&mut self) {
        self.iov.clear();
        self.iov.extend(self.frags.iter().map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        }));
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
    }
}

/// Memory an operation of a closed socket may still use.
enum Orphan {
    Send(#[allow(dead_code)] Box<SendOp>),
    Recv(#[allow(dead_code)] BytesMut),
}

/// A registered socket.
struct Entry {
    id: SockId,
    fd: OwnedFd,
    /// A listener: the family of the streams it accepts.
    listener: Option<Family>,
    /// The socket file a Unix listener removes when its entry drops.
    _file: Option<SocketFile>,
    connecting: bool,
    recv: Recv,
    /// Bytes received and not yet handed to the core, oldest first.
    parked: VecDeque<Bytes>,
    end: Option<End>,
    /// In the ready list.
    queued: bool,
    /// The last receive ended for lack of buffers.
    starved: bool,
    send: Option<Box<SendOp>>,
    /// The buffer a basic receive in flight fills.
    recv_buf: Option<BytesMut>,
    accept_armed: bool,
    /// A datagram socket: its role and offloads, and its polls in flight.
    dgram: Option<(DgramRole, Offload)>,
    poll_armed: bool,
    pollout_armed: bool,
}

impl Entry {
    fn new(id: SockId, fd: OwnedFd, listener: Option<Family>, connecting: bool) -> Entry {
        Entry {
            id,
            fd,
            listener,
            _file: None,
            connecting,
            recv: Recv::Idle,
            parked: VecDeque::new(),
            end: None,
            queued: false,
            starved: false,
            send: None,
            recv_buf: None,
            accept_armed: false,
            dgram: None,
            poll_armed: false,
            pollout_armed: false,
        }
    }

    fn busy(&self) -> bool {
        self.recv != Recv::Idle
            || self.send.is_some()
            || self.connecting
            || self.accept_armed
            || self.poll_armed
            || self.pollout_armed
    }
}

/// The io_uring backend.
pub(crate) struct UringBackend {
    // Field order matters: the ring drops before the buffer ring it reads.
    ring: IoUring,
    bufs: Option<BufRing>,
    table: Vec<Option<Entry>>,
    ready: VecDeque<SockId>,
    orphans: HashMap<Token, Orphan>,
    /// Boxed: a send's header must not move while the kernel reads it, and ops move between here and entries.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<SendOp>>,
    /// Listeners to accept on again, and when.
    accept_later: Vec<(SockId, Instant)>,
    /// `IORING_OP_CLOSE`s queued or in flight: each owns a socket's descriptor.
    closing: usize,
    /// Sockets whose receive waits for buffers.
    starved: Vec<SockId>,
    wake: Arc<EventFd>,
    wake_buf: Box<u64>,
    cqes: Vec<(u64, i32, u32)>,
    /// Entries the submission queue had no room for, in order (chains kept whole).
    backlog: VecDeque<Vec<squeue::Entry>>,
    multishot: bool,
    /// Datagram receive buffers, made on the first datagram socket.
    dgram_slots: Option<Box<RecvSlots>>,
    /// Readiness polls of datagram sockets are multishot (until the kernel refuses one).
    multishot_poll: bool,
    dgram_got: Vec<Received>,
    counters: Arc<BackendCounters>,
    handoffs: Vec<Handoff>,
}

impl UringBackend {
    /// The ring's descriptor (readable while completions wait).
    pub(crate) fn poll_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.ring.as_raw_fd()
    }

    /// Creates the ring on the calling thread (the I/O thread, which alone
    /// submits), probes what the kernel offers and steps down to the basic
    /// mode where it must, recording why in `fallbacks`. Returns the backend,
    /// the waker other threads ring, and the kernel features in use.
    ///
    /// `fault` makes one start-up step fail, for tests (see
    /// [`URING_FAULT_ENV`](super::select::URING_FAULT_ENV)).
    ///
    /// # Errors
    /// When io_uring cannot run at all.
    pub(crate) fn new(
        cfg: &EngineConfig,
        fault: Option<&str>,
        fallbacks: &mut Vec<String>,
    ) -> Result<(UringBackend, Arc<EventFd>, Vec<&'static str>), StartError> {
        let mut features = Vec::new();
        if fault == Some("setup") {
            return Err(StartError::os(
                "io_uring_setup",
                &io::Error::from_raw_os_error(libc::EPERM),
            ));
        }
        let ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(SQ_ENTRIES * 4)
            .build(SQ_ENTRIES)
        {
            Ok(r) => {
                features.extend(["single-issuer", "defer-taskrun"]);
                r
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                fallbacks.push(format!(
                    "io_uring: SINGLE_ISSUER|DEFER_TASKRUN refused ({e}), plain ring"
                ));
                IoUring::builder()
                    .setup_cqsize(SQ_ENTRIES * 4)
                    .build(SQ_ENTRIES)
                    .map_err(|e| StartError::os("io_uring_setup", &e))?
            }
            Err(e) => return Err(StartError::os("io_uring_setup", &e)),
        };
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| StartError::os("io_uring probe", &e))?;
        let needed = [
            (opcode::AcceptMulti::CODE, "ACCEPT"),
            (opcode::Recv::CODE, "RECV"),
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::Send::CODE, "SEND"),
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
            (opcode::Close::CODE, "CLOSE"),
            (opcode::Read::CODE, "READ"),
        ];
        for (code, name) in needed {
            if !probe.is_supported(code) || (fault == Some("probe") && name == "SENDMSG") {
                return Err(StartError {
                    code: Errno::OpNotSupp,
                    detail: format!("the kernel's io_uring lacks IORING_OP_{name}"),
                });
            }
        }
        let wake = Arc::new(EventFd::new().map_err(|e| StartError::os("eventfd", &e))?);
        let count = cfg.recv_buffers.clamp(1, 1 << 15).next_power_of_two() as u16;
        let bufs = if fault == Some("buf_ring") {
            Err(io::Error::from_raw_os_error(libc::ENOMEM))
        } else {
            BufRing::new(
                &ring.submitter(),
                BGID,
                count,
                cfg.read_buffer.max(1),
                wake.clone(),
            )
        };
        let bufs = match bufs {
            Ok(b) => {
                features.extend(["multishot-accept", "multishot-recv", "buffer-ring"]);
                Some(b)
            }
            Err(e) => {
                fallbacks.push(format!(
                    "io_uring: provided-buffer ring refused ({}), single-shot receives",
                    Errno::from_io(&e)
                ));
                features.push("multishot-accept");
                None
            }
        };
        let multishot = bufs.is_some();
        let mut backend = UringBackend {
            ring,
            bufs,
            table: Vec::new(),
            ready: VecDeque::new(),
            orphans: HashMap::new(),
            spare: Vec::new(),
            accept_later: Vec::new(),
            closing: 0,
            starved: Vec::new(),
            wake: wake.clone(),
            wake_buf: Box::new(0),
            cqes: Vec::with_capacity(SQ_ENTRIES as usize * 4),
            backlog: VecDeque::new(),
            multishot,
            dgram_slots: None,
            multishot_poll: true,
            dgram_got: Vec::new(),
            counters: Arc::default(),
            handoffs: Vec::new(),
        };
        backend.arm_wake();
        Ok((backend, wake, features))
    }

    /// The backend's counters.
    pub(crate) fn counters(&self) -> Arc<BackendCounters> {
        self.counters.clone()
    }

    /// Queues a submission, submitting what is queued first when the queue is full.
    fn push(&mut self, sqe: squeue::Entry) {
        self.push_all(&[sqe]);
    }

    /// Queues submissions together (a linked chain stays in one submit).
    /// With the submission queue full, what is queued is submitted first; if
    /// the kernel takes nothing now (`EBUSY`, `EAGAIN`), the entries wait in
    /// the backlog for the next wait: none is ever dropped.
    fn push_all(&mut self, sqes: &[squeue::Entry]) {
        if self.backlog.is_empty() && self.try_push(sqes) {
            return;
        }
        if self.ring.submit().is_ok() && self.backlog.is_empty() && self.try_push(sqes) {
            return;
        }
        self.backlog.push_back(sqes.to_vec());
    }

    /// Queues `sqes` if they all fit now.
    fn try_push(&mut self, sqes: &[squeue::Entry]) -> bool {
        let mut sq = self.ring.submission();
        if sq.capacity() - sq.len() < sqes.len() {
            return false;
        }
        for e in sqes {
            // SAFETY: every pointer an entry carries stays valid until its
            // completion (module invariants); there is room, checked above.
            let _ = unsafe { sq.push(e) };
        }
        true
    }

    /// Moves backlogged entries into the submission queue while they fit, in order.
    fn drain_backlog(&mut self) {
        while let Some(chain) = self.backlog.pop_front() {
            if !self.try_push(&chain) {
                self.backlog.push_front(chain);
                return;
            }
        }
    }

    fn arm_wake(&mut self) {
        let fd = self.wake.0.as_raw_fd();
        let buf: *mut u64 = &mut *self.wake_buf;
        let sqe = opcode::Read::new(Fd(fd), buf.cast(), 8)
            .build()
            .user_data(Token::new(Kind::Wake, SockId::from_u64(0)).0);
        self.push(sqe);
    }

    fn entry(&mut self, id: SockId) -> Option<&mut Entry> {
        self.table
            .get_mut(id.slot())
            .and_then(Option::as_mut)
            .filter(|e| e.id == id)
    }

    fn insert(&mut self, e: Entry) {
        let slot = e.id.slot();
        if self.table.len() <= slot {
            self.table.resize_with(slot + 1, || None);
        }
        self.table[slot] = Some(e);
    }

    /// Arms a datagram socket's multishot readability poll.
    fn arm_poll(&mut self, id: SockId) {
        let Some(e) = self.entry(id) else { return };
        if e.poll_armed {
            return;
        }
        e.poll_armed = true;
        let sqe = opcode::PollAdd::new(Fd(e.fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(self.multishot_poll)
            .build()
            .user_data(Token::new(Kind::Poll, id).0);
        self.push(sqe);
    }

    /// A datagram socket became readable: read it this turn; the poll is armed again once it ends (one-shot
    /// from then on if the kernel refused a multishot poll, before 5.13).
    fn on_poll(&mut self, id: SockId, res: i32, flags: u32) {
        if res == -libc::EINVAL && self.multishot_poll {
            self.multishot_poll = false;
        }
        if !cqueue::more(flags) {
            if let Some(e) = self.entry(id) {
                e.poll_armed = false;
            }
            self.arm_poll(id);
        }
        self.mark(id);
    }

    /// Sends a datagram socket's queue; a full socket buffer waits for writability.
    fn flush_dgram(&mut self, core: &mut Core, id: SockId) {
        let counters = self.counters.clone();
        let Some(e) = self.entry(id) else { return };
        let fd = e.fd.as_raw_fd();
        let Some((_, offload)) = e.dgram.as_mut() else {
            return;
        };
        if e.pollout_armed || !drive_dgram_flush(core, fd, &mut offload.gso, id, &counters) {
            return;
        }
        let Some(e) = self.entry(id) else { return };
        e.pollout_armed = true;
        let sqe = opcode::PollAdd::new(Fd(fd), libc::POLLOUT as u32)
            .build()
            .user_data(Token::new(Kind::PollOut, id).0);
        self.push(sqe);
    }

    fn arm_accept(&mut self, id: SockId) {
        let Some(e) = self.entry(id) else { return };
        if e.accept_armed {
            return;
        }
        e.accept_armed = true;
        let fd = e.fd.as_raw_fd();
        let sqe = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build()
            .user_data(Token::new(Kind::Accept, id).0);
        self.push(sqe);
    }

    /// Arms the socket's receive if the core wants data and nothing stands in the way.
    fn settle(&mut self, core: &Core, id: SockId) {
        let wants = core.wants_read(id);
        let multishot = self.multishot;
        let Some(e) = self.entry(id) else { return };
        if e.listener.is_some() || e.connecting {
            return;
        }
        match e.recv {
            Recv::Idle if wants && e.parked.is_empty() && e.end.is_none() && !e.starved => {
                e.recv = Recv::Armed;
                let fd = e.fd.as_raw_fd();
                let sqe = if multishot {
                    opcode::RecvMulti::new(Fd(fd), BGID).build()
                } else {
                    let buf = e
                        .recv_buf
                        .get_or_insert_with(|| BytesMut::with_capacity(BASIC_RECV));
                    buf.reserve(BASIC_RECV);
                    let spare = buf.spare_capacity_mut();
                    opcode::Recv::new(Fd(fd), spare.as_mut_ptr().cast(), spare.len() as u32).build()
                };
                self.push(sqe.user_data(Token::new(Kind::Recv, id).0));
            }
            Recv::Armed if !wants && multishot => {
                e.recv = Recv::Cancelling;
                let sqe = opcode::AsyncCancel::new(Token::new(Kind::Recv, id).0)
                    .build()
                    .user_data(Token::new(Kind::Cancel, id).0);
                self.push(sqe);
            }
            _ => {}
        }
    }

    /// Starts a send of the socket's queued bytes unless one is in flight.
    fn start_send(&mut self, core: &Core, id: SockId) {
        let mut op = self.spare.pop().unwrap_or_else(SendOp::new);
        let Some(e) = self.entry(id) else {
            self.spare.push(op);
            return;
        };
        if e.send.is_some() || e.connecting {
            self.spare.push(op);
            return;
        }
        op.frags.clear();
        if core.clone_tx(id, &mut op.frags, SEND_FRAGS) == 0 {
            self.spare.push(op);
            return;
        }
        let fd = e.fd.as_raw_fd();
        // One fragment (most small messages): a plain SEND, without a header for the kernel to copy.
        let sqe = match op.frags.as_slice() {
            [one] => opcode::Send::new(Fd(fd), one.as_ptr(), one.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build(),
            _ => {
                op.prepare();
                opcode::SendMsg::new(Fd(fd), &op.msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
        };
        let sqe = sqe.user_data(Token::new(Kind::Send, id).0);
        e.send = Some(op);
        self.push(sqe);
    }

    fn mark(&mut self, id: SockId) {
        if let Some(e) = self.entry(id) {
            if !e.queued {
                e.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Runs one completion.
    fn complete(&mut self, core: &mut Core, token: Token, res: i32, flags: u32) {
        let Some(kind) = token.kind() else { return };
        if kind == Kind::Wake {
            self.arm_wake();
            return;
        }
        if kind == Kind::Close {
            self.closing -= 1;
        }
        let id = token.id();
        if self.entry(id).is_none() {
            // Stale: the socket closed (or its slot was reused) after this was submitted.
            self.counters.stale();
            if kind == Kind::Accept && res >= 0 {
                // SAFETY: an accept completion carries a new descriptor nobody else owns.
                drop(unsafe { OwnedFd::from_raw_fd(res) });
            }
            if let (Some(bid), Some(bufs)) = (cqueue::buffer_select(flags), self.bufs.as_mut()) {
                bufs.recycle(bid);
            }
            if !cqueue::more(flags) {
                self.orphans.remove(&token);
            }
            return;
        }
        match kind {
            Kind::Accept => self.on_accept(core, id, res, flags),
            Kind::Recv => self.on_recv(id, res, flags),
            Kind::Send => self.on_send(core, id, res),
            Kind::Connect => self.on_connect(core, id, res),
            Kind::Poll => self.on_poll(id, res, flags),
            Kind::PollOut => {
                if let Some(e) = self.entry(id) {
                    e.pollout_armed = false;
                }
                self.flush_dgram(core, id);
            }
            Kind::Wake | Kind::Cancel | Kind::Close => {}
        }
    }

    fn on_accept(&mut self, core: &mut Core, listener: SockId, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            if let Some(e) = self.entry(listener) {
                e.accept_armed = false;
            }
        }
        if res >= 0 {
            // SAFETY: a successful accept completion carries a new descriptor we now own.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            let family = self
                .entry(listener)
                .and_then(|e| e.listener)
                .unwrap_or(Family::Tcp);
            let stream = Stream::from_fd(family, fd);
            stream.set_nodelay();
            let peer = stream.peer_addr().unwrap_or(match family {
                Family::Tcp => Addr::Inet(SocketAddr::from(([0, 0, 0, 0], 0))),
                Family::Unix => Addr::Unix(UnixName::Unnamed),
            });
            match core.handle_accepted(listener, peer.clone()) {
                Accepted::Here(id) => {
                    self.insert(Entry::new(id, stream.into(), None, false));
                    self.settle(core, id);
                }
                Accepted::There { shard, id } => self.handoffs.push(Handoff {
                    shard,
                    id,
                    src: Source::Stream(stream),
                    listener,
                    peer,
                }),
            }
            if !cqueue::more(flags) {
                self.arm_accept(listener);
            }
            return;
        }
        match -res {
            libc::ECANCELED => {}
            libc::EINTR | libc::EAGAIN | libc::ECONNABORTED | libc::EPROTO => {
                self.arm_accept(listener)
            }
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                core.handle_accept_starved(listener, errno(-res));
                let at = Instant::now() + ACCEPT_BACKOFF;
                self.accept_later.push((listener, at));
            }
            e => core.handle_error(listener, errno(e)),
        }
    }

    fn on_recv(&mut self, id: SockId, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let multishot = self.multishot;
        let mut data = None;
        if res > 0 {
            data = Some(match (bid, self.bufs.as_mut()) {
                (Some(bid), Some(bufs)) => bufs.take(bid, res as usize),
                _ => {
                    let Some(e) = self.entry(id) else { return };
                    let buf = e
                        .recv_buf
                        .as_mut()
                        .expect("a basic receive owns its buffer");
                    // SAFETY: the kernel initialized `res` bytes of the spare capacity.
                    unsafe { buf.set_len(buf.len() + res as usize) };
                    buf.split_to(res as usize).freeze()
                }
            });
        } else if let (Some(bid), Some(bufs)) = (bid, self.bufs.as_mut()) {
            bufs.recycle(bid);
        }
        let mut fell_back = false;
        let mut starved = false;
        let Some(e) = self.entry(id) else { return };
        match (res, data) {
            (_, Some(d)) => e.parked.push_back(d),
            (0, None) => e.end = Some(End::Eof),
            (r, None) => match -r {
                libc::ENOBUFS => {
                    e.starved = true;
                    starved = true;
                }
                libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                libc::EINVAL if multishot && e.parked.is_empty() => fell_back = true,
                err => e.end = Some(End::Error(errno(err))),
            },
        }
        if !more || !multishot {
            e.recv = Recv::Idle;
        }
        if starved {
            self.counters.starved();
            self.starved.push(id);
            if let Some(b) = &self.bufs {
                b.set_starved(true);
            }
        }
        if fell_back {
            // A kernel with buffer rings but no multishot receive (before 6.0):
            // single-shot receives from now on (`BackendInfo` describes start-up).
            self.multishot = false;
        }
        self.mark(id);
    }

    fn on_send(&mut self, core: &mut Core, id: SockId, res: i32) {
        let Some(e) = self.entry(id) else { return };
        if let Some(mut op) = e.send.take() {
            op.frags.clear();
            self.spare.push(op);
        }
        match res {
            n if n >= 0 => {
                core.handle_sent(id, n as usize);
                if core.has_tx(id) {
                    self.start_send(core, id);
                }
            }
            n if -n == libc::EINTR || -n == libc::EAGAIN => self.start_send(core, id),
            n => core.handle_error(id, errno(-n)),
        }
    }

    fn on_connect(&mut self, core: &mut Core, id: SockId, res: i32) {
        let Some(e) = self.entry(id) else { return };
        e.connecting = false;
        let fd = e.fd.as_raw_fd();
        if res < 0 && -res != libc::ECANCELED {
            core.handle_connected(id, Err(errno(-res)));
            return;
        }
        match socket_error(fd) {
            Some(err) => core.handle_connected(id, Err(errno(err))),
            None => {
                core.handle_connected(id, Ok(()));
                if core.has_tx(id) {
                    self.start_send(core, id);
                }
                self.settle(core, id);
            }
        }
    }

    /// Arms again what waited: listeners after a backoff, receives after buffers came back.
    fn rearm(&mut self, core: &Core, now: Instant) {
        if !self.accept_later.is_empty() {
            let (due, later): (Vec<_>, Vec<_>) =
                self.accept_later.drain(..).partition(|(_, at)| *at <= now);
            self.accept_later = later;
            for (id, _) in due {
                self.arm_accept(id);
            }
        }
        let Some(bufs) = self.bufs.as_mut() else {
            return;
        };
        let available = bufs.refill();
        if self.starved.is_empty() || available < (bufs.count() / 8).max(1) {
            return;
        }
        bufs.set_starved(false);
        for id in std::mem::take(&mut self.starved) {
            if let Some(e) = self.entry(id) {
                e.starved = false;
            }
            self.settle(core, id);
        }
    }
}

fn errno(raw: i32) -> Errno {
    Errno::from_raw(raw).unwrap_or(Errno::Io)
}

/// How long dropping the backend waits for the closes it queued.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Drop for UringBackend {
    /// The loop can end right after a turn queued a socket's cancel and
    /// close (its last socket closed): submit them and wait for the closes,
    /// or those descriptors would stay open (and their peers connected) for
    /// as long as the process lives.
    fn drop(&mut self) {
        let end = Instant::now() + CLOSE_GRACE;
        while self.closing > 0 && Instant::now() < end {
            self.drain_backlog();
            let ts = Timespec::new().nsec(10_000_000);
            let args = SubmitArgs::new().timespec(&ts);
            if waited(self.ring.submitter().submit_with_args(1, &args)).is_err() {
                return;
            }
            let done: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (token, res) in done {
                match Token(token).kind() {
                    Some(Kind::Close) => self.closing -= 1,
                    Some(Kind::Accept) if res >= 0 => {
                        // SAFETY: an accept completion carries a new descriptor nobody else owns.
                        drop(unsafe { OwnedFd::from_raw_fd(res) });
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The outcome of a submit-and-wait: a timeout, an interrupted wait and a full completion queue (`ETIME`, `EINTR`,
/// `EBUSY`) are waits that ended, not failures.
fn waited(r: io::Result<usize>) -> io::Result<()> {
    match r {
        Err(e)
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}

/// The socket's pending error (`SO_ERROR`), if any.
fn socket_error(fd: RawFd) -> Option<i32> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are live and sized for SO_ERROR.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return io::Error::last_os_error().raw_os_error();
    }
    (err != 0).then_some(err)
}

impl Backend for UringBackend {
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
        core.handle_new_socket(id, kind, deadline);
        let (fd, listener, file): (OwnedFd, _, _) = match src {
            Source::Listener(l) => {
                let family = l.family();
                let (fd, file) = match l {
                    Listener::Tcp(l) => (l.into(), None),
                    Listener::Unix(l, file) => (l.into(), file),
                };
                (fd, Some(family), file)
            }
            Source::Stream(s) => {
                s.set_nodelay();
                (s.into(), None, None)
            }
            Source::Dgram(d) => {
                let mut entry = Entry::new(id, d.sock.fd, None, false);
                entry._file = d.sock.file;
                entry.dgram = Some((d.role, d.sock.offload));
                self.insert(entry);
                self.dgram_slots.get_or_insert_with(Box::default);
                self.arm_poll(id);
                return core.handle_new_dgram(id, d.role);
            }
        };
        let connecting = kind == NewSock::Connecting;
        let raw = fd.as_raw_fd();
        let mut entry = Entry::new(id, fd, listener, connecting);
        entry._file = file;
        self.insert(entry);
        if listener.is_some() {
            self.arm_accept(id);
        } else if connecting {
            let sqe = opcode::PollAdd::new(Fd(raw), libc::POLLOUT as u32)
                .build()
                .user_data(Token::new(Kind::Connect, id).0);
            self.push(sqe);
        } else {
            self.settle(core, id);
        }
    }

    fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        self.rearm(core, now);
        self.drain_backlog();
        let timeout = match self.accept_later.iter().map(|(_, at)| *at).min() {
            Some(at) => Some(timeout.map_or(at - now.min(at), |t| t.min(at - now.min(at)))),
            None => timeout,
        };
        // Backlogged entries go in as soon as this submit makes room: do not sleep on them.
        let timeout = if self.backlog.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.counters.waited();
        let r = match timeout {
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        waited(r)?;
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(token, res, flags) in &cqes {
            self.complete(core, Token(token), res, flags);
        }
        cqes.clear();
        self.cqes = cqes;
        Ok(())
    }

    fn read_ready(&mut self, core: &mut Core, now: Instant) {
        let budget = core.config().read_budget;
        for _ in 0..self.ready.len() {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(e) = self.entry(id) else { continue };
            e.queued = false;
            if let Some((role, offload)) = e.dgram {
                let io = DgramFd {
                    fd: e.fd.as_raw_fd(),
                    role,
                    offload,
                };
                let slots = self.dgram_slots.get_or_insert_with(Box::default);
                let bufs = (&mut **slots, &mut self.dgram_got);
                let end = drive_dgram_read(core, io, id, bufs, &self.counters, now);
                if end == super::ReadEnd::Budget {
                    self.mark(id);
                }
                continue;
            }
            let mut total = 0;
            let mut again = false;
            while core.wants_read(id) {
                let Some(e) = self.entry(id) else { break };
                if total >= budget {
                    again = !e.parked.is_empty() || e.end.is_some();
                    break;
                }
                if let Some(d) = e.parked.pop_front() {
                    total += d.len();
                    core.handle_received(id, d, now);
                    continue;
                }
                match e.end.take() {
                    Some(End::Eof) => core.handle_eof(id),
                    Some(End::Error(err)) => core.handle_error(id, err),
                    None => {}
                }
                break;
            }
            if again {
                self.mark(id);
            }
            self.settle(core, id);
        }
    }

    fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn mark_ready(&mut self, id: SockId) {
        let Some(e) = self.entry(id) else { return };
        if e.dgram.is_some() {
            return self.mark(id);
        }
        if !e.parked.is_empty() || e.end.is_some() || e.recv == Recv::Idle {
            self.mark(id);
        }
    }

    fn flush(&mut self, core: &mut Core, id: SockId) {
        if self.entry(id).is_some_and(|e| e.dgram.is_some()) {
            return self.flush_dgram(core, id);
        }
        self.start_send(core, id);
    }

    fn shutdown_write(&mut self, core: &mut Core, id: SockId) {
        let Some(e) = self.entry(id) else { return };
        // SAFETY: plain syscall on a descriptor the entry owns.
        let r = unsafe { libc::shutdown(e.fd.as_raw_fd(), libc::SHUT_WR) };
        let err = io::Error::last_os_error();
        match r {
            0 => core.handle_write_shut(id),
            _ if err.raw_os_error() == Some(libc::ENOTCONN) => core.handle_write_shut(id),
            _ => core.handle_error(id, Errno::from_io(&err)),
        }
    }

    fn close(&mut self, core: &mut Core, id: SockId) {
        let slot = id.slot();
        if let (Some(e), Some(b)) = (self.entry(id), core.take_farewell(id)) {
            send_now(&e.fd, &b);
        }
        if self.entry(id).is_some() {
            let e = self.table[slot].take().expect("checked live");
            let busy = e.busy();
            let receiving = e.recv != Recv::Idle;
            let Entry {
                fd, send, recv_buf, ..
            } = e;
            if let Some(op) = send {
                self.orphans
                    .insert(Token::new(Kind::Send, id), Orphan::Send(op));
            }
            if let (Some(buf), true) = (recv_buf, receiving) {
                self.orphans
                    .insert(Token::new(Kind::Recv, id), Orphan::Recv(buf));
            }
            if busy {
                let raw = fd.into_raw_fd();
                let cancel = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(raw)).all())
                    .build()
                    .flags(squeue::Flags::IO_HARDLINK)
                    .user_data(Token::new(Kind::Cancel, id).0);
                let close = opcode::Close::new(Fd(raw))
                    .build()
                    .user_data(Token::new(Kind::Close, id).0);
                self.push_all(&[cancel, close]);
                self.closing += 1;
            }
        }
        core.handle_closed(id);
    }

    fn take_handoffs(&mut self, out: &mut Vec<Handoff>) {
        out.append(&mut self.handoffs);
    }
}

/// Writes `data` on `fd` at once, best effort (never blocking, never
/// raising `SIGPIPE`): a failed TLS connection's alert, as it closes.
fn send_now(fd: &OwnedFd, data: &[u8]) {
    // SAFETY: `fd` is an open socket owned by the caller for the call, and
    // `data` is valid for reads of `data.len()` bytes; the result is ignored.
    let _ = unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}
