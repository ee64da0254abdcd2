//! Random scripts of socket events and application commands over the
//! simulated backend, checked against the engine's invariants (see
//! `sim_script`); the engine fuzz target runs the same scripts from its own
//! inputs, and its seeds (`fuzz/seeds/engine_sim`, where an input it fails
//! on is kept) replay here.

mod sim_script;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_scripts_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 1..400)) {
        sim_script::run(&data);
    }
}

/// The fuzz target's seeds (and any input it failed on, kept there) replay here.
#[test]
fn the_fuzz_seeds_keep_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/engine_sim");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/engine_sim") {
        sim_script::run(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}
