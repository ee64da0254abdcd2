//! A datagram socket's state on the I/O thread ([`DgramState`]): its send queue, the senders of the datagrams it
//! received, its sessions. `psock/dgram.rs` states its invariants and keeps them.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::dgram::{Datagram, DgramRole, SessionConfig};
use crate::id::SockId;
use crate::sock::Addr;

/// A datagram socket's state on the I/O thread.
#[derive(Debug)]
pub(crate) struct DgramState {
    pub(in crate::psock) role: DgramRole,
    /// Datagrams to send, oldest first.
    pub(in crate::psock) tx: VecDeque<Datagram>,
    pub(in crate::psock) tx_bytes: usize,
    /// A `Flush` op is queued or the backend waits for writability.
    pub(in crate::psock) flush_asked: bool,
    /// A bound socket: the senders of the datagrams whose verdict is not applied yet.
    pub(in crate::psock) rx_from: VecDeque<Addr>,
    /// A session: its bound socket and client.
    pub(in crate::psock) session: Option<(SockId, Addr)>,
    /// A bound socket with sessions: its sessions by client.
    pub(in crate::psock) sessions: HashMap<Addr, SockId>,
    /// A bound socket with sessions: the bytes all its sessions hold.
    pub(in crate::psock) sessions_held: usize,
    /// A session's datagrams received while it is not read.
    pub(in crate::psock) held: VecDeque<Bytes>,
    pub(in crate::psock) held_bytes: usize,
    /// The last datagram either way (sessions).
    pub(in crate::psock) last: Instant,
    /// The kernel's drop count as last reported (`SO_RXQ_OVFL`).
    pub(in crate::psock) kernel_drops: u32,
}

impl DgramState {
    pub(in crate::psock) fn new(role: DgramRole, now: Instant) -> DgramState {
        DgramState {
            role,
            tx: VecDeque::new(),
            tx_bytes: 0,
            flush_asked: false,
            rx_from: VecDeque::new(),
            session: None,
            sessions: HashMap::new(),
            sessions_held: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            last: now,
            kernel_drops: 0,
        }
    }

    pub(in crate::psock) fn sessions_cfg(&self) -> Option<SessionConfig> {
        match self.role {
            DgramRole::Sessions(c) => Some(c),
            _ => None,
        }
    }

    /// Whether it is a session of a bound socket.
    pub(crate) fn is_session(&self) -> bool {
        self.session.is_some()
    }
}
