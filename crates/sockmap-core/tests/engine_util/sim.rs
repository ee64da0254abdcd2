//! Helpers for the tests of the core on the simulated backend.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use sockmap_core::batch::Batch;
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{ParserProg, Programs, StreamVerdictProg};
use sockmap_core::sim::Sim;
use sockmap_core::{EngineConfig, Errno, Event, Key, KeySource, MapId, Rule, SockId};

use super::ChanSink;

/// A simulated engine whose external verdicts and parsers go to the
/// returned channel.
pub fn sim_with_external(cfg: EngineConfig) -> (Sim, Receiver<Batch>) {
    let (sink, rx) = ChanSink::new();
    let mut sim = Sim::new(cfg);
    sim.set_external(sink);
    (sim, rx)
}

/// A proxy pair a <-> b in a SockHash keyed by socket id, each redirecting
/// to the other, framed by `parser` if given.
pub fn proxy_pair(sim: &mut Sim, parser: Option<ParserProg>) -> (SockId, SockId, MapId) {
    let h = sim.handle().clone();
    let map = h.create_map(MapKind::SockHash, 16).unwrap();
    let rule = Rule::Redirect {
        map,
        key: KeySource::Socket,
        ingress: false,
    };
    h.attach(
        map,
        Programs {
            parser: parser.map(Arc::new),
            verdict: Some(Arc::new(StreamVerdictProg::rule(rule))),
            ..Programs::default()
        },
    )
    .unwrap();
    let a = sim.add_socket();
    let b = sim.add_socket();
    put(sim, map, a, b);
    put(sim, map, b, a);
    (a, b, map)
}

/// Puts `sock` under `key` in `map`.
pub fn put(sim: &Sim, map: MapId, key: impl Into<Key>, sock: SockId) {
    sim.handle()
        .map_update(map, &key.into(), sock, UpdateFlag::Any)
        .unwrap();
}

/// How `sock` closed, if `events` say it did.
pub fn closed(events: &[Event], sock: SockId) -> Option<Option<Errno>> {
    events.iter().find_map(|e| match e {
        Event::Closed { sock: s, error } if *s == sock => Some(*error),
        _ => None,
    })
}

/// The sockets whose read side ended, in the order `events` report them.
pub fn read_ends(events: &[Event]) -> Vec<SockId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReadEnd { sock } => Some(*sock),
            _ => None,
        })
        .collect()
}
