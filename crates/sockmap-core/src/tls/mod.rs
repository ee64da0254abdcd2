//! TLS in the engine: the record layer seam between the bytes a backend
//! reads and writes and the plaintext the core parses, judges and queues.
//!
//! The seam, and its invariants:
//! - A backend never knows about TLS. It hands ciphertext to
//!   `Core::handle_received` and writes what `Core::fill_iovec` /
//!   `Core::clone_tx` present, as for any socket; on a TLS socket those are
//!   the [`session::Session`]'s ciphertext.
//! - The core decrypts before `ingest`: parsers, stream verdicts, the
//!   application and redirect targets only ever see plaintext. Handshake
//!   records are answered by queuing ciphertext, never by calling back.
//! - A socket's send ring keeps plaintext (so msg verdicts edit plaintext, as
//!   with kTLS, and watermarks count plaintext); it is encrypted as it leaves
//!   (`psock/tls.rs` drives [`session::Session::seal`]).
//! - A TLS socket is never spliced (its bytes must pass through the record
//!   layer) and is read during its handshake whatever its programs: the
//!   plaintext that arrives before the application reads is kept, in order,
//!   and received first once it does.
//! - The application hears of an accepted or connected TLS socket only once
//!   its handshake finished ([`Event::Tls`](crate::Event::Tls), then
//!   `Accepted`/`Connected`); a failed or timed-out handshake closes the
//!   socket with a code and a reason, and is counted in [`TlsStats`].
//!
//! Modules: `config.rs` (configurations from PEM, the crypto provider),
//! `session.rs` (one socket's rustls connection and ciphertext queue),
//! `hello.rs` (the ClientHello peek for routing by SNI without terminating).
//! Kernel offload (kTLS) would sit behind the same seam: see ARCHITECTURE.md.

mod config;
pub mod hello;
pub(crate) mod session;

use std::sync::atomic::{AtomicU64, Ordering};

pub use config::{
    CertPem, ClientOptions, ClientTls, ConfigError, ServerOptions, ServerTls,
    DEFAULT_HANDSHAKE_TIMEOUT,
};

use crate::error::Errno;

/// A socket's TLS role, as its registry entry keeps it.
#[derive(Clone, Debug)]
pub(crate) enum SockTls {
    /// A listener (its accepted connections) or an accepted connection: terminate.
    Server(ServerTls),
    /// A connect: originate.
    Client(ClientTls),
}

/// What a finished handshake negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<String>,
    /// The server name the client sent (server side only).
    pub sni: Option<String>,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// The cipher suite (IANA name).
    pub cipher: &'static str,
}

/// Why a handshake (or a connection after it) failed, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// The peer's certificate was refused (or it sent none when one was required).
    Certificate,
    /// The peer sent a fatal alert.
    Alert,
    /// Malformed or unexpected records or messages (garbage, a record too large, renegotiation...).
    Protocol,
    /// The handshake did not finish in time.
    Timeout,
    /// The peer closed during the handshake or in the middle of a record.
    Closed,
}

impl FailReason {
    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            FailReason::Certificate => "certificate",
            FailReason::Alert => "alert",
            FailReason::Protocol => "protocol",
            FailReason::Timeout => "timeout",
            FailReason::Closed => "closed",
        }
    }
}

/// A failure: its reason, the errno the socket closes with, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The reason (counters).
    pub reason: FailReason,
    /// The code: `ETIMEDOUT` for a timeout, `ECONNRESET` for a peer gone mid-handshake, else `EPROTO`.
    pub code: Errno,
    /// A human-readable explanation.
    pub detail: String,
}

impl Failure {
    pub(crate) fn new(reason: FailReason, detail: String) -> Failure {
        let code = match reason {
            FailReason::Timeout => Errno::TimedOut,
            FailReason::Closed => Errno::ConnReset,
            _ => Errno::Proto,
        };
        Failure {
            reason,
            code,
            detail,
        }
    }

    pub(crate) fn from_rustls(e: rustls::Error) -> Failure {
        let reason = match &e {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_) => FailReason::Certificate,
            rustls::Error::AlertReceived(
                rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::UnknownCA
                | rustls::AlertDescription::CertificateRequired
                | rustls::AlertDescription::CertificateUnknown,
            ) => FailReason::Certificate,
            rustls::Error::AlertReceived(_) => FailReason::Alert,
            _ => FailReason::Protocol,
        };
        Failure::new(reason, e.to_string())
    }
}

/// Engine-wide TLS counters (written by the I/O threads, read by any thread).
#[derive(Debug, Default)]
pub struct TlsStats {
    handshakes: AtomicU64,
    resumed: AtomicU64,
    failures: [AtomicU64; 5],
}

/// A copy of [`TlsStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStatsSnapshot {
    /// Handshakes that finished (both sides).
    pub handshakes: u64,
    /// Of those, resumed sessions.
    pub resumed: u64,
    /// Failures by reason, in the order of [`TlsStatsSnapshot::REASONS`].
    pub failures: [u64; 5],
}

impl TlsStatsSnapshot {
    /// The failure reasons, in the order of `failures`.
    pub const REASONS: [FailReason; 5] = [
        FailReason::Certificate,
        FailReason::Alert,
        FailReason::Protocol,
        FailReason::Timeout,
        FailReason::Closed,
    ];

    /// Failures counted for `reason`.
    pub fn failed(&self, reason: FailReason) -> u64 {
        self.failures[reason as usize]
    }
}

impl TlsStats {
    pub(crate) fn handshake(&self, resumed: bool) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        if resumed {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn failure(&self, reason: FailReason) {
        self.failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> TlsStatsSnapshot {
        TlsStatsSnapshot {
            handshakes: self.handshakes.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            failures: std::array::from_fn(|i| self.failures[i].load(Ordering::Relaxed)),
        }
    }
}
