//! Fuzzes the scatter-gather ring with arbitrary operation sequences,
//! checked byte for byte against the same `Vec<u8>` model as the property
//! tests (crates/sockmap-core/tests/ring_model).
//!
//! Run: `cd fuzz && cargo +nightly fuzz run ring_ops -- -max_total_time=60`
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/sockmap-core/tests/ring_model/mod.rs"]
mod ring_model;

use ring_model::{Harness, Op};

/// One fuzz case: a ring capacity and the operations to run on it.
#[derive(Arbitrary, Debug)]
struct Case {
    max_frags: u8,
    ops: Vec<Op>,
}

fuzz_target!(|case: Case| {
    // Small capacities exercise the full-ring paths; 0 must act as 1.
    let mut harness = Harness::new(usize::from(case.max_frags % 20));
    for op in case.ops.iter().take(256) {
        harness.apply(op);
    }
});
