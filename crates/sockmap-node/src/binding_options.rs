//! Conversion of the option objects the TypeScript layer builds into engine types.
//!
//! The TypeScript layer validates every user argument (TypeError/RangeError naming it) and passes an option it was
//! not given as absent; an absent option keeps the engine's default. What can still fail here is a combination the
//! engine refuses, thrown with its errno name as the error's `code`.

use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use sockmap_core::config::{BackendChoice, Drive, DEFAULT_BACKLOG, DEFAULT_HOST};
use sockmap_core::framer::{
    ByteOrder, DelimiterOptions, Http1Options, Http1Role, LengthFieldOptions, RespOptions,
};
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{
    ErrorVerdict, MsgVerdictKind, MsgVerdictProg, ParserKind, ParserProg, Programs, RequestsConfig,
    StreamVerdictProg, VerdictKind, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PEEK_BYTES,
};
use sockmap_core::redis::RedisConfig;
use sockmap_core::{EngineConfig, Errno, HttpRoute, Key, KeySource, MapId, Rule};

use crate::binding_bytes::JsBytes;
use crate::binding_error::{error_of, Result};

/// Engine options; each one absent keeps the engine's default.
#[napi(object)]
pub struct EngineOptions {
    /// Most messages in one batch handed to JavaScript.
    pub max_messages: Option<u32>,
    /// Longest a message waits for its batch to be handed over, in microseconds.
    pub max_delay_micros: Option<u32>,
    /// Most batches awaiting answers from JavaScript at once.
    pub max_in_flight: Option<u32>,
    /// Milliseconds a batch handed to JavaScript may go unanswered before its items get the error verdict.
    pub verdict_timeout_ms: Option<u32>,
    /// Send ring high watermark in bytes.
    pub send_high_watermark: Option<f64>,
    /// Send ring low watermark in bytes.
    pub send_low_watermark: Option<f64>,
    /// Bytes delivered to a socket's application and not yet acknowledged above which its sources stop being read.
    pub app_high_watermark: Option<f64>,
    /// Bytes one socket may hold awaiting external verdicts and parses before it stops being read.
    pub max_pending_bytes: Option<f64>,
    /// Bytes read from one socket per I/O loop turn before other sockets get a turn.
    pub read_budget: Option<f64>,
    /// `"auto"`, `"epoll"` or `"io_uring"`; absent: the `SOCKMAP_BACKEND` environment variable, or auto.
    pub backend: Option<String>,
    /// Buffers in the io_uring backend's provided-buffer ring.
    pub recv_buffers: Option<u32>,
    /// Size of the buffers reads land in, in bytes.
    pub read_buffer: Option<u32>,
    /// I/O threads (shards); absent: the `SOCKMAP_SHARDS` environment variable, or 1.
    pub shards: Option<u32>,
    /// Who runs the I/O loop: `"threads"` or `"inline"`; absent: the `SOCKMAP_DRIVE` environment variable, or
    /// threads.
    pub drive: Option<String>,
    /// Bytes a datagram socket may hold queued to send (beyond: dropped and counted).
    pub dgram_queue_bytes: Option<f64>,
    /// Datagrams a datagram socket may hold queued to send (beyond: dropped and counted).
    pub dgram_queue_datagrams: Option<u32>,
}

/// `bindUdp({ sessions })`: each absent field keeps the engine's default.
#[napi(object)]
pub struct SessionsSpec {
    /// A session closes after this long without a datagram either way, in milliseconds.
    pub idle_timeout_ms: Option<f64>,
    /// Sessions open at once; a new client's datagram beyond it is dropped and counted.
    pub max_sessions: Option<u32>,
}

/// The session configuration of `s`, over the engine's defaults.
pub fn session_config(s: &SessionsSpec) -> sockmap_core::dgram::SessionConfig {
    let mut c = sockmap_core::dgram::SessionConfig::default();
    set(
        &mut c.idle_timeout,
        s.idle_timeout_ms
            .map(|ms| Duration::from_micros((ms * 1000.0) as u64)),
    );
    set(&mut c.max_sessions, s.max_sessions.map(|n| n as usize));
    c
}

/// Builds the engine configuration: [`EngineConfig::acknowledged`] (JavaScript acknowledges what it consumes) with
/// the options given.
///
/// # Errors
/// `EINVAL` for a backend name the engine does not know.
pub fn engine_config(o: &EngineOptions) -> Result<EngineConfig> {
    let mut cfg = EngineConfig::acknowledged();
    let b = &mut cfg.batch;
    set(&mut b.max_messages, o.max_messages.map(|v| v as usize));
    set(
        &mut b.max_delay,
        o.max_delay_micros
            .map(|v| Duration::from_micros(u64::from(v))),
    );
    set(&mut b.max_in_flight, o.max_in_flight.map(|v| v as usize));
    set(
        &mut b.verdict_timeout,
        o.verdict_timeout_ms
            .map(|v| Duration::from_millis(u64::from(v))),
    );
    set(
        &mut cfg.send_high_watermark,
        o.send_high_watermark.map(bytes_of),
    );
    set(
        &mut cfg.send_low_watermark,
        o.send_low_watermark.map(bytes_of),
    );
    if let Some(v) = o.app_high_watermark {
        cfg.app_high_watermark = Some(bytes_of(v));
    }
    set(
        &mut cfg.max_pending_bytes,
        o.max_pending_bytes.map(bytes_of),
    );
    set(&mut cfg.read_budget, o.read_budget.map(bytes_of));
    set(&mut cfg.recv_buffers, o.recv_buffers.map(|v| v as usize));
    set(&mut cfg.read_buffer, o.read_buffer.map(|v| v as usize));
    set(
        &mut cfg.dgram_queue_bytes,
        o.dgram_queue_bytes.map(bytes_of),
    );
    set(
        &mut cfg.dgram_queue_datagrams,
        o.dgram_queue_datagrams.map(|v| v as usize),
    );
    if let Some(n) = o.shards {
        cfg.shards = Some(n as usize);
    }
    if let Some(name) = &o.backend {
        let choice = BackendChoice::parse(name)
            .ok_or_else(|| error_of(Errno::Inval, &format!("no backend is named {name:?}")))?;
        cfg.backend = Some(choice);
    }
    if let Some(name) = &o.drive {
        let drive = Drive::parse(name)
            .ok_or_else(|| error_of(Errno::Inval, &format!("no drive is named {name:?}")))?;
        cfg.drive = Some(drive);
    }
    Ok(cfg)
}

/// Overrides `slot` with `value` when given.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// A byte count as a JS number.
fn num(n: usize) -> f64 {
    n as f64
}

/// The engine's defaults, as `nativeDefaults()` reports them.
#[napi(object)]
pub struct NativeDefaults {
    /// Engine and batch options.
    pub engine: EngineOptions,
    /// The address `listen()` binds and `connect()` targets.
    pub host: String,
    /// The accept backlog.
    pub backlog: u32,
    /// How many leading bytes of each message a TypeScript verdict sees.
    pub peek_bytes: u32,
    /// The longest message any parser accepts.
    pub max_message_bytes: f64,
    /// How long a parser waits for a message to complete, in milliseconds (absent: no limit).
    pub message_timeout_ms: Option<f64>,
    /// The TLS handshake deadline of `listen({ tls })` and `connect({ tls })`, in milliseconds.
    pub tls_handshake_timeout_ms: f64,
    /// `parsers.lengthField()`.
    pub length_field: ParserSpec,
    /// `parsers.delimiter()`.
    pub delimiter: ParserSpec,
    /// `parsers.lines()`.
    pub lines: ParserSpec,
    /// `parsers.resp()`.
    pub resp: ParserSpec,
    /// `parsers.http1()`.
    pub http1: ParserSpec,
    /// What a close of one partner does to the other (`pair()`'s `onClose`).
    pub pair_on_close: String,
    /// `attach({ requests })`.
    pub requests: RequestsSpec,
    /// The weight of a map entry's server on the ring (`set()`'s `weight`).
    pub entry_weight: u32,
    /// `bindUdp({ sessions })`.
    pub sessions: SessionsSpec,
}

fn spec(kind: &str) -> ParserSpec {
    ParserSpec {
        kind: kind.to_string(),
        tag: None,
        max_message_bytes: None,
        message_timeout_ms: None,
        byte_order: None,
        length_field_offset: None,
        length_field_length: None,
        length_adjustment: None,
        initial_bytes_to_strip: None,
        max_frame_length: None,
        fail_fast: None,
        discard_oversize: None,
        delimiters: None,
        max_length: None,
        strip_delimiter: None,
        size: None,
        max_depth: None,
        max_line_length: None,
        role: None,
        max_header_bytes: None,
    }
}

fn delimiter_spec(kind: &str, d: &DelimiterOptions) -> ParserSpec {
    ParserSpec {
        delimiters: Some(d.delimiters.iter().map(|b| b.clone().into()).collect()),
        max_length: Some(num(d.max_length)),
        strip_delimiter: Some(d.strip_delimiter),
        discard_oversize: Some(d.discard_oversize),
        ..spec(kind)
    }
}

/// Every default the engine applies to an option left out, as JS values.
#[napi]
pub fn native_defaults() -> NativeDefaults {
    let e = EngineConfig::acknowledged();
    let lf = LengthFieldOptions::default();
    let resp = RespOptions::default();
    let http = Http1Options::default();
    NativeDefaults {
        engine: EngineOptions {
            max_messages: Some(e.batch.max_messages as u32),
            max_delay_micros: Some(e.batch.max_delay.as_micros() as u32),
            max_in_flight: Some(e.batch.max_in_flight as u32),
            verdict_timeout_ms: Some(e.batch.verdict_timeout.as_millis() as u32),
            send_high_watermark: Some(num(e.send_high_watermark)),
            send_low_watermark: Some(num(e.send_low_watermark)),
            app_high_watermark: e.app_high_watermark.map(num),
            max_pending_bytes: Some(num(e.max_pending_bytes)),
            read_budget: Some(num(e.read_budget)),
            backend: Some(e.backend.unwrap_or_default().name().to_string()),
            recv_buffers: Some(e.recv_buffers as u32),
            read_buffer: Some(e.read_buffer as u32),
            shards: Some(e.shards.unwrap_or(1) as u32),
            drive: Some(e.drive.unwrap_or_default().name().to_string()),
            dgram_queue_bytes: Some(num(e.dgram_queue_bytes)),
            dgram_queue_datagrams: Some(e.dgram_queue_datagrams as u32),
        },
        sessions: {
            let s = sockmap_core::dgram::SessionConfig::default();
            SessionsSpec {
                idle_timeout_ms: Some(s.idle_timeout.as_secs_f64() * 1000.0),
                max_sessions: Some(s.max_sessions as u32),
            }
        },
        host: DEFAULT_HOST.to_string(),
        backlog: DEFAULT_BACKLOG,
        peek_bytes: DEFAULT_PEEK_BYTES as u32,
        max_message_bytes: num(DEFAULT_MAX_MESSAGE_BYTES),
        tls_handshake_timeout_ms: sockmap_core::tls::DEFAULT_HANDSHAKE_TIMEOUT.as_secs_f64()
            * 1000.0,
        message_timeout_ms: ParserProg::new(ParserKind::None)
            .message_timeout
            .map(|t| t.as_secs_f64() * 1000.0),
        length_field: ParserSpec {
            byte_order: Some(
                match lf.byte_order {
                    ByteOrder::BigEndian => "be",
                    ByteOrder::LittleEndian => "le",
                }
                .to_string(),
            ),
            length_field_offset: Some(lf.length_field_offset as u32),
            length_field_length: Some(lf.length_field_length as u32),
            length_adjustment: Some(lf.length_adjustment as f64),
            initial_bytes_to_strip: Some(lf.initial_bytes_to_strip as u32),
            max_frame_length: Some(num(lf.max_frame_length)),
            fail_fast: Some(lf.fail_fast),
            discard_oversize: Some(lf.discard_oversize),
            ..spec("lengthField")
        },
        delimiter: delimiter_spec("delimiter", &DelimiterOptions::default()),
        lines: delimiter_spec("lines", &DelimiterOptions::lines()),
        resp: ParserSpec {
            max_depth: Some(resp.max_depth as u32),
            max_line_length: Some(num(resp.max_line_length)),
            ..spec("resp")
        },
        http1: ParserSpec {
            role: Some(role_name(http.role).to_string()),
            max_header_bytes: Some(num(http.max_header_bytes)),
            ..spec("http1")
        },
        pair_on_close: sockmap_core::OnClose::default().name().to_string(),
        requests: {
            let r = RequestsConfig::default();
            RequestsSpec {
                timeout_ms: Some(r.timeout.as_secs_f64() * 1000.0),
                max_pending: Some(r.max_pending as u32),
                redis: None,
            }
        },
        entry_weight: sockmap_core::EntryOptions::default().weight,
    }
}

fn role_name(r: Http1Role) -> &'static str {
    match r {
        Http1Role::Request => "request",
        Http1Role::Response => "response",
    }
}

/// Converts a JS key (a number, or the bytes of a string or Buffer) to an engine key.
pub fn key_of(key: &Either<f64, Buffer>) -> Key {
    match key {
        Either::A(n) => Key::Num(*n as u64),
        Either::B(b) => Key::Bytes(Bytes::copy_from_slice(b)),
    }
}

/// Converts an update flag name.
pub fn flag_of(flag: &str) -> Result<UpdateFlag> {
    match flag {
        "any" => Ok(UpdateFlag::Any),
        "noexist" => Ok(UpdateFlag::NoExist),
        "exist" => Ok(UpdateFlag::Exist),
        _ => Err(error_of(Errno::Inval, "unknown update flag")),
    }
}

/// Converts a map kind name.
pub fn map_kind_of(kind: &str) -> Result<MapKind> {
    match kind {
        "sockmap" => Ok(MapKind::SockMap),
        "sockhash" => Ok(MapKind::SockHash),
        _ => Err(error_of(Errno::Inval, "unknown map kind")),
    }
}

/// Where a native rule takes its key from.
#[napi(object, object_to_js = false)]
pub struct KeySpec {
    /// `'fixed' | 'socket' | 'bytes' | 'resp' | 'httpHost' | 'sni'`.
    pub kind: String,
    /// The fixed key (`kind: 'fixed'`).
    pub value: Option<Either<f64, Buffer>>,
    /// First byte (`kind: 'bytes'`).
    pub offset: Option<u32>,
    /// Number of bytes (`kind: 'bytes'`).
    pub length: Option<u32>,
}

fn key_source_of(k: &KeySpec) -> Result<KeySource> {
    match k.kind.as_str() {
        "fixed" => k
            .value
            .as_ref()
            .map(|v| KeySource::Fixed(key_of(v)))
            .ok_or_else(|| error_of(Errno::Inval, "fixed key without a value")),
        "socket" => Ok(KeySource::Socket),
        "bytes" => Ok(KeySource::Range {
            offset: k.offset.unwrap_or(0) as usize,
            len: k.length.unwrap_or(0) as usize,
        }),
        "resp" => Ok(KeySource::Resp),
        "httpHost" => Ok(KeySource::HttpHost),
        "sni" => Ok(KeySource::Sni),
        other => Err(error_of(
            Errno::Inval,
            &format!("unknown message key '{other}'"),
        )),
    }
}

/// One route of an `httpRoute` rule.
#[napi(object, object_to_js = false)]
pub struct HttpRouteSpec {
    /// The `Host` header to match, without port.
    pub host: Option<String>,
    /// A prefix of the request target to match.
    pub path_prefix: Option<String>,
    /// The pool map's number.
    pub pool: u32,
}

/// A native verdict rule.
#[napi(object, object_to_js = false)]
pub struct RuleSpec {
    /// `'pass' | 'drop' | 'redirect' | 'hashRoute' | 'roundRobin' | 'httpRoute'`.
    pub kind: String,
    /// The target map (`redirect`, `hashRoute`, `roundRobin`).
    pub map: Option<u32>,
    /// Where the key comes from (`redirect`, `hashRoute`).
    pub key: Option<KeySpec>,
    /// Deliver to the target's application instead of transmitting.
    pub ingress: Option<bool>,
    /// `hashRoute`: the two hash-tag delimiters, e.g. `'{}'`.
    pub hash_tag: Option<String>,
    /// `httpRoute`: the routes, in order.
    pub routes: Option<Vec<HttpRouteSpec>>,
}

fn hash_tag_of(tag: Option<&str>) -> Result<Option<[u8; 2]>> {
    match tag.map(str::as_bytes) {
        None => Ok(None),
        Some(&[open, close]) => Ok(Some([open, close])),
        Some(_) => Err(error_of(
            Errno::Inval,
            "a hash tag is two one-byte characters",
        )),
    }
}

fn http_route_of(r: &HttpRouteSpec) -> HttpRoute {
    HttpRoute {
        host: r
            .host
            .as_ref()
            .map(|h| Bytes::copy_from_slice(h.as_bytes())),
        path_prefix: r
            .path_prefix
            .as_ref()
            .map(|p| Bytes::copy_from_slice(p.as_bytes())),
        pool: MapId::from_u32(r.pool),
    }
}

/// Converts a native rule.
pub fn rule_of(r: &RuleSpec) -> Result<Rule> {
    let target = || -> Result<(MapId, KeySource, bool)> {
        let map = r
            .map
            .ok_or_else(|| error_of(Errno::Inval, "rule without a map"))?;
        let key = r
            .key
            .as_ref()
            .ok_or_else(|| error_of(Errno::Inval, "rule without a key"))?;
        Ok((
            MapId::from_u32(map),
            key_source_of(key)?,
            r.ingress.unwrap_or(false),
        ))
    };
    match r.kind.as_str() {
        "pass" => Ok(Rule::Pass),
        "drop" => Ok(Rule::Drop),
        "redirect" => target().map(|(map, key, ingress)| Rule::Redirect { map, key, ingress }),
        "hashRoute" => {
            let hash_tag = hash_tag_of(r.hash_tag.as_deref())?;
            target().map(|(map, key, ingress)| Rule::HashRoute {
                map,
                key,
                ingress,
                hash_tag,
            })
        }
        "roundRobin" => {
            let map = r
                .map
                .ok_or_else(|| error_of(Errno::Inval, "rule without a map"))?;
            Ok(Rule::RoundRobin {
                map: MapId::from_u32(map),
                ingress: r.ingress.unwrap_or(false),
            })
        }
        "httpRoute" => {
            let routes = r
                .routes
                .as_ref()
                .ok_or_else(|| error_of(Errno::Inval, "httpRoute without routes"))?;
            Ok(Rule::HttpRoute {
                routes: routes.iter().map(http_route_of).collect(),
                ingress: r.ingress.unwrap_or(false),
            })
        }
        "reply" => Ok(Rule::Reply),
        _ => Err(error_of(Errno::Inval, "unknown rule kind")),
    }
}

/// A parser: a native framer with its options, or a TypeScript function (`'external'`). The TypeScript layer
/// validated and filled in every option of the framer named by `kind`; the others are absent.
#[napi(object)]
pub struct ParserSpec {
    /// `'none' | 'external' | 'lengthField' | 'delimiter' | 'lines' | 'fixed' | 'resp' | 'http1' | 'tlsRecords'`.
    pub kind: String,
    /// Tag of the external parser (`'external'`).
    pub tag: Option<u32>,
    /// A message longer than this aborts the socket with `EMSGSIZE`.
    pub max_message_bytes: Option<f64>,
    /// A message not completed within this many milliseconds aborts the socket with `ETIMEDOUT`.
    pub message_timeout_ms: Option<f64>,
    /// `lengthField`: `'be' | 'le'`.
    pub byte_order: Option<String>,
    /// `lengthField`: bytes before the length field.
    pub length_field_offset: Option<u32>,
    /// `lengthField`: width of the length field (1, 2, 3, 4, 8).
    pub length_field_length: Option<u32>,
    /// `lengthField`: added to the field value.
    pub length_adjustment: Option<f64>,
    /// `lengthField`: bytes stripped from the head of each message.
    pub initial_bytes_to_strip: Option<u32>,
    /// `lengthField`: largest frame.
    pub max_frame_length: Option<f64>,
    /// `lengthField`: report an oversized frame as soon as its length is read.
    pub fail_fast: Option<bool>,
    /// `lengthField`, `delimiter`, `lines`: skip oversized frames instead of aborting with `EMSGSIZE`.
    pub discard_oversize: Option<bool>,
    /// `delimiter`: the delimiters.
    #[napi(ts_type = "Array<Buffer>")]
    pub delimiters: Option<Vec<JsBytes>>,
    /// `delimiter`, `lines`: longest message before its delimiter.
    pub max_length: Option<f64>,
    /// `delimiter`: leave the delimiter out of the message.
    pub strip_delimiter: Option<bool>,
    /// `fixed`: the message size.
    pub size: Option<f64>,
    /// `resp`: deepest aggregate nesting.
    pub max_depth: Option<u32>,
    /// `resp`: longest line.
    pub max_line_length: Option<f64>,
    /// `http1`: `'request' | 'response'`.
    pub role: Option<String>,
    /// `http1`: largest head.
    pub max_header_bytes: Option<f64>,
}

/// A JS number (validated by the TypeScript layer) as a byte count; out-of-range values saturate.
fn bytes_of(n: f64) -> usize {
    if n.is_nan() || n <= 0.0 {
        0
    } else {
        n.min(usize::MAX as f64) as usize
    }
}

fn length_field_of(p: &ParserSpec) -> Result<LengthFieldOptions> {
    let d = LengthFieldOptions::default();
    Ok(LengthFieldOptions {
        byte_order: match p.byte_order.as_deref() {
            None => d.byte_order,
            Some("be") => ByteOrder::BigEndian,
            Some("le") => ByteOrder::LittleEndian,
            Some(_) => return Err(error_of(Errno::Inval, "unknown byte order")),
        },
        length_field_offset: p
            .length_field_offset
            .map_or(d.length_field_offset, |v| v as usize),
        length_field_length: p
            .length_field_length
            .map_or(d.length_field_length, |v| v as usize),
        length_adjustment: p
            .length_adjustment
            .map_or(d.length_adjustment, |v| v as i64),
        initial_bytes_to_strip: p
            .initial_bytes_to_strip
            .map_or(d.initial_bytes_to_strip, |v| v as usize),
        max_frame_length: p.max_frame_length.map_or(d.max_frame_length, bytes_of),
        fail_fast: p.fail_fast.unwrap_or(d.fail_fast),
        discard_oversize: p.discard_oversize.unwrap_or(d.discard_oversize),
    })
}

/// `delimiter` or `lines` options: the options given over `base`.
fn delimiter_of(p: &ParserSpec, base: DelimiterOptions) -> DelimiterOptions {
    DelimiterOptions {
        delimiters: p.delimiters.as_ref().map_or(base.delimiters, |list| {
            list.iter().map(|b| b.to_vec()).collect()
        }),
        max_length: p.max_length.map_or(base.max_length, bytes_of),
        strip_delimiter: p.strip_delimiter.unwrap_or(base.strip_delimiter),
        discard_oversize: p.discard_oversize.unwrap_or(base.discard_oversize),
    }
}

fn parser_of(p: &ParserSpec) -> Result<ParserProg> {
    let kind = match p.kind.as_str() {
        "none" => ParserKind::None,
        "external" => ParserKind::External {
            tag: p
                .tag
                .ok_or_else(|| error_of(Errno::Inval, "external parser without a tag"))?,
        },
        "lengthField" => ParserKind::LengthField(length_field_of(p)?),
        "delimiter" => ParserKind::Delimiter(delimiter_of(p, DelimiterOptions::default())),
        "lines" => ParserKind::Delimiter(delimiter_of(p, DelimiterOptions::lines())),
        "fixed" => ParserKind::Fixed(
            p.size
                .map(bytes_of)
                .ok_or_else(|| error_of(Errno::Inval, "fixed parser without a size"))?,
        ),
        "resp" => {
            let d = RespOptions::default();
            ParserKind::Resp(RespOptions {
                max_depth: p.max_depth.map_or(d.max_depth, |v| v as usize),
                max_line_length: p.max_line_length.map_or(d.max_line_length, bytes_of),
            })
        }
        "tlsRecords" => ParserKind::TlsRecords,
        "http1" => {
            let d = Http1Options::default();
            ParserKind::Http1(Http1Options {
                role: match p.role.as_deref() {
                    None => d.role,
                    Some("request") => Http1Role::Request,
                    Some("response") => Http1Role::Response,
                    Some(_) => return Err(error_of(Errno::Inval, "unknown HTTP/1 role")),
                },
                max_header_bytes: p.max_header_bytes.map_or(d.max_header_bytes, bytes_of),
                ..d
            })
        }
        other => {
            return Err(error_of(
                Errno::Inval,
                &format!("unknown parser kind '{other}'"),
            ))
        }
    };
    let mut prog = ParserProg::new(kind);
    // Refuse options the framer rejects now, at attach, rather than when the first socket takes the program.
    prog.framer()
        .map_err(|e| error_of(e, "parser options rejected"))?;
    set(
        &mut prog.max_message_bytes,
        p.max_message_bytes.map(bytes_of),
    );
    if let Some(ms) = p.message_timeout_ms {
        prog.message_timeout = Some(Duration::from_micros((ms * 1000.0) as u64));
    }
    Ok(prog)
}

/// A verdict: a native rule, or a TypeScript function (`'external'`).
#[napi(object, object_to_js = false)]
pub struct VerdictSpec {
    /// `'rule' | 'external'`.
    pub kind: String,
    /// The rule (`'rule'`).
    pub rule: Option<RuleSpec>,
    /// Tag of the external verdict (`'external'`).
    pub tag: Option<u32>,
    /// How many leading bytes of each message the external verdict sees.
    pub peek_bytes: Option<u32>,
    /// What a message gets when the external verdict fails: `'pass'` or `'drop'`; absent: the engine's default.
    pub on_error: Option<String>,
}

fn error_verdict_of(v: &VerdictSpec) -> Result<ErrorVerdict> {
    match v.on_error.as_deref() {
        None => Ok(ErrorVerdict::default()),
        Some("pass") => Ok(ErrorVerdict::Pass),
        Some("drop") => Ok(ErrorVerdict::Drop),
        Some(_) => Err(error_of(Errno::Inval, "unknown error verdict")),
    }
}

fn verdict_kind_of(v: &VerdictSpec) -> Result<VerdictKind> {
    match v.kind.as_str() {
        "rule" => {
            let r = v
                .rule
                .as_ref()
                .ok_or_else(|| error_of(Errno::Inval, "rule verdict without a rule"))?;
            Ok(VerdictKind::Rule(rule_of(r)?))
        }
        "external" => Ok(VerdictKind::External {
            tag: v
                .tag
                .ok_or_else(|| error_of(Errno::Inval, "external verdict without a tag"))?,
            peek_bytes: v.peek_bytes.map_or(DEFAULT_PEEK_BYTES, |n| n as usize),
        }),
        _ => Err(error_of(Errno::Inval, "unknown verdict kind")),
    }
}

fn msg_verdict_kind_of(v: &VerdictSpec) -> Result<MsgVerdictKind> {
    Ok(match verdict_kind_of(v)? {
        VerdictKind::Rule(r) => MsgVerdictKind::Rule(r),
        VerdictKind::External { tag, peek_bytes } => MsgVerdictKind::External { tag, peek_bytes },
    })
}

/// The programs of `map.attach()`.
#[napi(object, object_to_js = false)]
pub struct ProgramsSpec {
    /// The parser.
    pub parser: Option<ParserSpec>,
    /// The stream verdict.
    pub verdict: Option<VerdictSpec>,
    /// The msg verdict.
    pub msg_verdict: Option<VerdictSpec>,
    /// Request/response pairing of the sockets' messages.
    pub requests: Option<RequestsSpec>,
}

/// `map.attach({ requests })`: request/response pairing; each option absent keeps the engine's default.
#[napi(object)]
pub struct RequestsSpec {
    /// How long an upstream may leave a request unanswered, in milliseconds.
    pub timeout_ms: Option<f64>,
    /// Requests a client may have awaiting replies before it stops being read.
    pub max_pending: Option<u32>,
    /// The Redis command planner (RESP clients routed by `hashRoute`).
    pub redis: Option<RedisSpec>,
}

/// `requests.redis`: the Redis command planner's settings.
#[napi(object)]
pub struct RedisSpec {
    /// Clients must `AUTH` with this password first.
    pub password: Option<String>,
    /// Commands forwarded by their first key although the planner would refuse them.
    pub allow: Option<Vec<String>>,
}

fn requests_of(r: &RequestsSpec) -> RequestsConfig {
    let mut c = RequestsConfig::default();
    if let Some(ms) = r.timeout_ms {
        c.timeout = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
    }
    if let Some(n) = r.max_pending {
        c.max_pending = n as usize;
    }
    if let Some(redis) = &r.redis {
        c.redis = Some(RedisConfig {
            password: redis.password.as_ref().map(|p| Bytes::from(p.clone())),
            allow: redis
                .allow
                .iter()
                .flatten()
                .map(|a| Bytes::from(a.clone()))
                .collect(),
        });
    }
    c
}

/// Converts the programs of `map.attach()`.
pub fn programs_of(p: &ProgramsSpec) -> Result<Programs> {
    let parser = p.parser.as_ref().map(parser_of).transpose()?;
    let verdict = p
        .verdict
        .as_ref()
        .map(|v| {
            Ok::<_, crate::binding_error::Error>(StreamVerdictProg {
                on_error: error_verdict_of(v)?,
                ..StreamVerdictProg::new(verdict_kind_of(v)?)
            })
        })
        .transpose()?;
    let msg_verdict = p
        .msg_verdict
        .as_ref()
        .map(|v| {
            Ok::<_, crate::binding_error::Error>(MsgVerdictProg {
                kind: msg_verdict_kind_of(v)?,
                on_error: error_verdict_of(v)?,
            })
        })
        .transpose()?;
    Ok(Programs {
        parser: parser.map(Into::into),
        verdict: verdict.map(Into::into),
        msg_verdict: msg_verdict.map(Into::into),
        requests: p.requests.as_ref().map(|r| requests_of(r).into()),
    })
}
