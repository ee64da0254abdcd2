//! Random scripts of socket events and application commands over the
//! simulated backend, checked against the engine's invariants (see
//! `sim_script`); the engine fuzz target runs the same scripts from its own
//! inputs, and every input it ever failed on is a case here.

mod sim_script;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_scripts_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 1..400)) {
        sim_script::run(&data);
    }
}
