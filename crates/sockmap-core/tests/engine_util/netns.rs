//! A host in a network namespace (Linux, root, `ip` and `tc` from iproute2):
//! a veth pair between the test's namespace and the host's, addresses on a
//! /24 of its own, traffic shaping with `tc` on both ends, threads that run
//! inside the host's namespace. Names are unique per process and per host;
//! dropping a [`NetHost`] deletes the namespace and the link.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Hosts made by this process so far (each gets its own names and subnet).
static HOSTS: AtomicU32 = AtomicU32::new(0);

/// A host in a network namespace, reachable from the test at [`NetHost::addr`].
pub struct NetHost {
    ns: String,
    /// The veth end in the test's namespace.
    pub outer: String,
    /// The veth end in the host's namespace.
    pub inner: String,
    subnet: u8,
}

/// Runs a command; its stderr when it fails.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetHost {
    /// A new host, or `None` (said on stderr) where this process cannot make one.
    pub fn new() -> Option<NetHost> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: network namespaces need root");
            return None;
        }
        if run(&["ip", "-V"]).is_err() || run(&["tc", "-V"]).is_err() {
            eprintln!("SKIPPED: `ip` and `tc` (iproute2) are not installed");
            return None;
        }
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let host = NetHost {
            ns: format!("sockmap-{pid}-{n}"),
            outer: format!("sm{pid}o{n}"),
            inner: format!("sm{pid}i{n}"),
            subnet: (pid.wrapping_mul(31).wrapping_add(n) % 200) as u8 + 20,
        };
        match host.set_up() {
            Ok(()) => Some(host),
            Err(e) => {
                eprintln!("SKIPPED: cannot make a network namespace: {e}");
                None
            }
        }
    }

    fn set_up(&self) -> Result<(), String> {
        let (ns, outer, inner) = (&self.ns, &self.outer, &self.inner);
        run(&["ip", "netns", "add", ns])?;
        run(&[
            "ip", "link", "add", outer, "type", "veth", "peer", "name", inner,
        ])?;
        run(&["ip", "link", "set", inner, "netns", ns])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.ip(1)),
            "dev",
            outer,
        ])?;
        run(&["ip", "link", "set", outer, "up"])?;
        let ip_ns = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", ns, "ip"];
            v.extend_from_slice(args);
            run(&v)
        };
        ip_ns(&["addr", "add", &format!("{}/24", self.ip(2)), "dev", inner])?;
        ip_ns(&["link", "set", inner, "up"])?;
        ip_ns(&["link", "set", "lo", "up"])
    }

    /// The address `last` of the host's subnet (`1`: the test's end, `2`: the host).
    pub fn ip(&self, last: u8) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 213, self.subnet, last)
    }

    /// The host's address.
    pub fn addr(&self) -> std::net::Ipv4Addr {
        self.ip(2)
    }

    /// Shapes the traffic both ways with one `tc qdisc` (e.g. `netem delay 5ms loss 1%`).
    ///
    /// # Errors
    /// `tc`'s message (e.g. a qdisc this kernel lacks).
    pub fn shape(&self, qdisc: &str) -> Result<(), String> {
        let q: Vec<&str> = qdisc.split_whitespace().collect();
        let mut outer = vec!["tc", "qdisc", "replace", "dev", &self.outer, "root"];
        outer.extend_from_slice(&q);
        run(&outer)?;
        let mut inner = vec!["ip", "netns", "exec", &self.ns, "tc", "qdisc", "replace"];
        inner.extend_from_slice(&["dev", &self.inner, "root"]);
        inner.extend_from_slice(&q);
        run(&inner)
    }

    /// Packets the shaping dropped so far on both ends (`tc -s qdisc`).
    pub fn dropped(&self) -> u64 {
        let stats = |args: &[&str]| {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split("dropped ")
                .skip(1)
                .filter_map(|t| {
                    t.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum::<u64>()
        };
        stats(&["tc", "-s", "qdisc", "show", "dev", &self.outer])
            + stats(&[
                "ip",
                "netns",
                "exec",
                &self.ns,
                "tc",
                "-s",
                "qdisc",
                "show",
                "dev",
                &self.inner,
            ])
    }

    /// Makes `ip(last)` a black hole: frames to it go to a MAC address nobody has.
    pub fn blackhole(&self, last: u8) {
        run(&[
            "ip",
            "neigh",
            "replace",
            &self.ip(last).to_string(),
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            &self.outer,
            "nud",
            "permanent",
        ])
        .unwrap();
    }

    /// Takes the host's end of the link down: the host disappears from the network.
    pub fn link_down(&self) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "ip",
            "link",
            "set",
            &self.inner,
            "down",
        ])
        .unwrap();
    }

    /// Sets a sysctl of the host's namespace (`net.*` ones are per namespace).
    ///
    /// # Errors
    /// The shell's message.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let script = format!("echo {value} > {path}");
        run(&["ip", "netns", "exec", &self.ns, "sh", "-c", &script])
    }

    /// A `TcpExt` counter of the host's namespace (`/proc/net/netstat`), e.g. `ListenOverflows`.
    pub fn tcp_ext(&self, field: &str) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "cat", "/proc/net/netstat"])
            .output()
            .expect("ip netns exec cat");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == field)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no TcpExt {field} in /proc/net/netstat"))
    }

    /// Runs `f` on a thread inside the host's namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.ns);
        let ns = std::fs::File::open(&path).expect("the namespace's file");
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a live namespace descriptor.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.outer]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}
