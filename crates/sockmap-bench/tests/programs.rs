//! The load generators end to end over loopback (and a Unix socket): each pair is run as real processes and
//! their JSON reports are checked field by field.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a listening program on a free loopback port (`ADDR` in `args` stands for it) and waits for its `ready`
/// line; returns the program, its output and the address. A port taken between probe and bind is retried.
fn start_server(exe: &str, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, String) {
    start_server_on(exe, args, || format!("127.0.0.1:{}", free_port()))
}

/// [`start_server`] on the addresses `next_addr` gives (a TCP address or `unix:PATH`).
fn start_server_on(
    exe: &str,
    args: &[&str],
    next_addr: impl Fn() -> String,
) -> (Child, BufReader<std::process::ChildStdout>, String) {
    for _ in 0..5 {
        let addr = next_addr();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "ADDR" { addr.as_str() } else { a })
            .collect();
        let mut child = Command::new(exe)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if line.trim() == "ready" {
            return (child, out, addr);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{exe} never became ready");
}

/// Runs a program to completion and returns its last stdout line.
fn run(exe: &str, args: &[&str]) -> String {
    let out = Command::new(exe).args(args).output().unwrap();
    assert!(out.status.success(), "{exe} {args:?} failed: {out:?}");
    last_line(&String::from_utf8(out.stdout).unwrap())
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or_default().to_string()
}

/// Waits for a server to exit and returns its last stdout line.
fn finish(mut child: Child, mut out: BufReader<std::process::ChildStdout>) -> String {
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    last_line(&rest)
}

/// The integer value of `"name":` in a flat JSON line.
fn field(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} missing in {json}"))
        + key.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{name} not an integer in {json}"))
}

#[test]
fn client_and_sink_agree_on_an_exact_count() {
    exact_count(|| format!("127.0.0.1:{}", free_port()));
}

#[test]
fn client_and_sink_agree_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("sockmap-bench-programs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sink.sock");
    exact_count(|| format!("unix:{}", path.display()));
    assert!(!path.exists(), "the sink removes its socket's path");
    std::fs::remove_dir(&dir).unwrap();
}

/// framed-client sends an exact count over 3 connections to framed-sink listening on `next_addr`'s address;
/// both report every frame, in order.
fn exact_count(next_addr: impl Fn() -> String) {
    let (sink, out, addr) = start_server_on(
        env!("CARGO_BIN_EXE_framed-sink"),
        &["--listen", "ADDR", "--conns", "3", "--duration", "20"],
        next_addr,
    );
    let client = run(
        env!("CARGO_BIN_EXE_framed-client"),
        &[
            "--connect",
            &addr,
            "--conns",
            "3",
            "--count",
            "100001",
            "--frame-size",
            "100",
            "--batch-bytes",
            "1000",
            "--duration",
            "20",
        ],
    );
    assert_eq!(field(&client, "frames"), 100_001);
    assert_eq!(field(&client, "bytes"), 10_000_100);
    let sink = finish(sink, out);
    assert_eq!(field(&sink, "frames"), 100_001);
    assert_eq!(field(&sink, "bytes"), 10_000_100);
    assert_eq!(field(&sink, "seq_errors"), 0);
    assert_eq!(field(&sink, "len_errors"), 0);
    assert_eq!(field(&sink, "trailing_bytes"), 0);
    let mut per_conn: Vec<u64> = sink[sink.find("\"per_conn\":[").unwrap() + 12..]
        .split(']')
        .next()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    per_conn.sort_unstable();
    assert_eq!(per_conn, [33_333, 33_334, 33_334]);
}

#[test]
fn pingpong_round_trips_through_echo() {
    let (echo, out, addr) = start_server(
        env!("CARGO_BIN_EXE_pingpong"),
        &["echo", "--listen", "ADDR", "--duration", "20"],
    );
    let client = run(
        env!("CARGO_BIN_EXE_pingpong"),
        &[
            "client",
            "--connect",
            &addr,
            "--iters",
            "300",
            "--warmup",
            "20",
        ],
    );
    assert_eq!(field(&client, "iters"), 300);
    assert_eq!(field(&client, "mismatches"), 0);
    assert_eq!(field(&client, "errors"), 0);
    assert!(client.contains("\"p50_us\":") && client.contains("\"p999_us\":"));
    let echo = finish(echo, out);
    assert_eq!(field(&echo, "bytes"), 320 * 64);
}

#[test]
fn slow_sink_never_reads_faster_than_its_rate() {
    let (sink, out, addr) = start_server(
        env!("CARGO_BIN_EXE_slow-sink"),
        &["--listen", "ADDR", "--rate", "100000", "--duration", "2"],
    );
    // The client's last blocked write gives up 1 s after its 0.3 s, before the sink exits.
    let client = run(
        env!("CARGO_BIN_EXE_framed-client"),
        &["--connect", &addr, "--duration", "0.3"],
    );
    assert!(field(&client, "bytes") > 200_000);
    let sink = finish(sink, out);
    let read = field(&sink, "bytes");
    // At most the rate times the sink's lifetime (2 s), and it did read.
    assert!(read > 50_000 && read <= 200_000, "read {read}");
}

#[test]
fn idle_connections_are_opened_and_accepted() {
    let (serve, mut out, addr) = start_server(
        env!("CARGO_BIN_EXE_idle-conns"),
        &[
            "serve",
            "--listen",
            "ADDR",
            "--expect",
            "200",
            "--duration",
            "2",
        ],
    );
    let mut client = Command::new(env!("CARGO_BIN_EXE_idle-conns"))
        .args([
            "connect",
            "--connect",
            &addr,
            "--conns",
            "200",
            "--hold",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut opened = String::new();
    BufReader::new(client.stdout.take().unwrap())
        .read_line(&mut opened)
        .unwrap();
    assert_eq!(field(&opened, "connected"), 200);
    assert_eq!(field(&opened, "failed"), 0);
    let mut accepted = String::new();
    out.read_line(&mut accepted).unwrap();
    assert_eq!(field(&accepted, "accepted"), 200);
    assert!(client.wait().unwrap().success());
    finish(serve, out);
}

#[test]
fn non_loopback_addresses_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_framed-client"))
        .args(["--connect", "10.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a loopback address"));
}

#[test]
fn many_pingpong_round_trips_on_every_connection() {
    let (echo, out, addr) = start_server(
        env!("CARGO_BIN_EXE_many-pingpong"),
        &[
            "echo",
            "--listen",
            "ADDR",
            "--conns",
            "50",
            "--duration",
            "20",
        ],
    );
    let client = run(
        env!("CARGO_BIN_EXE_many-pingpong"),
        &[
            "client",
            "--connect",
            &addr,
            "--conns",
            "50",
            "--warmup",
            "0.1",
            "--duration",
            "0.3",
        ],
    );
    assert_eq!(field(&client, "connected"), 50);
    assert_eq!(field(&client, "mismatches"), 0);
    assert_eq!(field(&client, "errors"), 0);
    let measured = field(&client, "msgs");
    assert!(measured > 0 && field(&client, "all_msgs") >= measured);
    // The echo exits once all 50 connections have ended, having echoed every round trip.
    let echo = finish(echo, out);
    assert_eq!(field(&echo, "accepted"), 50);
    assert_eq!(field(&echo, "ended"), 50);
    assert!(field(&echo, "bytes") >= 64 * field(&client, "all_msgs"));
}

#[test]
fn udp_load_gets_every_datagram_echoed() {
    let (echo, out, addr) = start_server(
        env!("CARGO_BIN_EXE_udp-load"),
        &["echo", "--listen", "ADDR", "--duration", "3"],
    );
    let client = run(
        env!("CARGO_BIN_EXE_udp-load"),
        &[
            "client",
            "--connect",
            &addr,
            "--sockets",
            "4",
            "--window",
            "8",
            "--size",
            "1200",
            "--warmup",
            "0.1",
            "--duration",
            "0.3",
        ],
    );
    let sent = field(&client, "sent");
    assert!(field(&client, "dgrams") > 0, "{client}");
    assert!(
        sent >= 32,
        "every window was filled at least once: {client}"
    );
    assert_eq!(field(&client, "received"), sent, "{client}");
    assert_eq!(field(&client, "lost"), 0);
    assert_eq!(field(&client, "mismatches"), 0);
    assert_eq!(field(&client, "errors"), 0);
    let echo = finish(echo, out);
    assert_eq!(field(&echo, "echoed"), sent, "{echo}");
}
