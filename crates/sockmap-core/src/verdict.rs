//! Verdicts on the I/O thread: a socket's stream verdict decided for a
//! message (`sk_psock_verdict_recv`'s program run), and verdicts resolved to
//! target sockets through the [`MapView`].
//!
//! [`decide`] is the one place a native stream verdict is evaluated, for a
//! message in fragments or in a contiguous range alike. When the verdict does
//! not depend on the message (PASS, DROP, a redirect keyed by a fixed key or
//! the socket's own id), it is cached in the psock's [`RouteCache`] until the
//! maps change, and the caller is told it holds for every message, so a
//! block of messages can be judged once.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;

use crate::batch::Target;
use crate::framer::MessageMeta;
use crate::id::SockId;
use crate::map::RawKey;
use crate::map_view::MapView;
use crate::program::{StreamVerdictProg, VerdictKind};
use crate::rules::{DerivedKey, HttpRoute, MessageView, MsgBytes, Rule, Verdict};
use crate::stats::DropReason;

/// A verdict with its target resolved to a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    Pass,
    Drop(DropReason),
    Redirect {
        target: SockId,
        ingress: bool,
    },
    /// An upstream's reply, for its oldest pending request ([`Rule::Reply`]).
    Reply,
}

/// The stream verdict that held for every message of a socket at a map epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteCache {
    epoch: u64,
    resolved: Option<Resolved>,
}

impl Default for RouteCache {
    fn default() -> RouteCache {
        RouteCache {
            epoch: u64::MAX,
            resolved: None,
        }
    }
}

/// A message as a verdict sees it.
pub(crate) struct Message<'a> {
    /// Where its bytes are (a block's range carries the block for function rules).
    pub(crate) bytes: MsgBytes<'a>,
    pub(crate) len: usize,
    pub(crate) meta: &'a MessageMeta,
}

/// Runs a socket's stream verdict on one message; the flag says the verdict
/// holds for every message of the socket until the maps change.
pub(crate) fn decide(
    prog: Option<&StreamVerdictProg>,
    route: &mut RouteCache,
    maps: &mut MapView,
    sock: SockId,
    sni: Option<&[u8]>,
    msg: &Message<'_>,
) -> (Resolved, bool) {
    let Some(prog) = prog else {
        return (Resolved::Pass, true);
    };
    let VerdictKind::Rule(rule) = &prog.kind else {
        // Answered in batches, never inline.
        return (Resolved::Drop(DropReason::Verdict), false);
    };
    let epoch = maps.epoch();
    if route.epoch == epoch {
        if let Some(r) = route.resolved {
            return (r, true);
        }
    }
    let (resolved, fixed) = eval_rule(maps, rule, sock, sni, msg);
    if fixed {
        *route = RouteCache {
            epoch,
            resolved: Some(resolved),
        };
    }
    (resolved, fixed)
}

/// Evaluates a native rule on a message of `sock` (whose stream asked for
/// server name `sni`); the flag as for [`decide`].
pub(crate) fn eval_rule(
    maps: &mut MapView,
    rule: &Rule,
    sock: SockId,
    sni: Option<&[u8]>,
    msg: &Message<'_>,
) -> (Resolved, bool) {
    match rule {
        Rule::Pass => (Resolved::Pass, true),
        Rule::Reply => (Resolved::Reply, true),
        Rule::Drop => (Resolved::Drop(DropReason::Verdict), true),
        Rule::Redirect { map, key, ingress } => {
            let r = match key.derive(sock, sni, msg.bytes, msg.meta) {
                None => Resolved::Drop(DropReason::NoKey),
                Some(k) => redirect_to(maps.lookup(*map, k.raw()), *ingress),
            };
            (r, key.is_message_independent())
        }
        Rule::HashRoute {
            map,
            key,
            ingress,
            hash_tag,
        } => {
            let r = match key.derive(sock, sni, msg.bytes, msg.meta) {
                None => Resolved::Drop(DropReason::NoKey),
                Some(k) => redirect_to(
                    maps.route(*map, k.raw().ring_hash(*hash_tag), sock),
                    *ingress,
                ),
            };
            (r, key.is_message_independent())
        }
        Rule::RoundRobin { map, ingress } => {
            (redirect_to(maps.round_robin(*map, sock), *ingress), false)
        }
        Rule::HttpRoute { routes, ingress } => {
            (http_route(maps, routes, *ingress, sock, msg), false)
        }
        Rule::Func(f) => {
            let one;
            let frags: &[Bytes] = match msg.bytes {
                MsgBytes::Frags(f) => f,
                MsgBytes::Range(b, s, e) => {
                    one = [b.slice(s..e)];
                    &one
                }
            };
            let view = MessageView {
                sock,
                frags,
                len: msg.len,
                meta: msg.meta,
            };
            match catch_unwind(AssertUnwindSafe(|| f(&view))) {
                Ok(v) => (resolve(maps, &v), false),
                Err(_) => (Resolved::Drop(DropReason::Verdict), false),
            }
        }
    }
}

/// The pool of the first route `msg` matches, and the connection in it the
/// ring gives the source socket's id.
fn http_route(
    maps: &mut MapView,
    routes: &[HttpRoute],
    ingress: bool,
    sock: SockId,
    msg: &Message<'_>,
) -> Resolved {
    let MessageMeta::Http { path, host, .. } = msg.meta else {
        return Resolved::Drop(DropReason::NoRoute);
    };
    let host = host.as_ref().and_then(|h| msg.bytes.meta_range(h));
    let Some(path) = msg.bytes.meta_range(path) else {
        return Resolved::Drop(DropReason::NoRoute);
    };
    let host = host.as_ref().map(DerivedKey::bytes);
    let Some(route) = routes.iter().find(|r| r.matches(host, path.bytes())) else {
        return Resolved::Drop(DropReason::NoRoute);
    };
    let hash = RawKey::Num(sock.as_u64()).ring_hash(None);
    redirect_to(maps.route(route.pool, hash, sock), ingress)
}

/// A redirect to the socket a key was found under (a missing key drops).
fn redirect_to(found: Option<SockId>, ingress: bool) -> Resolved {
    match found {
        Some(target) => Resolved::Redirect { target, ingress },
        None => Resolved::Drop(DropReason::NoKey),
    }
}

/// Resolves a verdict (a function's, an external answer's) to a target.
pub(crate) fn resolve(maps: &MapView, v: &Verdict) -> Resolved {
    match v {
        Verdict::Pass => Resolved::Pass,
        Verdict::Drop => Resolved::Drop(DropReason::Verdict),
        Verdict::Redirect { map, key, ingress } => {
            redirect_to(maps.lookup(*map, DerivedKey::from_key(key).raw()), *ingress)
        }
    }
}

/// Resolves a ring route of a batch's answers for a message of `sock`
/// (`msg.route`): an empty key has no route.
pub(crate) fn resolve_route(maps: &mut MapView, t: &Target, sock: SockId) -> Resolved {
    let key = DerivedKey::from_key(&t.key);
    if matches!(&t.key, crate::key::Key::Bytes(b) if b.is_empty()) {
        return Resolved::Drop(DropReason::NoKey);
    }
    redirect_to(
        maps.route(t.map, key.raw().ring_hash(None), sock),
        t.ingress,
    )
}

/// Resolves a redirect target of a batch's answers.
pub(crate) fn resolve_target(maps: &MapView, t: &Target) -> Resolved {
    redirect_to(
        maps.lookup(t.map, DerivedKey::from_key(&t.key).raw()),
        t.ingress,
    )
}
