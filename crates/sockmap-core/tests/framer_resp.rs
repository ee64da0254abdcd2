//! `Resp`: RESP2/RESP3 requests and replies, metadata, errors, split invariance.

mod framer_common;

use framer_common::{assert_each_fails, msgs, run_split, run_whole, three_ways, Out};
use proptest::prelude::*;
use sockmap_core::framer::{MessageMeta, Resp, RespOptions};
use sockmap_core::strparser::StrParserConfig;
use sockmap_core::Errno;

fn resp() -> Box<Resp> {
    Box::new(Resp::default())
}

fn all(input: &[u8]) -> Vec<Out> {
    let (outs, left) = run_whole(resp(), StrParserConfig::default(), input);
    assert_eq!(left, 0, "{outs:?}");
    outs
}

#[test]
fn set_command_gives_command_and_key() {
    let cmd = b"*3\r\n$3\r\nSET\r\n$8\r\nkey:0001\r\n$5\r\nvalue\r\n";
    assert_eq!(
        all(cmd),
        vec![Out::Msg(
            cmd.to_vec(),
            MessageMeta::Resp {
                command: 8..11,
                key: Some(17..25)
            }
        )]
    );
}

#[test]
fn command_without_key() {
    let cmd = b"*1\r\n$4\r\nPING\r\n";
    assert_eq!(
        all(cmd),
        vec![Out::Msg(
            cmd.to_vec(),
            MessageMeta::Resp {
                command: 8..12,
                key: None
            }
        )]
    );
}

#[test]
fn pipelined_commands_each_a_message() {
    let a = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
    let b = b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n";
    let outs = all(&[&a[..], b].concat());
    assert_eq!(msgs(&outs), vec![a.to_vec(), b.to_vec()]);
}

#[test]
fn inline_commands_give_command_and_key() {
    let outs = all(b"SET  k1 v\r\nPING\n\r\n");
    assert_eq!(
        outs,
        vec![
            Out::Msg(
                b"SET  k1 v\r\n".to_vec(),
                MessageMeta::Resp {
                    command: 0..3,
                    key: Some(5..7)
                }
            ),
            Out::Msg(
                b"PING\n".to_vec(),
                MessageMeta::Resp {
                    command: 0..4,
                    key: None
                }
            ),
            Out::Msg(b"\r\n".to_vec(), MessageMeta::None),
        ]
    );
}

#[test]
fn every_reply_type_is_one_message() {
    let replies: Vec<&[u8]> = vec![
        b"+OK\r\n",
        b"-ERR bad\r\n",
        b":-42\r\n",
        b"$5\r\nhello\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n",
        b"_\r\n",
        b"#t\r\n",
        b",3.14\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
        b"~2\r\n+a\r\n+b\r\n",
        b">2\r\n+message\r\n+hi\r\n",
        b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n",
        b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;0\r\n",
        b"*?\r\n:1\r\n$?\r\n;1\r\na\r\n;0\r\n.\r\n",
        b"%?\r\n+a\r\n:1\r\n.\r\n",
    ];
    let stream = replies.concat();
    let want: Vec<Vec<u8>> = replies.iter().map(|r| r.to_vec()).collect();
    for sizes in [vec![], vec![1], vec![3, 7]] {
        let (outs, left) = run_split(resp(), StrParserConfig::default(), &stream, &sizes);
        assert_eq!(msgs(&outs), want, "sizes {sizes:?}");
        assert_eq!(left, 0);
    }
}

#[test]
fn big_bulk_string_across_many_chunks() {
    let body = vec![b'z'; 1 << 20];
    let msg = [format!("${}\r\n", body.len()).as_bytes(), &body, b"\r\n"].concat();
    let (outs, _) = run_split(resp(), StrParserConfig::default(), &msg, &[1000]);
    assert_eq!(msgs(&outs), vec![msg]);
}

#[test]
fn malformed_inputs_are_eproto() {
    let bad: Vec<&[u8]> = vec![
        b"$abc\r\n",
        b"$5\r\nhelloXX",
        b"$-2\r\n",
        b"*1\r\n?x\r\n",
        b"*1\r\n.\r\n",
        b"_x\r\n",
        b"#x\r\n",
        b"*1\r\n;3\r\nabc\r\n",
        b"$?\r\n+a\r\n",
        b"$99999999999999999999\r\n",
        b"*+1\r\n",
        b"|0\r\n",
    ];
    assert_each_fails(resp, &bad, &[&[]], Errno::Proto);
}

#[test]
fn nesting_deeper_than_max_depth_is_eproto() {
    let o = RespOptions {
        max_depth: 4,
        ..Default::default()
    };
    let ok = b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
    let (outs, _) = run_whole(Box::new(Resp::new(o)), StrParserConfig::default(), ok);
    assert_eq!(msgs(&outs), vec![ok.to_vec()]);
    let (outs, _) = run_whole(
        Box::new(Resp::new(o)),
        StrParserConfig::default(),
        &b"*1\r\n".repeat(5),
    );
    assert_eq!(outs, vec![Out::Error(Errno::Proto)]);
}

#[test]
fn huge_counts_and_lengths_do_not_allocate() {
    // A 2^63-element array waits for elements; a 2^62-byte bulk string is over the limit.
    let (outs, left) = run_whole(
        resp(),
        StrParserConfig::default(),
        b"*9223372036854775807\r\n:1\r\n",
    );
    assert_eq!((outs, left), (vec![], 26));
    let (outs, _) = run_whole(
        resp(),
        StrParserConfig::default(),
        b"$4611686018427387904\r\n",
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
}

#[test]
fn over_long_line_is_emsgsize() {
    let o = RespOptions {
        max_line_length: 10,
        ..Default::default()
    };
    let (outs, _) = run_whole(
        Box::new(Resp::new(o)),
        StrParserConfig::default(),
        b"+0123456789ABCDEF",
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
    let (outs, _) = run_whole(
        Box::new(Resp::new(o)),
        StrParserConfig::default(),
        b"GET 0123456789ABCDEF",
    );
    assert_eq!(outs, vec![Out::Error(Errno::MsgSize)]);
}

/// A random RESP value, encoded.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        "[a-z ]{0,8}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| [
            format!("${}\r\n", b.len()).into_bytes(),
            b,
            b"\r\n".to_vec()
        ]
        .concat()),
        Just(b"$-1\r\n".to_vec()),
        Just(b"_\r\n".to_vec()),
        Just(b"#f\r\n".to_vec()),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| [
                format!("*{}\r\n", v.len()).into_bytes(),
                v.concat()
            ]
            .concat()),
            prop::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(|v| {
                let n = v.len();
                let body: Vec<u8> = v.into_iter().flat_map(|(a, b)| [a, b].concat()).collect();
                [format!("%{n}\r\n").into_bytes(), body].concat()
            }),
            prop::collection::vec(inner, 0..3).prop_map(|v| [
                b"*?\r\n".to_vec(),
                v.concat(),
                b".\r\n".to_vec()
            ]
            .concat()),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn split_points_do_not_change_values(
        values in prop::collection::vec(value(), 0..8),
        sizes in prop::collection::vec(1usize..30, 1..6),
    ) {
        let stream = values.concat();
        let [(whole, wl), (split, _), (bytewise, _)] = three_ways(resp, &stream, &sizes);
        prop_assert_eq!(wl, 0);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
        let got = msgs(&whole);
        prop_assert_eq!(got, values);
    }

    #[test]
    fn arbitrary_input_never_panics(
        input in prop::collection::vec(prop::sample::select(b"*$%:+-_#?.;|~>\r\n0123-abc".to_vec()), 0..120),
        sizes in prop::collection::vec(1usize..20, 1..4),
    ) {
        let (a, _) = run_whole(resp(), StrParserConfig::default(), &input);
        let (b, _) = run_split(resp(), StrParserConfig::default(), &input, &sizes);
        prop_assert_eq!(a, b);
    }
}

/// The RESP error reply of each reason, one whole RESP value.
#[test]
fn error_replies_are_resp_errors() {
    use sockmap_core::framer::{Framer, ReplyError};
    let f = Resp::default();
    for (kind, text) in [
        (ReplyError::Timeout, "upstream timed out"),
        (ReplyError::UpstreamClosed, "upstream closed"),
        (ReplyError::NoUpstream, "no upstream"),
        (ReplyError::Denied, "denied"),
    ] {
        let got = f.error_reply(kind).expect("a reply");
        assert_eq!(&got[..], format!("-ERR sockmap: {text}\r\n").as_bytes());
        let (outs, _) = run_whole(Box::new(Resp::default()), StrParserConfig::default(), &got);
        assert_eq!(msgs(&outs), vec![got.to_vec()]);
    }
}
