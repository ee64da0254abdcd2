//! TLS settings built once from PEM and shared (`Arc`) by every socket that
//! uses them: a listener's [`ServerTls`] (replaced whole on hot reload, its
//! session cache and ticket keys kept) and an origin's [`ClientTls`].
//!
//! Invariants: the crypto provider is rustls' `ring` provider everywhere
//! (one `Arc` per configuration); TLS 1.2 and 1.3 are offered, nothing older;
//! a configuration that cannot be built is an error naming what is wrong,
//! never a socket that fails later.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::{TlsStats, TlsStatsSnapshot};

/// The handshake deadline when none is given.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sessions a listener remembers for resumption.
const SESSION_CACHE: usize = 4096;

/// A configuration that cannot be built: what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(what: &str, e: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{what}: {e}"))
}

/// A certificate chain and its private key, in PEM.
#[derive(Clone, Debug, Default)]
pub struct CertPem {
    /// The chain, leaf first.
    pub cert: Vec<u8>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Vec<u8>,
}

/// What a listener terminating TLS is given.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// The certificate for every name without one of its own in `sni`.
    pub cert: CertPem,
    /// Certificates by server name (exact, case-insensitive; `*.example.com` matches one label).
    pub sni: Vec<(String, CertPem)>,
    /// ALPN protocols, in preference order (empty: no ALPN).
    pub alpn: Vec<Vec<u8>>,
    /// CA certificates (PEM) clients must present a certificate from; `None`: no client certificate asked.
    pub client_ca: Option<Vec<u8>>,
    /// The handshake deadline ([`DEFAULT_HANDSHAKE_TIMEOUT`] when `None`).
    pub handshake_timeout: Option<Duration>,
}

/// What a socket originating TLS is given.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// The name to send (SNI) and to verify the certificate against (a DNS name or an IP address).
    pub server_name: String,
    /// CA certificates (PEM) to trust; `None`: the Mozilla roots (`webpki-roots`).
    pub ca: Option<Vec<u8>>,
    /// ALPN protocols, in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// Accept any server certificate (tests only: no authentication at all).
    pub insecure: bool,
    /// A client certificate to present when the server asks.
    pub cert: Option<CertPem>,
    /// The handshake deadline ([`DEFAULT_HANDSHAKE_TIMEOUT`] when `None`).
    pub handshake_timeout: Option<Duration>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let v = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(what, e))?;
    if v.is_empty() {
        return Err(ConfigError(format!("{what}: no PEM certificate found")));
    }
    Ok(v)
}

fn key(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| err(what, e))
}

fn roots(what: &str, pem: &[u8]) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    for c in certs(what, pem)? {
        store.add(c).map_err(|e| err(what, e))?;
    }
    Ok(store)
}

fn certified(
    what: &str,
    p: &CertPem,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let chain = certs(&format!("{what}.cert"), &p.cert)?;
    let key = key(&format!("{what}.key"), &p.key)?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err(&format!("{what}.key"), e))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| err(&format!("{what}.key"), e))?;
    Ok(Arc::new(ck))
}

/// Picks the certificate by the ClientHello's server name.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    names: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.names.get(&name) {
            return Some(k.clone());
        }
        let wild = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        Some(
            wild.and_then(|w| self.names.get(&w).cloned())
                .unwrap_or_else(|| self.default.clone()),
        )
    }
}

/// A listener's TLS: the rustls configuration accepted connections take.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) handshake_timeout: Duration,
    /// The listener's own counters, kept across reloads.
    pub(crate) stats: Arc<TlsStats>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds a listener's configuration. `previous` (hot reload) passes on
    /// its session cache and ticket keys, so clients resume across reloads,
    /// and its counters.
    ///
    /// # Errors
    /// A certificate, key or CA that does not parse or does not match.
    pub fn new(
        opts: &ServerOptions,
        previous: Option<&ServerTls>,
    ) -> Result<ServerTls, ConfigError> {
        let provider = provider();
        let default = certified("tls", &opts.cert, &provider)?;
        let mut names = HashMap::new();
        for (name, pem) in &opts.sni {
            let k = certified(&format!("tls.sni[{name}]"), pem, &provider)?;
            names.insert(name.to_ascii_lowercase(), k);
        }
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| err("tls", e))?;
        let builder = match &opts.client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots("tls.ca", ca)?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| err("tls.ca", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(Arc::new(SniResolver { default, names }));
        cfg.alpn_protocols.clone_from(&opts.alpn);
        match previous {
            Some(p) => {
                cfg.session_storage = p.config.session_storage.clone();
                cfg.ticketer = p.config.ticketer.clone();
            }
            None => {
                cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE)
                    as Arc<dyn StoresServerSessions>;
                cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| err("tls", e))?;
            }
        }
        Ok(ServerTls {
            config: Arc::new(cfg),
            handshake_timeout: opts.handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
            stats: previous.map(|p| p.stats.clone()).unwrap_or_default(),
        })
    }

    /// The counters of the connections accepted with this configuration
    /// (and the ones it reloaded).
    pub fn stats(&self) -> TlsStatsSnapshot {
        self.stats.snapshot()
    }
}

/// An origin's TLS: the rustls configuration and the server name.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
    pub(crate) handshake_timeout: Duration,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds an origin's configuration.
    ///
    /// # Errors
    /// A server name that is neither a DNS name nor an IP address, or a CA,
    /// certificate or key that does not parse.
    pub fn new(opts: &ClientOptions) -> Result<ClientTls, ConfigError> {
        let name =
            ServerName::try_from(opts.server_name.clone()).map_err(|e| err("tls.servername", e))?;
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| err("tls", e))?;
        let builder = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider.clone())))
        } else {
            let store = match &opts.ca {
                Some(ca) => roots("tls.ca", ca)?,
                None => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
            };
            builder.with_root_certificates(store)
        };
        let mut cfg = match &opts.cert {
            Some(c) => builder
                .with_client_auth_cert(certs("tls.cert", &c.cert)?, key("tls.key", &c.key)?)
                .map_err(|e| err("tls.cert", e))?,
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols.clone_from(&opts.alpn);
        Ok(ClientTls {
            config: Arc::new(cfg),
            name,
            handshake_timeout: opts.handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
        })
    }

    /// The same configuration (and so its resumption cache) for another server name.
    ///
    /// # Errors
    /// A name that is neither a DNS name nor an IP address.
    pub fn with_name(
        &self,
        server_name: &str,
        handshake_timeout: Option<Duration>,
    ) -> Result<ClientTls, ConfigError> {
        Ok(ClientTls {
            config: self.config.clone(),
            name: ServerName::try_from(server_name.to_owned())
                .map_err(|e| err("tls.servername", e))?,
            handshake_timeout: handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
        })
    }
}

/// `insecure`: every certificate is accepted; signatures are still checked,
/// so the handshake itself stays well-formed.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
