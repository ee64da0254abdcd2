//! Conversion of the option objects the TypeScript layer builds into engine types.
//!
//! The TypeScript layer validates every user argument (TypeError/RangeError naming it) and hands over plain,
//! normalised objects; what can still fail here is a combination the engine refuses, reported as `"[CODE] ..."`.

use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use sockmap_core::framer::{
    ByteOrder, DelimiterOptions, Http1Options, Http1Role, LengthFieldOptions, RespOptions,
};
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{
    MsgVerdictKind, MsgVerdictProg, ParserKind, ParserProg, Programs, StreamVerdictProg,
    VerdictKind,
};
use sockmap_core::{BatchConfig, EngineConfig, Errno, Key, KeySource, MapId, Rule};

use crate::binding_error::errno_error;

/// Engine options, normalised by the TypeScript layer.
#[napi(object)]
pub struct EngineOptions {
    /// Most messages in one batch handed to JavaScript.
    pub max_messages: u32,
    /// Longest a message waits for its batch to be handed over, in microseconds.
    pub max_delay_micros: u32,
    /// Most batches awaiting answers from JavaScript at once.
    pub max_in_flight: u32,
    /// Send ring high watermark in bytes (0: engine default).
    pub send_high_watermark: f64,
    /// Send ring low watermark in bytes (0: engine default).
    pub send_low_watermark: f64,
    /// Bytes delivered to a socket's application and not yet acknowledged above which its sources stop being read.
    pub app_high_watermark: f64,
    /// Bytes one socket may hold awaiting external verdicts and parses before it stops being read (0: engine default).
    pub max_pending_bytes: f64,
    /// Bytes read from one socket per I/O loop turn before other sockets get a turn (0: engine default).
    pub read_budget: f64,
}

/// Builds the engine configuration.
pub fn engine_config(o: &EngineOptions) -> EngineConfig {
    let mut cfg = EngineConfig {
        batch: BatchConfig {
            max_messages: o.max_messages.max(1) as usize,
            max_delay: Duration::from_micros(u64::from(o.max_delay_micros)),
            max_in_flight: o.max_in_flight.max(1) as usize,
        },
        ..EngineConfig::default()
    };
    if o.send_high_watermark > 0.0 {
        cfg.send_high_watermark = o.send_high_watermark as usize;
    }
    if o.send_low_watermark > 0.0 {
        cfg.send_low_watermark = o.send_low_watermark as usize;
    }
    if o.app_high_watermark > 0.0 {
        cfg.app_high_watermark = Some(bytes_of(o.app_high_watermark));
    }
    if o.max_pending_bytes > 0.0 {
        cfg.max_pending_bytes = bytes_of(o.max_pending_bytes);
    }
    if o.read_budget > 0.0 {
        cfg.read_budget = bytes_of(o.read_budget);
    }
    cfg
}

/// Converts a JS key (a number, or the bytes of a string or Buffer) to an engine key.
pub fn key_of(key: &Either<f64, Buffer>) -> Key {
    match key {
        Either::A(n) => Key::Num(*n as u64),
        Either::B(b) => Key::Bytes(Bytes::copy_from_slice(b)),
    }
}

/// Converts an update flag name.
pub fn flag_of(flag: &str) -> Result<UpdateFlag, napi::Error> {
    match flag {
        "any" => Ok(UpdateFlag::Any),
        "noexist" => Ok(UpdateFlag::NoExist),
        "exist" => Ok(UpdateFlag::Exist),
        _ => Err(errno_error(Errno::Inval, "unknown update flag")),
    }
}

/// Converts a map kind name.
pub fn map_kind_of(kind: &str) -> Result<MapKind, napi::Error> {
    match kind {
        "sockmap" => Ok(MapKind::SockMap),
        "sockhash" => Ok(MapKind::SockHash),
        _ => Err(errno_error(Errno::Inval, "unknown map kind")),
    }
}

/// Where a native rule takes its key from.
#[napi(object)]
pub struct KeySpec {
    /// `'fixed' | 'socket' | 'bytes' | 'resp' | 'httpHost'`.
    pub kind: String,
    /// The fixed key (`kind: 'fixed'`).
    pub value: Option<Either<f64, Buffer>>,
    /// First byte (`kind: 'bytes'`).
    pub offset: Option<u32>,
    /// Number of bytes (`kind: 'bytes'`).
    pub length: Option<u32>,
}

fn key_source_of(k: &KeySpec) -> Result<KeySource, napi::Error> {
    match k.kind.as_str() {
        "fixed" => k
            .value
            .as_ref()
            .map(|v| KeySource::Fixed(key_of(v)))
            .ok_or_else(|| errno_error(Errno::Inval, "fixed key without a value")),
        "socket" => Ok(KeySource::Socket),
        "bytes" => Ok(KeySource::Range {
            offset: k.offset.unwrap_or(0) as usize,
            len: k.length.unwrap_or(0) as usize,
        }),
        "resp" => Ok(KeySource::Resp),
        "httpHost" => Ok(KeySource::HttpHost),
        other => Err(errno_error(
            Errno::Inval,
            &format!("unknown message key '{other}'"),
        )),
    }
}

/// A native verdict rule.
#[napi(object)]
pub struct RuleSpec {
    /// `'pass' | 'drop' | 'redirect' | 'hashRoute'`.
    pub kind: String,
    /// The target map (`redirect`, `hashRoute`).
    pub map: Option<u32>,
    /// Where the key comes from (`redirect`, `hashRoute`).
    pub key: Option<KeySpec>,
    /// Deliver to the target's application instead of transmitting.
    pub ingress: Option<bool>,
}

/// Converts a native rule.
pub fn rule_of(r: &RuleSpec, map_id: &impl Fn(u32) -> napi::Result<MapId>) -> napi::Result<Rule> {
    let target = || -> Result<(MapId, KeySource, bool), napi::Error> {
        let map = r
            .map
            .ok_or_else(|| errno_error(Errno::Inval, "rule without a map"))?;
        let key = r
            .key
            .as_ref()
            .ok_or_else(|| errno_error(Errno::Inval, "rule without a key"))?;
        Ok((
            map_id(map)?,
            key_source_of(key)?,
            r.ingress.unwrap_or(false),
        ))
    };
    match r.kind.as_str() {
        "pass" => Ok(Rule::Pass),
        "drop" => Ok(Rule::Drop),
        "redirect" => target().map(|(map, key, ingress)| Rule::Redirect { map, key, ingress }),
        "hashRoute" => target().map(|(map, key, ingress)| Rule::HashRoute { map, key, ingress }),
        _ => Err(errno_error(Errno::Inval, "unknown rule kind")),
    }
}

/// A parser: a native framer with its options, or a TypeScript function (`'external'`). The TypeScript layer
/// validated and filled in every option of the framer named by `kind`; the others are absent.
#[napi(object)]
pub struct ParserSpec {
    /// `'none' | 'external' | 'lengthField' | 'delimiter' | 'lines' | 'fixed' | 'resp' | 'http1'`.
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
    pub delimiters: Option<Vec<Buffer>>,
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

fn length_field_of(p: &ParserSpec) -> Result<LengthFieldOptions, napi::Error> {
    let d = LengthFieldOptions::default();
    Ok(LengthFieldOptions {
        byte_order: match p.byte_order.as_deref() {
            None | Some("be") => ByteOrder::BigEndian,
            Some("le") => ByteOrder::LittleEndian,
            Some(_) => return Err(errno_error(Errno::Inval, "unknown byte order")),
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

fn delimiter_of(p: &ParserSpec, lines: bool) -> DelimiterOptions {
    let d = DelimiterOptions::default();
    DelimiterOptions {
        delimiters: match (&p.delimiters, lines) {
            (Some(list), false) => list.iter().map(|b| b.to_vec()).collect(),
            _ => d.delimiters,
        },
        max_length: p.max_length.map_or(d.max_length, bytes_of),
        strip_delimiter: if lines {
            true
        } else {
            p.strip_delimiter.unwrap_or(d.strip_delimiter)
        },
        discard_oversize: p.discard_oversize.unwrap_or(d.discard_oversize),
    }
}

fn parser_of(p: &ParserSpec) -> Result<ParserProg, napi::Error> {
    let kind = match p.kind.as_str() {
        "none" => ParserKind::None,
        "external" => ParserKind::External {
            tag: p.tag.unwrap_or(0),
        },
        "lengthField" => ParserKind::LengthField(length_field_of(p)?),
        "delimiter" => ParserKind::Delimiter(delimiter_of(p, false)),
        "lines" => ParserKind::Delimiter(delimiter_of(p, true)),
        "fixed" => ParserKind::Fixed(p.size.map_or(0, bytes_of)),
        "resp" => {
            let d = RespOptions::default();
            ParserKind::Resp(RespOptions {
                max_depth: p.max_depth.map_or(d.max_depth, |v| v as usize),
                max_line_length: p.max_line_length.map_or(d.max_line_length, bytes_of),
            })
        }
        "http1" => ParserKind::Http1(Http1Options {
            role: match p.role.as_deref() {
                None | Some("request") => Http1Role::Request,
                Some("response") => Http1Role::Response,
                Some(_) => return Err(errno_error(Errno::Inval, "unknown HTTP/1 role")),
            },
            max_header_bytes: p.max_header_bytes.map_or(0, bytes_of),
            request_log: None,
        }),
        other => {
            return Err(errno_error(
                Errno::Inval,
                &format!("unknown parser kind '{other}'"),
            ))
        }
    };
    let mut prog = ParserProg::new(kind);
    // Refuse options the framer rejects now, at attach, rather than when the first socket takes the program.
    prog.framer()
        .map_err(|e| errno_error(e, "parser options rejected"))?;
    if let Some(max) = p.max_message_bytes {
        prog.max_message_bytes = bytes_of(max);
    }
    prog.message_timeout = p
        .message_timeout_ms
        .filter(|ms| *ms > 0.0)
        .map(|ms| Duration::from_micros((ms * 1000.0) as u64));
    Ok(prog)
}

/// A verdict: a native rule, or a TypeScript function (`'external'`).
#[napi(object)]
pub struct VerdictSpec {
    /// `'rule' | 'external'`.
    pub kind: String,
    /// The rule (`'rule'`).
    pub rule: Option<RuleSpec>,
    /// Tag of the external verdict (`'external'`).
    pub tag: Option<u32>,
    /// How many leading bytes of each message the external verdict sees.
    pub peek_bytes: Option<u32>,
}

fn verdict_kind_of(
    v: &VerdictSpec,
    map_id: &impl Fn(u32) -> napi::Result<MapId>,
) -> napi::Result<VerdictKind> {
    match v.kind.as_str() {
        "rule" => {
            let r = v
                .rule
                .as_ref()
                .ok_or_else(|| errno_error(Errno::Inval, "rule verdict without a rule"))?;
            Ok(VerdictKind::Rule(rule_of(r, map_id)?))
        }
        "external" => Ok(VerdictKind::External {
            tag: v.tag.unwrap_or(0),
            peek_bytes: v.peek_bytes.unwrap_or(65536) as usize,
        }),
        _ => Err(errno_error(Errno::Inval, "unknown verdict kind")),
    }
}

fn msg_verdict_kind_of(
    v: &VerdictSpec,
    map_id: &impl Fn(u32) -> napi::Result<MapId>,
) -> napi::Result<MsgVerdictKind> {
    Ok(match verdict_kind_of(v, map_id)? {
        VerdictKind::Rule(r) => MsgVerdictKind::Rule(r),
        VerdictKind::External { tag, peek_bytes } => MsgVerdictKind::External { tag, peek_bytes },
    })
}

/// The programs of `map.attach()`.
#[napi(object)]
pub struct ProgramsSpec {
    /// The parser.
    pub parser: Option<ParserSpec>,
    /// The stream verdict.
    pub verdict: Option<VerdictSpec>,
    /// The msg verdict.
    pub msg_verdict: Option<VerdictSpec>,
}

/// Converts the programs of `map.attach()`.
pub fn programs_of(
    p: &ProgramsSpec,
    map_id: impl Fn(u32) -> napi::Result<MapId>,
) -> napi::Result<Programs> {
    let parser = p.parser.as_ref().map(parser_of).transpose()?;
    let verdict = p
        .verdict
        .as_ref()
        .map(|v| {
            verdict_kind_of(v, &map_id).map(|kind| StreamVerdictProg {
                kind,
                propagate_fin: true,
            })
        })
        .transpose()?;
    let msg_verdict = p
        .msg_verdict
        .as_ref()
        .map(|v| msg_verdict_kind_of(v, &map_id).map(|kind| MsgVerdictProg { kind }))
        .transpose()?;
    Ok(Programs {
        parser: parser.map(Into::into),
        verdict: verdict.map(Into::into),
        msg_verdict: msg_verdict.map(Into::into),
    })
}
