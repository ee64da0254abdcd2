//! TLS options and results between JavaScript and the engine: PEM buffers
//! into `sockmap_core::tls` configurations, negotiated parameters and
//! counters back. Client configurations are kept per distinct option set,
//! so origins to the same servers resume their sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use sockmap_core::tls::{
    CertPem, ClientOptions, ClientTls, ConfigError, Failure, ServerOptions, ServerTls, TlsInfo,
    TlsStatsSnapshot,
};
use sockmap_core::Errno;

/// A certificate chain and key for one server name.
#[napi(object)]
pub struct TlsSniSpec {
    /// The server name (exact, or `*.domain`).
    pub host: String,
    /// The certificate chain (PEM).
    pub cert: Buffer,
    /// The private key (PEM).
    pub key: Buffer,
}

/// `listen({ tls })`, as TypeScript checked it.
#[napi(object)]
pub struct TlsServerSpec {
    /// The default certificate chain (PEM).
    pub cert: Buffer,
    /// Its private key (PEM).
    pub key: Buffer,
    /// ALPN protocols in preference order.
    pub alpn: Option<Vec<String>>,
    /// Certificates by server name.
    pub sni: Option<Vec<TlsSniSpec>>,
    /// CA certificates client certificates must chain to (asks for one, and requires it).
    pub ca: Option<Buffer>,
    /// Handshake deadline.
    pub handshake_timeout_ms: Option<f64>,
}

/// `connect({ tls })`, as TypeScript checked it.
#[napi(object)]
pub struct TlsClientSpec {
    /// The name sent (SNI) and verified.
    pub servername: String,
    /// CA certificates to trust (PEM); absent: the Mozilla roots.
    pub ca: Option<Buffer>,
    /// ALPN protocols in preference order.
    pub alpn: Option<Vec<String>>,
    /// Accept any certificate (tests only).
    pub insecure: Option<bool>,
    /// A client certificate chain (PEM), with `key`.
    pub cert: Option<Buffer>,
    /// The client certificate's key (PEM).
    pub key: Option<Buffer>,
    /// Handshake deadline.
    pub handshake_timeout_ms: Option<f64>,
}

/// What a TLS event carries: the negotiated parameters, or the failure's reason.
#[napi(object, object_from_js = false)]
pub struct JsTlsInfo {
    /// `TLSv1.3` / `TLSv1.2` (absent on failure).
    pub version: Option<String>,
    /// The ALPN protocol agreed.
    pub alpn: Option<String>,
    /// The server name the client asked for (server side).
    pub sni: Option<String>,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// The cipher suite.
    pub cipher: Option<String>,
    /// Why it failed (`certificate`, `alert`, `protocol`, `timeout`, `closed`).
    pub reason: Option<String>,
}

/// The engine's TLS counters.
#[napi(object, object_from_js = false)]
pub struct JsTlsStats {
    /// Handshakes finished.
    pub handshakes: f64,
    /// Of those, resumed.
    pub resumed: f64,
    /// Failures by reason (`certificate`, `alert`, `protocol`, `timeout`, `closed`).
    pub failures: HashMap<String, f64>,
}

use crate::binding_error::{error_of, Result};

fn config_err(e: ConfigError) -> crate::binding_error::Error {
    error_of(Errno::Inval, &e.to_string())
}

fn timeout(ms: Option<f64>) -> Option<Duration> {
    ms.map(|ms| Duration::from_micros((ms * 1000.0) as u64))
}

fn alpn(v: &Option<Vec<String>>) -> Vec<Vec<u8>> {
    v.iter().flatten().map(|s| s.as_bytes().to_vec()).collect()
}

/// Builds a listener's configuration (`previous`: a reload keeps its sessions).
pub fn server_tls(spec: &TlsServerSpec, previous: Option<&ServerTls>) -> Result<ServerTls> {
    let opts = ServerOptions {
        cert: CertPem {
            cert: spec.cert.to_vec(),
            key: spec.key.to_vec(),
        },
        sni: spec
            .sni
            .iter()
            .flatten()
            .map(|s| {
                (
                    s.host.clone(),
                    CertPem {
                        cert: s.cert.to_vec(),
                        key: s.key.to_vec(),
                    },
                )
            })
            .collect(),
        alpn: alpn(&spec.alpn),
        client_ca: spec.ca.as_ref().map(|b| b.to_vec()),
        handshake_timeout: timeout(spec.handshake_timeout_ms),
    };
    ServerTls::new(&opts, previous).map_err(config_err)
}

/// Client configurations by their options (server name aside), so sessions resume.
#[derive(Default)]
pub struct ClientCache(Mutex<HashMap<Vec<u8>, ClientTls>>);

/// Distinct client option sets kept, at most.
const CLIENT_CACHE: usize = 64;

impl ClientCache {
    /// The configuration for `spec`, made once per distinct option set.
    pub fn get(&self, spec: &TlsClientSpec) -> Result<ClientTls> {
        let mut key = Vec::new();
        for part in [
            spec.ca.as_deref().unwrap_or_default(),
            spec.cert.as_deref().unwrap_or_default(),
            spec.key.as_deref().unwrap_or_default(),
        ] {
            key.extend_from_slice(&(part.len() as u64).to_le_bytes());
            key.extend_from_slice(part);
        }
        for a in alpn(&spec.alpn) {
            key.extend_from_slice(&(a.len() as u64).to_le_bytes());
            key.extend_from_slice(&a);
        }
        key.push(u8::from(spec.insecure.unwrap_or(false)));
        let t = timeout(spec.handshake_timeout_ms);
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&key) {
            return c.with_name(&spec.servername, t).map_err(config_err);
        }
        let cert = match (&spec.cert, &spec.key) {
            (Some(c), Some(k)) => Some(CertPem {
                cert: c.to_vec(),
                key: k.to_vec(),
            }),
            _ => None,
        };
        let made = ClientTls::new(&ClientOptions {
            server_name: spec.servername.clone(),
            ca: spec.ca.as_ref().map(|b| b.to_vec()),
            alpn: alpn(&spec.alpn),
            insecure: spec.insecure.unwrap_or(false),
            cert,
            handshake_timeout: t,
        })
        .map_err(config_err)?;
        if cache.len() >= CLIENT_CACHE {
            cache.clear();
        }
        cache.insert(key, made.clone());
        Ok(made)
    }
}

/// The event's TLS part.
pub fn js_tls(
    result: std::result::Result<TlsInfo, Failure>,
) -> (JsTlsInfo, Option<String>, Option<String>) {
    match result {
        Ok(i) => (
            JsTlsInfo {
                version: Some(i.version.to_string()),
                alpn: i.alpn,
                sni: i.sni,
                resumed: i.resumed,
                cipher: Some(i.cipher.to_string()),
                reason: None,
            },
            None,
            None,
        ),
        Err(f) => (
            JsTlsInfo {
                version: None,
                alpn: None,
                sni: None,
                resumed: false,
                cipher: None,
                reason: Some(f.reason.name().to_string()),
            },
            Some(f.code.name().to_string()),
            Some(f.detail),
        ),
    }
}

/// The counters as JavaScript reads them.
pub fn js_tls_stats(s: TlsStatsSnapshot) -> JsTlsStats {
    JsTlsStats {
        handshakes: s.handshakes as f64,
        resumed: s.resumed as f64,
        failures: TlsStatsSnapshot::REASONS
            .iter()
            .map(|r| (r.name().to_string(), s.failed(*r) as f64))
            .collect(),
    }
}

/// The server name (SNI) of the TLS ClientHello that `data` starts with, without terminating anything; `null` when
/// it sends none, is not a ClientHello, or is incomplete.
#[napi]
pub fn client_hello_sni(data: &[u8]) -> Result<Option<String>> {
    crate::binding_error::guarded(|| {
        Ok(match sockmap_core::tls::hello::peek(data) {
            sockmap_core::tls::hello::Peek::Hello { sni } => sni,
            _ => None,
        })
    })
}
