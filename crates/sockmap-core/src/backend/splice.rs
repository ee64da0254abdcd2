//! Splicing for a readiness backend: bytes nothing inspects moved socket →
//! pipe → socket inside the kernel (splice(2)), as HAProxy does, with a pool
//! of pipes. The core says which sockets may be spliced and to where
//! ([`Core::splice_route`]); this module moves the bytes and tells the core
//! what moved.
//!
//! Invariants:
//! - a source has at most one pipe, and a target at most one source whose
//!   pipe still holds bytes for it (`inflow`); while a pipe holds bytes, its
//!   source is not read (by splice or by copy) and its target's send ring is
//!   not written: the pipe drains first, so bytes keep their order;
//! - a source's end of stream reaches the core only once its pipe is empty
//!   (a FIN never passes spliced bytes);
//! - bytes a pipe holds when its source or target closes are counted as
//!   dropped ([`Core::handle_splice_lost`]) and the pipe is closed, not pooled.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::ReadEnd;
use crate::error::Errno;
use crate::id::SockId;
use crate::psock::Core;

/// Pipes kept for reuse.
const POOL_MAX: usize = 64;
/// The pipe size asked for (the kernel caps it at `pipe-max-size`).
const PIPE_SIZE: i32 = 1 << 20;

/// A pipe and the bytes in it.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes spliced in and not yet out.
    len: usize,
    /// How much one splice into it may move.
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 returned two new descriptors nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; a refusal leaves the default size.
        let size = unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        Ok(Pipe {
            r,
            w,
            len: 0,
            capacity: usize::try_from(size).unwrap_or(64 << 10).max(4096),
        })
    }
}

/// A source's pipe toward its target.
struct Flow {
    pipe: Pipe,
    target: SockId,
    /// The source's end of stream arrived while the pipe held bytes.
    eof: bool,
}

/// What a splice pass or a drain asks of the backend.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// As a read pass ended (drained, budget spent, stopped).
    Read(ReadEnd),
    /// The pipe holds bytes the target cannot take now: wait for its writability.
    WaitTarget,
    /// The source's bytes are small: read it by copying from now on.
    Copy,
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice between two descriptors with null offsets touches no user memory.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The splicer of one backend: pipes by source, and the targets they wait on.
#[derive(Default)]
pub(crate) struct Splicer {
    pool: Vec<Pipe>,
    flows: HashMap<SockId, Flow>,
    /// Target → the source whose pipe holds bytes for it.
    inflow: HashMap<SockId, SockId>,
}

impl Splicer {
    /// Whether `src`'s pipe holds bytes (it must not be read until they are out).
    pub(crate) fn holds(&self, src: SockId) -> bool {
        self.flows.get(&src).is_some_and(|f| f.pipe.len > 0)
    }

    /// Whether `target` has spliced bytes to take before its send ring.
    pub(crate) fn blocks(&self, target: SockId) -> bool {
        self.inflow.contains_key(&target)
    }

    /// Splices `src` (descriptor `src_fd`) into `target` (`target_fd`) until
    /// the source is drained, the budget is spent, the core stops wanting
    /// reads, or the target is full. `min`: a splice moving less than this
    /// turns the source back to copying. `hup`: the kernel reported end of
    /// stream or an error, so a short splice does not mean drained.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pass(
        &mut self,
        core: &mut Core,
        src: SockId,
        src_fd: RawFd,
        target: SockId,
        target_fd: RawFd,
        min: usize,
        hup: bool,
    ) -> Next {
        let budget = core.config().read_budget;
        let mut total = 0;
        if !self.flows.contains_key(&src) {
            let pipe = match self.pool.pop().map_or_else(Pipe::new, Ok) {
                Ok(p) => p,
                Err(_) => return Next::Copy,
            };
            self.flows.insert(
                src,
                Flow {
                    pipe,
                    target,
                    eof: false,
                },
            );
        }
        loop {
            if !core.wants_read(src) {
                return self.settle(src, Next::Read(ReadEnd::Stopped));
            }
            if total >= budget {
                return self.settle(src, Next::Read(ReadEnd::Budget));
            }
            let flow = self.flows.get_mut(&src).expect("inserted above");
            flow.target = target;
            let capacity = flow.pipe.capacity;
            match splice(src_fd, flow.pipe.w.as_raw_fd(), capacity) {
                Ok(0) => {
                    flow.eof = true;
                    return self.finish_if_empty(core, src);
                }
                Ok(n) => {
                    total += n;
                    flow.pipe.len += n;
                    core.handle_spliced_in(src, n);
                    if !self.drain(core, src, target_fd) {
                        self.inflow.insert(target, src);
                        return Next::WaitTarget;
                    }
                    if n < min {
                        return self.settle(src, Next::Copy);
                    }
                    if n < capacity && !hup {
                        return self.settle(src, Next::Read(ReadEnd::Drained));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.settle(src, Next::Read(ReadEnd::Drained));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    core.handle_error(src, Errno::from_io(&e));
                    return self.settle(src, Next::Read(ReadEnd::Stopped));
                }
            }
        }
    }

    /// The target of a waiting pipe became writable: drains it. Returns the
    /// source to read again once its pipe is empty.
    pub(crate) fn on_writable(
        &mut self,
        core: &mut Core,
        target: SockId,
        target_fd: RawFd,
    ) -> Option<SockId> {
        let src = *self.inflow.get(&target)?;
        if !self.drain(core, src, target_fd) {
            return None;
        }
        self.inflow.remove(&target);
        if self.flows.get(&src).is_some_and(|f| f.eof) {
            self.finish_if_empty(core, src);
            return None;
        }
        self.settle(src, Next::Copy);
        Some(src)
    }

    /// A socket closes: a pipe it fed, or one feeding it, is dropped with
    /// its bytes counted as lost. Returns a source to read again (its
    /// target closed).
    pub(crate) fn forget(&mut self, core: &mut Core, id: SockId) -> Option<SockId> {
        if let Some(flow) = self.flows.remove(&id) {
            if flow.pipe.len > 0 {
                core.handle_splice_lost(id, flow.pipe.len);
                self.inflow.remove(&flow.target);
            } else {
                self.give_back(flow.pipe);
            }
        }
        let src = self.inflow.remove(&id)?;
        if let Some(flow) = self.flows.remove(&src) {
            core.handle_splice_lost(src, flow.pipe.len);
        }
        Some(src)
    }

    /// Moves the pipe's bytes into the target; true once it is empty.
    fn drain(&mut self, core: &mut Core, src: SockId, target_fd: RawFd) -> bool {
        let Some(flow) = self.flows.get_mut(&src) else {
            return true;
        };
        while flow.pipe.len > 0 {
            match splice(flow.pipe.r.as_raw_fd(), target_fd, flow.pipe.len) {
                Ok(m) => {
                    flow.pipe.len -= m;
                    core.handle_spliced_out(flow.target, m);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let (target, lost) = (flow.target, flow.pipe.len);
                    core.handle_error(target, Errno::from_io(&e));
                    core.handle_splice_lost(src, lost);
                    self.flows.remove(&src);
                    return true;
                }
            }
        }
        true
    }

    /// The source's end of stream, once its pipe is empty.
    fn finish_if_empty(&mut self, core: &mut Core, src: SockId) -> Next {
        if self.holds(src) {
            return Next::WaitTarget;
        }
        if let Some(flow) = self.flows.remove(&src) {
            self.give_back(flow.pipe);
        }
        core.handle_eof(src);
        Next::Read(ReadEnd::Stopped)
    }

    /// Returns an empty pipe to the pool after a pass.
    fn settle(&mut self, src: SockId, next: Next) -> Next {
        if !self.holds(src) {
            if let Some(flow) = self.flows.remove(&src) {
                self.give_back(flow.pipe);
            }
        }
        next
    }

    fn give_back(&mut self, pipe: Pipe) {
        if pipe.len == 0 && self.pool.len() < POOL_MAX {
            self.pool.push(pipe);
        }
    }
}
