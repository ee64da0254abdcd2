//! Locking the binding's mutexes.
//!
//! Invariant: every holder leaves the data consistent, so a mutex poisoned by a panic (caught at the boundary by
//! `guarded`) is still used as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning (every holder leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
