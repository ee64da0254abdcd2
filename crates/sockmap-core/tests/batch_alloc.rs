//! Proves that carrying the framers' metadata through external verdicts
//! allocates nothing per message: RESP requests framed natively, judged in
//! batches answered as the binding answers them (one code per item, one
//! target), allocate a bounded number of times per batch, however many
//! messages the batches hold, and copying a batch out with its metadata
//! allocates nothing.

mod alloc_count;
mod engine_util;

use std::sync::mpsc::Receiver;

use alloc_count::allocations_in;
use engine_util::external_programs;
use engine_util::sim::{put, sim_with_external};
use sockmap_core::batch::{Answers, Batch, ItemDesc, Target};
use sockmap_core::framer::{MessageMeta, RespOptions};
use sockmap_core::map::MapKind;
use sockmap_core::program::ParserKind;
use sockmap_core::sim::Sim;
use sockmap_core::{BatchConfig, EngineConfig, Key, MapId, SockId};

/// One 64-byte RESP request: `SET key:NN <32 bytes>`.
fn request(i: usize) -> Vec<u8> {
    let mut r = format!("*3\r\n$3\r\nSET\r\n$6\r\nkey:{:02x}\r\n$32\r\n", i % 256).into_bytes();
    r.extend_from_slice(&[b'v'; 32]);
    r.extend_from_slice(b"\r\n");
    r
}

struct Rig {
    sim: Sim,
    rx: Receiver<Batch>,
    client: SockId,
    target: SockId,
    ups: MapId,
    buf: Vec<u8>,
    descs: Vec<ItemDesc>,
}

fn rig() -> Rig {
    let cfg = EngineConfig {
        batch: BatchConfig {
            max_messages: 256,
            ..BatchConfig::default()
        },
        ..EngineConfig::default()
    };
    let (mut sim, rx) = sim_with_external(cfg);
    let h = sim.handle().clone();
    let ups = h.create_map(MapKind::SockHash, 4).unwrap();
    let gw = h.create_map(MapKind::SockHash, 4).unwrap();
    let resp = Some(ParserKind::Resp(RespOptions::default()));
    h.attach(gw, external_programs(1, 64, false, resp)).unwrap();
    let target = sim.add_socket();
    put(&sim, ups, 0u64, target);
    let client = sim.add_socket();
    put(&sim, gw, 0u64, client);
    sim.run(2);
    Rig {
        sim,
        rx,
        client,
        target,
        ups,
        buf: vec![0; 1 << 20],
        descs: Vec::with_capacity(4096),
    }
}

/// Sends `n` requests and answers every batch, as the binding does, with a
/// verdict that reads no metadata; returns the batches and the items whose
/// metadata named a key.
fn round(r: &mut Rig, n: usize, stream: &[u8]) -> (usize, usize) {
    r.sim.peer_send(r.client, &stream[..n * 64]);
    let (mut batches, mut keyed) = (0, 0);
    for _ in 0..64 {
        r.sim.run(1);
        while let Ok(b) = r.rx.try_recv() {
            batches += 1;
            b.copy_into(&mut r.buf, &mut r.descs);
            keyed += r
                .descs
                .iter()
                .filter(|d| matches!(d.meta, MessageMeta::Resp { key: Some(_), .. }))
                .count();
            let mut answers = Answers::with_capacity(r.descs.len());
            let code = answers.target_code(Target {
                map: r.ups,
                key: Key::Num(0),
                ingress: false,
            });
            answers.codes.resize(r.descs.len(), code);
            b.reply(answers);
        }
    }
    (batches, keyed)
}

#[test]
fn metadata_through_batches_allocates_per_batch_not_per_message() {
    const N: usize = 4096;
    let mut r = rig();
    let stream: Vec<u8> = (0..N).flat_map(request).collect();
    // Warm-up: queues, rings and tables grow to their steady size.
    for _ in 0..3 {
        round(&mut r, N, &stream);
    }
    let out = r.sim.take_output(r.target);
    assert_eq!(
        out,
        stream.repeat(3),
        "every request reached the target, in order"
    );
    let (mut batches, mut keyed) = (0, 0);
    let allocs = allocations_in(|| (batches, keyed) = round(&mut r, N, &stream));
    assert_eq!(keyed, N, "every item carried the framer's key");
    assert!(batches >= N / 256, "{batches} batches");
    let per_message = allocs as f64 / N as f64;
    assert!(
        allocs <= batches * 12 + 64,
        "{allocs} allocations for {N} messages in {batches} batches ({per_message:.2} per message)"
    );
    assert_eq!(r.sim.take_output(r.target), stream);
}

#[test]
fn copying_a_batch_with_its_metadata_allocates_nothing() {
    let mut r = rig();
    let stream: Vec<u8> = (0..256).flat_map(request).collect();
    r.sim.peer_send(r.client, &stream);
    let mut batch = None;
    for _ in 0..16 {
        r.sim.run(1);
        if let Ok(b) = r.rx.try_recv() {
            batch = Some(b);
            break;
        }
    }
    let b = batch.expect("a batch");
    let mut descs = Vec::with_capacity(b.items.len());
    let allocs = allocations_in(|| {
        b.copy_into(&mut r.buf, &mut descs);
    });
    assert_eq!(allocs, 0);
    assert_eq!(descs.len(), b.items.len());
    let d = &descs[0];
    let MessageMeta::Resp { command, key } = &d.meta else {
        panic!("{:?}", d.meta)
    };
    let bytes = &r.buf[d.offset..d.offset + d.copied];
    assert_eq!(&bytes[command.clone()], b"SET");
    assert_eq!(&bytes[key.clone().unwrap()], b"key:00");
}
