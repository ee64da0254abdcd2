//! Datagram I/O shared by the backends: `recvmmsg` until `EAGAIN` or the
//! core's budget, and `sendmmsg` of the queued datagrams, each batch one
//! system call, with the UDP offloads where the kernel has them (`UDP_GRO`
//! receives, `UDP_SEGMENT` sends; a segmented send the kernel refuses turns
//! the socket's GSO off and the datagrams go one by one). Both backends call
//! these on readiness (epoll's edge, or io_uring's multishot poll).

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::dgram::{recv_batch, send_batch, DgramRole, DgramSock, Offload, Received, RecvSlots};
use crate::error::Errno;
use crate::id::SockId;
use crate::psock::Core;

use super::{BackendCounters, ReadEnd};

/// A datagram socket a backend holds, and its role.
#[derive(Debug)]
pub(crate) struct DgramIo {
    pub(crate) sock: DgramSock,
    pub(crate) role: DgramRole,
}

/// What the datagram loops need of a socket: its descriptor, role and offloads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DgramFd {
    pub(crate) fd: RawFd,
    pub(crate) role: DgramRole,
    pub(crate) offload: Offload,
}

impl DgramIo {
    pub(crate) fn fd(&self) -> DgramFd {
        use std::os::fd::AsRawFd;
        DgramFd {
            fd: self.sock.fd.as_raw_fd(),
            role: self.role,
            offload: self.sock.offload,
        }
    }
}

/// Whether a socket of `role` reports each datagram's sender.
fn wants_from(role: DgramRole) -> bool {
    role != DgramRole::Connected
}

/// Reads the socket's datagrams into the core, in batches, until the
/// kernel has none, the budget is spent or the core stops reading it.
pub(crate) fn drive_dgram_read(
    core: &mut Core,
    io: DgramFd,
    id: SockId,
    (slots, got): (&mut RecvSlots, &mut Vec<Received>),
    counters: &BackendCounters,
    now: Instant,
) -> ReadEnd {
    let budget = core.config().read_budget;
    let mut total = 0;
    loop {
        if !core.wants_read(id) {
            return ReadEnd::Stopped;
        }
        if total >= budget {
            return ReadEnd::Budget;
        }
        got.clear();
        match recv_batch(io.fd, slots, wants_from(io.role), io.offload, got) {
            Ok(n) => {
                for r in got.drain(..) {
                    total += r.data.len();
                    if r.coalesced {
                        counters.coalesced(1);
                    }
                    if let Some(n) = r.kernel_drops {
                        core.handle_kernel_drops(id, n);
                    }
                    if r.truncated {
                        core.handle_datagram_truncated(id, r.data.len());
                    } else {
                        core.handle_datagram(id, r.from, r.data, now);
                    }
                }
                if n < crate::dgram::RECV_BATCH {
                    return ReadEnd::Drained;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // ICMP errors a connected socket reports on its next receive: the datagram that caused it
            // was counted when it was sent; reading goes on.
            Err(e) if is_soft(&e) => {}
            Err(e) => {
                core.handle_error(id, Errno::from_io(&e));
                return ReadEnd::Stopped;
            }
        }
    }
}

/// Sends the socket's queued datagrams in batches. Returns true when some
/// remain because the socket buffer is full (wait for writability). A
/// segmented send the kernel refused turns `gso` off for the socket.
pub(crate) fn drive_dgram_flush(
    core: &mut Core,
    fd: RawFd,
    gso: &mut bool,
    id: SockId,
    counters: &BackendCounters,
) -> bool {
    loop {
        match send_batch(fd, core.dgram_tx(id), *gso) {
            Ok((0, _)) => return false,
            Ok((n, segmented)) => {
                counters.segmented(segmented as u64);
                core.handle_dgrams_sent(id, n);
            }
            Err(e) if e.err.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.err.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.segmented => *gso = false,
            Err(e) => core.handle_dgram_failed(id, Errno::from_io(&e.err)),
        }
    }
}

/// Errors of one datagram that leave the socket usable.
fn is_soft(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EMSGSIZE)
    )
}
