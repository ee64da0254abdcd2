//! Waking JavaScript from an I/O thread: the wake-up threadsafe function, the flag that coalesces its calls, and what
//! a call is for.
//!
//! Invariant: a [`Waker`] makes at most one call until JavaScript drains (clears `pending`), so a burst of loop turns
//! costs one call into JavaScript.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::Unknown;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

/// The wake-up function: called with no argument, its return value ignored.
pub(crate) type WakeFn = ThreadsafeFunction<(), Unknown<'static>, (), Status, false>;

/// Wakes the JS thread at most once until it drains.
///
/// The flag and the counter outlive the function: `close()` releases the function (so that it no longer keeps the
/// event loop or the JavaScript callback alive) while `drain()` and `wakeups` keep working.
pub(crate) struct Waker {
    pub(crate) pending: Arc<AtomicBool>,
    pub(crate) wakeups: Arc<AtomicU64>,
    pub(crate) tsfn: WakeFn,
}

impl Waker {
    pub(crate) fn new(tsfn: WakeFn) -> Waker {
        Waker {
            pending: Arc::default(),
            wakeups: Arc::default(),
            tsfn,
        }
    }

    /// Calls JavaScript unless a call is already queued and not yet drained.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            // Unbounded queue: never QueueFull; `Closing` after env teardown needs nothing.
            let _ = self.tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// What the wake function is called for, as its argument (a threaded engine calls it with none: both).
#[napi]
pub enum Wake {
    /// Events wait: call `drain()`.
    Events = 1,
    /// Batches wait: call `takeBatch()`.
    Batches = 2,
}
