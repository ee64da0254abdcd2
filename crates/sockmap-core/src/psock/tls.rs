//! The record layer seam on the core's side: TLS sockets' ciphertext in and
//! out of their [`Session`](crate::tls::session::Session) (the logic lives in
//! `crate::tls`; see its invariants).
//!
//! - `tls_received`: ciphertext read → plaintext received as any socket's
//!   bytes (or kept until the application reads), handshake answered.
//! - `tls_pump`: plaintext of the send ring sealed into ciphertext (within
//!   the window), close_notify once an ending socket's plaintext is sealed.
//! - `tls_sent`: ciphertext written → the plaintext it carried.
//! - the handshake's end: counted, `Event::Tls`, then the held-back
//!   `Accepted`/`Connected`; its failure or deadline closes the socket.

use std::time::Instant;

use bytes::Bytes;

use super::slot::SlotIdx;
use super::{Core, Op};
use crate::event::Event;
use crate::id::SockId;
use crate::sock::Addr;
use crate::timer::Timer;
use crate::tls::session::{Announce, Session};
use crate::tls::{FailReason, Failure, SockTls};

impl Core {
    /// Gives a new socket its session, from its registry entry's TLS role.
    pub(super) fn tls_attach(
        &mut self,
        slot: SlotIdx,
        tls: Option<SockTls>,
        listener: Option<SockId>,
    ) {
        let Some(tls) = tls else { return };
        let now = self.now;
        let made = match &tls {
            SockTls::Server(s) => Session::server(s, now),
            SockTls::Client(c) => Session::client(c, now),
        };
        match made {
            Ok(mut s) => {
                s.listener = listener;
                let (id, at) = (self.at(slot).id(), s.deadline);
                self.at(slot).tls = Some(Box::new(s));
                self.timers.set(at, Timer::Tls(id));
            }
            Err(f) => self.tls_fail(slot, f),
        }
    }

    /// An accepted TLS connection is announced after its handshake; it reads at once.
    pub(super) fn tls_hold_accept(&mut self, id: SockId, listener: SockId, peer: &Addr) -> bool {
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        let Some(t) = self.at(slot).tls.as_mut() else {
            return false;
        };
        t.announce = Some(Announce::Accepted {
            listener,
            peer: peer.clone(),
        });
        self.kick_read(slot);
        true
    }

    /// A TLS connect finished its TCP part: the ClientHello goes out; `Connected` waits for the handshake.
    pub(super) fn tls_connected(&mut self, slot: SlotIdx) -> bool {
        let Some(t) = self.at(slot).tls.as_mut() else {
            return false;
        };
        t.announce = Some(Announce::Connected);
        if t.pull() > 0 {
            let id = self.at_ref(slot).id();
            self.ops.push_back(Op::Flush(id));
        }
        true
    }

    /// Ciphertext read from a TLS socket.
    pub(super) fn tls_received(&mut self, slot: SlotIdx, data: &Bytes) {
        let id = self.at_ref(slot).id();
        let mut plain = Vec::new();
        let Some(t) = self.at(slot).tls.as_mut() else {
            return;
        };
        let result = t.receive(data, &mut plain);
        let progress = match result {
            Ok(p) => p,
            Err(f) => return self.tls_fail(slot, f),
        };
        if progress.handshaken {
            self.tls_handshaken(slot);
        }
        for chunk in plain {
            if self.slot_of(id) != Some(slot) || self.at_ref(slot).is_closing() {
                return;
            }
            // Held back only until the application or programs take bytes; backpressure met while this read is
            // handled stops the next read, not these bytes (they are queued as any read's are).
            if self.at_ref(slot).app_enabled() {
                if let Some(held) = self.at(slot).take_initial_now() {
                    self.receive_plain(slot, held);
                }
                self.receive_plain(slot, chunk);
            } else {
                self.at(slot).add_initial(chunk);
            }
        }
        if self.slot_of(id) != Some(slot) || self.at_ref(slot).is_closing() {
            return;
        }
        self.tls_pump(slot, true);
        if progress.peer_closed {
            self.handle_eof(id);
        }
    }

    /// Counts the handshake, reports it, announces the socket and starts sealing.
    fn tls_handshaken(&mut self, slot: SlotIdx) {
        let p = self.at(slot);
        let id = p.id();
        let Some(t) = p.tls.as_mut() else { return };
        let info = t.info();
        let listener = t.listener;
        let announce = t.announce.take();
        if let Some(s) = &t.listener_stats {
            s.handshake(info.resumed);
        }
        p.sni = info
            .sni
            .as_deref()
            .map(|s| Bytes::from(s.to_ascii_lowercase()));
        self.shared.tls.handshake(info.resumed);
        self.events.push_back(Event::Tls {
            sock: id,
            listener,
            result: Ok(info),
        });
        match announce {
            Some(Announce::Accepted { listener, peer }) => self.events.push_back(Event::Accepted {
                listener,
                sock: id,
                peer,
            }),
            Some(Announce::Connected) => self.events.push_back(Event::Connected {
                sock: id,
                result: Ok(()),
            }),
            None => {}
        }
    }

    /// The connection failed: counted, reported, and the socket closes with the failure's code.
    pub(super) fn tls_fail(&mut self, slot: SlotIdx, f: Failure) {
        let p = self.at(slot);
        let id = p.id();
        let (listener, announce) = match p.tls.as_mut() {
            Some(t) => {
                if let Some(s) = &t.listener_stats {
                    s.failure(f.reason);
                }
                (t.listener, t.announce.take())
            }
            None => (None, None),
        };
        self.shared.tls.failure(f.reason);
        let code = f.code;
        self.events.push_back(Event::Tls {
            sock: id,
            listener,
            result: Err(f),
        });
        if let Some(Announce::Connected) = announce {
            self.events.push_back(Event::Connected {
                sock: id,
                result: Err(code),
            });
        }
        self.close(slot, Some(code));
    }

    /// Seals the send ring's plaintext into ciphertext, and sends
    /// close_notify once an ending socket has sealed everything; with
    /// `flush`, asks for a write when ciphertext waits.
    pub(super) fn tls_pump(&mut self, slot: SlotIdx, flush: bool) {
        let p = self.at(slot);
        if p.is_closing() {
            return;
        }
        let ending = p.is_ending();
        let Some(t) = p.tls.as_mut() else { return };
        t.seal(p.ring.ring());
        if ending && !t.is_handshaking() && t.all_sealed(p.ring.len()) {
            t.close_notify();
        }
        if flush && !t.cipher().is_empty() {
            let id = p.id();
            self.ops.push_back(Op::Flush(id));
        }
    }

    /// `n` ciphertext bytes of a TLS socket were written: the plaintext bytes that leave its ring.
    pub(super) fn tls_sent(&mut self, slot: SlotIdx, n: usize) -> usize {
        match self.at(slot).tls.as_mut() {
            Some(t) => t.sent(n),
            None => n,
        }
    }

    /// The peer's FIN on a TLS socket: during the handshake or inside a
    /// record it is a failure (true: handled, the socket closes).
    pub(super) fn tls_eof(&mut self, slot: SlotIdx) -> bool {
        let Some(t) = self.at_ref(slot).tls.as_ref() else {
            return false;
        };
        let failure = if t.is_handshaking() {
            Failure::new(
                FailReason::Closed,
                "the peer closed during the handshake".into(),
            )
        } else if t.mid_record() {
            Failure::new(
                FailReason::Closed,
                "the peer closed in the middle of a record".into(),
            )
        } else {
            return false;
        };
        self.tls_fail(slot, failure);
        true
    }

    /// The bytes a backend writes, best effort and once, just before it
    /// closes `id`'s descriptor: the alert of a failed TLS connection
    /// (`bad_certificate`, `handshake_failure`...), so the peer learns why.
    pub fn take_farewell(&mut self, id: SockId) -> Option<Bytes> {
        let slot = self.slot_of(id)?;
        self.at(slot).tls.as_mut()?.take_farewell()
    }

    /// A handshake deadline passed.
    pub(super) fn tls_timeout(&mut self, id: SockId, now: Instant) {
        let Some(slot) = self.slot_of(id) else { return };
        let p = self.at_ref(slot);
        if p.is_closing() || !p.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            return;
        }
        let _ = now;
        self.tls_fail(
            slot,
            Failure::new(
                FailReason::Timeout,
                "the handshake did not finish in time".into(),
            ),
        );
    }
}
