//! Byte streams for backend tests: a position-dependent pattern written
//! from a thread and checked byte for byte, and the backend settings.

use std::io::{Read, Write};
use std::net::TcpStream;

use sockmap_core::config::BackendChoice;
use sockmap_core::EngineConfig;

use super::Harness;

/// `cfg` on the io_uring backend (an error where it cannot run).
pub fn uring(cfg: EngineConfig) -> EngineConfig {
    EngineConfig {
        backend: Some(BackendChoice::IoUring),
        ..cfg
    }
}

/// Whether the kernel lets this process use io_uring (`kernel.io_uring_disabled`).
pub fn io_uring_allowed() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() == "0")
        .unwrap_or(true)
}

/// Both backends (io_uring where the kernel allows it), each with one and two shards.
pub fn backend_configs() -> Vec<EngineConfig> {
    let mut backends = vec![BackendChoice::Epoll];
    if io_uring_allowed() {
        backends.push(BackendChoice::IoUring);
    }
    let mut out = Vec::new();
    for backend in backends {
        for shards in [1, 2] {
            out.push(EngineConfig {
                backend: Some(backend),
                shards: Some(shards),
                ..EngineConfig::default()
            });
        }
    }
    out
}

/// A byte of a test stream: position-dependent, so a lost, doubled or reordered chunk shows.
pub fn pattern(i: usize) -> u8 {
    ((i % 65521) % 251) as u8
}

/// Writes `total` pattern bytes into `to` from a thread.
pub fn pump<S: Write + Send + 'static>(mut to: S, total: usize) -> std::thread::JoinHandle<S> {
    std::thread::spawn(move || {
        let mut sent = 0;
        let mut block = vec![0u8; 48 << 10];
        while sent < total {
            let n = block.len().min(total - sent);
            for (k, b) in block[..n].iter_mut().enumerate() {
                *b = pattern(sent + k);
            }
            to.write_all(&block[..n]).unwrap();
            sent += n;
        }
        to
    })
}

/// Pumps `total` pattern bytes each way between the two clients of a proxied pair at once (each given as a writing
/// handle, a clone the pump thread owns, and the client itself, which the caller keeps open) and checks what each end
/// reads.
pub fn exchange<W, R>((a_w, a_r): (W, &mut R), (b_w, b_r): (W, &mut R), total: usize)
where
    W: Write + Send + 'static,
    R: Read,
{
    let there = pump(a_w, total);
    let back = pump(b_w, total);
    expect_pattern(b_r, total, 256 << 10);
    expect_pattern(a_r, total, 256 << 10);
    drop((there.join().unwrap(), back.join().unwrap()));
}

/// Reads `total` bytes and checks each against the pattern.
pub fn expect_pattern(from: &mut impl Read, total: usize, chunk: usize) {
    let mut got = 0;
    let mut buf = vec![0u8; chunk];
    while got < total {
        let n = from.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended after {got} of {total} bytes");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(got + k), "byte {} differs", got + k);
        }
        got += n;
    }
}

/// Moves `total` bytes both ways through a proxy pair, exactly.
pub fn round_trip(h: &Harness, total: usize) {
    let (pa, _a, mut pb, _b, _) = h.proxy_pair();
    let writer = pump(pa.try_clone().unwrap(), total);
    expect_pattern(&mut pb, total, 64 << 10);
    drop(writer.join().unwrap());
    let writer = pump(pb.try_clone().unwrap(), total);
    let mut pa = pa;
    expect_pattern(&mut pa, total, 64 << 10);
    drop(writer.join().unwrap());
}

/// Writes pattern bytes into `to` from a thread until a write fails (the
/// connection reset or closed); the thread returns how many it wrote.
pub fn flood(mut to: TcpStream) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        let mut block = vec![0u8; 48 << 10];
        loop {
            for (k, b) in block.iter_mut().enumerate() {
                *b = pattern(sent + k);
            }
            match to.write(&block) {
                Ok(n) if n > 0 => sent += n,
                _ => return sent,
            }
        }
    })
}
