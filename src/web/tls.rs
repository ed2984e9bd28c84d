//! The TLS side: a rustls server configuration built from
//! `tls_server_config`, and an acceptor that notices renewed certificates.
//!
//! rustls with the ring provider (it builds without cmake, which aws-lc-rs
//! needs) speaks TLS 1.2 and 1.3 only. Every setting of the file maps onto
//! rustls: versions onto the protocol versions offered, `cipher_suites`
//! and `curve_preferences` onto the provider's suites and key exchange
//! groups in the order given, `prefer_server_cipher_suites` onto
//! `ignore_client_order`, and `client_auth_type` onto a client certificate
//! verifier.
//!
//! Renewal: certificate tools (certbot, cert-manager, a cron job) replace
//! the files and expect servers to pick them up. Before each handshake the
//! acceptor compares the files' identity (inode, size, modification and
//! change times) with what it last saw, a few `stat` calls; when they
//! differ it compares the contents, and when those differ it rebuilds the
//! configuration. A renewed file that does not load (half written, a key
//! that does not match the certificate) is logged once and the previous
//! certificate is served until the files change again.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use herakles_core::{Desc, MetricSink};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use super::values::{CipherSuite, ClientAuth, Curve, TlsVersion};
use crate::util::FileStamp;

/// `tls_server_config`, checked: the files named exist and load, the
/// settings are ones rustls can honour.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Empty: every suite of the enabled versions.
    pub cipher_suites: Vec<CipherSuite>,
    /// Empty: rustls' default groups and order.
    pub curve_preferences: Vec<Curve>,
    pub prefer_server_cipher_suites: bool,
    /// Where the settings came from, to name the right key in errors.
    pub(crate) origin: Origin,
}

/// Which keys the settings were written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `--web.config.file`'s `tls_server_config`.
    WebConfig,
    /// The main config's `tls_cert_path` and `tls_key_path`.
    SpecKeys,
}

/// The setting a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    CertFile,
    KeyFile,
    ClientCaFile,
    CipherSuites,
}

impl Origin {
    /// The dotted config key of `setting`.
    pub(crate) fn key(self, setting: Setting) -> &'static str {
        match (self, setting) {
            (Origin::WebConfig, Setting::CertFile) => "tls_server_config.cert_file",
            (Origin::WebConfig, Setting::KeyFile) => "tls_server_config.key_file",
            (Origin::WebConfig, Setting::ClientCaFile) => "tls_server_config.client_ca_file",
            (Origin::WebConfig, Setting::CipherSuites) => "tls_server_config.cipher_suites",
            (Origin::SpecKeys, Setting::CertFile) => "tls_cert_path",
            (Origin::SpecKeys, Setting::KeyFile) => "tls_key_path",
            (Origin::SpecKeys, _) => "enable_tls",
        }
    }
}

/// Why a TLS configuration could not be built, and which setting is at
/// fault.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key \"{}\": {}", self.key, self.message)
    }
}

impl std::error::Error for TlsError {}

impl TlsSettings {
    /// TLS with `cert_file` and `key_file` and every other setting at its
    /// default, as the main config's `tls_cert_path` and `tls_key_path`
    /// ask for.
    pub(crate) fn with_files(cert_file: PathBuf, key_file: PathBuf, origin: Origin) -> Self {
        TlsSettings {
            cert_file,
            key_file,
            client_auth: ClientAuth::NoClientCert,
            client_ca_file: None,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: Vec::new(),
            curve_preferences: Vec::new(),
            prefer_server_cipher_suites: true,
            origin,
        }
    }

    /// The files the configuration is built from.
    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert_file.as_path(), self.key_file.as_path()];
        files.extend(self.client_ca_file.as_deref());
        files
    }

    fn error(&self, setting: Setting, message: impl Into<String>) -> TlsError {
        TlsError {
            key: self.origin.key(setting),
            message: message.into(),
        }
    }

    /// The protocol versions from `min_version` to `max_version`.
    fn versions(&self) -> Vec<TlsVersion> {
        [TlsVersion::Tls12, TlsVersion::Tls13]
            .into_iter()
            .filter(|v| (self.min_version..=self.max_version).contains(v))
            .collect()
    }

    /// The ring provider narrowed to the configured suites and curves.
    ///
    /// `cipher_suites` restricts each protocol version it names a suite of;
    /// a version it names none of keeps all its suites. That is Go's rule
    /// for TLS 1.3 (whose suites Go does not let you choose) applied to
    /// both, so a list written for node_exporter (TLS 1.2 suites only)
    /// means here what it means there.
    fn provider(&self) -> CryptoProvider {
        let mut provider = rustls::crypto::ring::default_provider();
        if !self.cipher_suites.is_empty() {
            let named = |v: TlsVersion| self.cipher_suites.iter().any(|s| s.version() == v);
            let mut suites: Vec<_> = self.cipher_suites.iter().map(|s| s.suite).collect();
            for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
                if !named(version) {
                    suites.extend(
                        super::values::supported_suites()
                            .into_iter()
                            .filter_map(|s| (s.version() == version).then_some(s.suite)),
                    );
                }
            }
            provider.cipher_suites = suites;
        }
        if !self.curve_preferences.is_empty() {
            provider.kx_groups = self.curve_preferences.iter().map(|c| c.group).collect();
        }
        provider
    }

    /// Read the files and build the rustls configuration.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.load().map(|loaded| loaded.config)
    }

    /// [`Self::server_config`], and when the served certificate expires.
    fn load(&self) -> Result<Loaded, TlsError> {
        let provider = Arc::new(self.provider());
        let certified = self.certified_key(&provider)?;
        self.check_suites_fit_key(&certified)?;
        let not_after = certified.end_entity_cert().ok().and_then(not_after);
        let verifier = self.client_verifier(&provider)?;
        let versions: Vec<_> = self.versions().into_iter().map(|v| v.rustls()).collect();
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| self.error(Setting::CipherSuites, e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.ignore_client_order = self.prefer_server_cipher_suites;
        Ok(Loaded {
            config: Arc::new(config),
            not_after,
        })
    }

    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert_pem = read(&self.cert_file).map_err(|m| self.error(Setting::CertFile, m))?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                self.error(
                    Setting::CertFile,
                    format!("{}: not PEM: {e}", self.cert_file.display()),
                )
            })?;
        if chain.is_empty() {
            return Err(self.error(
                Setting::CertFile,
                format!(
                    "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                    self.cert_file.display()
                ),
            ));
        }
        let key_pem = read(&self.key_file).map_err(|m| self.error(Setting::KeyFile, m))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            self.error(
                Setting::KeyFile,
                format!(
                    "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}",
                    self.key_file.display()
                ),
            )
        })?;
        CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            let message = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "{}: the key does not belong to the certificate in {}",
                    self.key_file.display(),
                    self.cert_file.display()
                ),
                e => format!("{}: {e}", self.key_file.display()),
            };
            self.error(Setting::KeyFile, message)
        })
    }

    /// A TLS 1.2 suite signs with the server's key type (ECDSA or RSA): a
    /// list whose TLS 1.2 suites all need the other type would refuse
    /// every TLS 1.2 client.
    fn check_suites_fit_key(&self, certified: &CertifiedKey) -> Result<(), TlsError> {
        if !self.versions().contains(&TlsVersion::Tls12) {
            return Ok(());
        }
        let tls12: Vec<_> = self
            .cipher_suites
            .iter()
            .filter(|s| s.version() == TlsVersion::Tls12)
            .collect();
        let algorithm = certified.key.algorithm();
        if tls12.is_empty()
            || tls12
                .iter()
                .any(|s| s.suite.usable_for_signature_algorithm(algorithm))
        {
            return Ok(());
        }
        Err(self.error(
            Setting::CipherSuites,
            format!(
                "no TLS 1.2 suite listed works with the {algorithm:?} key of {}",
                self.cert_file.display()
            ),
        ))
    }

    fn client_roots(&self) -> Result<Option<RootCertStore>, TlsError> {
        let Some(path) = &self.client_ca_file else {
            return Ok(None);
        };
        let pem = read(path).map_err(|m| self.error(Setting::ClientCaFile, m))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| {
                self.error(
                    Setting::ClientCaFile,
                    format!("{}: not PEM: {e}", path.display()),
                )
            })?;
            roots.add(cert).map_err(|e| {
                self.error(
                    Setting::ClientCaFile,
                    format!("{}: not a usable CA certificate: {e}", path.display()),
                )
            })?;
        }
        if roots.is_empty() {
            return Err(self.error(
                Setting::ClientCaFile,
                format!("{}: no PEM certificate in it", path.display()),
            ));
        }
        Ok(Some(roots))
    }

    fn client_verifier(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let roots = self.client_roots()?;
        let verifying = |roots: RootCertStore, optional: bool| {
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
            let builder = if optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| self.error(Setting::ClientCaFile, e.to_string()))
        };
        let hints = |roots: &Option<RootCertStore>| roots.as_ref().map(|r| r.subjects());
        Ok(match (self.client_auth, roots) {
            (ClientAuth::NoClientCert, _) => WebPkiClientVerifier::no_client_auth(),
            (ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert, roots) => {
                Arc::new(AnyClientCert {
                    mandatory: self.client_auth == ClientAuth::RequireAnyClientCert,
                    hints: hints(&roots).unwrap_or_default(),
                    provider: Arc::clone(provider),
                })
            }
            (ClientAuth::VerifyClientCertIfGiven, Some(roots)) => verifying(roots, true)?,
            (ClientAuth::RequireAndVerifyClientCert, Some(roots)) => verifying(roots, false)?,
            (_, None) => {
                return Err(self.error(
                    Setting::ClientCaFile,
                    format!(
                        "client_auth_type {} checks client certificates against client_ca_file, \
                         which is not set",
                        self.client_auth.name()
                    ),
                ))
            }
        })
    }
}

/// Read a certificate or key file (a regular file; a FIFO or device would
/// block or never end).
fn read(path: &Path) -> Result<String, String> {
    crate::util::read_regular_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `RequestClientCert` and `RequireAnyClientCert`: ask for a certificate
/// and check only that the client holds its key (the handshake signature),
/// not who issued it, as Go does for these two policies.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How recent a modification must be for its stamp not to be trusted: a
/// file rewritten twice within the file system's timestamp granularity
/// (a kernel tick) keeps size, inode and times, so until the times are
/// older than this the contents are compared too (git's "racy" rule).
const RACY: Duration = Duration::from_secs(2);

/// The stamps of `files`, or `None` when one cannot be stat'ed or was
/// modified too recently to tell a second change from the first.
fn stamps(files: &[&Path]) -> Option<Vec<FileStamp>> {
    let now = SystemTime::now();
    files
        .iter()
        .map(|path| {
            // `metadata` follows symbolic links: Kubernetes swaps a secret
            // by re-pointing a link, which shows here as another inode.
            let m = std::fs::metadata(path).ok()?;
            let settled = m
                .modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= RACY);
            settled.then(|| FileStamp::of(&m))
        })
        .collect()
}

/// SHA-256 over the contents of `files` (an unreadable one, or one that is
/// not a regular file, has its own marker). Read as the configuration is:
/// a FIFO put in a certificate's place must not block handshakes.
fn digest(files: &[&Path]) -> [u8; 32] {
    let mut d = Sha256::new();
    for path in files {
        match crate::util::read_regular_file(path) {
            Ok(text) => {
                d.update((text.len() as u64).to_le_bytes());
                d.update(text.as_bytes());
            }
            Err(_) => d.update(u64::MAX.to_le_bytes()),
        }
    }
    d.finalize().into()
}

const CERT_NOT_AFTER: Desc = Desc::gauge(
    "herakles_tls_certificate_expiry_timestamp_seconds",
    "Unix time at which the served TLS certificate expires (its notAfter).",
);
const CERT_RELOADS: Desc = Desc::counter(
    "herakles_tls_certificate_reloads_total",
    "Changes of the TLS certificate, key or client CA files seen since the TLS settings were \
     loaded, by result: success (now served) or failure (the previous files are still served).",
);

/// The end of the certificate's validity (`notAfter`), in Unix seconds.
/// `None` for a certificate x509-parser cannot read, which rustls served
/// all the same: the metric is then absent rather than wrong.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// A configuration built from the files, and what the metrics say of it.
struct Loaded {
    config: Arc<ServerConfig>,
    not_after: Option<i64>,
}

/// What the acceptor has done with the certificate files since it was
/// built, for the exporter's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CertificateState {
    /// Changed files that loaded and are now served.
    pub ok: u64,
    /// Changed files that did not load (the previous ones are still served).
    pub failed: u64,
    /// When the certificate served now expires (Unix seconds).
    pub not_after: Option<i64>,
}

/// What the acceptor serves now, and what the files looked like when it
/// last checked them.
struct Current {
    /// `None`: compare contents at the next handshake.
    stamps: Option<Vec<FileStamp>>,
    /// Of the contents last loaded, whether they loaded or not.
    digest: [u8; 32],
    loaded: Loaded,
}

/// Performs TLS handshakes with the current certificate, reloading it when
/// its files change. Shared by every connection (`Arc`).
pub struct TlsAcceptor {
    settings: TlsSettings,
    current: Mutex<Current>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Load the files and build the configuration; fails as
    /// [`TlsSettings::server_config`] does.
    pub fn new(settings: TlsSettings) -> Result<TlsAcceptor, TlsError> {
        // Stamps and digest first: a file replaced between them and the
        // read is then seen as changed at the next handshake, never missed.
        let files = settings.files();
        let current = Current {
            stamps: stamps(&files),
            digest: digest(&files),
            loaded: settings.load()?,
        };
        Ok(TlsAcceptor {
            settings,
            current: Mutex::new(current),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configuration for the next handshake: the current one, or a new
    /// one if the certificate, key or client CA file changed and loads.
    /// Costs two or three `stat` calls when nothing changed.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let files = self.settings.files();
        let now = stamps(&files);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && current.stamps == now {
            return Arc::clone(&current.loaded.config);
        }
        current.stamps = now;
        let digest = digest(&files);
        if digest == current.digest {
            return Arc::clone(&current.loaded.config);
        }
        current.digest = digest;
        match self.settings.load() {
            Ok(loaded) => {
                current.loaded = loaded;
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    cert_file = %self.settings.cert_file.display(),
                    "TLS certificate files changed; serving the new certificate"
                );
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    error = %e,
                    "TLS certificate files changed but do not load; still serving the previous certificate"
                );
            }
        }
        Arc::clone(&current.loaded.config)
    }

    /// Perform the server side of a TLS handshake on `io`. The caller bounds
    /// its time (a client that never finishes the handshake holds a
    /// connection like one that never sends a request head).
    pub async fn accept<IO>(&self, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        tokio_rustls::TlsAcceptor::from(self.server_config())
            .accept(io)
            .await
    }

    /// The exporter's own metrics about the certificate: when the served
    /// one expires, and how renewals went.
    pub fn render(&self, out: &mut MetricSink) {
        let state = self.certificate_state();
        if let Some(t) = state.not_after {
            out.single(&CERT_NOT_AFTER, t as f64);
        }
        let mut reloads = out.family(&CERT_RELOADS);
        reloads.sample(&[("result", "success")], state.ok as f64);
        reloads.sample(&[("result", "failure")], state.failed as f64);
    }

    pub fn certificate_state(&self) -> CertificateState {
        let not_after = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .loaded
            .not_after;
        CertificateState {
            ok: self.reloads_ok.load(Ordering::Relaxed),
            failed: self.reloads_failed.load(Ordering::Relaxed),
            not_after,
        }
    }
}
