//! The Redis command planner of the sharding gateway: what to do with one
//! RESP request. Pure: no I/O, no clock, no engine state.
//!
//! [`plan`] reads a request as the RESP framer framed it (its fragments and
//! [`MessageMeta::Resp`]) and answers a [`Plan`]:
//!
//! * [`Plan::Forward`]: send the request unchanged to the server its key
//!   hashes to (the key is the first argument, or the first key of
//!   `EVAL`-like commands, the third element for `OBJECT`/`MEMORY`/`XINFO`/
//!   `XGROUP`); no key: any server. Multi-key commands not listed below
//!   (`RENAME`, `SUNION`, `RPOPLPUSH`, ...) go by their first key, as
//!   twemproxy does: their keys must share a hash tag.
//! * [`Plan::Split`]: `MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH` with
//!   more than one key. [`Split::build`] makes the sub-command for a subset of
//!   the keys, [`Merger`] combines the sub-replies into one reply.
//! * [`Plan::Local`]: answered by the gateway (`PING`, `ECHO`, `SELECT 0`,
//!   `COMMAND`, `HELLO [2]`, `AUTH`); [`Plan::End`]: `QUIT`, answered `+OK`,
//!   after which the client is ended.
//! * [`Plan::Refuse`]: an error reply, for commands that cannot be sharded
//!   (unless named in [`RedisConfig::allow`]), for clients that must
//!   authenticate first, and for malformed requests.
//!
//! # Invariants
//!
//! * Every request gets exactly one plan, and every plan but `Forward` and
//!   `Split` carries the complete reply (a RESP2 value, or nothing for an
//!   empty inline line, which Redis does not answer either).
//! * Replies never echo client bytes except as the payload of a bulk string
//!   (`PING msg`, `ECHO`), so a reply is always one well-formed value.
//! * The gateway speaks RESP2 only: upstream connections are shared by many
//!   clients and stay in RESP2, so `HELLO 3` is refused with `-NOPROTO`.
//! * Passwords are compared in time independent of where they differ.
//! * Nothing here panics on any input (fuzzed by `fuzz/fuzz_targets/redis_plan.rs`).
//!
//! Inline commands are split on spaces and tabs; quotes are not interpreted.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::framer::{Chunks, MessageMeta};

/// The gateway's Redis settings (`requests.redis`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisConfig {
    /// Clients must `AUTH` with this password (user `default`) before any
    /// other command but `HELLO` and `QUIT`. `None`: no authentication.
    pub password: Option<Bytes>,
    /// Command names (any case) forwarded by their first key although the
    /// gateway would refuse them (`KEYS`, `MULTI`, `EVAL` with several keys...).
    pub allow: Vec<Bytes>,
}

impl RedisConfig {
    fn allows(&self, name: &[u8]) -> bool {
        self.allow.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// What the planner remembers about one client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientState {
    authenticated: bool,
}

impl ClientState {
    /// A new client of a gateway with `cfg`: authenticated when there is no password.
    pub fn new(cfg: &RedisConfig) -> ClientState {
        ClientState {
            authenticated: cfg.password.is_none(),
        }
    }

    /// Whether the client may send commands other than `AUTH`/`HELLO`/`QUIT`.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }
}

/// What to do with one request. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send the request as it is. `Some(range)`: the bytes of the message to
    /// route by (before any hash tag is applied); `None`: any server.
    Forward(Option<Range<usize>>),
    /// Send parts of the request to several servers and merge their replies.
    Split(Split),
    /// Answer with this reply; nothing is sent upstream.
    Local(Bytes),
    /// Answer with this reply (after the client's earlier replies), then end
    /// the client: `QUIT`.
    End(Bytes),
    /// Answer with this error reply; nothing is sent upstream.
    Refuse(Bytes),
}

/// How a [`Split`]'s sub-replies merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKind {
    /// `MGET`: an array of the values, in the request's key order.
    Mget,
    /// `MSET`: `+OK`.
    Mset,
    /// `DEL`, `UNLINK`, `EXISTS`, `TOUCH`: the sum of the integers.
    Sum,
}

/// A multi-key request to send in parts: one per group of keys that go to
/// the same server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    kind: SplitKind,
    /// The command name as the client sent it.
    command: Bytes,
    keys: Vec<Bytes>,
    /// `MSET`: the value of each key; empty otherwise.
    values: Vec<Bytes>,
}

impl Split {
    /// How the sub-replies merge.
    pub fn kind(&self) -> SplitKind {
        self.kind
    }

    /// Each key's bytes, in request order (for routing). Indices into this
    /// slice are the `key_indices` of [`build`](Split::build) and [`Merger::add`].
    pub fn keys(&self) -> &[Bytes] {
        &self.keys
    }

    /// The sub-command (a RESP array of bulk strings) for the keys at
    /// `key_indices`, in that order; `MSET` keeps each key's value after it.
    /// Indices out of range are left out (the merger then answers an error
    /// for the keys that got no reply).
    pub fn build(&self, key_indices: &[usize]) -> Bytes {
        let valid = || key_indices.iter().filter(|&&i| i < self.keys.len());
        let per_key = if self.kind == SplitKind::Mset { 2 } else { 1 };
        let count = 1 + per_key * valid().count();
        let mut size = 16 + bulk_size(&self.command);
        for &i in valid() {
            size += bulk_size(&self.keys[i]);
            if let Some(v) = self.values.get(i) {
                size += bulk_size(v);
            }
        }
        let mut out = BytesMut::with_capacity(size);
        header(&mut out, b'*', count);
        put_bulk(&mut out, &self.command);
        for &i in valid() {
            put_bulk(&mut out, &self.keys[i]);
            if let Some(v) = self.values.get(i) {
                put_bulk(&mut out, v);
            }
        }
        out.freeze()
    }

    /// A merger for the replies to this split's parts.
    pub fn merger(&self) -> Merger {
        let n = self.keys.len();
        Merger {
            kind: self.kind,
            answered: vec![false; n],
            values: if self.kind == SplitKind::Mget {
                vec![Bytes::new(); n]
            } else {
                Vec::new()
            },
            sum: 0,
            error: None,
        }
    }
}

/// Combines the replies to a [`Split`]'s parts into the client's reply.
///
/// An error reply of any part becomes the whole reply: the error of the part
/// holding the lowest key index, so the answer does not depend on which
/// server answered first. A part whose reply has an unexpected shape counts
/// as such an error (`-ERR sockmap: unexpected reply ...`), and so do keys
/// no part answered.
#[derive(Clone, Debug)]
pub struct Merger {
    kind: SplitKind,
    answered: Vec<bool>,
    /// `MGET`: each key's reply element, as received.
    values: Vec<Bytes>,
    sum: i64,
    /// (lowest key index of the part, its error reply).
    error: Option<(usize, Bytes)>,
}

const UNEXPECTED: &[u8] = b"-ERR sockmap: unexpected reply from upstream to a split command\r\n";
const UNANSWERED: &[u8] = b"-ERR sockmap: some keys of a split command got no reply\r\n";

impl Merger {
    /// Takes the reply (one RESP value, as fragments) to the sub-command
    /// that [`Split::build`] made for `key_indices`. Indices out of range,
    /// or already answered, are ignored.
    pub fn add(&mut self, key_indices: &[usize], reply: &[Bytes]) {
        let reply = contiguous(reply);
        let n = self.answered.len();
        let Some(lowest) = key_indices.iter().copied().filter(|&i| i < n).min() else {
            return;
        };
        if reply.first() == Some(&b'-') {
            self.note_error(lowest, reply);
        } else if !self.take(key_indices, &reply) {
            self.note_error(lowest, Bytes::from_static(UNEXPECTED));
        }
        for &i in key_indices {
            if let Some(a) = self.answered.get_mut(i) {
                *a = true;
            }
        }
    }

    /// Takes a non-error reply; `false` if its shape is not the expected one.
    fn take(&mut self, key_indices: &[usize], reply: &Bytes) -> bool {
        match self.kind {
            SplitKind::Mset => reply[..] == *b"+OK\r\n",
            SplitKind::Sum => match parse_integer_reply(reply) {
                Some(v) => {
                    self.sum = self.sum.saturating_add(v);
                    true
                }
                None => false,
            },
            SplitKind::Mget => {
                let Some((count, mut at)) = aggregate_header(reply) else {
                    return false;
                };
                let mut elements = Vec::with_capacity(key_indices.len());
                for _ in 0..count {
                    let Some(end) = value_end(reply, at, 0) else {
                        return false;
                    };
                    elements.push(reply.slice(at..end));
                    at = end;
                }
                if count != key_indices.len() || at != reply.len() {
                    return false;
                }
                for (&i, e) in key_indices.iter().zip(elements) {
                    if let (Some(slot), Some(false)) =
                        (self.values.get_mut(i), self.answered.get(i))
                    {
                        *slot = e;
                    }
                }
                true
            }
        }
    }

    fn note_error(&mut self, lowest: usize, reply: Bytes) {
        match &self.error {
            Some((at, _)) if *at <= lowest => {}
            _ => self.error = Some((lowest, reply)),
        }
    }

    /// Whether every key has been answered.
    pub fn is_complete(&self) -> bool {
        self.answered.iter().all(|&a| a)
    }

    /// The client's reply.
    pub fn finish(self) -> Bytes {
        if let Some((_, e)) = self.error {
            return e;
        }
        if !self.is_complete() {
            return Bytes::from_static(UNANSWERED);
        }
        match self.kind {
            SplitKind::Mset => Bytes::from_static(b"+OK\r\n"),
            SplitKind::Sum => {
                let mut out = BytesMut::with_capacity(24);
                out.put_u8(b':');
                out.put_slice(self.sum.to_string().as_bytes());
                out.put_slice(b"\r\n");
                out.freeze()
            }
            SplitKind::Mget => {
                let size = 16 + self.values.iter().map(Bytes::len).sum::<usize>();
                let mut out = BytesMut::with_capacity(size);
                header(&mut out, b'*', self.values.len());
                for v in &self.values {
                    out.put_slice(v);
                }
                out.freeze()
            }
        }
    }
}

/// Plans the request `msg` (its fragments, `len` bytes in all, exactly one
/// message as the RESP framer framed it, with its `meta`) for a client in
/// `state`, which `AUTH`/`HELLO` update.
pub fn plan(
    msg: &[Bytes],
    len: usize,
    meta: &MessageMeta,
    cfg: &RedisConfig,
    state: &mut ClientState,
) -> Plan {
    let chunks = Chunks::from_parts(msg, &[], len, (0, 0));
    let MessageMeta::Resp { command, key } = meta else {
        return if is_blank(&chunks) {
            Plan::Local(Bytes::new())
        } else {
            Plan::Refuse(Bytes::from_static(MALFORMED))
        };
    };
    let mut buf = [0u8; NAME_MAX];
    let name = lower_name(&chunks, command, &mut buf);
    let class = classify(name);
    if !state.authenticated && !matches!(class, Class::Auth | Class::Hello | Class::Quit) {
        return refuse(b"-NOAUTH Authentication required.\r\n");
    }
    let forward_key = || Plan::Forward(key.clone());
    match class {
        Class::Forward => forward_key(),
        Class::Refused if cfg.allows(name) => forward_key(),
        Class::Refused => Plan::Refuse(not_supported(name)),
        Class::Quit => Plan::End(Bytes::from_static(b"+OK\r\n")),
        _ => {
            let Some(args) = args(&chunks) else {
                return refuse(MALFORMED);
            };
            let a = Args {
                msg,
                chunks: &chunks,
                ranges: &args,
            };
            planned(class, name, &a, cfg, state)
        }
    }
}

/// The plan of a command whose arguments matter.
fn planned(
    class: Class,
    name: &[u8],
    a: &Args<'_>,
    cfg: &RedisConfig,
    state: &mut ClientState,
) -> Plan {
    let n = a.ranges.len();
    match class {
        Class::KeyAt(i) => Plan::Forward(a.ranges.get(i).cloned()),
        Class::Split(kind) => split(kind, a),
        Class::Eval => {
            let first = a.ranges.get(3).cloned();
            match a.integer(2) {
                Some(0) => Plan::Forward(None),
                Some(1) => Plan::Forward(first),
                Some(_) if cfg.allows(name) => Plan::Forward(first),
                Some(_) => refuse(
                    b"-ERR sockmap: scripts with more than one key are not supported by the sharding gateway\r\n",
                ),
                // Let the server answer the error.
                None => Plan::Forward(first),
            }
        }
        Class::Ping => match n {
            1 => local(b"+PONG\r\n"),
            2 => Plan::Local(bulk(&a.bytes(1))),
            _ => Plan::Refuse(wrong_args(name)),
        },
        Class::Echo if n == 2 => Plan::Local(bulk(&a.bytes(1))),
        Class::Echo => Plan::Refuse(wrong_args(name)),
        Class::Select if n != 2 => Plan::Refuse(wrong_args(name)),
        Class::Select => match a.integer(1) {
            Some(0) => local(b"+OK\r\n"),
            Some(_) => {
                refuse(b"-ERR sockmap: only database 0 is served by the sharding gateway\r\n")
            }
            None => refuse(b"-ERR value is not an integer or out of range\r\n"),
        },
        Class::Command => command(a),
        Class::Auth => match n {
            2 => auth(cfg, state, None, &a.bytes(1)),
            3 => auth(cfg, state, Some(&a.bytes(1)), &a.bytes(2)),
            _ => Plan::Refuse(wrong_args(name)),
        },
        Class::Hello => hello(a, cfg, state),
        Class::Forward | Class::Refused | Class::Quit => Plan::Forward(a.ranges.get(1).cloned()),
    }
}

fn split(kind: SplitKind, a: &Args<'_>) -> Plan {
    let step = if kind == SplitKind::Mset { 2 } else { 1 };
    let n = a.ranges.len();
    let pairs = (n - 1) / step;
    if pairs < 2 || (n - 1) % step != 0 {
        // One key needs no split; a wrong arity the server answers.
        return Plan::Forward(a.ranges.get(1).cloned());
    }
    let mut keys = Vec::with_capacity(pairs);
    let mut values = Vec::with_capacity(if step == 2 { pairs } else { 0 });
    for p in 0..pairs {
        keys.push(a.bytes(1 + p * step));
        if step == 2 {
            values.push(a.bytes(2 + p * step));
        }
    }
    Plan::Split(Split {
        kind,
        command: a.bytes(0),
        keys,
        values,
    })
}

fn command(a: &Args<'_>) -> Plan {
    if a.ranges.len() == 1 {
        return local(b"*0\r\n");
    }
    let sub = a.bytes(1);
    if sub.eq_ignore_ascii_case(b"count") {
        local(b":0\r\n")
    } else if sub.eq_ignore_ascii_case(b"docs") || sub.eq_ignore_ascii_case(b"list") {
        local(b"*0\r\n")
    } else if sub.eq_ignore_ascii_case(b"info") {
        let names = a.ranges.len() - 2;
        let mut out = BytesMut::with_capacity(16 + 5 * names);
        header(&mut out, b'*', names);
        for _ in 0..names {
            out.put_slice(b"*-1\r\n");
        }
        Plan::Local(out.freeze())
    } else {
        refuse(
            b"-ERR sockmap: this COMMAND subcommand is not supported by the sharding gateway\r\n",
        )
    }
}

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

fn auth(cfg: &RedisConfig, state: &mut ClientState, user: Option<&[u8]>, password: &[u8]) -> Plan {
    let Some(want) = &cfg.password else {
        return refuse(b"-ERR Client sent AUTH, but no password is set\r\n");
    };
    let user_ok = user.map_or(true, |u| u == b"default");
    // Both compared, whatever the user, so timing tells nothing.
    if ct_eq(password, want) & user_ok {
        state.authenticated = true;
        local(b"+OK\r\n")
    } else {
        refuse(WRONGPASS)
    }
}

fn hello(a: &Args<'_>, cfg: &RedisConfig, state: &mut ClientState) -> Plan {
    let n = a.ranges.len();
    if n >= 2 {
        match a.integer(1) {
            Some(2) => {}
            Some(3) => {
                return refuse(
                    b"-NOPROTO sockmap: the sharding gateway speaks RESP2 only (its upstream connections are shared)\r\n",
                )
            }
            Some(_) => return refuse(b"-NOPROTO unsupported protocol version\r\n"),
            None => return refuse(b"-ERR Protocol version is not an integer or out of range\r\n"),
        }
    }
    let mut i = 2;
    let mut credentials = None;
    while i < n {
        let opt = a.bytes(i);
        if opt.eq_ignore_ascii_case(b"auth") && i + 2 < n {
            credentials = Some((a.bytes(i + 1), a.bytes(i + 2)));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"setname") && i + 1 < n {
            i += 2;
        } else {
            return refuse(b"-ERR Syntax error in HELLO option\r\n");
        }
    }
    if let Some((user, password)) = credentials {
        if let Plan::Refuse(e) = auth(cfg, state, Some(&user), &password) {
            return Plan::Refuse(e);
        }
    }
    if !state.authenticated {
        return refuse(b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n");
    }
    let mut out = BytesMut::with_capacity(160);
    header(&mut out, b'*', 14);
    for (k, v) in [
        (&b"server"[..], &b"sockmap"[..]),
        (b"version", env!("CARGO_PKG_VERSION").as_bytes()),
    ] {
        put_bulk(&mut out, k);
        put_bulk(&mut out, v);
    }
    put_bulk(&mut out, b"proto");
    out.put_slice(b":2\r\n");
    put_bulk(&mut out, b"id");
    out.put_slice(b":0\r\n");
    for (k, v) in [(&b"mode"[..], &b"standalone"[..]), (b"role", b"master")] {
        put_bulk(&mut out, k);
        put_bulk(&mut out, v);
    }
    put_bulk(&mut out, b"modules");
    out.put_slice(b"*0\r\n");
    Plan::Local(out.freeze())
}

// ── Command classes ─────────────────────────────────────────────────────────

/// Longest command name the planner knows (longer ones are forwarded).
const NAME_MAX: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Forward by the first argument.
    Forward,
    /// Forward by the element at this index.
    KeyAt(usize),
    Split(SplitKind),
    Eval,
    Ping,
    Echo,
    Quit,
    Select,
    Command,
    Hello,
    Auth,
    Refused,
}

fn classify(name: &[u8]) -> Class {
    match name {
        b"mget" => Class::Split(SplitKind::Mget),
        b"mset" => Class::Split(SplitKind::Mset),
        b"del" | b"unlink" | b"exists" | b"touch" => Class::Split(SplitKind::Sum),
        b"object" | b"memory" | b"xinfo" | b"xgroup" => Class::KeyAt(2),
        b"eval" | b"evalsha" | b"eval_ro" | b"evalsha_ro" | b"fcall" | b"fcall_ro" => Class::Eval,
        b"ping" => Class::Ping,
        b"echo" => Class::Echo,
        b"quit" => Class::Quit,
        b"select" => Class::Select,
        b"command" => Class::Command,
        b"hello" => Class::Hello,
        b"auth" => Class::Auth,
        b"keys" | b"scan" | b"flushall" | b"flushdb" | b"dbsize" | b"randomkey" | b"multi"
        | b"exec" | b"discard" | b"watch" | b"unwatch" | b"blpop" | b"brpop" | b"blmove"
        | b"brpoplpush" | b"blmpop" | b"bzpopmin" | b"bzpopmax" | b"bzmpop" | b"xread"
        | b"xreadgroup" | b"wait" | b"waitaof" | b"subscribe" | b"psubscribe" | b"ssubscribe"
        | b"unsubscribe" | b"punsubscribe" | b"sunsubscribe" | b"publish" | b"pubsub"
        | b"monitor" | b"script" | b"function" | b"config" | b"client" | b"shutdown" | b"debug"
        | b"slaveof" | b"replicaof" | b"sync" | b"psync" | b"save" | b"bgsave"
        | b"bgrewriteaof" | b"migrate" | b"move" | b"swapdb" | b"cluster" | b"readonly"
        | b"readwrite" | b"asking" | b"acl" | b"failover" | b"module" | b"reset" | b"msetnx"
        | b"latency" | b"slowlog" | b"lastsave" | b"role" => Class::Refused,
        _ => Class::Forward,
    }
}

/// The command name in lower case (empty when longer than [`NAME_MAX`]:
/// unknown, forwarded).
fn lower_name<'b>(
    chunks: &Chunks<'_>,
    command: &Range<usize>,
    buf: &'b mut [u8; NAME_MAX],
) -> &'b [u8] {
    let n = command.end.saturating_sub(command.start);
    if n > NAME_MAX || !chunks.copy_to(command.start, &mut buf[..n]) {
        return &[];
    }
    buf[..n].make_ascii_lowercase();
    &buf[..n]
}

// ── Requests ────────────────────────────────────────────────────────────────

const MALFORMED: &[u8] = b"-ERR sockmap: malformed request (expected an array of bulk strings)\r\n";

/// A request's arguments.
struct Args<'a> {
    msg: &'a [Bytes],
    chunks: &'a Chunks<'a>,
    ranges: &'a [Range<usize>],
}

impl Args<'_> {
    /// Argument `i` (empty if absent), without copying when it lies in one fragment.
    fn bytes(&self, i: usize) -> Bytes {
        self.ranges
            .get(i)
            .map_or_else(Bytes::new, |r| slice(self.msg, self.chunks, r.clone()))
    }

    /// Argument `i` as a decimal integer (an optional `-`, 1 to 18 digits).
    fn integer(&self, i: usize) -> Option<i64> {
        let r = self.ranges.get(i)?;
        let mut buf = [0u8; 19];
        let n = r.end - r.start;
        if n == 0 || n > buf.len() || !self.chunks.copy_to(r.start, &mut buf[..n]) {
            return None;
        }
        parse_i64(&buf[..n])
    }
}

/// The byte ranges of a request's arguments: a RESP array of bulk strings
/// or an inline command. `None` for anything else.
fn args(c: &Chunks<'_>) -> Option<Vec<Range<usize>>> {
    if c.byte(0) != Some(b'*') {
        return Some(inline_args(c));
    }
    let (count, mut at) = line_number(c, 1)?;
    let count = usize::try_from(count).ok()?;
    // Each element takes at least 6 bytes (`$0\r\n\r\n`).
    if count > c.len() / 6 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if c.byte(at) != Some(b'$') {
            return None;
        }
        let (n, start) = line_number(c, at + 1)?;
        let end = start.checked_add(usize::try_from(n).ok()?)?;
        if c.matches_at(end, b"\r\n") != Some(true) {
            return None;
        }
        out.push(start..end);
        at = end + 2;
    }
    (at == c.len() && !out.is_empty()).then_some(out)
}

fn inline_args(c: &Chunks<'_>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    let len = c.len();
    let sep = |b: Option<u8>| matches!(b, Some(b' ' | b'\t' | b'\r' | b'\n'));
    while i < len {
        while i < len && sep(c.byte(i)) {
            i += 1;
        }
        let s = i;
        while i < len && !sep(c.byte(i)) {
            i += 1;
        }
        if i > s {
            out.push(s..i);
        }
    }
    out
}

fn is_blank(c: &Chunks<'_>) -> bool {
    c.byte(0) != Some(b'*') && inline_args(c).is_empty()
}

/// A non-negative decimal at `at` ended by `\r\n`: (value, offset after it).
fn line_number(c: &Chunks<'_>, at: usize) -> Option<(u64, usize)> {
    let cr = c.find(b"\r\n", at)?;
    let mut buf = [0u8; 18];
    let n = cr - at;
    if n == 0 || n > buf.len() || !c.copy_to(at, &mut buf[..n]) {
        return None;
    }
    let v = u64::try_from(parse_i64(&buf[..n])?).ok()?;
    Some((v, cr + 2))
}

/// The bytes of `range` of the message, sliced when they lie in one fragment.
fn slice(msg: &[Bytes], chunks: &Chunks<'_>, range: Range<usize>) -> Bytes {
    let mut start = 0;
    for f in msg {
        if range.start >= start && range.end <= start + f.len() {
            return f.slice(range.start - start..range.end - start);
        }
        start += f.len();
        if start > range.start {
            break;
        }
    }
    let mut v = vec![0u8; range.end - range.start];
    if chunks.copy_to(range.start, &mut v) {
        Bytes::from(v)
    } else {
        Bytes::new()
    }
}

// ── Replies ─────────────────────────────────────────────────────────────────

fn local(reply: &'static [u8]) -> Plan {
    Plan::Local(Bytes::from_static(reply))
}

fn refuse(reply: &'static [u8]) -> Plan {
    Plan::Refuse(Bytes::from_static(reply))
}

fn not_supported(name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(80);
    out.put_slice(b"-ERR sockmap: '");
    out.put_slice(name);
    out.put_slice(b"' is not supported by the sharding gateway\r\n");
    out.freeze()
}

fn wrong_args(name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_slice(b"-ERR wrong number of arguments for '");
    out.put_slice(name);
    out.put_slice(b"' command\r\n");
    out.freeze()
}

fn bulk_size(data: &[u8]) -> usize {
    data.len() + 24
}

fn header(out: &mut BytesMut, t: u8, n: usize) {
    out.put_u8(t);
    out.put_slice(n.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    header(out, b'$', data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn bulk(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(bulk_size(data));
    put_bulk(&mut out, data);
    out.freeze()
}

/// Equality of `a` and `b` in time that depends only on their lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// `-?[0-9]{1,18}`.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |v, &d| v * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

/// The reply's bytes as one buffer (sliced when it is one fragment).
fn contiguous(frags: &[Bytes]) -> Bytes {
    match frags {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => Bytes::from(many.concat()),
    }
}

/// `:<n>\r\n` as the whole reply.
fn parse_integer_reply(r: &[u8]) -> Option<i64> {
    let body = r.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    parse_i64(body)
}

/// `*<n>\r\n` at the start: (n, offset after it).
fn aggregate_header(r: &[u8]) -> Option<(usize, usize)> {
    let cr = memchr::memmem::find(r, b"\r\n")?;
    let n = parse_i64(r.strip_prefix(b"*")?.get(..cr - 1)?)?;
    Some((usize::try_from(n).ok()?, cr + 2))
}

/// The end of the RESP2 value at `at` in `r`, if it lies whole there.
fn value_end(r: &[u8], at: usize, depth: usize) -> Option<usize> {
    let t = *r.get(at)?;
    let cr = at + 1 + memchr::memmem::find(r.get(at + 1..)?, b"\r\n")?;
    let line = &r[at + 1..cr];
    let next = cr + 2;
    match t {
        b'+' | b'-' => Some(next),
        b':' => parse_i64(line).map(|_| next),
        b'$' if line == b"-1" => Some(next),
        b'$' => {
            let n = usize::try_from(parse_i64(line)?).ok()?;
            let end = next.checked_add(n)?;
            (r.get(end..end + 2)? == b"\r\n").then_some(end + 2)
        }
        b'*' if line == b"-1" => Some(next),
        b'*' if depth < 8 => {
            let n = usize::try_from(parse_i64(line)?).ok()?;
            let mut p = next;
            for _ in 0..n {
                p = value_end(r, p, depth + 1)?;
            }
            Some(p)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Framer, Parse, Resp, RespOptions};

    /// Frames `wire` (one request) as the strparser would, cut into
    /// fragments at `cuts`: its fragments, length and metadata.
    fn framed(wire: &[u8], cuts: &[usize]) -> (Vec<Bytes>, usize, MessageMeta) {
        let whole = Bytes::copy_from_slice(wire);
        let mut framer = Resp::new(RespOptions::default());
        let frags = [whole.clone()];
        let Parse::Length(n) = framer.parse(&Chunks::new(&frags)) else {
            panic!("not one message: {wire:?}");
        };
        assert_eq!(n, wire.len(), "one message");
        let (_, meta) = framer.finish();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&n)) {
            out.push(whole.slice(last..c));
            last = c;
        }
        (out, n, meta)
    }

    /// Plans `wire` whole and cut at every byte: the same plan each time
    /// (each cut run starts from the state the whole run started from).
    fn run_with(wire: &[u8], cfg: &RedisConfig, state: &mut ClientState) -> Plan {
        let before = state.clone();
        let (frags, len, meta) = framed(wire, &[]);
        let whole = plan(&frags, len, &meta, cfg, state);
        for cut in 1..len {
            let (frags, len, meta) = framed(wire, &[cut]);
            let mut st = before.clone();
            assert_eq!(
                plan(&frags, len, &meta, cfg, &mut st),
                whole,
                "cut at {cut}"
            );
        }
        whole
    }

    fn run(wire: &[u8]) -> Plan {
        let cfg = RedisConfig::default();
        run_with(wire, &cfg, &mut ClientState::new(&cfg))
    }

    /// The bytes a forwarded request is routed by.
    fn forward_key(wire: &[u8]) -> Option<Vec<u8>> {
        match run(wire) {
            Plan::Forward(r) => r.map(|r| wire[r].to_vec()),
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn local_of(p: Plan) -> Vec<u8> {
        match p {
            Plan::Local(b) => b.to_vec(),
            other => panic!("not local: {other:?}"),
        }
    }

    fn refused(p: Plan) -> Vec<u8> {
        match p {
            Plan::Refuse(b) => b.to_vec(),
            other => panic!("not refused: {other:?}"),
        }
    }

    fn split_of(p: Plan) -> Split {
        match p {
            Plan::Split(s) => s,
            other => panic!("not split: {other:?}"),
        }
    }

    fn frags(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn keyed_commands_forward_by_their_key() {
        let wire = b"*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n";
        assert_eq!(run(wire), Plan::Forward(Some(17..20)));
        assert_eq!(forward_key(wire).as_deref(), Some(&b"foo"[..]));
        assert_eq!(run(b"get foo\r\n"), Plan::Forward(Some(4..7)));
        assert_eq!(run(b"*1\r\n$4\r\nINFO\r\n"), Plan::Forward(None));
        // One key of a splittable command needs no split.
        assert_eq!(
            run(b"*2\r\n$4\r\nMGET\r\n$1\r\na\r\n"),
            Plan::Forward(Some(18..19))
        );
        assert_eq!(
            forward_key(b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n").as_deref(),
            Some(&b"k"[..])
        );
        // OBJECT ENCODING key: the key is the third element.
        let wire = b"*3\r\n$6\r\nOBJECT\r\n$8\r\nENCODING\r\n$1\r\nk\r\n";
        assert_eq!(forward_key(wire).as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn eval_forwards_by_its_only_key() {
        let wire = b"*4\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n$2\r\nk1\r\n";
        assert_eq!(forward_key(wire).as_deref(), Some(&b"k1"[..]));
        let wire = b"*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n";
        assert_eq!(run(wire), Plan::Forward(None));
        let wire = b"*5\r\n$4\r\nEVAL\r\n$1\r\ns\r\n$1\r\n2\r\n$1\r\na\r\n$1\r\nb\r\n";
        assert_eq!(
            refused(run(wire)),
            b"-ERR sockmap: scripts with more than one key are not supported by the sharding gateway\r\n"
        );
        let cfg = RedisConfig {
            allow: vec![Bytes::from_static(b"EVAL")],
            ..RedisConfig::default()
        };
        assert_eq!(
            run_with(wire, &cfg, &mut ClientState::new(&cfg)),
            Plan::Forward(Some(32..33))
        );
    }

    #[test]
    fn unshardable_commands_are_refused_unless_allowed() {
        assert_eq!(
            refused(run(b"*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n")),
            b"-ERR sockmap: 'keys' is not supported by the sharding gateway\r\n"
        );
        assert_eq!(
            refused(run(b"multi\r\n")),
            b"-ERR sockmap: 'multi' is not supported by the sharding gateway\r\n"
        );
        assert_eq!(
            refused(run(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")),
            b"-ERR sockmap: 'blpop' is not supported by the sharding gateway\r\n"
        );
        let cfg = RedisConfig {
            allow: vec![Bytes::from_static(b"keys"), Bytes::from_static(b"Blpop")],
            ..RedisConfig::default()
        };
        let mut st = ClientState::new(&cfg);
        assert_eq!(
            run_with(b"*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n", &cfg, &mut st),
            Plan::Forward(Some(18..19))
        );
        assert_eq!(
            run_with(
                b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n",
                &cfg,
                &mut st
            ),
            Plan::Forward(Some(19..20))
        );
    }

    #[test]
    fn local_commands() {
        assert_eq!(local_of(run(b"*1\r\n$4\r\nPING\r\n")), b"+PONG\r\n");
        assert_eq!(local_of(run(b"PING hi\r\n")), b"$2\r\nhi\r\n");
        assert_eq!(
            refused(run(b"PING a b\r\n")),
            b"-ERR wrong number of arguments for 'ping' command\r\n"
        );
        // A payload with CR LF stays inside the bulk string.
        assert_eq!(
            local_of(run(b"*2\r\n$4\r\necho\r\n$4\r\na\r\nb\r\n")),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(
            refused(run(b"ECHO\r\n")),
            b"-ERR wrong number of arguments for 'echo' command\r\n"
        );
        assert_eq!(run(b"QUIT\r\n"), Plan::End(Bytes::from_static(b"+OK\r\n")));
        assert_eq!(local_of(run(b"SELECT 0\r\n")), b"+OK\r\n");
        assert_eq!(
            refused(run(b"SELECT 1\r\n")),
            b"-ERR sockmap: only database 0 is served by the sharding gateway\r\n"
        );
        assert_eq!(
            refused(run(b"SELECT x\r\n")),
            b"-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(local_of(run(b"*1\r\n$7\r\nCOMMAND\r\n")), b"*0\r\n");
        assert_eq!(
            local_of(run(b"*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n")),
            b"*0\r\n"
        );
        assert_eq!(local_of(run(b"COMMAND COUNT\r\n")), b":0\r\n");
        assert_eq!(
            local_of(run(b"COMMAND INFO get set\r\n")),
            b"*2\r\n*-1\r\n*-1\r\n"
        );
        // An empty inline line: Redis answers nothing.
        assert_eq!(local_of(run(b"\r\n")), b"");
        assert_eq!(local_of(run(b"  \n")), b"");
    }

    #[test]
    fn hello_speaks_resp2_only() {
        let hello2 = local_of(run(b"HELLO 2\r\n"));
        let v = env!("CARGO_PKG_VERSION");
        let want = format!(
            "*14\r\n$6\r\nserver\r\n$7\r\nsockmap\r\n$7\r\nversion\r\n${}\r\n{v}\r\n$5\r\nproto\r\n:2\r\n\
             $2\r\nid\r\n:0\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
             $7\r\nmodules\r\n*0\r\n",
            v.len()
        );
        assert_eq!(String::from_utf8(hello2).unwrap(), want);
        assert_eq!(local_of(run(b"HELLO\r\n")), want.as_bytes());
        assert_eq!(
            refused(run(b"HELLO 3\r\n")),
            b"-NOPROTO sockmap: the sharding gateway speaks RESP2 only (its upstream connections are shared)\r\n"
        );
        assert_eq!(
            refused(run(b"HELLO 4\r\n")),
            b"-NOPROTO unsupported protocol version\r\n"
        );
        assert_eq!(
            refused(run(b"HELLO two\r\n")),
            b"-ERR Protocol version is not an integer or out of range\r\n"
        );
        assert_eq!(
            refused(run(b"HELLO 2 BOGUS\r\n")),
            b"-ERR Syntax error in HELLO option\r\n"
        );
        assert_eq!(local_of(run(b"HELLO 2 SETNAME me\r\n")), want.as_bytes());
    }

    fn with_password() -> RedisConfig {
        RedisConfig {
            password: Some(Bytes::from_static(b"s3cret")),
            allow: Vec::new(),
        }
    }

    fn plan_once(wire: &[u8], cfg: &RedisConfig, st: &mut ClientState) -> Plan {
        let (frags, len, meta) = framed(wire, &[]);
        plan(&frags, len, &meta, cfg, st)
    }

    #[test]
    fn auth_gates_every_command_but_auth_hello_quit() {
        let cfg = with_password();
        let mut st = ClientState::new(&cfg);
        assert!(!st.is_authenticated());
        let noauth = b"-NOAUTH Authentication required.\r\n";
        assert_eq!(refused(plan_once(b"GET k\r\n", &cfg, &mut st)), noauth);
        assert_eq!(refused(plan_once(b"PING\r\n", &cfg, &mut st)), noauth);
        assert_eq!(refused(plan_once(b"KEYS *\r\n", &cfg, &mut st)), noauth);
        let noauth_hello = refused(plan_once(b"HELLO 2\r\n", &cfg, &mut st));
        assert!(
            noauth_hello.starts_with(b"-NOAUTH HELLO must be called"),
            "{noauth_hello:?}"
        );
        let wrongpass = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
        assert_eq!(
            refused(plan_once(b"AUTH s3cre\r\n", &cfg, &mut st)),
            wrongpass
        );
        assert_eq!(
            refused(plan_once(b"AUTH s3cret!\r\n", &cfg, &mut st)),
            wrongpass
        );
        assert_eq!(
            refused(plan_once(b"AUTH bob s3cret\r\n", &cfg, &mut st)),
            wrongpass
        );
        assert_eq!(
            refused(plan_once(b"AUTH\r\n", &cfg, &mut st)),
            b"-ERR wrong number of arguments for 'auth' command\r\n"
        );
        assert!(!st.is_authenticated());
        assert_eq!(
            plan_once(b"QUIT\r\n", &cfg, &mut st),
            Plan::End(Bytes::from_static(b"+OK\r\n"))
        );
        assert_eq!(
            local_of(plan_once(
                b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n",
                &cfg,
                &mut st
            )),
            b"+OK\r\n"
        );
        assert!(st.is_authenticated());
        assert_eq!(
            plan_once(b"GET k\r\n", &cfg, &mut st),
            Plan::Forward(Some(4..5))
        );

        let mut st = ClientState::new(&cfg);
        assert_eq!(
            local_of(plan_once(b"AUTH default s3cret\r\n", &cfg, &mut st)),
            b"+OK\r\n"
        );
        assert!(st.is_authenticated());
        // HELLO 2 AUTH authenticates and answers HELLO.
        let mut st = ClientState::new(&cfg);
        let hello = local_of(plan_once(b"HELLO 2 AUTH default s3cret\r\n", &cfg, &mut st));
        assert!(hello.starts_with(b"*14\r\n$6\r\nserver\r\n"));
        assert!(st.is_authenticated());
        let mut st = ClientState::new(&cfg);
        assert_eq!(
            refused(plan_once(b"HELLO 2 AUTH default nope\r\n", &cfg, &mut st)),
            wrongpass
        );
        assert!(!st.is_authenticated());
    }

    #[test]
    fn auth_without_a_password_is_an_error() {
        assert_eq!(
            refused(run(b"AUTH x\r\n")),
            b"-ERR Client sent AUTH, but no password is set\r\n"
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        // Framed as one RESP value, but not an array of bulk strings.
        let m = b"-ERR sockmap: malformed request (expected an array of bulk strings)\r\n";
        assert_eq!(refused(run(b"*2\r\n$4\r\nMGET\r\n:1\r\n")), m);
        assert_eq!(refused(run(b"*2\r\n$4\r\nECHO\r\n*1\r\n$1\r\na\r\n")), m);
        assert_eq!(refused(run(b":1\r\n")), m);
    }

    #[test]
    fn mget_splits_and_merges_in_key_order() {
        let wire = b"*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$2\r\nbb\r\n$1\r\nc\r\n";
        let s = split_of(run(wire));
        assert_eq!(s.kind(), SplitKind::Mget);
        assert_eq!(s.keys(), &[&b"a"[..], b"bb", b"c"]);
        assert_eq!(
            &s.build(&[0, 2])[..],
            b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nc\r\n"
        );
        assert_eq!(&s.build(&[1])[..], b"*2\r\n$4\r\nMGET\r\n$2\r\nbb\r\n");
        assert_eq!(&s.build(&[1, 9])[..], b"*2\r\n$4\r\nMGET\r\n$2\r\nbb\r\n");
        let mut m = s.merger();
        m.add(&[1], &frags(&[b"*1\r\n$-1\r\n"]));
        assert!(!m.is_complete());
        m.add(
            &[0, 2],
            &frags(&[b"*2\r\n$2\r\nv", b"a\r\n$4\r\nvc\r\n\r\n"]),
        );
        assert!(m.is_complete());
        assert_eq!(
            &m.finish()[..],
            b"*3\r\n$2\r\nva\r\n$-1\r\n$4\r\nvc\r\n\r\n"
        );
    }

    #[test]
    fn mset_keeps_pairs_and_answers_ok() {
        let wire = b"*5\r\n$4\r\nmset\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n";
        let s = split_of(run(wire));
        assert_eq!(s.kind(), SplitKind::Mset);
        assert_eq!(s.keys(), &[&b"a"[..], b"b"]);
        assert_eq!(
            &s.build(&[1])[..],
            b"*3\r\n$4\r\nmset\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        let mut m = s.merger();
        m.add(&[0], &frags(&[b"+OK\r\n"]));
        m.add(&[1], &frags(&[b"+OK\r\n"]));
        assert_eq!(&m.finish()[..], b"+OK\r\n");
        // An odd MSET is the server's to refuse.
        let wire = b"*4\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n";
        assert_eq!(run(wire), Plan::Forward(Some(18..19)));
    }

    #[test]
    fn counting_commands_sum_their_integers() {
        for cmd in ["DEL", "unlink", "Exists", "TOUCH"] {
            let wire = format!("{cmd} a b c\r\n");
            let s = split_of(run(wire.as_bytes()));
            assert_eq!(s.kind(), SplitKind::Sum);
            let mut m = s.merger();
            m.add(&[0, 2], &frags(&[b":2\r\n"]));
            m.add(&[1], &frags(&[b":0\r\n"]));
            assert_eq!(&m.finish()[..], b":2\r\n");
            let built = format!("*3\r\n${}\r\n{cmd}\r\n$1\r\na\r\n$1\r\nc\r\n", cmd.len());
            assert_eq!(&s.build(&[0, 2])[..], built.as_bytes());
        }
    }

    #[test]
    fn errors_of_parts_become_the_reply_lowest_key_first() {
        let s = split_of(run(b"DEL a b c\r\n"));
        let mut m = s.merger();
        m.add(&[2], &frags(&[b"-ERR two\r\n"]));
        m.add(&[1], &frags(&[b"-ERR one\r\n"]));
        m.add(&[0], &frags(&[b":1\r\n"]));
        assert_eq!(&m.finish()[..], b"-ERR one\r\n");

        let mut m = s.merger();
        m.add(&[0, 1], &frags(&[b"+OK\r\n"]));
        m.add(&[2], &frags(&[b":1\r\n"]));
        assert_eq!(&m.finish()[..], UNEXPECTED);

        let mut m = s.merger();
        m.add(&[0, 1], &frags(&[b":1\r\n"]));
        assert_eq!(&m.finish()[..], UNANSWERED);

        let s = split_of(run(b"MGET a b\r\n"));
        let mut m = s.merger();
        // Two elements for one key.
        m.add(&[0], &frags(&[b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n"]));
        m.add(&[1], &frags(&[b"*1\r\n$1\r\nz\r\n"]));
        assert_eq!(&m.finish()[..], UNEXPECTED);
    }

    #[test]
    fn keys_across_fragments_are_copied_whole() {
        let wire = b"*3\r\n$4\r\nMGET\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
        let (f, len, meta) = framed(wire, &[3, 17, 20, 30]);
        let cfg = RedisConfig::default();
        let s = split_of(plan(&f, len, &meta, &cfg, &mut ClientState::new(&cfg)));
        assert_eq!(s.keys(), &[&b"hello"[..], b"world"]);
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"\0"));
    }
}
