//! Random scripts over the simulated backend, checked against the engine's
//! invariants after every step; shared by a proptest (`engine_sim_script.rs`)
//! and the engine fuzz target (`fuzz/fuzz_targets/engine_sim.rs`), which
//! include this file by path and decode the same bytes into the same script.
//!
//! The network: a 1:1 proxy `a <-> b` (a SockHash keyed by socket id, no
//! parser) and a socket `c` read by the application. The script's steps:
//! peers send bytes (position-dependent, so loss, doubling and reordering
//! show), reads and writes of random sizes, `EAGAIN`, short writes, pauses
//! and resumes, application sends on `c`, loop turns, FIN and reset. The
//! invariants, after every step: nothing panics; what each socket's peer
//! received through the proxy is a prefix of what the other's peer sent;
//! `c`'s messages are a prefix of what its peer sent, and its output a prefix
//! of what the application sent. At the end, with the network drained and
//! nothing reset or ended: every byte arrived, exactly, and the counters add up.

use std::sync::Arc;

use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{Programs, StreamVerdictProg};
use sockmap_core::sim::{Sim, Step};
use sockmap_core::{EngineConfig, Event, Key, KeySource, Rule, SockId};

/// Byte `i` of the stream peer `p` sends.
fn byte(p: usize, i: usize) -> u8 {
    ((i % 251) as u8).wrapping_add((p as u8).wrapping_mul(89))
}

/// The simulation and what the script did to it.
struct World {
    sim: Sim,
    socks: [SockId; 3],
    sent: [usize; 3],
    app_sent: Vec<u8>,
    app_got: Vec<u8>,
    req: u64,
    ended: bool,
    /// Bytes already checked: of b's and a's output, of c's messages.
    checked: [usize; 3],
}

impl World {
    fn new(read_buffer: usize) -> World {
        let mut sim = Sim::new(EngineConfig {
            read_buffer,
            send_high_watermark: 4096,
            send_low_watermark: 1024,
            ..EngineConfig::default()
        });
        let h = sim.handle().clone();
        let map = h.create_map(MapKind::SockHash, 4).unwrap();
        let rule = Rule::Redirect {
            map,
            key: KeySource::Socket,
            ingress: false,
        };
        let progs = Programs {
            verdict: Some(Arc::new(StreamVerdictProg::rule(rule))),
            ..Programs::default()
        };
        h.attach(map, progs).unwrap();
        let (a, b, c) = (sim.add_socket(), sim.add_socket(), sim.add_socket());
        for (k, v) in [(a, b), (b, a)] {
            h.map_update(map, &Key::from(k), v, UpdateFlag::Any)
                .unwrap();
        }
        h.resume(c);
        World {
            sim,
            socks: [a, b, c],
            sent: [0; 3],
            app_sent: Vec::new(),
            app_got: Vec::new(),
            req: 0,
            ended: false,
            checked: [0; 3],
        }
    }

    fn peer_send(&mut self, p: usize, n: usize) {
        let data: Vec<u8> = (self.sent[p]..self.sent[p] + n)
            .map(|i| byte(p, i))
            .collect();
        self.sent[p] += n;
        self.sim.peer_send(self.socks[p], &data);
    }

    fn step(&mut self, op: u8, arg: u8) {
        let p = usize::from(arg % 3);
        let id = self.socks[p];
        let n = usize::from(arg >> 2) * 37 + 1;
        match op % 12 {
            0..=2 => self.peer_send(p, n),
            3 => self.sim.script_reads(id, &[Step::Max(n)]),
            4 => self.sim.script_reads(id, &[Step::Again]),
            5 => self.sim.script_writes(id, &[Step::Max(n % 97)]),
            6 => self.sim.script_writes(id, &[Step::Again]),
            7 => self.sim.handle().pause(id),
            8 => self.sim.handle().resume(id),
            9 => {
                let data: Vec<u8> = (0..n).map(|i| byte(7, self.app_sent.len() + i)).collect();
                self.app_sent.extend_from_slice(&data);
                self.req += 1;
                self.sim.handle().send(self.socks[2], data.into(), self.req);
            }
            10 => self.sim.run(usize::from(arg % 8) + 1),
            _ if arg % 16 == 0 => {
                self.ended = true;
                if arg & 0x10 == 0 {
                    self.sim.peer_fin(id);
                } else {
                    self.sim.peer_reset(id);
                }
            }
            _ => {}
        }
        self.sim.step();
        self.collect();
        self.check_prefixes();
    }

    fn collect(&mut self) {
        let c = self.socks[2];
        for e in self.sim.take_events() {
            if let Event::Message { sock, data } = e {
                assert_eq!(sock, c, "a message for the application of a proxied socket");
                for f in &data {
                    self.app_got.extend_from_slice(f);
                }
            }
        }
    }

    fn check_prefixes(&mut self) {
        let [a, b, c] = self.socks;
        for (from, to) in [(0, b), (1, a)] {
            let out = &self.sim.sock(to).outbound;
            assert!(out.len() <= self.sent[from], "more bytes out than in");
            let start = self.checked[from];
            let bad = (start..out.len()).find(|&i| out[i] != byte(from, i));
            assert_eq!(bad, None, "byte differs through the proxy from peer {from}");
            self.checked[from] = out.len();
        }
        let start = self.checked[2];
        let bad = (start..self.app_got.len()).find(|&i| self.app_got[i] != byte(2, i));
        assert_eq!(bad, None, "a message byte of c differs");
        self.checked[2] = self.app_got.len();
        let out = &self.sim.sock(c).outbound;
        assert!(
            self.app_sent.starts_with(out),
            "c's output is not what the application sent"
        );
    }

    /// Lets every socket read and write freely until nothing moves, then
    /// checks that every byte arrived (when nothing ended the streams).
    fn drain_and_check(&mut self) {
        for id in self.socks {
            self.sim.clear_scripts(id);
            self.sim.handle().resume(id);
        }
        self.sim.run(64);
        self.collect();
        self.check_prefixes();
        if self.ended {
            return;
        }
        let [a, b, c] = self.socks;
        assert_eq!(
            self.sim.sock(b).outbound.len(),
            self.sent[0],
            "bytes of a lost"
        );
        assert_eq!(
            self.sim.sock(a).outbound.len(),
            self.sent[1],
            "bytes of b lost"
        );
        assert_eq!(self.app_got.len(), self.sent[2], "bytes of c lost");
        assert_eq!(self.sim.sock(c).outbound, self.app_sent, "sends of c lost");
        let h = self.sim.handle().clone();
        let (sa, sb, sc) = (
            h.sock_stats(a).unwrap(),
            h.sock_stats(b).unwrap(),
            h.sock_stats(c).unwrap(),
        );
        assert_eq!(sa.bytes_in, self.sent[0] as u64, "a's bytes_in");
        assert_eq!(sb.bytes_out, self.sent[0] as u64, "b's bytes_out");
        assert_eq!(sb.bytes_in, self.sent[1] as u64, "b's bytes_in");
        assert_eq!(sa.bytes_out, self.sent[1] as u64, "a's bytes_out");
        assert_eq!(sc.bytes_in, self.sent[2] as u64, "c's bytes_in");
        assert_eq!(sc.bytes_out, self.app_sent.len() as u64, "c's bytes_out");
        for s in [sa, sb, sc] {
            assert_eq!(
                s.queued_bytes, 0,
                "bytes still queued after draining: {s:?}"
            );
            assert_eq!(
                s.dropped_bytes + s.discarded_bytes,
                0,
                "bytes dropped: {s:?}"
            );
        }
    }
}

/// Runs the script `data` decodes to: its first byte picks the read buffer's
/// size, then each pair of bytes is one step.
pub fn run(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut w = World::new(64 << (first % 8));
    for pair in rest.chunks_exact(2) {
        w.step(pair[0], pair[1]);
    }
    w.drain_and_check();
}
