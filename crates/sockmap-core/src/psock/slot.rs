//! A psock's place in the core's table.

use crate::id::SockId;

/// Where a psock lives in the core's table: an index, distinct from the
/// [`SockId`] that names the socket to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotIdx(usize);

impl SlotIdx {
    /// The slot an id points at (the id may be stale: check the psock's id).
    pub(crate) fn of(id: SockId) -> SlotIdx {
        SlotIdx(id.slot())
    }

    /// The index into the table.
    pub(crate) fn get(self) -> usize {
        self.0
    }
}
