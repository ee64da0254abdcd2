//! Node.js binding of the sockmap engine.
//!
//! This crate only adapts: it converts between JavaScript and engine types and
//! owns the plumbing into Node's event loop (threadsafe functions, and the
//! libuv handles of inline driving). Every decision lives in `sockmap-core`.
#![deny(clippy::all)]

mod binding_batch;
mod binding_bytes;
#[cfg(feature = "electron-cage")]
mod binding_cage;
mod binding_engine;
mod binding_error;
mod binding_event;
mod binding_inline;
mod binding_lock;
mod binding_map;
mod binding_options;
mod binding_ring;
mod binding_tls;
mod binding_wake;

pub use binding_batch::{
    AnswerCode, BatchItemKind, DescField, EditOp, MetaField, MetaKind, TargetField, TargetFlag,
    DESC_STRIDE, EDIT_STRIDE, META_STRIDE, PARSE_FAILED_ERRNO, PARSE_HANDBACK, PARSE_NEED_MORE,
    TARGET_STRIDE,
};
#[cfg(feature = "electron-cage")]
pub use binding_cage::cage_probe;
pub use binding_engine::stats_fields;
pub use binding_error::error_codes;
pub use binding_event::EventKind;
pub use binding_options::{native_defaults, NativeDefaults};
pub use binding_tls::client_hello_sni;
pub use binding_wake::Wake;

use napi_derive::napi;

/// The cores this process may use: what `shards: 'auto'` asks for.
#[napi]
pub fn available_cores() -> u32 {
    sockmap_core::backend::select::available_cores() as u32
}

/// Version of the native engine.
#[napi]
pub fn engine_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
