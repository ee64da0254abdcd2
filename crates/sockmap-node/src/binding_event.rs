//! Engine events as plain JS objects, drained in one call per wake-up.

use napi_derive::napi;
use sockmap_core::{Addr, Errno, Event, Fatal, UnixName};

use crate::binding_bytes::JsBytes;
use crate::binding_error::ENGINE_PANIC;
use crate::binding_tls::{js_tls, JsTlsInfo};

/// Event kinds, in the `kind` field of [`JsEvent`].
#[napi]
pub enum EventKind {
    /// A listener accepted a connection (`sock` listener, `other` the new socket).
    Accepted = 1,
    /// A connect finished (`code` set on failure).
    Connected = 2,
    /// A message for the socket's application (`data`).
    Message = 3,
    /// The peer shut down its write side.
    ReadEnd = 4,
    /// A send finished (`other` the request, `bytes` accepted or `code`).
    SendDone = 5,
    /// The send ring drained below its low watermark.
    Drained = 6,
    /// The socket closed (`code` set when an error closed it).
    Closed = 7,
    /// An engine error (`sock` may be -1, `fatal`).
    Error = 8,
    /// A TLS handshake finished or a TLS connection failed (`tls`; `other` the listener or -1; `code` on failure).
    Tls = 9,
    /// A datagram a bound socket passed (`data`; `detail` and `port` its sender).
    Datagram = 10,
}

/// One engine event (made in Rust, read in JavaScript).
#[napi(object, object_from_js = false)]
pub struct JsEvent {
    /// What happened.
    pub kind: EventKind,
    /// The socket concerned (-1: none).
    pub sock: f64,
    /// A second number: the accepted socket, or the send request.
    pub other: f64,
    /// Bytes accepted by a send.
    pub bytes: f64,
    /// The error code name, when the event carries one.
    pub code: Option<String>,
    /// A human-readable detail (errors), or the peer address (accepted; a Unix peer: its path, absent when unnamed).
    pub detail: Option<String>,
    /// The peer port (accepted).
    pub port: Option<u32>,
    /// The message bytes (copied into a JS-owned buffer).
    #[napi(ts_type = "Buffer")]
    pub data: Option<JsBytes>,
    /// The engine's I/O thread stopped.
    pub fatal: bool,
    /// TLS events: what was negotiated, or why it failed.
    pub tls: Option<JsTlsInfo>,
}

fn base(kind: EventKind, sock: f64) -> JsEvent {
    JsEvent {
        kind,
        sock,
        other: 0.0,
        bytes: 0.0,
        code: None,
        detail: None,
        port: None,
        data: None,
        fatal: false,
        tls: None,
    }
}

fn code(e: Option<Errno>) -> Option<String> {
    e.map(|e| e.name().to_string())
}

/// A Unix socket name as JavaScript writes it: a path, or a leading NUL for an abstract name (`None`: unnamed).
pub(crate) fn unix_path(name: &UnixName) -> Option<String> {
    match name {
        UnixName::Path(p) => Some(p.to_string_lossy().into_owned()),
        UnixName::Abstract(n) => Some(format!("\0{}", String::from_utf8_lossy(n))),
        UnixName::Unnamed => None,
    }
}

/// An address as an event carries it: the IP and port, or a Unix name.
fn js_addr(a: Addr) -> (Option<String>, Option<u32>) {
    match a {
        Addr::Inet(a) => (Some(a.ip().to_string()), Some(u32::from(a.port()))),
        Addr::Unix(name) => (unix_path(&name), None),
    }
}

/// Converts an engine event (copying message bytes into a Buffer).
pub fn js_event(ev: Event) -> JsEvent {
    match ev {
        Event::Accepted {
            listener,
            sock,
            peer,
        } => {
            let (detail, port) = js_addr(peer);
            JsEvent {
                other: sock.as_u64() as f64,
                detail,
                port,
                ..base(EventKind::Accepted, listener.as_u64() as f64)
            }
        }
        Event::Connected { sock, result } => JsEvent {
            code: code(result.err()),
            ..base(EventKind::Connected, sock.as_u64() as f64)
        },
        Event::Message { sock, data } => {
            let data = JsBytes::from(data);
            JsEvent {
                bytes: data.len() as f64,
                data: Some(data),
                ..base(EventKind::Message, sock.as_u64() as f64)
            }
        }
        Event::Datagram { sock, data, from } => {
            let data = JsBytes::from(data);
            let (detail, port) = js_addr(from);
            JsEvent {
                bytes: data.len() as f64,
                data: Some(data),
                detail,
                port,
                ..base(EventKind::Datagram, sock.as_u64() as f64)
            }
        }
        Event::ReadEnd { sock } => base(EventKind::ReadEnd, sock.as_u64() as f64),
        Event::SendDone { sock, req, result } => JsEvent {
            other: req as f64,
            bytes: result.as_ref().map_or(0.0, |n| *n as f64),
            code: code(result.err()),
            ..base(EventKind::SendDone, sock.as_u64() as f64)
        },
        Event::Drained { sock } => base(EventKind::Drained, sock.as_u64() as f64),
        Event::Closed { sock, error } => JsEvent {
            code: code(error),
            ..base(EventKind::Closed, sock.as_u64() as f64)
        },
        Event::Error { sock, code, detail } => JsEvent {
            code: Some(code.name().to_string()),
            detail: Some(detail),
            ..base(EventKind::Error, sock.map_or(-1.0, |s| s.as_u64() as f64))
        },
        Event::Tls {
            sock,
            listener,
            result,
        } => {
            let (tls, code, detail) = js_tls(result);
            JsEvent {
                other: listener.map_or(-1.0, |l| l.as_u64() as f64),
                code,
                detail,
                tls: Some(tls),
                ..base(EventKind::Tls, sock.as_u64() as f64)
            }
        }
        Event::Fatal {
            cause,
            code,
            detail,
        } => JsEvent {
            code: Some(
                match cause {
                    Fatal::Panic => ENGINE_PANIC,
                    Fatal::Io => code.name(),
                }
                .to_string(),
            ),
            detail: Some(detail),
            fatal: true,
            ..base(EventKind::Error, -1.0)
        },
    }
}
