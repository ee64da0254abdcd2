//! Bytes handed to JavaScript, always copied into a buffer that JavaScript's heap allocates.
//!
//! A buffer over memory Rust owns (`napi_create_external_buffer`) is what Electron's V8 memory cage forbids. The
//! binding never makes one: every byte a call or an event hands to JavaScript goes through [`JsBytes`], which copies
//! the fragments once into a buffer from `napi_create_buffer`. The same binary so behaves the same in Node and in
//! Electron, and it does not even import the external-buffer functions.

use std::ptr;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, FromNapiValue, ToNapiValue, TypeName, ValueType};
use napi::{check_status, sys, Result};
use sockmap_core::Frags;

/// Message bytes, in fragments, on their way into one JavaScript `Buffer`.
pub struct JsBytes(Frags);

impl JsBytes {
    /// How many bytes the buffer will hold.
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// The bytes, contiguous.
    pub fn to_vec(&self) -> Vec<u8> {
        sockmap_core::event::frags_to_vec(&self.0)
    }
}

impl From<Vec<u8>> for JsBytes {
    fn from(v: Vec<u8>) -> Self {
        JsBytes::from(Bytes::from(v))
    }
}

impl FromNapiValue for JsBytes {
    /// Copies the bytes of a JavaScript `Buffer`.
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        // SAFETY: napi-rs calls this with a live environment and value; the Buffer is only read, then dropped.
        let b = unsafe { Buffer::from_napi_value(env, value)? };
        Ok(JsBytes::from(Bytes::copy_from_slice(&b)))
    }
}

impl From<Frags> for JsBytes {
    fn from(frags: Frags) -> Self {
        JsBytes(frags)
    }
}

impl From<Bytes> for JsBytes {
    fn from(b: Bytes) -> Self {
        JsBytes(Frags::from_iter([b]))
    }
}

impl TypeName for JsBytes {
    fn type_name() -> &'static str {
        "Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for JsBytes {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let len = val.len();
        let mut data = ptr::null_mut();
        let mut buf = ptr::null_mut();
        // SAFETY: `env` is the live environment napi-rs converts in; both out-pointers are valid.
        check_status!(
            unsafe { sys::napi_create_buffer(env, len, &mut data, &mut buf) },
            "cannot allocate a Buffer of {} bytes",
            len
        )?;
        let mut at = data.cast::<u8>();
        for f in val.0.iter().filter(|f| !f.is_empty()) {
            // SAFETY: the buffer holds `len` bytes, the sum of the fragment lengths, so each fragment fits at `at`;
            // the source is Rust memory, the destination fresh JavaScript memory, so they do not overlap.
            unsafe {
                ptr::copy_nonoverlapping(f.as_ptr(), at, f.len());
                at = at.add(f.len());
            }
        }
        Ok(buf)
    }
}
