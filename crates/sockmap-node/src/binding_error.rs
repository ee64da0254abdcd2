//! Engine errors as JavaScript errors.
//!
//! Every error a binding call throws carries its code in the JS error's `code` property (`"EINVAL"`, or
//! `"ERR_ENGINE_PANIC"` for a panic caught at the boundary) and its context as the message; the TypeScript layer
//! turns it into a `SockmapError`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use napi_derive::napi;
use sockmap_core::Errno;

/// The code of an error raised by a panic caught at the boundary.
pub const ENGINE_PANIC: &str = "ERR_ENGINE_PANIC";

/// A binding error: the JS error's `code` is the status string.
pub type Error = napi::Error<String>;

/// The result of a binding call.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds the JS error for an engine error code with context.
pub fn error_of(code: Errno, context: &str) -> Error {
    Error::new(code.name().to_string(), context)
}

/// Keeps a Node-API failure's status (`"GenericFailure"`...) as the code.
pub fn host_error(e: napi::Error) -> Error {
    Error::new(e.status.as_ref().to_string(), e.reason.clone())
}

/// Runs `f`, turning a panic into an `ERR_ENGINE_PANIC` error.
pub fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::new(
            ENGINE_PANIC.to_string(),
            "the native binding panicked",
        ))
    })
}

/// Every code a binding error can carry: the engine's errno names and `ERR_ENGINE_PANIC`.
#[napi]
pub fn error_codes() -> Vec<&'static str> {
    Errno::all()
        .iter()
        .map(|e| e.name())
        .chain([ENGINE_PANIC])
        .collect()
}
