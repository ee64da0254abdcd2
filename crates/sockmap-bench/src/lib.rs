//! # sockmap-bench
//!
//! Small native load generators for the sockmap benchmarks. Each program in
//! `src/bin/` is a thin `main` over the pieces here, uses plain blocking
//! sockets on one thread per connection (`many-pingpong`: non-blocking
//! sockets on one thread), talks to loopback addresses only (the framed programs
//! also to Unix stream sockets, `unix:PATH`) and exits by itself (every loop is
//! bounded by a duration or a count).
//!
//! | program | role |
//! |---|---|
//! | `framed-client` | C connections sending frames as fast as possible (64 KiB writes) or at a fixed rate |
//! | `framed-sink` | counts frames per connection, checks sequence order, reports frames/s |
//! | `pingpong client` / `pingpong echo` | 64-byte request/response latency (log-linear histogram) and its echo server |
//! | `many-pingpong client` / `many-pingpong echo` | many connections (1,000 by default) each doing closed-loop request/response on one non-blocking thread: round trips/s and round-trip latency; its one-thread echo server |
//! | `slow-sink` | a consumer reading at a fixed byte rate |
//! | `idle-conns connect` / `idle-conns serve` | opens or accepts N connections and holds them idle |
//! | `udp-load client` / `udp-load echo` | UDP round trips: several sockets, each with a window of datagrams in flight (datagrams/s, round-trip latency, losses), and a batched echo server |
//!
//! `PROGRAM --help` prints each one's options. Listeners print `ready` once bound; every
//! program prints its result as one JSON line on stdout.
//!
//! The framed programs speak 4-byte big-endian length-prefixed frames: the
//! length field counts the payload only, and the payload starts with the
//! frame's 64-bit big-endian sequence number on its connection:
//!
//! ```text
//! +----------+-------------+---------------+
//! | len: u32 | seq: u64 BE | filler ...    |   total = 4 + len bytes
//! +----------+-------------+---------------+
//! ```
#![deny(missing_docs)]

pub mod args;
pub mod dgram;
pub mod frame;
pub mod histogram;
pub mod net;
pub mod report;

pub use args::Args;

/// Prints `PROGRAM: WHAT: ERROR` on standard error and exits with status 1.
pub fn die(program: &str, what: &str, e: &dyn std::fmt::Display) -> ! {
    eprintln!("{program}: {what}: {e}");
    std::process::exit(1)
}
pub use frame::{FrameBatch, FrameChecker};
pub use histogram::Histogram;
pub use report::Report;
