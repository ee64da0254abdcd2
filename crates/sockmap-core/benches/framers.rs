//! Framer throughput benchmark.
fn main() {}
