//! Deterministic tests of the core on the simulated backend: EAGAIN, short
//! reads and writes, resets, closes and deletes mid-stream, backpressure.

mod engine_util;

use engine_util::sim::{closed, proxy_pair};
use sockmap_core::sim::{Sim, Step};
use sockmap_core::{EngineConfig, Errno, Event, Key};

#[test]
fn eagain_and_short_reads_and_writes_lose_nothing() {
    let mut sim = Sim::new(EngineConfig::default());
    let (a, b, _) = proxy_pair(&mut sim, None);
    sim.script_reads(a, &[Step::Max(3), Step::Again, Step::Max(2), Step::Max(1)]);
    sim.script_writes(
        b,
        &[
            Step::Max(1),
            Step::Again,
            Step::Max(4),
            Step::Again,
            Step::Again,
        ],
    );
    sim.peer_send(a, b"hello world");
    sim.run(12);
    assert_eq!(sim.take_output(b), b"hello world");
    let st = sim.handle().sock_stats(a).unwrap();
    assert_eq!(st.bytes_in, 11);
    assert!(
        st.messages_in >= 4,
        "short reads make several messages: {}",
        st.messages_in
    );
    assert_eq!(st.redirected_egress, st.messages_in);
    let sb = sim.handle().sock_stats(b).unwrap();
    assert_eq!((sb.bytes_out, sb.queued_bytes), (11, 0));
}

#[test]
fn peer_reset_mid_message_closes_only_that_socket() {
    let mut sim = Sim::new(EngineConfig::default());
    let (a, b, map) = proxy_pair(&mut sim, None);
    sim.peer_send(a, b"part");
    sim.peer_reset(a);
    sim.run(3);
    assert_eq!(sim.take_output(b), b"part");
    let ev = sim.take_events();
    assert_eq!(closed(&ev, a), Some(Some(Errno::ConnReset)));
    assert_eq!(closed(&ev, b), None);
    assert!(sim.sock(a).closed);
    assert_eq!(sim.handle().map_len(map), Ok(1));
    // b still carries traffic: its messages to a now drop (no key).
    sim.peer_send(b, b"reply");
    sim.run(2);
    assert_eq!(sim.handle().sock_stats(b).unwrap().dropped_no_key, 1);
}

#[test]
fn target_closed_with_queued_bytes_discards_them_and_source_lives() {
    let mut sim = Sim::new(EngineConfig::default());
    let (a, b, _) = proxy_pair(&mut sim, None);
    sim.script_writes(b, &[Step::Again; 4]);
    sim.peer_send(a, &[1u8; 100]);
    sim.run(2);
    assert_eq!(sim.handle().sock_stats(b).unwrap().queued_bytes, 100);
    sim.handle().destroy(b);
    sim.run(1);
    assert_eq!(closed(&sim.take_events(), b), Some(None));
    assert!(sim.take_output(b).is_empty());
    sim.peer_send(a, b"more");
    sim.run(2);
    let st = sim.handle().sock_stats(a).unwrap();
    assert_eq!(
        (st.redirected_egress, st.dropped_no_key, st.bytes_in),
        (1, 1, 104)
    );
}

#[test]
fn delete_while_traffic_flows() {
    let mut sim = Sim::new(EngineConfig::default());
    let (a, b, map) = proxy_pair(&mut sim, None);
    sim.peer_send(a, b"one");
    sim.run(1);
    // The entry under a's id holds b: deleting it takes b out of the map.
    sim.handle().map_delete(map, &Key::from(a)).unwrap();
    sim.peer_send(a, b"two");
    sim.peer_send(b, b"held");
    sim.run(2);
    assert_eq!(sim.take_output(b), b"one");
    let st = sim.handle().sock_stats(a).unwrap();
    assert_eq!(
        (st.redirected_egress, st.dropped_no_key, st.bytes_in),
        (1, 1, 6)
    );
    // b left its last map: it lost its programs and is paused again; its
    // bytes wait, and reach its application in order once it resumes.
    assert_eq!(sim.handle().sock_stats(b).unwrap().bytes_in, 0);
    sim.handle().resume(b);
    sim.run(1);
    let msgs: Vec<_> = sim
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { sock, data } if sock == b => {
                Some(sockmap_core::event::frags_to_vec(&data))
            }
            _ => None,
        })
        .collect();
    assert_eq!(msgs, vec![b"held".to_vec()]);
}

#[test]
fn backpressure_stops_reading_until_the_target_drains() {
    let cfg = EngineConfig {
        send_high_watermark: 16,
        send_low_watermark: 4,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(cfg);
    let (a, b, _) = proxy_pair(&mut sim, None);
    sim.script_reads(a, &[Step::Max(10); 10]);
    sim.script_writes(b, &[Step::Again; 3]);
    let data: Vec<u8> = (0..100u8).collect();
    sim.peer_send(a, &data);
    sim.run(1);
    let st = sim.handle().sock_stats(a).unwrap();
    assert_eq!((st.bytes_in, st.backpressure_stalls), (20, 1));
    sim.run(2);
    assert_eq!(
        sim.handle().sock_stats(a).unwrap().bytes_in,
        20,
        "stalled while b cannot write"
    );
    sim.run(20);
    assert_eq!(sim.take_output(b), data);
    let sb = sim.handle().sock_stats(b).unwrap();
    assert_eq!(sb.queued_bytes, 0);
}

#[test]
fn fin_propagates_after_queued_bytes() {
    let mut sim = Sim::new(EngineConfig::default());
    let (a, b, _) = proxy_pair(&mut sim, None);
    sim.script_writes(b, &[Step::Max(2), Step::Again]);
    sim.peer_send(a, b"bye!");
    sim.peer_fin(a);
    sim.run(1);
    assert!(!sim.sock(b).write_shut, "FIN must wait for queued bytes");
    sim.run(3);
    assert_eq!(sim.take_output(b), b"bye!");
    assert!(sim.sock(b).write_shut);
    sim.peer_fin(b);
    sim.run(3);
    let ev = sim.take_events();
    assert_eq!(closed(&ev, a), Some(None));
    assert_eq!(closed(&ev, b), Some(None));
}
