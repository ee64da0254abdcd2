//! The provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the buffers the
//! kernel fills for multishot receives, and the leases that give them back.
//!
//! Invariants:
//! - every buffer is in exactly one place: in the ring (the kernel may fill
//!   it), leased (one [`Lease`], owned by the `Bytes` the core holds), or on
//!   the return list (its lease dropped, waiting for the I/O thread);
//! - only the I/O thread writes ring entries and the tail. A lease may be
//!   dropped on any thread: the drop only pushes the buffer's id on the
//!   return list, and wakes the I/O thread when a receive is starved;
//! - the buffers' memory belongs to the shared [`Pool`], so it outlives the
//!   ring's registration and every lease; the ring's entry array outlives
//!   the registration because the backend drops the io_uring instance first;
//! - a received chunk of at most [`COPYBREAK`] bytes, or any chunk while
//!   fewer than a quarter of the buffers are in the ring, is copied out and
//!   its buffer put back at once: small messages and long-held ones never
//!   pin a buffer, so the ring runs dry only within one burst.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use io_uring::types::BufRingEntry;
use io_uring::Submitter;

use crate::backend::Wake;

/// Chunks up to this many bytes are copied out of their buffer.
pub(crate) const COPYBREAK: usize = 1024;

/// The entry array's alignment: the kernel maps it by pages.
const PAGE: usize = 4096;

/// The buffers' memory, shared by the ring and every lease.
pub(crate) struct Pool {
    mem: NonNull<u8>,
    layout: Layout,
    size: usize,
    returned: Mutex<Vec<u16>>,
    starved: AtomicBool,
    wake: Arc<dyn Wake>,
}

// SAFETY: the memory is only reached through disjoint buffers: a buffer is
// written by the kernel while it is in the ring and read through its one
// lease while leased (module invariants); the return list is behind a mutex.
unsafe impl Send for Pool {}
// SAFETY: as for `Send`: shared access never touches a buffer two owners hold.
unsafe impl Sync for Pool {}

impl Pool {
    fn addr(&self, bid: u16) -> *mut u8 {
        // SAFETY: `bid` < the buffer count, so the offset stays inside the allocation.
        unsafe { self.mem.as_ptr().add(usize::from(bid) * self.size) }
    }

    fn give_back(&self, bid: u16) {
        self.returned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(bid);
        if self.starved.load(Ordering::Acquire) {
            self.wake.wake();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufRing::new` with this layout; no lease is left (each holds the pool).
        unsafe { dealloc(self.mem.as_ptr(), self.layout) }
    }
}

/// A buffer handed to the core inside a `Bytes`: back on the return list when dropped.
struct Lease {
    pool: Arc<Pool>,
    bid: u16,
    len: usize,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the kernel filled `len` bytes of this buffer and it stays out of the ring while leased.
        unsafe { std::slice::from_raw_parts(self.pool.addr(self.bid), self.len) }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.give_back(self.bid);
    }
}

/// The registered ring of provided buffers, owned by the I/O thread.
pub(crate) struct BufRing {
    pool: Arc<Pool>,
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    count: u16,
    tail: u16,
    /// Buffers the kernel may fill now.
    in_ring: usize,
}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `size` bytes and registers them as group `bgid`.
    ///
    /// # Errors
    /// When the memory cannot be allocated or the kernel refuses the registration.
    pub(crate) fn new(
        submitter: &Submitter<'_>,
        bgid: u16,
        count: u16,
        size: usize,
        wake: Arc<dyn Wake>,
    ) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && size > 0);
        let nomem = || io::Error::from_raw_os_error(libc::ENOMEM);
        let layout = Layout::from_size_align(usize::from(count) * size, 64).map_err(|_| nomem())?;
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            PAGE,
        )
        .map_err(|_| nomem())?;
        // SAFETY: both layouts have a non-zero size.
        let mem = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or_else(nomem)?;
        let pool = Arc::new(Pool {
            mem,
            layout,
            size,
            returned: Mutex::new(Vec::with_capacity(usize::from(count))),
            starved: AtomicBool::new(false),
            wake,
        });
        // SAFETY: as above.
        let entries = NonNull::new(unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>())
            .ok_or_else(nomem)?;
        let mut ring = BufRing {
            pool,
            entries,
            entries_layout,
            count,
            tail: 0,
            in_ring: 0,
        };
        // SAFETY: the entry array stays allocated until `self` drops, after the
        // io_uring instance that holds the registration (module invariants).
        unsafe {
            submitter.register_buf_ring_with_flags(entries.as_ptr() as u64, count, bgid, 0)?;
        }
        for bid in 0..count {
            ring.put(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// The number of buffers.
    pub(crate) fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The kernel filled `len` bytes of buffer `bid` for a live socket: the
    /// bytes as the core will hold them (leased, or copied per the module invariants).
    pub(crate) fn take(&mut self, bid: u16, len: usize) -> Bytes {
        self.in_ring -= 1;
        let low = self.in_ring < self.count() / 4;
        if len <= COPYBREAK || low {
            // SAFETY: the kernel filled `len` bytes of the buffer, which is out of the ring until `put`.
            let data = unsafe { std::slice::from_raw_parts(self.pool.addr(bid), len) };
            let copy = Bytes::copy_from_slice(data);
            self.put(bid);
            self.publish();
            return copy;
        }
        Bytes::from_owner(Lease {
            pool: self.pool.clone(),
            bid,
            len,
        })
    }

    /// The kernel used buffer `bid` for a completion nobody takes (a closed socket): back at once.
    pub(crate) fn recycle(&mut self, bid: u16) {
        self.in_ring -= 1;
        self.put(bid);
        self.publish();
    }

    /// Puts the returned buffers back in the ring; returns how many the kernel may fill.
    pub(crate) fn refill(&mut self) -> usize {
        let back =
            std::mem::take(&mut *self.pool.returned.lock().unwrap_or_else(|e| e.into_inner()));
        if !back.is_empty() {
            for bid in back {
                self.put(bid);
            }
            self.publish();
        }
        self.in_ring
    }

    /// Whether dropped leases should wake the I/O thread (a receive waits for buffers).
    pub(crate) fn set_starved(&self, starved: bool) {
        self.pool.starved.store(starved, Ordering::Release);
    }

    fn put(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.count - 1));
        // SAFETY: `idx` < count; the kernel reads entries only below the published tail,
        // and this one is at or above it.
        let e = unsafe { &mut *self.entries.as_ptr().add(idx) };
        e.set_addr(self.pool.addr(bid) as u64);
        e.set_len(self.pool.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.in_ring += 1;
    }

    fn publish(&self) {
        // SAFETY: the tail is the 16-bit field the kernel reads at the start of the
        // entry array, which is aligned for it; the store releases the entries written before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the registration is gone with the ring (module invariants).
        unsafe { dealloc(self.entries.as_ptr().cast(), self.entries_layout) }
    }
}
