//! Maps of a `BindingEngine`: SockMap / SockHash updates, lookups and programs.

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use sockmap_core::{EntryOptions, Errno, MapId};

use crate::binding_bytes::JsBytes;
use crate::binding_engine::{sock_id, stats_values, BindingEngine};
use crate::binding_error::{error_of, guarded, Error, Result};
use crate::binding_lock::lock;
use crate::binding_options::{flag_of, key_of, map_kind_of, programs_of, ProgramsSpec};

/// One entry of a map (made in Rust, read in JavaScript).
#[napi(object, object_from_js = false)]
pub struct JsEntry {
    /// The key: a number for a SockMap, the key bytes for a SockHash.
    #[napi(ts_type = "number | Buffer")]
    pub key: Either<f64, JsBytes>,
    /// The socket stored under it.
    pub sock: f64,
}

fn map_err(e: Errno, what: &str) -> Error {
    error_of(e, what)
}

#[napi]
impl BindingEngine {
    /// Creates a map (`'sockmap' | 'sockhash'`); returns its number.
    #[napi]
    pub fn create_map(&self, kind: String, max_entries: u32) -> Result<u32> {
        guarded(|| {
            let id = self
                .handle
                .create_map(map_kind_of(&kind)?, max_entries)
                .map_err(|e| map_err(e, "cannot create the map"))?;
            Ok(id.as_u32())
        })
    }

    /// Stores `sock` under `key`; `server` and `weight` name the server the
    /// entry is a connection to on the map's ring (absent: the core's defaults).
    #[napi]
    pub fn map_update(
        &self,
        map: u32,
        key: Either<f64, Buffer>,
        sock: f64,
        flag: String,
        server: Option<Buffer>,
        weight: Option<u32>,
    ) -> Result<()> {
        guarded(|| {
            let id = MapId::from_u32(map);
            let mut opts = EntryOptions {
                server: server.map(|s| Bytes::copy_from_slice(&s)),
                ..EntryOptions::default()
            };
            if let Some(w) = weight {
                opts.weight = w;
            }
            self.handle
                .map_update_entry(id, &key_of(&key), sock_id(sock), flag_of(&flag)?, &opts)
                .map_err(|e| map_err(e, "map update failed"))
        })
    }

    /// Holds map changes and pairings from now until `releaseChanges` (see
    /// `EngineHandle::hold_changes`); a second call while held does nothing.
    #[napi]
    pub fn hold_changes(&self) {
        let mut hold = lock(&self.hold);
        if hold.is_none() {
            *hold = Some(self.handle.hold_changes());
        }
    }

    /// Sends the held changes to the I/O threads.
    #[napi]
    pub fn release_changes(&self) {
        let held = lock(&self.hold).take();
        drop(held);
    }

    /// Removes the entry under `key`.
    #[napi]
    pub fn map_delete(&self, map: u32, key: Either<f64, Buffer>) -> Result<()> {
        guarded(|| {
            let id = MapId::from_u32(map);
            self.handle
                .map_delete(id, &key_of(&key))
                .map_err(|e| map_err(e, "map delete failed"))
        })
    }

    /// The socket under `key`, or -1.
    #[napi]
    pub fn map_lookup(&self, map: u32, key: Either<f64, Buffer>) -> Result<f64> {
        guarded(|| {
            let id = MapId::from_u32(map);
            let found = self
                .handle
                .map_lookup(id, &key_of(&key))
                .map_err(|e| map_err(e, "map lookup failed"))?;
            Ok(found.map_or(-1.0, |s| s.as_u64() as f64))
        })
    }

    /// Every entry.
    #[napi]
    pub fn map_entries(&self, map: u32) -> Result<Vec<JsEntry>> {
        guarded(|| {
            let id = MapId::from_u32(map);
            let entries = self
                .handle
                .map_entries(id)
                .map_err(|e| map_err(e, "map entries failed"))?;
            Ok(entries
                .into_iter()
                .map(|(k, s)| JsEntry {
                    key: match k {
                        sockmap_core::Key::Num(n) => Either::A(n as f64),
                        sockmap_core::Key::Bytes(b) => Either::B(b.into()),
                    },
                    sock: s.as_u64() as f64,
                })
                .collect())
        })
    }

    /// The number of entries.
    #[napi]
    pub fn map_len(&self, map: u32) -> Result<u32> {
        guarded(|| {
            let id = MapId::from_u32(map);
            let n = self
                .handle
                .map_len(id)
                .map_err(|e| map_err(e, "map size failed"))?;
            Ok(n as u32)
        })
    }

    /// The counters of the sockets that took this map's stream verdict, in the order of `statsFields()`.
    #[napi]
    pub fn map_stats(&self, map: u32) -> Result<Vec<f64>> {
        guarded(|| {
            let id = MapId::from_u32(map);
            let s = self
                .handle
                .map_stats(id)
                .map_err(|e| map_err(e, "map stats failed"))?;
            Ok(stats_values(&s))
        })
    }

    /// Attaches programs to a map.
    #[napi]
    pub fn attach(&self, map: u32, programs: ProgramsSpec) -> Result<()> {
        guarded(|| {
            let id = MapId::from_u32(map);
            let progs = programs_of(&programs)?;
            self.handle
                .attach(id, progs)
                .map_err(|e| map_err(e, "attach failed"))
        })
    }
}
