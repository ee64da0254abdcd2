//! Micro-benchmark of the scatter-gather ring, with a small self-contained
//! timing loop: per case a warm-up, then several samples of N iterations;
//! prints the median ns/op and ops/s as a Markdown table.
//!
//! Run: `cargo bench -p sockmap-core --bench ring`

use std::hint::black_box;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sockmap_core::ring::SgRing;

const SAMPLES: usize = 15;
const SAMPLE_TARGET: Duration = Duration::from_millis(20);
const WARM_UP: Duration = Duration::from_millis(200);

/// Times `op` and returns the median ns per call over `SAMPLES` samples.
fn measure(mut op: impl FnMut()) -> f64 {
    // Warm up and calibrate the iterations per sample.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < WARM_UP {
        op();
        calls += 1;
    }
    let per_call = WARM_UP.as_secs_f64() / calls as f64;
    let iters = ((SAMPLE_TARGET.as_secs_f64() / per_call) as u64).max(1);
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                op();
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

/// Prints one table row; `baseline` (the refill cost) is subtracted into
/// the "net" column for the cases that refill the ring each time.
fn report(name: &str, ns: f64, baseline: Option<f64>) {
    let net = baseline.map_or(String::from("-"), |b| format!("{:.1}", ns - b));
    println!("| {name} | {ns:.1} | {net} | {:.2} M |", 1e3 / ns);
}

/// `n` 64-byte fragments sliced out of one shared buffer.
fn fragments(n: usize) -> Vec<Bytes> {
    let buf: Bytes = (0..n * 64).map(|i| i as u8).collect();
    (0..n).map(|i| buf.slice(i * 64..(i + 1) * 64)).collect()
}

/// Refills `ring` with `frags` (the slot array is reused: no allocation).
fn refill(ring: &mut SgRing, frags: &[Bytes]) {
    ring.clear();
    for frag in frags {
        let _ = ring.push(frag.clone());
    }
}

fn main() {
    let frags = fragments(16);
    println!("| case | median ns/op | net of refill | ops/s |");
    println!("|---|---:|---:|---:|");

    // Steady state: a writer keeps ~16 fragments queued.
    let mut ring = SgRing::new();
    refill(&mut ring, &frags);
    let mut i = 0;
    report(
        "push 64 B + fill_iovec (16 entries) + consume 64 B",
        measure(|| {
            let _ = ring.push(frags[i % 16].clone());
            i += 1;
            let mut iov = [IoSlice::new(&[]); 64];
            black_box(ring.fill_iovec(&mut iov));
            black_box(&iov);
            ring.advance(64);
        }),
        None,
    );

    // split_to at a fragment boundary, appended back: the ring is unchanged.
    refill(&mut ring, &frags);
    report(
        "split_to(128) (2 frags) + append back",
        measure(|| {
            let mut head = ring.split_to(128);
            black_box(&head);
            let _ = ring.append(&mut head);
        }),
        None,
    );

    refill(&mut ring, &frags);
    report(
        "pull(10, 50) within one fragment (zero copy)",
        measure(|| {
            let _ = black_box(ring.pull(black_box(10), 50));
        }),
        None,
    );

    // The state-changing helpers run on a ring refilled each time; the
    // baseline row is that refill alone.
    let base = measure(|| {
        refill(&mut ring, &frags);
        black_box(&ring);
    });
    report("baseline: refill 16 x 64 B", base, None);
    let base = Some(base);
    report(
        "refill + pull(32, 96) across 2 fragments (copy 128 B, re-pack)",
        measure(|| {
            refill(&mut ring, &frags);
            let _ = black_box(ring.pull(black_box(32), 96));
        }),
        base,
    );
    report(
        "refill + push_zeroed(128, 16) at a boundary",
        measure(|| {
            refill(&mut ring, &frags);
            let _ = black_box(ring.push_zeroed(black_box(128), 16));
        }),
        base,
    );
    report(
        "refill + push_zeroed(100, 16) inside a fragment (split)",
        measure(|| {
            refill(&mut ring, &frags);
            let _ = black_box(ring.push_zeroed(black_box(100), 16));
        }),
        base,
    );
    report(
        "refill + pop(100, 200) across fragments",
        measure(|| {
            refill(&mut ring, &frags);
            let _ = black_box(ring.pop(black_box(100), 200));
        }),
        base,
    );
    report(
        "refill + pop(70, 20) inside a fragment (split)",
        measure(|| {
            refill(&mut ring, &frags);
            let _ = black_box(ring.pop(black_box(70), 20));
        }),
        base,
    );
}
