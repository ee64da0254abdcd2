//! Throughput of the external-verdict path over loopback.
//!
//! ```text
//! ext_verdict_rate [FRAMES] [CLIENTS] [TARGETS] [CONTEND]
//! ```
//!
//! `CLIENTS` sockets each send `FRAMES / CLIENTS` 64-byte frames (4-byte
//! big-endian length prefix) into the engine; a native length-field parser
//! frames them and an external verdict, answered on another thread (as the
//! Node binding's JavaScript thread would), redirects each frame to one of
//! `TARGETS` upstream sockets by a key chosen per frame. Prints frames per
//! second and the CPU time of the I/O thread and of the whole process per
//! million frames. With `CONTEND` 1, another thread reads the sockets'
//! counters in a loop meanwhile (an application polling its metrics), so the
//! registry lock is contended.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockmap_core::batch::{Answers, Batch, ExternalVerdicts, Target};
use sockmap_core::framer::LengthFieldOptions;
use sockmap_core::map::{MapKind, UpdateFlag};
use sockmap_core::program::{ParserKind, ParserProg, Programs, StreamVerdictProg, VerdictKind};
use sockmap_core::{Engine, EngineConfig, Hooks, Key};

const FRAME: usize = 64;

struct ChanSink(Sender<Batch>);

impl ExternalVerdicts for ChanSink {
    fn submit(&mut self, batch: Batch) {
        let _ = self.0.send(batch);
    }
}

/// CPU seconds (user + system) of the thread named `name`, or of the process,
/// from Linux's `/proc` (0 where there is none).
fn cpu_seconds(name: Option<&str>) -> f64 {
    #[cfg(unix)]
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    #[cfg(not(unix))]
    let hz = 100.0;
    let ticks = |stat: &str| -> f64 {
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        (u + s) / hz
    };
    match name {
        None => ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()),
        Some(n) => std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == n))
            .map(|t| ticks(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
            .sum(),
    }
}

fn connected(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (b, _) = listener.accept().expect("accept");
    a.set_nodelay(true).expect("nodelay");
    (a, b)
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let frames = args.next().flatten().unwrap_or(4_000_000);
    let clients = args.next().flatten().unwrap_or(4).max(1);
    let targets = args.next().flatten().unwrap_or(2).max(1);
    let contend = args.next().flatten().unwrap_or(0) > 0;
    let per_client = frames / clients;
    let frames = per_client * clients;

    let (tx, rx) = channel::<Batch>();
    let engine = Engine::start(
        EngineConfig::default(),
        Hooks {
            notify: None,
            external: Some(Box::new(ChanSink(tx))),
        },
    )
    .expect("engine");
    let h = engine.handle().clone();
    let gw = h.create_map(MapKind::SockHash, 64).expect("map");
    let ups = h.create_map(MapKind::SockHash, 64).expect("map");
    h.attach(
        gw,
        Programs {
            parser: Some(Arc::new(ParserProg::new(ParserKind::LengthField(
                LengthFieldOptions::default(),
            )))),
            verdict: Some(Arc::new(StreamVerdictProg {
                on_error: Default::default(),
                kind: VerdictKind::External {
                    tag: 1,
                    peek_bytes: 8,
                },
                propagate_fin: false,
            })),
            ..Programs::default()
        },
    )
    .expect("attach");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut sinks = Vec::new();
    for t in 0..targets {
        let (peer, mine) = connected(&listener);
        let id = h.adopt(mine).expect("adopt");
        h.map_update(ups, &Key::Num(t as u64), id, UpdateFlag::Any)
            .expect("update");
        sinks.push(peer);
    }
    let mut senders = Vec::new();
    for c in 0..clients {
        let (peer, mine) = connected(&listener);
        let id = h.adopt(mine).expect("adopt");
        h.map_update(gw, &Key::Num(c as u64), id, UpdateFlag::Any)
            .expect("update");
        senders.push(peer);
    }

    // The verdict side: the frame's 5th byte picks the target. As the binding does, one answer per batch: one code
    // per item and the table of the targets it names.
    let verdicts = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut descs = Vec::new();
        while let Ok(b) = rx.recv() {
            b.copy_into(&mut buf, &mut descs);
            let mut answers = Answers::with_capacity(descs.len());
            let codes: Vec<u32> = (0..targets as u64)
                .map(|t| {
                    answers.target_code(Target {
                        map: ups,
                        key: Key::Num(t),
                        ingress: false,
                    })
                })
                .collect();
            answers.codes.extend(descs.iter().map(|d| {
                let pick = buf.get(d.offset + 4).copied().unwrap_or(0);
                codes[usize::from(pick) % targets]
            }));
            b.reply(answers);
        }
    });

    let readers: Vec<_> = sinks
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0usize;
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                total
            })
        })
        .collect();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = contend.then(|| {
        let h = h.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut polls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (_, s) in h.map_entries(gw).unwrap_or_default() {
                    let _ = h.sock_stats(s);
                }
                polls += 1;
            }
            polls
        })
    });
    let cpu_io0 = cpu_seconds(Some("sockmap-io-0"));
    let cpu0 = cpu_seconds(None);
    let start = Instant::now();
    let writers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(c, mut s)| {
            std::thread::spawn(move || {
                let mut chunk = Vec::with_capacity(1024 * FRAME);
                for i in 0..1024usize {
                    chunk.extend_from_slice(&((FRAME - 4) as u32).to_be_bytes());
                    chunk.push((i + c) as u8);
                    chunk.extend_from_slice(&[b'x'; FRAME - 5]);
                }
                let mut left = per_client;
                while left > 0 {
                    let n = left.min(1024);
                    s.write_all(&chunk[..n * FRAME]).expect("write");
                    left -= n;
                }
                s
            })
        })
        .collect();
    let writers: Vec<TcpStream> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    let want = (frames * FRAME) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out: u64 = h
            .map_entries(ups)
            .expect("entries")
            .iter()
            .filter_map(|(_, s)| h.sock_stats(*s))
            .map(|s| s.bytes_out)
            .sum();
        if out >= want || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_io = cpu_seconds(Some("sockmap-io-0")) - cpu_io0;
    let cpu = cpu_seconds(None) - cpu0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let polls = poller.map_or(0, |p| p.join().unwrap_or(0));
    drop(writers);
    drop(engine);
    let received: usize = readers.into_iter().map(|r| r.join().unwrap_or(0)).sum();
    verdicts.join().ok();
    let mframes = frames as f64 / 1e6;
    println!(
        "frames {frames} clients {clients} targets {targets} contended {contend} ({polls} polls): {:.2} M frames/s, I/O thread {:.3} CPU-s/M frames, process {:.3} CPU-s/M frames, received {} of {} bytes",
        mframes / elapsed,
        cpu_io / mframes,
        cpu / mframes,
        received,
        frames * FRAME
    );
}
