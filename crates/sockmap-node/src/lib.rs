//! Node.js binding of the sockmap engine.
//!
//! This crate only adapts: it converts between JavaScript and engine types and
//! owns the threadsafe-function plumbing. Every decision lives in `sockmap-core`.
#![deny(clippy::all)]

mod binding_error;
mod binding_ring;

use napi_derive::napi;

/// Version of the native engine.
#[napi]
pub fn engine_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
