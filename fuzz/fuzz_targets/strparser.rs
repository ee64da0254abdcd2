#![no_main]
//! The strparser state machine against the reference model shared with the
//! property tests (crates/sockmap-core/tests/strparser_model): fuzzed data,
//! pause, unpause and poll operations over a 1-byte length-prefixed protocol
//! with oversize frames skipped.

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/sockmap-core/tests/strparser_model/mod.rs"]
mod strparser_model;

use strparser_model::{Harness, Op};

fuzz_target!(|ops: Vec<Op>| {
    let mut h = Harness::default();
    for op in &ops {
        h.apply(op);
    }
    h.finish();
});
