//! Proves that a ring in steady state allocates nothing per append: a
//! counting global allocator watches 10,000 push / fill_iovec / advance
//! cycles after warm-up.

use std::io::IoSlice;

use bytes::Bytes;
use sockmap_core::ring::SgRing;

mod alloc_count;

use alloc_count::allocations_in;

/// One writer turn: queue `frags`, export them, account a partial write of
/// `written` bytes; returns how many iovec entries were exported.
fn cycle(ring: &mut SgRing, frags: &[Bytes], written: usize) -> usize {
    for frag in frags {
        ring.push(frag.clone())
            .expect("ring has room in steady state");
    }
    let mut iov = [IoSlice::new(&[]); 64];
    let n = ring.fill_iovec(&mut iov);
    ring.advance(written);
    n
}

/// Bytes one write takes: 200..=312, averaging the 256 queued per cycle over
/// each period of 113, so the ring's depth wanders (up to ~30 fragments,
/// often with a partially written head) without growing.
fn written(i: usize) -> usize {
    200 + i % 113
}

#[test]
fn steady_state_push_fill_iovec_consume_allocates_nothing() {
    // A static fragment and slices of one shared buffer (refcount only).
    let buf = Bytes::from(vec![7u8; 64 * 1024]);
    let frags: Vec<Bytes> = (0..3)
        .map(|i| buf.slice(i * 64..(i + 1) * 64))
        .chain([Bytes::from_static(&[1; 64])])
        .collect();
    let mut ring = SgRing::with_max_frags(64);

    // Warm-up: grow the slot array and promote `buf` to shared refcounting.
    let mut exported = 0;
    for i in 0..1_000 {
        exported += cycle(&mut ring, &frags, written(i));
    }
    assert!(exported > 0);

    let mut exported = 0;
    let allocs = allocations_in(|| {
        for i in 1_000..11_000 {
            exported += cycle(&mut ring, &frags, written(i));
        }
    });
    assert_eq!(allocs, 0, "steady-state cycles allocated");
    assert!(exported >= 10_000 * 4, "exported {exported} entries");
    assert!(ring.frag_count() <= 64);

    // The counter works: a fresh ring's first push allocates its slots.
    let mut fresh = SgRing::new();
    assert!(allocations_in(|| fresh.push(frags[0].clone()).unwrap()) > 0);
}
