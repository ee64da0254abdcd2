//! The Electron-like build (feature `electron-cage`, Linux, for tests only).
//!
//! Electron's V8 memory cage refuses buffers over memory that V8 did not allocate:
//! `napi_create_external_buffer` and `napi_create_external_arraybuffer` fail there. In this build the linker sends
//! every call to them to the stand-ins below, which fail too, with a status that napi-rs does not paper over with a
//! copy. Any path that would hand JavaScript an external buffer so throws, and the test suite run against this build
//! shows that none does.

use std::ffi::c_void;

use napi::bindgen_prelude::Buffer;
use napi::sys;
use napi_derive::napi;

/// Stands in for `napi_create_external_buffer`: refuses.
///
/// # Safety
/// Called by the linker's redirection with `napi_create_external_buffer`'s arguments; reads none of them.
#[no_mangle]
pub unsafe extern "C" fn __wrap_napi_create_external_buffer(
    _env: sys::napi_env,
    _length: usize,
    _data: *mut c_void,
    _finalize_cb: sys::napi_finalize,
    _finalize_hint: *mut c_void,
    _result: *mut sys::napi_value,
) -> sys::napi_status {
    sys::Status::napi_generic_failure
}

/// Stands in for `napi_create_external_arraybuffer`: refuses.
///
/// # Safety
/// Called by the linker's redirection with `napi_create_external_arraybuffer`'s arguments; reads none of them.
#[no_mangle]
pub unsafe extern "C" fn __wrap_napi_create_external_arraybuffer(
    _env: sys::napi_env,
    _data: *mut c_void,
    _length: usize,
    _finalize_cb: sys::napi_finalize,
    _finalize_hint: *mut c_void,
    _result: *mut sys::napi_value,
) -> sys::napi_status {
    sys::Status::napi_generic_failure
}

/// Hands JavaScript a buffer over Rust memory, which this build refuses: calling it must throw.
#[napi]
pub fn cage_probe() -> Buffer {
    Buffer::from(vec![1u8, 2, 3])
}
