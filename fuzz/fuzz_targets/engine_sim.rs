#![no_main]
//! The engine over the simulated backend: random scripts of socket events and
//! application commands, checked against its invariants after every step
//! (the script and the invariants: crates/sockmap-core/tests/sim_script).

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/sockmap-core/tests/sim_script/mod.rs"]
mod sim_script;

fuzz_target!(|data: &[u8]| sim_script::run(data));
