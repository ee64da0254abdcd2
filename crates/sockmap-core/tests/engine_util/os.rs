//! The operating system's side of fault tests (Linux): a test run again
//! alone in a child process, for faults that would harm the rest of the
//! suite if the test process itself suffered them (a lowered descriptor
//! limit); the process's descriptors and CPU time as the tests count them;
//! raw sockets; resets.

use std::process::Command;
use std::time::Duration;

/// The variable that tells a child process which test it runs.
const CHILD: &str = "SOCKMAP_TEST_CHILD";

/// Whether this process is the child started for the test `name`.
pub fn in_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Runs the test `name` of this test binary alone in a child process and
/// fails with the child's output unless it passed.
pub fn run_in_child(name: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("start the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The process's open descriptors (not counting the one that listed them).
pub fn open_fds() -> Vec<i32> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // SAFETY: F_GETFD only asks whether the number is an open descriptor.
    listed
        .into_iter()
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
        .collect()
}

/// The soft and hard `RLIMIT_NOFILE`.
pub fn nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a live rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    (r.rlim_cur, r.rlim_max)
}

/// Sets the soft `RLIMIT_NOFILE` (descriptors numbered from `soft` up cannot be opened).
pub fn set_nofile(soft: u64) {
    let r = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: nofile().1 as libc::rlim_t,
    };
    // SAFETY: `r` is a live, initialized rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
}

/// Lowers the soft limit so that at least `room` more descriptors can be
/// opened (exactly `room` unless closed ones below the highest open
/// descriptor leave more); returns the old limit and the room left.
pub fn leave_room(room: usize) -> (u64, usize) {
    let old = nofile().0;
    let fds = open_fds();
    let top = fds.iter().map(|&fd| fd as usize + 1).max().unwrap_or(0);
    let free = (top - fds.len()).max(room);
    let limit = fds.len() + free;
    assert!(limit as u64 <= old, "the limit {old} leaves no room");
    set_nofile(limit as u64);
    (old, free)
}

/// CPU time (user and system) this process used so far, without opening a descriptor.
pub fn cpu_time() -> Duration {
    // SAFETY: a zeroed rusage is a valid value for getrusage to fill.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is live and sized for RUSAGE_SELF.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// An unconnected IPv4 TCP socket: its descriptor taken now, [`connect`] later.
pub fn tcp_socket() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a new descriptor nothing else owns.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Connects a socket from [`tcp_socket`] to `addr` (blocking), opening no other descriptor.
pub fn connect(fd: std::os::fd::OwnedFd, addr: std::net::SocketAddrV4) -> std::net::TcpStream {
    use std::os::fd::AsRawFd;
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a live sockaddr_in of the length given.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
    std::net::TcpStream::from(fd)
}

/// Closes `s` with a reset (RST, `SO_LINGER` of zero) instead of a FIN.
pub fn reset(s: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a live value of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}
