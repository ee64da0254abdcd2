//! [`Http1`]: HTTP/1.1 (and 1.0) request or response framing.
//!
//! One message is one request or response: its head (start line and header
//! fields) and its body, framed by `Content-Length` or the chunked transfer
//! coding (chunk extensions and trailer fields included). Pipelined messages
//! follow each other.
//!
//! # Roles
//!
//! * [`Http1::requests`]: requests. [`MessageMeta::Http`] gives the method,
//!   the request target and the `Host` value.
//! * [`Http1::responses`]: responses. A response to `HEAD`, and a `2xx`
//!   response to `CONNECT`, have no body whatever their headers say, so the
//!   framer must know the request methods: link the two directions with one
//!   [`RequestLog`] ([`Http1Options::request_log`]): the requests framer
//!   records each request, the responses framer takes one record per final
//!   response. Without a log every response is taken to answer a `GET`.
//!   `1xx` (except 101), `204` and `304` responses never have a body.
//!
//! # End of the framed stream
//!
//! * A request with `CONNECT`, or with `Connection: upgrade` and `Upgrade`,
//!   and a `101` response or a `2xx` response to `CONNECT`, are delivered,
//!   then the framer answers [`Parse::Handback`]: the rest of the stream is no
//!   longer HTTP/1 and goes back to the application intact.
//! * After a message with `Connection: close` (or an HTTP/1.0 message without
//!   `Connection: keep-alive`) any further byte is handed back the same way.
//! * A response body delimited by the end of the connection (no length, not
//!   chunked) is delivered as the head, then each received piece of body as a
//!   message of its own, until the stream ends.
//!
//! # Errors
//!
//! `EPROTO` for a malformed start line or header field, bare CR or LF line
//! ends, obsolete line folding, whitespace before a colon, control bytes in a
//! field value, both `Content-Length` and `Transfer-Encoding`, differing or
//! non-numeric `Content-Length`s, a request `Transfer-Encoding` whose last
//! coding is not `chunked`, `Transfer-Encoding` in HTTP/1.0, two `Host`
//! fields, and malformed chunk sizes or chunk ends. `EMSGSIZE` for a head,
//! chunk-size line or trailer section over `max_header_bytes`, and lengths
//! that do not fit in memory.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use memchr::memmem;

use super::{Chunks, Framer, MessageMeta, Parse, ReplyError};
use crate::error::Errno;

/// Which direction of an HTTP/1 connection a framer reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Http1Role {
    /// Requests (a server's input). The default.
    #[default]
    Request,
    /// Responses (a client's input).
    Response,
}

/// The request methods a responses framer needs, shared by the two framers
/// of one connection. Cheap to clone (one shared queue).
#[derive(Clone, Debug, Default)]
pub struct RequestLog {
    queue: Arc<Mutex<VecDeque<Method>>>,
}

/// What a response framer must know about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Head,
    Connect,
    Other,
}

impl Method {
    fn of(name: &[u8]) -> Method {
        match name {
            b"HEAD" => Method::Head,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

impl RequestLog {
    /// An empty log.
    pub fn new() -> Self {
        RequestLog::default()
    }

    /// Records a request sent on the connection, by method name (for
    /// requests the application writes itself).
    pub fn record(&self, method: &[u8]) {
        self.push(Method::of(method));
    }

    fn push(&self, m: Method) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(m);
        }
    }

    fn pop(&self) -> Method {
        self.queue
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front())
            .unwrap_or(Method::Other)
    }

    /// Requests recorded and not yet answered.
    pub fn len(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Whether every recorded request was answered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Options of [`Http1`]; each field maps 1:1 to `parsers.http1({...})`.
#[derive(Clone, Debug)]
pub struct Http1Options {
    /// `role`: `'request'` or `'response'`. Default: request.
    pub role: Http1Role,
    /// `maxHeaderBytes`: largest head (start line + fields + blank line), and
    /// largest chunk-size line and trailer section, in bytes. 0 = the default,
    /// 16 KiB (Node's `--max-http-header-size`).
    pub max_header_bytes: usize,
    /// The log linking a requests framer to a responses framer.
    pub request_log: Option<RequestLog>,
}

/// Default head limit: 16 KiB.
const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;

impl Default for Http1Options {
    /// Requests, 16 KiB heads, no request log.
    fn default() -> Self {
        Http1Options {
            role: Http1Role::default(),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            request_log: None,
        }
    }
}

/// How the body of the current message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Where the chunked body parser is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size,
    Trailers,
}

/// What the head says.
struct Head {
    body: Body,
    close: bool,
    handback_after: bool,
    meta: MessageMeta,
    method: Method,
}

/// An HTTP/1 framer. See the [module documentation](self).
#[derive(Debug)]
pub struct Http1 {
    role: Http1Role,
    max_header: usize,
    log: Option<RequestLog>,
    // Per message.
    head_scan: usize,
    head_len: usize,
    body: Body,
    chunk: Chunk,
    /// Offset of the next chunk-size line or trailer line.
    pos: usize,
    line_scan: usize,
    meta: MessageMeta,
    close_after: bool,
    handback_after: bool,
    // Per connection.
    closed: bool,
    handed_back: bool,
    until_close: bool,
    scratch: Vec<u8>,
    /// Finds the blank line ending a head.
    blank_line: memmem::Finder<'static>,
}

impl Http1 {
    /// A framer with these options.
    pub fn new(opts: Http1Options) -> Self {
        Http1 {
            role: opts.role,
            max_header: if opts.max_header_bytes == 0 {
                DEFAULT_MAX_HEADER_BYTES
            } else {
                opts.max_header_bytes
            },
            log: opts.request_log,
            head_scan: 0,
            head_len: 0,
            body: Body::None,
            chunk: Chunk::Size,
            pos: 0,
            line_scan: 0,
            meta: MessageMeta::None,
            close_after: false,
            handback_after: false,
            closed: false,
            handed_back: false,
            until_close: false,
            scratch: Vec::new(),
            blank_line: memmem::Finder::new(b"\r\n\r\n"),
        }
    }

    /// A requests framer with default options.
    pub fn requests() -> Self {
        Http1::new(Http1Options::default())
    }

    /// A responses framer with default options (no request log).
    pub fn responses() -> Self {
        Http1::new(Http1Options {
            role: Http1Role::Response,
            ..Http1Options::default()
        })
    }

    /// A requests framer and a responses framer for the two directions of one
    /// connection, linked by a [`RequestLog`].
    pub fn pair() -> (Self, Self) {
        let log = RequestLog::new();
        let req = Http1::new(Http1Options {
            request_log: Some(log.clone()),
            ..Http1Options::default()
        });
        let resp = Http1::new(Http1Options {
            role: Http1Role::Response,
            request_log: Some(log),
            ..Http1Options::default()
        });
        (req, resp)
    }

    /// Finds the end of the head; parses it.
    fn parse_head(&mut self, data: &Chunks<'_>) -> Result<Option<()>, Errno> {
        // Empty lines before a request line are ignored (RFC 9112 §2.2) and
        // belong to the message.
        let mut lead = 0;
        loop {
            match data.matches_at(lead, b"\r\n") {
                Some(true) => lead += 2,
                Some(false) => break,
                None => return self.head_wait(data),
            }
            if lead > self.max_header {
                return Err(Errno::MsgSize);
            }
        }
        let from = self.head_scan.max(lead);
        // Search the first fragment in place, then only what may span past it.
        let first = data.first();
        let found = match first.get(from..).and_then(|hay| self.blank_line.find(hay)) {
            Some(i) => Some(from + i),
            None => data.find(b"\r\n\r\n", from.max(first.len().saturating_sub(3))),
        };
        let Some(p) = found else {
            return self.head_wait(data);
        };
        let end = p + 4;
        if end > self.max_header {
            return Err(Errno::MsgSize);
        }
        let head = match data.contiguous(0, end) {
            Some(h) => self.parse_head_bytes(h, lead)?,
            None => {
                let mut buf = std::mem::take(&mut self.scratch);
                buf.clear();
                buf.resize(end, 0);
                let r = if data.copy_to(0, &mut buf) {
                    self.parse_head_bytes(&buf, lead)
                } else {
                    Err(Errno::Proto)
                };
                self.scratch = buf;
                r?
            }
        };
        self.head_len = end;
        self.pos = end;
        self.line_scan = end;
        self.body = head.body;
        self.meta = head.meta;
        self.close_after = head.close;
        self.handback_after = head.handback_after;
        if self.role == Http1Role::Request {
            if let Some(log) = &self.log {
                log.push(head.method);
            }
        }
        Ok(Some(()))
    }

    fn head_wait(&mut self, data: &Chunks<'_>) -> Result<Option<()>, Errno> {
        if data.len() > self.max_header {
            return Err(Errno::MsgSize);
        }
        self.head_scan = data.len().saturating_sub(3);
        Ok(None)
    }

    /// Parses a complete head `h` (ending with the blank line) whose start
    /// line begins at `lead`.
    fn parse_head_bytes(&self, h: &[u8], lead: usize) -> Result<Head, Errno> {
        let start = start_line(h, lead)?;
        let mut fields = Fields::default();
        let mut at = start.end + 2;
        // Field lines up to the blank line (a head ends with the first one).
        while h.get(at..at + 2) != Some(b"\r\n") {
            at = fields.add(h, at)?;
        }
        match self.role {
            Http1Role::Request => self.request_head(h, start, &fields),
            Http1Role::Response => self.response_head(h, start, &fields),
        }
    }

    fn request_head(&self, h: &[u8], line: Range<usize>, f: &Fields) -> Result<Head, Errno> {
        let l = &h[line.clone()];
        let sp1 = l.iter().position(|&b| b == b' ').ok_or(Errno::Proto)?;
        let rest = &l[sp1 + 1..];
        let sp2 = rest.iter().position(|&b| b == b' ').ok_or(Errno::Proto)?;
        let method = &l[..sp1];
        let target = &rest[..sp2];
        let version = &rest[sp2 + 1..];
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err(Errno::Proto);
        }
        if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(Errno::Proto);
        }
        let http10 = parse_version(version)?;
        let body = f.body(Http1Role::Request, http10)?;
        let method_kind = Method::of(method);
        let upgrade = method_kind == Method::Connect || (f.conn_upgrade && f.upgrade);
        let m0 = line.start;
        let t0 = m0 + sp1 + 1;
        Ok(Head {
            body,
            close: f.closes(http10),
            handback_after: upgrade,
            meta: MessageMeta::Http {
                method: m0..m0 + sp1,
                path: t0..t0 + sp2,
                host: f.host.clone(),
            },
            method: method_kind,
        })
    }

    fn response_head(&self, h: &[u8], line: Range<usize>, f: &Fields) -> Result<Head, Errno> {
        let l = &h[line];
        if l.len() < 12 || l[8] != b' ' || (l.len() > 12 && l[12] != b' ') {
            return Err(Errno::Proto);
        }
        let http10 = parse_version(&l[..8])?;
        let code = &l[9..12];
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(Errno::Proto);
        }
        let status = code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
        let interim = (100..200).contains(&status) && status != 101;
        let request = if interim {
            Method::Other
        } else {
            self.log.as_ref().map_or(Method::Other, RequestLog::pop)
        };
        let tunnel = status == 101 || (request == Method::Connect && (200..300).contains(&status));
        let no_body = (100..200).contains(&status)
            || status == 204
            || status == 304
            || request == Method::Head
            || tunnel;
        let body = f.body(Http1Role::Response, http10)?;
        Ok(Head {
            body: if no_body { Body::None } else { body },
            close: f.closes(http10) && !interim,
            handback_after: tunnel,
            meta: MessageMeta::None,
            method: Method::Other,
        })
    }

    /// Finds the `\r\n` of the line at `pos` (chunk size or trailer).
    fn line_end(&mut self, data: &Chunks<'_>) -> Result<Option<usize>, Errno> {
        match data.find(b"\r\n", self.line_scan.max(self.pos)) {
            Some(cr) => {
                if cr - self.pos > self.max_header {
                    return Err(Errno::MsgSize);
                }
                // A bare LF inside the line.
                if data.find_any_byte(b"\n", self.pos) != Some(cr + 1) {
                    return Err(Errno::Proto);
                }
                Ok(Some(cr))
            }
            None => {
                if data.len() - self.pos > self.max_header {
                    return Err(Errno::MsgSize);
                }
                self.line_scan = data.len().saturating_sub(1).max(self.pos);
                Ok(None)
            }
        }
    }

    /// Parses the chunked body from `pos`.
    fn chunked(&mut self, data: &Chunks<'_>) -> Parse {
        loop {
            match self.chunk {
                Chunk::Size => {
                    let cr = match self.line_end(data) {
                        Ok(Some(cr)) => cr,
                        Ok(None) => return Parse::NeedMore { hint: None },
                        Err(e) => return Parse::Error(e),
                    };
                    let size = match chunk_size(data, self.pos, cr) {
                        Ok(s) => s,
                        Err(e) => return Parse::Error(e),
                    };
                    let next = cr + 2;
                    if size == 0 {
                        self.chunk = Chunk::Trailers;
                        self.pos = next;
                        self.line_scan = next;
                        continue;
                    }
                    let Some(end) = usize::try_from(size)
                        .ok()
                        .and_then(|s| next.checked_add(s))
                        .and_then(|e| e.checked_add(2))
                    else {
                        return Parse::Error(Errno::MsgSize);
                    };
                    if data.len() < end {
                        return Parse::NeedMore { hint: Some(end) };
                    }
                    if data.matches_at(end - 2, b"\r\n") != Some(true) {
                        return Parse::Error(Errno::Proto);
                    }
                    self.pos = end;
                    self.line_scan = end;
                }
                Chunk::Trailers => {
                    let cr = match self.line_end(data) {
                        Ok(Some(cr)) => cr,
                        Ok(None) => return Parse::NeedMore { hint: None },
                        Err(e) => return Parse::Error(e),
                    };
                    if cr == self.pos {
                        return Parse::Length(cr + 2);
                    }
                    if data.byte(self.pos).is_some_and(|b| b == b' ' || b == b'\t') {
                        return Parse::Error(Errno::Proto);
                    }
                    self.pos = cr + 2;
                    self.line_scan = self.pos;
                }
            }
        }
    }
}

impl Default for Http1 {
    fn default() -> Self {
        Http1::requests()
    }
}

impl Framer for Http1 {
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        if self.until_close {
            return Parse::Length(data.len());
        }
        if self.handed_back || self.closed {
            return Parse::Handback;
        }
        if self.head_len == 0 {
            match self.parse_head(data) {
                Ok(Some(())) => {}
                Ok(None) => return Parse::NeedMore { hint: None },
                Err(e) => return Parse::Error(e),
            }
        }
        let answer = match self.body {
            Body::None => Parse::Length(self.head_len),
            Body::Length(n) => match usize::try_from(n)
                .ok()
                .and_then(|n| self.head_len.checked_add(n))
            {
                Some(total) => Parse::Length(total),
                None => Parse::Error(Errno::MsgSize),
            },
            Body::UntilClose => {
                self.until_close = true;
                Parse::Length(self.head_len)
            }
            Body::Chunked => self.chunked(data),
        };
        if let Parse::Length(_) = answer {
            // Connection-level consequences of this message.
            self.handed_back |= self.handback_after;
            self.closed |= self.close_after;
        }
        answer
    }

    fn meta(&self) -> MessageMeta {
        self.meta.clone()
    }

    /// For requests: `502 Bad Gateway` (upstream closed), `504 Gateway
    /// Timeout`, `503 Service Unavailable` (no upstream), `403 Forbidden`
    /// (denied), with a plain-text body and `Content-Length`, keeping the
    /// connection alive. Responses have none.
    fn error_reply(&self, kind: ReplyError) -> Option<bytes::Bytes> {
        if self.role != Http1Role::Request {
            return None;
        }
        let status = match kind {
            ReplyError::Timeout => "504 Gateway Timeout",
            ReplyError::UpstreamClosed => "502 Bad Gateway",
            ReplyError::NoUpstream => "503 Service Unavailable",
            ReplyError::Denied => "403 Forbidden",
        };
        let body = format!("sockmap: {}\n", kind.reason());
        Some(bytes::Bytes::from(format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )))
    }

    /// For responses: records the forwarded request's method in the
    /// framer's [`RequestLog`] (created on first use), so the response to a
    /// `HEAD` is framed without a body.
    fn request_forwarded(&mut self, head: &[u8]) {
        if self.role != Http1Role::Response {
            return;
        }
        let end = head.iter().position(|&b| b == b' ').unwrap_or(head.len());
        self.log
            .get_or_insert_with(RequestLog::new)
            .push(Method::of(&head[..end]));
    }

    fn reset(&mut self) {
        self.head_scan = 0;
        self.head_len = 0;
        self.body = Body::None;
        self.chunk = Chunk::Size;
        self.pos = 0;
        self.line_scan = 0;
        self.meta = MessageMeta::None;
        self.close_after = false;
        self.handback_after = false;
    }
}

/// The start line of a head at `at` (CRLF excluded); a bare CR or LF in it
/// is `EPROTO`.
fn start_line(h: &[u8], at: usize) -> Result<Range<usize>, Errno> {
    let rest = h.get(at..).ok_or(Errno::Proto)?;
    // The line must end at its first CR or LF, with CR LF.
    let cr = memchr::memchr2(b'\r', b'\n', rest).ok_or(Errno::Proto)?;
    if rest[cr] != b'\r' || rest.get(cr + 1) != Some(&b'\n') {
        return Err(Errno::Proto);
    }
    Ok(at..at + cr)
}

/// What the header fields say about framing and routing.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    /// Transfer codings seen, and whether the last one is `chunked`.
    te: bool,
    te_chunked_last: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    upgrade: bool,
    host: Option<Range<usize>>,
}

impl Fields {
    /// Takes in the field line at `at`: the offset after its CRLF.
    fn add(&mut self, h: &[u8], at: usize) -> Result<usize, Errno> {
        let l = h.get(at..).ok_or(Errno::Proto)?;
        // A token then a colon; a leading space or tab (obs-fold), a space
        // before the colon, an empty name or a CR/LF is not one.
        let colon = l.iter().position(|&b| !is_tchar(b)).unwrap_or(l.len());
        if colon == 0 || l.get(colon) != Some(&b':') {
            return Err(Errno::Proto);
        }
        let name = &l[..colon];
        // The value runs to the first control byte, which must start CRLF.
        let after = &l[colon + 1..];
        let cr = after.iter().position(|&b| is_ctl(b)).ok_or(Errno::Proto)?;
        if after[cr] != b'\r' || after.get(cr + 1) != Some(&b'\n') {
            return Err(Errno::Proto);
        }
        let raw = &after[..cr];
        let lead = raw.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        let trail = raw[lead..]
            .iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let value = &raw[lead..raw.len() - trail];
        let v0 = at + colon + 1 + lead;
        let value_range = v0..v0 + value.len();
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(Errno::Proto);
            }
            let n = value
                .iter()
                .fold(0u64, |a, &d| a * 10 + u64::from(d - b'0'));
            if self.content_length.is_some_and(|c| c != n) {
                return Err(Errno::Proto);
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in tokens(value) {
                if coding.is_empty() {
                    continue;
                }
                if self.te_chunked_last {
                    // `chunked` must be the final coding, applied once.
                    return Err(Errno::Proto);
                }
                self.te = true;
                self.te_chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for opt in tokens(value) {
                self.conn_close |= opt.eq_ignore_ascii_case(b"close");
                self.conn_keep_alive |= opt.eq_ignore_ascii_case(b"keep-alive");
                self.conn_upgrade |= opt.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            if self.host.is_some() {
                return Err(Errno::Proto);
            }
            self.host = Some(value_range);
        }
        Ok(at + colon + 1 + cr + 2)
    }

    /// How the body is delimited.
    fn body(&self, role: Http1Role, http10: bool) -> Result<Body, Errno> {
        if self.te {
            if self.content_length.is_some() || http10 {
                return Err(Errno::Proto);
            }
            if self.te_chunked_last {
                return Ok(Body::Chunked);
            }
            return match role {
                Http1Role::Request => Err(Errno::Proto),
                Http1Role::Response => Ok(Body::UntilClose),
            };
        }
        Ok(match (self.content_length, role) {
            (Some(0), _) => Body::None,
            (Some(n), _) => Body::Length(n),
            (None, Http1Role::Request) => Body::None,
            (None, Http1Role::Response) => Body::UntilClose,
        })
    }

    /// Whether the connection ends after this message.
    fn closes(&self, http10: bool) -> bool {
        self.conn_close || (http10 && !self.conn_keep_alive)
    }
}

/// Comma-separated list elements, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(|t| {
        let s = t.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        let e = t.len()
            - t[s..]
                .iter()
                .rev()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
        &t[s..e]
    })
}

/// `HTTP/1.1` → false, `HTTP/1.0` → true.
fn parse_version(v: &[u8]) -> Result<bool, Errno> {
    match v {
        b"HTTP/1.1" => Ok(false),
        b"HTTP/1.0" => Ok(true),
        _ => Err(Errno::Proto),
    }
}

/// Whether `b` may not appear in a field value: a control byte other than
/// tab, or DEL.
#[inline]
fn is_ctl(b: u8) -> bool {
    (b < b' ' && b != b'\t') || b == 0x7f
}

/// RFC 9110 token characters, by byte value.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// RFC 9110 token character.
#[inline]
fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// The size of the chunk-size line `pos..cr`: 1 to 16 hex digits, then
/// optionally `;` and extensions.
fn chunk_size(data: &Chunks<'_>, pos: usize, cr: usize) -> Result<u64, Errno> {
    let mut size: u64 = 0;
    let mut digits = 0;
    let mut i = pos;
    while i < cr {
        let b = data.byte(i).ok_or(Errno::Proto)?;
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            b';' => break,
            _ => return Err(Errno::Proto),
        };
        digits += 1;
        if digits > 16 {
            return Err(Errno::Proto);
        }
        size = (size << 4) | u64::from(d);
        i += 1;
    }
    if digits == 0 {
        return Err(Errno::Proto);
    }
    Ok(size)
}
