//! The Redis planner against a real `redis-server`: the sub-commands a split
//! builds are commands Redis accepts, and merging Redis's replies to them
//! gives the bytes Redis answers for the whole command (skipped, with a
//! message, when `redis-server` is not installed).

mod engine_util;

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::Bytes;
use engine_util::programs::{required, RedisServer};
use sockmap_core::framer::{Chunks, Framer, Parse, Resp, RespOptions};
use sockmap_core::redis::{plan, ClientState, Plan, RedisConfig, Split};

/// A RESP request of `args`.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Sends `req` and reads one whole reply (framed by the RESP framer).
fn call(s: &mut TcpStream, req: &[u8]) -> Bytes {
    s.write_all(req).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let whole = [Bytes::copy_from_slice(&buf)];
        if let Parse::Length(n) = Resp::new(RespOptions::default()).parse(&Chunks::new(&whole)) {
            assert_eq!(n, buf.len(), "one reply");
            return Bytes::from(buf);
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "redis closed before replying");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The split plan of `req`.
fn split_of(req: &[u8]) -> Split {
    let frags = [Bytes::copy_from_slice(req)];
    let mut framer = Resp::new(RespOptions::default());
    assert_eq!(framer.parse(&Chunks::new(&frags)), Parse::Length(req.len()));
    let (_, meta) = framer.finish();
    let cfg = RedisConfig::default();
    match plan(&frags, req.len(), &meta, &cfg, &mut ClientState::new(&cfg)) {
        Plan::Split(s) => s,
        other => panic!("not split: {other:?}"),
    }
}

/// `req` sent in parts (keys grouped by `group`, as a router would by
/// server), each part's reply merged.
fn split_call(s: &mut TcpStream, req: &[u8], group: impl Fn(usize) -> usize) -> Bytes {
    let split = split_of(req);
    let mut parts: Vec<Vec<usize>> = Vec::new();
    for i in 0..split.keys().len() {
        let g = group(i);
        if parts.len() <= g {
            parts.resize(g + 1, Vec::new());
        }
        parts[g].push(i);
    }
    let mut merger = split.merger();
    // Parts answered in reverse order: the merge does not depend on it.
    for part in parts.iter().rev().filter(|p| !p.is_empty()) {
        let reply = call(s, &split.build(part));
        merger.add(part, &[reply]);
    }
    merger.finish()
}

#[test]
fn split_commands_merge_to_what_redis_answers_whole() {
    let Some(exe) = required(
        "redis-server",
        "split_commands_merge_to_what_redis_answers_whole",
    ) else {
        return;
    };
    let redis = RedisServer::start(&exe);
    let mut s = redis.connect();
    let thirds = |i: usize| i % 3;

    let mset = command(&["MSET", "k1", "v1", "k2", "", "{t}a", "x\r\ny", "k4", "v4"]);
    assert_eq!(&split_call(&mut s, &mset, thirds)[..], b"+OK\r\n");

    let mget = command(&["MGET", "k1", "missing", "k2", "{t}a", "k4", "k1"]);
    let whole = call(&mut s, &mget);
    assert_eq!(
        &whole[..],
        b"*6\r\n$2\r\nv1\r\n$-1\r\n$0\r\n\r\n$4\r\nx\r\ny\r\n$2\r\nv4\r\n$2\r\nv1\r\n"
    );
    assert_eq!(split_call(&mut s, &mget, thirds), whole);
    assert_eq!(split_call(&mut s, &mget, |i| i % 2), whole);

    for cmd in ["EXISTS", "TOUCH"] {
        let req = command(&[cmd, "k1", "missing", "k2", "k1", "{t}a"]);
        let whole = call(&mut s, &req);
        assert_eq!(&whole[..], b":4\r\n", "{cmd}");
        assert_eq!(split_call(&mut s, &req, thirds), whole, "{cmd}");
    }

    // DEL and UNLINK: the same deletions, whole and split, count the same.
    for cmd in ["DEL", "UNLINK"] {
        let keys = |p: &str| [format!("{p}1"), format!("{p}2"), format!("{p}3")];
        for p in ["w", "s"] {
            let k = keys(p);
            call(&mut s, &command(&["MSET", &k[0], "1", &k[2], "3"]));
        }
        let req = |p: &str| {
            let k = keys(p);
            command(&[cmd, &k[0], &k[1], &k[2], &k[0]])
        };
        let whole = call(&mut s, &req("w"));
        assert_eq!(&whole[..], b":2\r\n", "{cmd}");
        assert_eq!(split_call(&mut s, &req("s"), thirds), whole, "{cmd}");
        assert_eq!(
            &call(&mut s, &command(&["EXISTS", "s1", "s3"]))[..],
            b":0\r\n"
        );
    }
}
