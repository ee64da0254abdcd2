#![no_main]
//! The HTTP/1 request framer against `httparse`, the parser much of the Rust
//! ecosystem trusts: where both accept a request, they must agree where it
//! ends (its head, plus its `Content-Length`); the framer must not accept a
//! request whose head `httparse` refuses or finds incomplete, nor wait for
//! more bytes after a whole bodiless head `httparse` accepts. (Refusing what
//! `httparse` accepts is allowed: the framer is stricter on purpose, see
//! its module documentation; a disagreement the other way is how request
//! smuggling happens.)

use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::{Http1, Http1Options, Http1Role};
use sockmap_core::strparser::StrParserConfig;

#[path = "../../crates/sockmap-core/tests/framer_common/mod.rs"]
mod framer_common;

use framer_common::{run_split, Out};

/// How `httparse` frames the first request: `Some(Ok(end))` its end when its
/// length is known from the head alone, `Some(Err(()))` refused or
/// incomplete, `None` when it cannot say (chunked, several lengths, too many
/// fields for the oracle, a start line's characters).
fn oracle(stream: &[u8]) -> Option<Result<usize, ()>> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(stream) {
        // httparse takes a bare LF as a line end; the framer refuses one (it
        // waits for the CRLF CRLF that ends a head, then refuses it).
        Ok(httparse::Status::Complete(n)) if !crlf_only(&stream[..n]) => return None,
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Some(Err(())),
        // Bytes of the method or request target httparse refuses (non-ASCII in
        // the target, which llhttp's default accepts too) do not move where
        // the request ends: not a framing question.
        Err(httparse::Error::TooManyHeaders | httparse::Error::Token) => return None,
        Err(_) => return Some(Err(())),
    };
    let mut length = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok()?.trim();
            if length.is_some() || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            length = Some(v.parse::<usize>().ok()?);
        }
    }
    Some(Ok(head + length.unwrap_or(0)))
}

/// Every LF of `head` ends a CRLF.
fn crlf_only(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| b != b'\n' || (i > 0 && head[i - 1] == b'\r'))
}

fuzz_target!(|stream: &[u8]| {
    let opts = Http1Options { role: Http1Role::Request, max_header_bytes: 1 << 15, request_log: None };
    let cfg = StrParserConfig { max_message_bytes: 1 << 20, message_timeout: None };
    let (outs, _) = run_split(Box::new(Http1::new(opts)), cfg, stream, &[]);
    let framed = match outs.first() {
        Some(Out::Msg(m, _)) => Some(m.len()),
        _ => None,
    };
    match (framed, oracle(stream)) {
        (Some(len), Some(Ok(end))) => assert_eq!(len, end, "the request ends elsewhere for httparse"),
        (Some(len), Some(Err(()))) => panic!("framed a {len}-byte request whose head httparse refuses"),
        (None, Some(Ok(end))) if end <= stream.len() && outs.is_empty() => {
            panic!("waits for more after a {end}-byte request httparse accepts")
        }
        _ => {}
    }
});
