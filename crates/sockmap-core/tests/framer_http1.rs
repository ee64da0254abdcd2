//! `Http1`: request/response framing, metadata, smuggling shapes, split invariance.

mod framer_common;

use framer_common::{assert_each_fails, msgs, run_split, run_whole, three_ways, Out};
use proptest::prelude::*;
use sockmap_core::framer::{Http1, Http1Options, Http1Role, MessageMeta};
use sockmap_core::strparser::StrParserConfig;
use sockmap_core::Errno;

fn req() -> Box<Http1> {
    Box::new(Http1::requests())
}

fn reqs(input: &[u8]) -> Vec<Out> {
    run_whole(req(), StrParserConfig::default(), input).0
}

const GET: &[u8] = b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";

#[test]
fn get_request_gives_method_path_host() {
    assert_eq!(
        reqs(GET),
        vec![Out::Msg(
            GET.to_vec(),
            MessageMeta::Http {
                method: 0..3,
                path: 4..12,
                host: Some(29..40)
            }
        )]
    );
}

#[test]
fn pipelined_requests_with_bodies() {
    let a = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    let b = b"PUT /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
    let stream = [&a[..], b, GET].concat();
    for sizes in [vec![], vec![1], vec![7, 3]] {
        let (outs, left) = run_split(req(), StrParserConfig::default(), &stream, &sizes);
        assert_eq!(
            msgs(&outs),
            vec![a.to_vec(), b.to_vec(), GET.to_vec()],
            "sizes {sizes:?}"
        );
        assert_eq!(left, 0);
    }
}

#[test]
fn leading_empty_lines_belong_to_the_next_request() {
    let stream = [&b"\r\n"[..], GET].concat();
    let outs = reqs(&stream);
    assert_eq!(
        outs,
        vec![Out::Msg(
            stream.clone(),
            MessageMeta::Http {
                method: 2..5,
                path: 6..14,
                host: Some(31..42)
            }
        )]
    );
}

#[test]
fn upgrade_and_connect_hand_back_after_the_request() {
    let up = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (outs, _) = run_whole(
        req(),
        StrParserConfig::default(),
        &[&up[..], b"\x81\x05hello"].concat(),
    );
    assert_eq!(msgs(&outs), vec![up.to_vec()]);
    assert_eq!(outs[1], Out::Handback(b"\x81\x05hello".to_vec(), false));

    let conn = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let (outs, _) = run_whole(
        req(),
        StrParserConfig::default(),
        &[&conn[..], b"\x16\x03\x01"].concat(),
    );
    assert_eq!(msgs(&outs), vec![conn.to_vec()]);
    assert_eq!(outs[1], Out::Handback(b"\x16\x03\x01".to_vec(), false));
}

#[test]
fn bytes_after_connection_close_are_handed_back() {
    let close = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    let (outs, _) = run_whole(
        req(),
        StrParserConfig::default(),
        &[&close[..], GET].concat(),
    );
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[1], Out::Handback(GET.to_vec(), false));
    let old = b"GET / HTTP/1.0\r\n\r\n";
    let (outs, _) = run_whole(req(), StrParserConfig::default(), &[&old[..], GET].concat());
    assert_eq!(outs[1], Out::Handback(GET.to_vec(), false));
    let keep = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let (outs, _) = run_whole(
        req(),
        StrParserConfig::default(),
        &[&keep[..], GET].concat(),
    );
    assert_eq!(msgs(&outs).len(), 2);
}

#[test]
fn smuggling_shapes_are_eproto() {
    let bad: Vec<&[u8]> = vec![
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"POST / HTTP/1.1\r\nX: a\nY: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"POST / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
    ];
    assert_each_fails(req, &bad, &[&[], &[1]], Errno::Proto);
}

#[test]
fn header_limit_is_emsgsize() {
    let o = Http1Options {
        max_header_bytes: 64,
        ..Default::default()
    };
    let head = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 100], b"\r\n\r\n"].concat();
    for sizes in [vec![], vec![10]] {
        let (outs, _) = run_split(
            Box::new(Http1::new(o.clone())),
            StrParserConfig::default(),
            &head,
            &sizes,
        );
        assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
    }
    let (outs, _) = run_split(
        Box::new(Http1::new(o)),
        StrParserConfig::default(),
        &[b'a'; 10_000],
        &[100],
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
}

#[test]
fn huge_content_length_is_emsgsize_without_allocating() {
    let (outs, _) = run_whole(
        req(),
        StrParserConfig::default(),
        b"POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n",
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
    let (outs, _) = run_whole(
        req(),
        StrParserConfig::default(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
}

fn resp_framer() -> Box<Http1> {
    Box::new(Http1::responses())
}

#[test]
fn responses_with_interim_no_body_and_chunked() {
    let r100 = b"HTTP/1.1 100 Continue\r\n\r\n";
    let r204 = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
    let r304 = b"HTTP/1.1 304 Not Modified\r\n\r\n";
    let r200 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let rch = b"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    let stream = [&r100[..], r204, r304, r200, rch].concat();
    for sizes in [vec![], vec![1], vec![5]] {
        let (outs, left) = run_split(resp_framer(), StrParserConfig::default(), &stream, &sizes);
        assert_eq!(
            msgs(&outs),
            vec![
                r100.to_vec(),
                r204.to_vec(),
                r304.to_vec(),
                r200.to_vec(),
                rch.to_vec()
            ]
        );
        assert_eq!(left, 0);
    }
}

#[test]
fn response_to_head_has_no_body_through_the_request_log() {
    let (mut rq, rs) = Http1::pair();
    let head = b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n";
    let get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let (outs, _) = run_whole(
        Box::new(std::mem::replace(&mut rq, Http1::requests())),
        StrParserConfig::default(),
        &[&head[..], get].concat(),
    );
    assert_eq!(msgs(&outs).len(), 2);
    let r1 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    let r2 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let (outs, left) = run_whole(
        Box::new(rs),
        StrParserConfig::default(),
        &[&r1[..], r2].concat(),
    );
    assert_eq!(msgs(&outs), vec![r1.to_vec(), r2.to_vec()]);
    assert_eq!(left, 0);
}

#[test]
fn switching_protocols_hands_back() {
    let r =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let (outs, _) = run_whole(
        resp_framer(),
        StrParserConfig::default(),
        &[&r[..], b"\x81\x00"].concat(),
    );
    assert_eq!(
        outs,
        vec![
            Out::Msg(r.to_vec(), MessageMeta::None),
            Out::Handback(b"\x81\x00".to_vec(), false)
        ]
    );
}

#[test]
fn close_delimited_body_is_delivered_piece_by_piece() {
    let head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    let f = Http1::new(Http1Options {
        role: Http1Role::Response,
        ..Default::default()
    });
    let (outs, left) = run_split(
        Box::new(f),
        StrParserConfig::default(),
        &[&head[..], b"abcdef"].concat(),
        &[head.len(), 2, 2, 2],
    );
    assert_eq!(
        msgs(&outs),
        vec![
            head.to_vec(),
            b"ab".to_vec(),
            b"cd".to_vec(),
            b"ef".to_vec()
        ]
    );
    assert_eq!(left, 0);
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let path = "/[a-z0-9]{0,10}";
    let body = prop::collection::vec(any::<u8>(), 0..40);
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        path,
        body,
        any::<bool>(),
        prop::collection::vec(1usize..10, 1..4),
    )
        .prop_map(|(m, p, body, chunked, cuts)| {
            let mut v = format!("{m} {p} HTTP/1.1\r\nHost: h.example\r\n").into_bytes();
            if chunked {
                v.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                let mut k = 0;
                while !rest.is_empty() {
                    let n = cuts[k % cuts.len()].min(rest.len());
                    k += 1;
                    v.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    v.extend_from_slice(&rest[..n]);
                    v.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                v.extend_from_slice(b"0\r\n\r\n");
            } else {
                v.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                v.extend_from_slice(&body);
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn split_points_do_not_change_requests(
        requests in prop::collection::vec(request(), 0..6),
        sizes in prop::collection::vec(1usize..50, 1..6),
    ) {
        let stream = requests.concat();
        let [(whole, wl), (split, _), (bytewise, _)] = three_ways(req, &stream, &sizes);
        prop_assert_eq!(wl, 0);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(msgs(&whole), requests);
        for o in &whole {
            let has_host = matches!(o, Out::Msg(_, MessageMeta::Http { host: Some(_), .. }));
            prop_assert!(has_host);
        }
    }

    #[test]
    fn arbitrary_input_never_panics(
        input in prop::collection::vec(prop::sample::select(b"GET /HTP1.0\r\n: ContLgh-Trasfr-Ecodig;chunked0123456789abcdef".to_vec()), 0..200),
        sizes in prop::collection::vec(1usize..20, 1..4),
        response in any::<bool>(),
    ) {
        let role = if response { Http1Role::Response } else { Http1Role::Request };
        let mk = || Box::new(Http1::new(Http1Options { role, ..Default::default() }));
        let (a, _) = run_whole(mk(), StrParserConfig::default(), &input);
        let (b, _) = run_split(mk(), StrParserConfig::default(), &input, &sizes);
        prop_assert_eq!(a, b);
    }
}

/// Error replies of a gateway's requests framer: the exact responses, keep-alive, none from a responses framer.
#[test]
fn error_replies_are_complete_responses_and_only_for_requests() {
    use sockmap_core::framer::{Framer, ReplyError};
    let req = Http1::requests();
    let cases = [
        (
            ReplyError::Timeout,
            "504 Gateway Timeout",
            "sockmap: upstream timed out\n",
        ),
        (
            ReplyError::UpstreamClosed,
            "502 Bad Gateway",
            "sockmap: upstream closed\n",
        ),
        (
            ReplyError::NoUpstream,
            "503 Service Unavailable",
            "sockmap: no upstream\n",
        ),
        (ReplyError::Denied, "403 Forbidden", "sockmap: denied\n"),
    ];
    for (kind, status, body) in cases {
        let want = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let got = req.error_reply(kind).expect("a reply");
        assert_eq!(std::str::from_utf8(&got).unwrap(), want);
        // A responses framer frames it as one whole response.
        let (outs, _) = run_whole(
            Box::new(Http1::responses()),
            StrParserConfig::default(),
            &got,
        );
        assert_eq!(msgs(&outs), vec![got.to_vec()]);
    }
    assert_eq!(Http1::responses().error_reply(ReplyError::Timeout), None);
}

/// A responses framer told of a forwarded `HEAD` frames its response without a body.
#[test]
fn a_forwarded_head_makes_its_response_bodyless() {
    use sockmap_core::framer::Framer;
    let mut f = Http1::responses();
    f.request_forwarded(b"HEAD / HTTP/1.1\r");
    f.request_forwarded(b"GET / HTTP/1.1\r\n");
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    let mut stream = head.to_vec();
    stream.extend_from_slice(head);
    stream.extend_from_slice(b"abc");
    let (outs, _) = run_whole(Box::new(f), StrParserConfig::default(), &stream);
    let mut second = head.to_vec();
    second.extend_from_slice(b"abc");
    assert_eq!(msgs(&outs), vec![head.to_vec(), second]);
}
