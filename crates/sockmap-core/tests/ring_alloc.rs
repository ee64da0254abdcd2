//! Proves that a ring in steady state allocates nothing per append: a
//! counting global allocator watches 10,000 push / fill_iovec / advance
//! cycles after warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::IoSlice;

use bytes::Bytes;
use sockmap_core::ring::SgRing;

/// Counts allocations made by the current thread while `COUNTING` is set.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc() {
    // `try_with`: the thread-locals may be gone during thread teardown.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCS.with(Cell::get)
}

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
