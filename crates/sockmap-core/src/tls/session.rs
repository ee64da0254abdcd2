//! One socket's record layer: a rustls connection between the ciphertext the
//! backend reads and writes and the plaintext the core parses, judges and queues.
//!
//! Invariants:
//! - **Receive**: every ciphertext byte read goes into the connection
//!   ([`Session::receive`]); every plaintext byte it yields comes out in order,
//!   at once (rustls keeps no plaintext back between calls).
//! - **Transmit**: the socket's send ring keeps plaintext; the first
//!   `sealed` bytes of it are already encrypted into `cipher`, which is what
//!   the backend writes. `records` maps `cipher` back to the ring: each entry
//!   is a run of ciphertext and the plaintext bytes it carries (0 for
//!   handshake messages, alerts, tickets, key updates), so plaintext leaves
//!   the ring only once the records carrying it were written
//!   ([`Session::sent`]). Watermarks therefore count plaintext not yet
//!   written, as without TLS.
//! - Nothing is sealed before the handshake finished; at most [`WINDOW`]
//!   bytes of ciphertext wait ahead of the kernel, so memory stays bounded by
//!   the ring plus the window.
//! - `frame` follows the record boundaries of what was received, so an end
//!   of stream in the middle of a record is told from one between records.
//! - A connection that fails keeps the alert rustls wrote for the peer as
//!   its `farewell` when nothing else waited to be written (so it follows
//!   every byte sent before it): the backend writes it, best effort, as it
//!   closes the socket.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::id::SockId;
use crate::ring::SgRing;
use crate::sock::Addr;

use super::{ClientTls, FailReason, Failure, ServerTls, TlsInfo, TlsStats};

/// Ciphertext sealed ahead of the kernel, at most (about eight full records).
pub(crate) const WINDOW: usize = 128 * 1024;

/// Where a socket's handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Open,
}

/// What the application is told once the handshake finishes (held back until then).
#[derive(Clone, Debug)]
pub(crate) enum Announce {
    /// An accepted connection: `Event::Accepted` is owed.
    Accepted { listener: SockId, peer: Addr },
    /// A connect: `Event::Connected` is owed.
    Connected,
}

/// What one [`Session::receive`] produced besides plaintext.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// The handshake finished during this call.
    pub(crate) handshaken: bool,
    /// The peer sent close_notify: no more plaintext will come.
    pub(crate) peer_closed: bool,
}

/// Follows TLS record boundaries (5-byte header with a 16-bit length) over a byte stream.
#[derive(Debug, Default)]
struct RecordFrame {
    header: [u8; 5],
    have: usize,
    body_left: usize,
}

impl RecordFrame {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            }
        }
    }

    fn mid_record(&self) -> bool {
        self.have > 0 || self.body_left > 0
    }
}

/// A fatal `decode_error` alert as a plaintext record (TLS 1.2 record version).
const DECODE_ERROR_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];

/// A socket's TLS state (see the module documentation).
pub(crate) struct Session {
    conn: rustls::Connection,
    phase: Phase,
    /// Ciphertext waiting for the kernel.
    cipher: SgRing,
    /// `[ciphertext left to write, plaintext it carries]`, oldest first, tiling `cipher`.
    records: VecDeque<[usize; 2]>,
    /// Plaintext at the front of the send ring already in `cipher`.
    sealed: usize,
    close_sent: bool,
    frame: RecordFrame,
    /// The alert of a failed connection, written as the socket closes.
    farewell: Option<Bytes>,
    /// Whether any record was made for the peer (after which alerts are rustls' to make).
    spoke: bool,
    /// Owed to the application once the handshake finishes.
    pub(crate) announce: Option<Announce>,
    /// The handshake must finish by then.
    pub(crate) deadline: Instant,
    /// The listener whose configuration this connection took.
    pub(crate) listener: Option<SockId>,
    /// That listener's counters.
    pub(crate) listener_stats: Option<Arc<TlsStats>>,
}

impl Session {
    /// The server side of an accepted connection.
    pub(crate) fn server(tls: &ServerTls, now: Instant) -> Result<Session, Failure> {
        let conn =
            rustls::ServerConnection::new(tls.config.clone()).map_err(Failure::from_rustls)?;
        let mut s = Session::with(conn.into(), now + tls.handshake_timeout);
        s.listener_stats = Some(tls.stats.clone());
        Ok(s)
    }

    /// The client side of a connect.
    pub(crate) fn client(tls: &ClientTls, now: Instant) -> Result<Session, Failure> {
        let conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
            .map_err(Failure::from_rustls)?;
        Ok(Session::with(conn.into(), now + tls.handshake_timeout))
    }

    fn with(mut conn: rustls::Connection, deadline: Instant) -> Session {
        // The core bounds what waits (the send ring and WINDOW); rustls' own limit would only split writes.
        conn.set_buffer_limit(None);
        Session {
            conn,
            phase: Phase::Handshaking,
            cipher: SgRing::with_max_frags(4096),
            records: VecDeque::new(),
            sealed: 0,
            close_sent: false,
            frame: RecordFrame::default(),
            farewell: None,
            spoke: false,
            announce: None,
            deadline,
            listener: None,
            listener_stats: None,
        }
    }

    /// Whether the handshake is still under way.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.phase == Phase::Handshaking
    }

    /// The ciphertext waiting for the kernel.
    pub(crate) fn cipher(&self) -> &SgRing {
        &self.cipher
    }

    /// Feeds ciphertext read from the socket; appends the plaintext it yields to `plain`.
    ///
    /// # Errors
    /// The connection failed (a bad record, an alert, a certificate refused...);
    /// an alert for the peer may be queued.
    pub(crate) fn receive(
        &mut self,
        data: &[u8],
        plain: &mut Vec<Bytes>,
    ) -> Result<Progress, Failure> {
        self.frame.feed(data);
        let mut progress = Progress::default();
        let mut rd = data;
        while !rd.is_empty() {
            match self.conn.read_tls(&mut rd) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(Failure::new(
                        FailReason::Protocol,
                        format!("record layer: {e}"),
                    ))
                }
            }
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    let (clean, spoke) = (self.cipher.is_empty(), self.spoke);
                    self.pull();
                    if clean && !self.cipher.is_empty() {
                        self.farewell = Some(Bytes::from(self.cipher.to_vec()));
                    } else if !spoke && matches!(e, rustls::Error::InvalidMessage(_)) {
                        // rustls makes no alert for some messages it refuses (a
                        // handshake message over its size); before any record
                        // was sent, the alert is a plaintext record.
                        self.farewell = Some(Bytes::from_static(&DECODE_ERROR_ALERT));
                    }
                    return Err(Failure::from_rustls(e));
                }
            };
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let mut buf = vec![0; n];
                self.conn
                    .reader()
                    .read_exact(&mut buf)
                    .map_err(|e| Failure::new(FailReason::Protocol, format!("plaintext: {e}")))?;
                plain.push(Bytes::from(buf));
            }
            progress.peer_closed |= state.peer_has_closed();
        }
        if self.phase == Phase::Handshaking && !self.conn.is_handshaking() {
            self.phase = Phase::Open;
            progress.handshaken = true;
        }
        self.pull();
        Ok(progress)
    }

    /// Moves what rustls has to send (handshake, alerts, tickets, key updates) into `cipher`.
    pub(crate) fn pull(&mut self) -> usize {
        self.pull_carrying(0)
    }

    fn pull_carrying(&mut self, plain: usize) -> usize {
        if !self.conn.wants_write() {
            debug_assert_eq!(plain, 0, "plaintext written but no record made");
            return 0;
        }
        let mut out = Vec::with_capacity(plain + 64);
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        let n = out.len();
        if n > 0 {
            self.push_cipher(Bytes::from(out), plain);
        }
        n
    }

    fn push_cipher(&mut self, b: Bytes, plain: usize) {
        let n = b.len();
        self.spoke = true;
        if let Err(full) = self.cipher.push(b) {
            let merged = Bytes::from(self.cipher.to_vec());
            self.cipher.advance(merged.len());
            let _ = self.cipher.push(merged);
            let _ = self.cipher.push(full.0);
        }
        self.records.push_back([n, plain]);
    }

    /// Encrypts plaintext of `ring` past what is sealed, until `WINDOW` bytes
    /// of ciphertext wait; returns the ciphertext bytes added.
    pub(crate) fn seal(&mut self, ring: &SgRing) -> usize {
        if self.phase != Phase::Open || self.close_sent {
            return 0;
        }
        let mut added = 0;
        let mut skip = self.sealed;
        for frag in ring.frags() {
            if self.cipher.len() >= WINDOW {
                break;
            }
            if skip >= frag.len() {
                skip -= frag.len();
                continue;
            }
            let mut rest = &frag[skip..];
            skip = 0;
            while !rest.is_empty() && self.cipher.len() < WINDOW {
                let take = rest.len().min(WINDOW - self.cipher.len()).max(1);
                let n = match self.conn.writer().write(&rest[..take]) {
                    Ok(n) if n > 0 => n,
                    _ => return added,
                };
                self.sealed += n;
                rest = &rest[n..];
                added += self.pull_carrying(n);
            }
        }
        added
    }

    /// Whether every plaintext byte of a ring of `len` bytes is sealed.
    pub(crate) fn all_sealed(&self, len: usize) -> bool {
        self.sealed >= len
    }

    /// `n` ciphertext bytes were written: the plaintext bytes that leaves the ring.
    pub(crate) fn sent(&mut self, mut n: usize) -> usize {
        self.cipher.advance(n);
        let mut plain = 0;
        while n > 0 {
            let Some(front) = self.records.front_mut() else {
                break;
            };
            if front[0] <= n {
                n -= front[0];
                plain += front[1];
                self.records.pop_front();
            } else {
                front[0] -= n;
                n = 0;
            }
        }
        self.sealed -= plain.min(self.sealed);
        plain
    }

    /// Queues close_notify (once): the write side ends after it.
    pub(crate) fn close_notify(&mut self) {
        if !self.close_sent {
            self.conn.send_close_notify();
            self.close_sent = true;
            self.pull();
        }
    }

    /// Whether the write side may be shut: close_notify queued and written.
    pub(crate) fn may_shut(&self) -> bool {
        self.close_sent && self.cipher.is_empty()
    }

    /// Whether the stream ended inside a record.
    pub(crate) fn mid_record(&self) -> bool {
        self.frame.mid_record()
    }

    /// The alert a failed connection owes its peer (once).
    pub(crate) fn take_farewell(&mut self) -> Option<Bytes> {
        self.farewell.take()
    }

    /// Drops everything queued (close).
    pub(crate) fn discard(&mut self) {
        self.cipher.clear();
        self.records.clear();
        self.sealed = 0;
    }

    /// What was negotiated.
    pub(crate) fn info(&self) -> TlsInfo {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        let sni = match &self.conn {
            rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
            rustls::Connection::Client(_) => None,
        };
        TlsInfo {
            version,
            alpn: self
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            sni,
            resumed: matches!(
                self.conn.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed)
            ),
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown"),
        }
    }
}
