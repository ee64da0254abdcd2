//! The driver: one loop turn, written once, that runs the sans-IO
//! [`Core`] over any [`Backend`], and what crosses into the I/O thread
//! (commands and their doorbell) and out of it (events).
//!
//! One turn ([`turn`]):
//! 1. wait for the backend's readiness (or completions), at most until the
//!    core's next deadline, not at all while sockets are still ready;
//! 2. feed the commands the application queued (new sockets, map changes,
//!    sends, answers...), in order;
//! 3. read the ready sockets (each within its fairness budget);
//! 4. run the core's deadlines, and hand off the open batch when no socket
//!    is still ready;
//! 5. carry out the core's ops (reads, writes, shutdowns, closes);
//! 6. publish the events.
//!
//! Dependencies point one way: `engine` → `driver` → `backend`, `psock`.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
use std::io;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{Backend, Source, Wake};
use crate::batch::{Answers, Replier};
use crate::event::Event;
use crate::id::SockId;
use crate::map_view::MapChange;
use crate::psock::{Core, NewSock, Op, Remote};
use crate::sock::Addr;

/// A command for the I/O thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// A socket the registry allocated, with its I/O object.
    Register {
        id: SockId,
        src: Source,
        kind: NewSock,
        deadline: Option<Instant>,
        /// Bytes the application read from an adopted stream before the engine took it.
        initial: Bytes,
        /// A connection another shard's listener accepted: the listener and the peer.
        accepted: Option<(SockId, Addr)>,
    },
    /// Items from another shard's core (cross-shard redirects and their answers).
    Remote(Vec<Remote>),
    Map(MapChange),
    Relink(SockId),
    Resume(SockId),
    Pause(SockId),
    End(SockId),
    Destroy(SockId),
    Send {
        sock: SockId,
        data: Bytes,
        req: u64,
    },
    /// A datagram from a bound socket to `to`.
    SendTo {
        sock: SockId,
        data: Bytes,
        to: Addr,
        req: u64,
    },
    Answer {
        batch: u64,
        answers: Box<Answers>,
    },
    Ack(SockId, usize),
    Shutdown,
}

/// Wakes the I/O thread once per batch of commands: only the first command
/// after the loop last drained its queue rings.
///
/// The protocol, model-checked with loom (`loom_model` below): a sender
/// queues, then rings; the loop clears, then drains. Whatever the
/// interleaving, every command queued is drained by a turn that starts
/// after it was queued, or its ring wakes the loop (no command waits
/// behind a sleeping loop). Other shards' cross-shard items and answers
/// travel the same way.
pub(crate) struct Doorbell {
    waker: Box<dyn Wake>,
    pending: AtomicBool,
}

impl Doorbell {
    pub(crate) fn new(waker: Box<dyn Wake>) -> Doorbell {
        Doorbell {
            waker,
            pending: AtomicBool::new(false),
        }
    }

    /// Rings after a command was queued.
    pub(crate) fn ring(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Called on the loop's thread when it will drain the queue again before
    /// it waits (inline driving, around external verdicts it runs itself):
    /// rings until then need not wake it.
    pub(crate) fn hold(&self) {
        self.pending.store(true, Ordering::Release);
    }

    /// Called by the I/O thread before it drains the command queue.
    pub(crate) fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// The callback run when events are ready.
pub type Notify = Box<dyn Fn() + Send + Sync>;

/// Where the I/O thread publishes events.
pub(crate) enum EventOut {
    /// To the application's channel, with a notify once per turn that produced events.
    Channel {
        tx: Sender<Event>,
        notify: Option<Notify>,
    },
    /// Kept for the caller (the simulation).
    Collect(Vec<Event>),
}

impl EventOut {
    /// Moves the core's events out; notifies once if there were any, and
    /// says whether there were.
    fn publish(&mut self, core: &mut Core) -> bool {
        let mut any = false;
        while let Some(ev) = core.poll_event() {
            self.push(ev);
            any = true;
        }
        if any {
            self.notify();
        }
        any
    }

    /// Publishes one event now.
    pub(crate) fn send(&mut self, ev: Event) {
        self.push(ev);
        self.notify();
    }

    fn push(&mut self, ev: Event) {
        match self {
            EventOut::Channel { tx, .. } => {
                let _ = tx.send(ev);
            }
            EventOut::Collect(v) => v.push(ev),
        }
    }

    fn notify(&self) {
        if let EventOut::Channel {
            notify: Some(n), ..
        } = self
        {
            n();
        }
    }
}

/// A [`Replier`] that queues answers as commands and rings the doorbell.
pub(crate) fn replier(tx: Sender<Command>, bell: Arc<Doorbell>) -> Replier {
    Replier::new(move |batch, answers| {
        let answers = Box::new(answers);
        if tx.send(Command::Answer { batch, answers }).is_ok() {
            bell.ring();
        }
    })
}

/// A shard's command queue and doorbell, as other threads reach it.
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) tx: Sender<Command>,
    pub(crate) bell: Arc<Doorbell>,
}

impl Peer {
    /// Queues a command and rings.
    pub(crate) fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            self.bell.ring();
        }
    }
}

/// The I/O thread's side of the command queue, and the other shards'.
pub(crate) struct Inbox {
    pub(crate) rx: Receiver<Command>,
    pub(crate) bell: Arc<Doorbell>,
    /// Every shard's queue, by shard (this one's included, unused).
    pub(crate) peers: Vec<Peer>,
}

/// How long a shutting-down engine waits for queued bytes to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often a shutting-down loop looks again.
const SHUTDOWN_TICK: Duration = Duration::from_millis(10);

/// The loop's state between turns.
#[derive(Default)]
pub(crate) struct LoopState {
    /// When shutdown was asked.
    shutdown_at: Option<Instant>,
    /// Turns never wait (the caller waits for the backend's descriptor).
    nonblocking: bool,
    /// The next turn skips the backend's wait (it only takes commands and writes).
    skip_wait: bool,
    /// The last turn published events.
    published: bool,
}

impl LoopState {
    /// The state of a loop whose caller does the waiting (inline driving).
    pub(crate) fn nonblocking() -> LoopState {
        LoopState {
            nonblocking: true,
            ..LoopState::default()
        }
    }

    /// Whether the last turn published events.
    pub(crate) fn published(&self) -> bool {
        self.published
    }

    /// The next turn does not ask the backend for news: the caller knows what it waits for is queued commands.
    pub(crate) fn skip_next_wait(&mut self) {
        self.skip_wait = true;
    }

    /// Whether the loop is done: shut down and every socket closed (or the grace period over).
    pub(crate) fn finished(&self, core: &Core, now: Instant) -> bool {
        self.shutdown_at
            .is_some_and(|t| core.socket_count() == 0 || now.duration_since(t) > SHUTDOWN_GRACE)
    }
}

/// Runs one loop turn. See the module documentation.
///
/// # Errors
/// When waiting on the backend fails (the loop cannot go on).
pub(crate) fn turn<B: Backend>(
    backend: &mut B,
    core: &mut Core,
    inbox: &Inbox,
    out: &mut EventOut,
    state: &mut LoopState,
) -> io::Result<()> {
    let timeout = if state.nonblocking {
        Some(Duration::ZERO)
    } else {
        wait_for(backend, core, state)
    };
    if !std::mem::take(&mut state.skip_wait) {
        backend.wait(core, timeout)?;
    }
    inbox.bell.clear();
    while let Ok(cmd) = inbox.rx.try_recv() {
        match cmd {
            Command::Register {
                id,
                src,
                kind,
                deadline,
                initial,
                accepted,
            } => {
                backend.register(core, id, src, kind, deadline);
                if let Some((listener, peer)) = accepted {
                    core.handle_handed(id, listener, peer);
                }
                core.handle_adopted_bytes(id, initial);
            }
            Command::Remote(items) => core.handle_remote(items),
            Command::Shutdown => {
                core.handle_shutdown();
                state.shutdown_at.get_or_insert(backend.now());
            }
            Command::Map(change) => core.handle_map_change(change),
            Command::Relink(id) => core.handle_relink(id),
            Command::Resume(id) => core.handle_resume(id),
            Command::Pause(id) => core.handle_pause(id),
            Command::End(id) => core.handle_end(id),
            Command::Destroy(id) => core.handle_destroy(id),
            Command::Send { sock, data, req } => core.handle_send(sock, data, req),
            Command::SendTo {
                sock,
                data,
                to,
                req,
            } => core.handle_send_to(sock, data, to, req),
            Command::Answer { batch, answers } => core.handle_answers(batch, *answers),
            Command::Ack(sock, bytes) => core.handle_ack(sock, bytes),
        }
    }
    backend.read_ready(core, backend.now());
    core.handle_timeout(backend.now());
    if !backend.has_ready() {
        core.handle_idle();
    }
    drive_ops(backend, core);
    hand_over(backend, core, inbox);
    state.published = out.publish(core);
    Ok(())
}

/// How long the loop may wait before its next turn: not at all while
/// sockets are still ready, else until the core's next deadline (`None`:
/// until the backend has something), and at most a tick while shutting down.
pub(crate) fn wait_for<B: Backend>(
    backend: &B,
    core: &Core,
    state: &LoopState,
) -> Option<Duration> {
    if backend.has_ready() {
        return Some(Duration::ZERO);
    }
    let t = core
        .poll_timeout()
        .map(|t| t.saturating_duration_since(backend.now()));
    match state.shutdown_at {
        Some(_) => Some(t.map_or(SHUTDOWN_TICK, |t| t.min(SHUTDOWN_TICK))),
        None => t,
    }
}

/// Sends other shards what this turn made for them: accepted connections,
/// then cross-shard items, one command per shard.
fn hand_over<B: Backend>(backend: &mut B, core: &mut Core, inbox: &Inbox) {
    let mut handoffs = Vec::new();
    backend.take_handoffs(&mut handoffs);
    for h in handoffs {
        if let Some(peer) = inbox.peers.get(h.shard) {
            peer.send(Command::Register {
                id: h.id,
                src: h.src,
                kind: NewSock::Established,
                deadline: None,
                initial: Bytes::new(),
                accepted: Some((h.listener, h.peer)),
            });
        }
    }
    for (shard, items) in core.poll_remote() {
        if let Some(peer) = inbox.peers.get(shard) {
            peer.send(Command::Remote(items));
        }
    }
}

/// Carries out the core's ops until none is left.
fn drive_ops<B: Backend>(backend: &mut B, core: &mut Core) {
    while let Some(op) = core.poll_op() {
        match op {
            Op::Read(id) => backend.mark_ready(id),
            Op::Flush(id) => backend.flush(core, id),
            Op::ShutdownWrite(id) => backend.shutdown_write(core, id),
            Op::Close(id) => backend.close(core, id),
        }
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! `RUSTFLAGS="--cfg loom" cargo test -p sockmap-core --lib loom_model`

    use std::collections::VecDeque;

    use loom::sync::{Arc, Condvar, Mutex};

    use super::{Doorbell, Wake};

    /// The backend's wait as the kernel gives it: wake-ups are counted (an eventfd), the wait takes one.
    #[derive(Default)]
    struct Kernel {
        wakes: Mutex<usize>,
        cv: Condvar,
    }

    /// The waker a doorbell holds: writes to the kernel's counter.
    struct Waker(Arc<Kernel>);

    impl Wake for Waker {
        fn wake(&self) {
            *self.0.wakes.lock().unwrap() += 1;
            self.0.cv.notify_one();
        }
    }

    impl Kernel {
        fn wait(&self) {
            let mut n = self.wakes.lock().unwrap();
            while *n == 0 {
                n = self.cv.wait(n).unwrap();
            }
            *n -= 1;
        }
    }

    /// Two senders (an application thread and another shard) each queue a
    /// command and ring; the loop sleeps until woken, clears the bell and
    /// drains, until it has both: it never sleeps forever with one queued.
    #[test]
    fn no_command_waits_behind_a_sleeping_loop() {
        loom::model(|| {
            let kernel = Arc::new(Kernel::default());
            let bell = Arc::new(Doorbell::new(Box::new(Waker(kernel.clone()))));
            let queue = Arc::new(Mutex::new(VecDeque::new()));
            let senders: Vec<_> = (0..2u32)
                .map(|i| {
                    let (bell, queue) = (bell.clone(), queue.clone());
                    loom::thread::spawn(move || {
                        queue.lock().unwrap().push_back(i);
                        bell.ring();
                    })
                })
                .collect();
            let mut got = Vec::new();
            while got.len() < 2 {
                kernel.wait();
                bell.clear();
                while let Some(c) = queue.lock().unwrap().pop_front() {
                    got.push(c);
                }
            }
            got.sort_unstable();
            assert_eq!(got, [0, 1]);
            for s in senders {
                s.join().unwrap();
            }
        });
    }
}
