//! Conversion of the option objects the TypeScript layer builds into engine types.
//!
//! The TypeScript layer validates every user argument (TypeError/RangeError naming it) and hands over plain,
//! normalised objects; what can still fail here is a combination the engine refuses, reported as `"[CODE] ..."`.

use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
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
        other => Err(errno_error(
            Errno::OpNotSupp,
            &format!("the engine does not yet take a key from '{other}' messages"),
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

/// A parser: a native framer with its options, or a TypeScript function (`'external'`).
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
}

fn parser_of(p: &ParserSpec) -> Result<ParserProg, napi::Error> {
    let kind = match p.kind.as_str() {
        "none" => ParserKind::None,
        "external" => {
            return Err(errno_error(
                Errno::OpNotSupp,
                "TypeScript parsers are not available in this engine build",
            ))
        }
        "externalParser" => ParserKind::External {
            tag: p.tag.unwrap_or(0),
        },
        other => {
            return Err(errno_error(
                Errno::OpNotSupp,
                &format!("the native '{other}' framer is not available in this engine build"),
            ))
        }
    };
    let mut prog = ParserProg::new(kind);
    if let Some(max) = p.max_message_bytes {
        prog.max_message_bytes = max as usize;
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
    match verdict_kind_of(v, map_id)? {
        VerdictKind::Rule(r) => Ok(MsgVerdictKind::Rule(r)),
        // The engine defines external msg verdicts but does not answer them yet (it would refuse every send).
        VerdictKind::External { .. } => Err(errno_error(
            Errno::OpNotSupp,
            "TypeScript msg verdicts are not available in this engine build",
        )),
    }
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
