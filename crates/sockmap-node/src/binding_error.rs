//! Conversion of engine errors into JavaScript errors.
//!
//! Every engine error crosses the boundary as a JS `Error` whose message starts
//! with the kernel errno name in brackets (`"[EINVAL] ..."`); the TypeScript
//! layer turns it into a `SockmapError` with `code` set to that name.

use sockmap_core::Errno;

/// Builds the JS error for an engine error code with context.
pub fn errno_error(code: Errno, context: &str) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("[{}] {}", code.name(), context),
    )
}
