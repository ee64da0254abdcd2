//! The boundary-only receive path (a scanning framer and a native rule)
//! against the per-message path: the same bytes, order, events and counters
//! for random frames, read splits, write stalls, verdicts and framing errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use sockmap_core::event::frags_to_vec;
use sockmap_core::framer::{
    ByteOrder, Chunks, Framer, LengthField, LengthFieldOptions, MessageMeta, Parse, Trim,
};
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg};
use sockmap_core::sim::{Sim, Step};
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{EngineConfig, Event, Key, KeySource, Rule};

/// A length framer that may hide its boundary scan, and counts the messages it scans.
struct Probe {
    inner: LengthField,
    scan: bool,
    scanned: Arc<AtomicUsize>,
}

impl Framer for Probe {
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        self.inner.parse(data)
    }
    fn meta(&self) -> MessageMeta {
        self.inner.meta()
    }
    fn trim(&self) -> Trim {
        self.inner.trim()
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
    fn can_scan(&self) -> bool {
        self.scan && self.inner.can_scan()
    }
    fn scan_whole(&self, data: &[u8], max: usize, lens: &mut Vec<usize>) -> usize {
        let before = lens.len();
        let n = self.inner.scan_whole(data, max, lens);
        self.scanned
            .fetch_add(lens.len() - before, Ordering::Relaxed);
        n
    }
}

/// How frames are laid out on the wire.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// 4-byte big-endian length of the body.
    Default,
    /// A tag byte, then a 2-byte little-endian field holding body + 1
    /// (adjustment -1); a field of 0 is a protocol error.
    Offset,
    /// As `Default`, frames over 100 bytes skipped.
    Discard,
    /// As `Default`, frames over 100 bytes abort with `EMSGSIZE`.
    Oversize,
}

impl Layout {
    fn options(self) -> LengthFieldOptions {
        let mut o = LengthFieldOptions::default();
        match self {
            Layout::Default => {}
            Layout::Offset => {
                o.byte_order = ByteOrder::LittleEndian;
                o.length_field_offset = 1;
                o.length_field_length = 2;
                o.length_adjustment = -1;
            }
            Layout::Discard | Layout::Oversize => {
                o.max_frame_length = 100;
                o.discard_oversize = matches!(self, Layout::Discard);
            }
        }
        o
    }

    fn header(self) -> usize {
        match self {
            Layout::Offset => 3,
            _ => 4,
        }
    }

    /// A frame with `body`; `corrupt` writes a protocol error where the layout has one.
    fn encode(self, body: &[u8], corrupt: bool, out: &mut Vec<u8>) {
        match self {
            Layout::Offset => {
                let field = if corrupt { 0 } else { body.len() as u16 + 1 };
                out.push(0xAA);
                out.extend_from_slice(&field.to_le_bytes());
            }
            _ => out.extend_from_slice(&(body.len() as u32).to_be_bytes()),
        }
        out.extend_from_slice(body);
    }
}

/// The verdict under test.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    /// Egress to the partner stored under the source's id.
    Partner,
    /// Egress to the socket under a fixed key.
    Fixed,
    /// Egress by the first body byte (0: b, 1: c, else no key).
    ByByte,
    /// Ingress to the partner.
    PartnerIngress,
    Pass,
    Drop,
    /// No verdict program (PASS).
    None,
}

#[derive(Clone, Debug)]
struct Case {
    layout: Layout,
    verdict: Verdict,
    /// (body length, first body byte, corrupt).
    frames: Vec<(usize, u8, bool)>,
    reads: Vec<Step>,
    writes: Vec<Step>,
    /// Small send watermarks (backpressure) and a small strparser limit.
    tight: bool,
}

/// What one run produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    out_b: Vec<u8>,
    out_c: Vec<u8>,
    events: Vec<String>,
    stats: Vec<Option<StatsSnapshot>>,
    map: StatsSnapshot,
    left: usize,
}

fn wire(case: &Case) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &(len, first, corrupt)) in case.frames.iter().enumerate() {
        let mut body: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
        if let Some(b) = body.first_mut() {
            *b = first;
        }
        case.layout.encode(&body, corrupt, &mut v);
    }
    v
}

fn run(case: &Case, scan: bool) -> (Outcome, usize) {
    let cfg = if case.tight {
        EngineConfig {
            send_high_watermark: 200,
            send_low_watermark: 50,
            read_buffer: 512,
            ..EngineConfig::default()
        }
    } else {
        EngineConfig {
            read_buffer: 4096,
            ..EngineConfig::default()
        }
    };
    let mut sim = Sim::new(cfg);
    let h = sim.handle().clone();
    let map = h.create_map(MapKind::SockHash, 16).unwrap();
    let scanned = Arc::new(AtomicUsize::new(0));
    let (layout, counter) = (case.layout, Arc::clone(&scanned));
    let mut parser = ParserProg::new(ParserKind::Custom(Arc::new(move || {
        Box::new(Probe {
            inner: LengthField::new(layout.options()).unwrap(),
            scan,
            scanned: Arc::clone(&counter),
        }) as Box<dyn Framer>
    })));
    if case.tight {
        parser.max_message_bytes = 80;
    }
    let redirect = |key, ingress| Rule::Redirect { map, key, ingress };
    let rule = match case.verdict {
        Verdict::Partner => Some(redirect(KeySource::Socket, false)),
        Verdict::Fixed => Some(redirect(KeySource::Fixed(Key::from("fixed")), false)),
        Verdict::ByByte => Some(redirect(
            KeySource::Range {
                offset: layout.header(),
                len: 1,
            },
            false,
        )),
        Verdict::PartnerIngress => Some(redirect(KeySource::Socket, true)),
        Verdict::Pass => Some(Rule::Pass),
        Verdict::Drop => Some(Rule::Drop),
        Verdict::None => None,
    };
    h.attach(
        map,
        Programs {
            parser: Some(Arc::new(parser)),
            verdict: rule.map(|r| Arc::new(StreamVerdictProg::rule(r))),
            ..Programs::default()
        },
    )
    .unwrap();
    let (a, b, c) = (sim.add_socket(), sim.add_socket(), sim.add_socket());
    for (key, sock) in [
        (Key::from(a), b),
        (Key::from(b), a),
        (Key::from("fixed"), c),
        (Key::from(&[0u8][..]), b),
        (Key::from(&[1u8][..]), c),
    ] {
        h.map_update(map, &key, sock, UpdateFlag::Any).unwrap();
    }
    sim.script_reads(a, &case.reads);
    sim.script_writes(b, &case.writes);
    sim.script_writes(c, &case.writes);
    let data = wire(case);
    sim.peer_send(a, &data);
    sim.run(case.reads.len() + case.writes.len() * 2 + 20);
    let events = sim
        .take_events()
        .into_iter()
        .map(|e| match e {
            Event::Message { sock, data } => format!("{sock:?} {:?}", frags_to_vec(&data)),
            other => format!("{other:?}"),
        })
        .collect();
    let left = sim.sock(a).outbound.len();
    let outcome = Outcome {
        out_b: sim.take_output(b),
        out_c: sim.take_output(c),
        events,
        stats: [a, b, c].iter().map(|&s| h.sock_stats(s)).collect(),
        map: h.map_stats(map).unwrap(),
        left,
    };
    (outcome, scanned.load(Ordering::Relaxed))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1usize..700).prop_map(Step::Max),
        1 => Just(Step::Again),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let layout = prop_oneof![
        4 => Just(Layout::Default),
        2 => Just(Layout::Offset),
        1 => Just(Layout::Discard),
        1 => Just(Layout::Oversize),
    ];
    let verdict = prop_oneof![
        3 => Just(Verdict::Partner),
        1 => Just(Verdict::Fixed),
        2 => Just(Verdict::ByByte),
        1 => Just(Verdict::PartnerIngress),
        1 => Just(Verdict::Pass),
        1 => Just(Verdict::Drop),
        1 => Just(Verdict::None),
    ];
    let frame = (
        prop_oneof![4 => 0usize..70, 1 => 70usize..160],
        0u8..3,
        prop::bool::weighted(0.01),
    );
    (
        layout,
        verdict,
        prop::collection::vec(frame, 0..120),
        prop::collection::vec(step(), 0..40),
        prop::collection::vec(step(), 0..12),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(layout, verdict, frames, reads, writes, tight)| Case {
            layout,
            verdict,
            frames,
            reads,
            writes,
            tight,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn boundary_path_matches_message_path(case in case()) {
        let (fast, scanned) = run(&case, true);
        let (slow, none) = run(&case, false);
        prop_assert_eq!(none, 0);
        prop_assert_eq!(&fast, &slow);
        // Scanned messages are framed messages.
        if let Some(a) = fast.stats[0] {
            prop_assert!(scanned as u64 <= a.messages_in);
        }
    }
}

/// Many small frames in large reads: most are scanned, and the partner
/// receives exactly the stream, with every message counted.
#[test]
fn boundary_path_is_taken_and_counts_every_message() {
    let frames: Vec<(usize, u8, bool)> = (0..1000).map(|i| (60, (i % 3) as u8, false)).collect();
    let case = Case {
        layout: Layout::Default,
        verdict: Verdict::Partner,
        frames,
        reads: vec![Step::Max(1000); 64],
        writes: vec![],
        tight: false,
    };
    let (fast, scanned) = run(&case, true);
    let (slow, _) = run(&case, false);
    assert_eq!(fast, slow);
    assert_eq!(fast.out_b, wire(&case));
    let a = fast.stats[0].unwrap();
    assert_eq!((a.messages_in, a.redirected_egress), (1000, 1000));
    assert_eq!(a.bytes_in, 64_000);
    // 1000-byte reads of 64-byte frames: one frame in 16 spans two reads.
    assert!(scanned >= 900, "scanned {scanned}");
}

/// Routing by a byte of each message: consecutive messages to one target
/// share a fragment, the others alternate, and no-key messages are dropped.
#[test]
fn boundary_path_routes_by_message_bytes() {
    let frames: Vec<(usize, u8, bool)> =
        (0..300).map(|i| (10, [0, 0, 1, 2][i % 4], false)).collect();
    let case = Case {
        layout: Layout::Default,
        verdict: Verdict::ByByte,
        frames: frames.clone(),
        reads: vec![],
        writes: vec![],
        tight: false,
    };
    let (fast, scanned) = run(&case, true);
    let (slow, _) = run(&case, false);
    assert_eq!(fast, slow);
    // 4096-byte reads of 14-byte frames: one frame spans two reads.
    assert_eq!(scanned, 299);
    let expect = |first: u8| {
        let mut v = Vec::new();
        for (i, &(len, f, _)) in frames.iter().enumerate() {
            if f == first {
                let mut body: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
                body[0] = f;
                Layout::Default.encode(&body, false, &mut v);
            }
        }
        v
    };
    assert_eq!(fast.out_b, expect(0));
    assert_eq!(fast.out_c, expect(1));
    let a = fast.stats[0].unwrap();
    assert_eq!(
        (
            a.messages_in,
            a.redirected_egress,
            a.dropped_no_key,
            a.dropped_bytes
        ),
        (300, 225, 75, 75 * 14)
    );
}

mod engine_util;

/// Frames of pseudo-random sizes (a fixed xorshift sequence) with 4-byte
/// big-endian length headers.
fn random_frames(count: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v = Vec::new();
    for i in 0..count {
        let len = (next() % 300) as usize;
        let body: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        Layout::Default.encode(&body, false, &mut v);
    }
    v
}

/// A proxy pair over loopback with the native length framer: the stream
/// arrives exactly, in random-sized writes, with and without backpressure.
#[test]
fn loopback_pair_forwards_random_frames_exactly() {
    use engine_util::{read_n, write, Harness};
    const FRAMES: u64 = 5000;
    let tight = EngineConfig {
        send_high_watermark: 4096,
        send_low_watermark: 1024,
        read_buffer: 1500,
        ..EngineConfig::default()
    };
    for cfg in [EngineConfig::default(), tight] {
        let h = Harness::with_config(cfg);
        let map = h.h().create_map(MapKind::SockHash, 8).unwrap();
        let parser = ParserProg::new(ParserKind::LengthField(LengthFieldOptions::default()));
        let rule = Rule::Redirect {
            map,
            key: KeySource::Socket,
            ingress: false,
        };
        h.h()
            .attach(
                map,
                Programs {
                    parser: Some(Arc::new(parser)),
                    verdict: Some(Arc::new(StreamVerdictProg::rule(rule))),
                    ..Programs::default()
                },
            )
            .unwrap();
        let (mut pa, a) = h.pair();
        let (mut pb, b) = h.pair();
        h.put(map, a, b);
        h.put(map, b, a);
        let wire = random_frames(FRAMES as usize, 0x9E37_79B9_7F4A_7C15);
        let sent = wire.clone();
        let writer = std::thread::spawn(move || {
            let mut at = 0;
            let mut size = 1;
            while at < sent.len() {
                let end = (at + size).min(sent.len());
                write(&mut pa, &sent[at..end]);
                at = end;
                size = size * 7 % 9973 + 1;
            }
            pa
        });
        let got = read_n(&mut pb, wire.len());
        let _pa = writer.join().unwrap();
        assert!(got == wire, "forwarded bytes differ");
        let all = wire.len() as u64;
        h.settled_eq(
            a,
            |s| {
                let counts = (s.messages_in, s.redirected_egress, s.dropped);
                (counts, s.bytes_in, s.parser_errors)
            },
            ((FRAMES, FRAMES, 0), all, 0),
        );
        h.stats_eq(b, |s| (s.bytes_out, s.queued_bytes), (all, 0));
    }
}
