//! Serving securely: HTTPS, client certificates, basic authentication and
//! security headers, configured by a web config file in exporter-toolkit's
//! format (`--web.config.file`), the one node_exporter and most Prometheus
//! exporters read.
//!
//! The listener uses it in three places:
//!
//! 1. Load: [`configured`] (the file of `web_config_file`, or
//!    [`WebConfig::from_spec_keys`] for the main config's `enable_tls`),
//!    then [`WebSecurity::new`]; the exporter holds the result in a
//!    [`WebSlot`], and a reload replaces it there with
//!    [`WebSlot::replace`] only if both succeed.
//! 2. Accept: if [`WebSecurity::tls`] is `Some`, run
//!    [`TlsAcceptor::accept`] on the socket (under the listener's header
//!    timeout) and serve HTTP on the stream it returns.
//! 3. Request: [`WebSecurity::authorize`] before routing (`Err` is the 401
//!    to send), and [`WebSecurity::finish`] on every response, 401s
//!    included.
//!
//! `/config` shows [`WebSecurity::redacted`], which has no secret in it.
//!
//! See docs/security.md for the file's keys and what is refused.

mod auth;
mod config;
mod headers;
mod tls;
mod values;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, AUTHORIZATION};
use http::Response;
use http_body_util::Full;

pub use auth::{unauthorized, Access, BasicAuth, BcryptHash, Users, CACHE_ENTRIES, CHALLENGE};
pub use config::{Redacted, RedactedHttp, RedactedTls, WebConfig};
pub use headers::ResponseHeaders;
pub use tls::{CertificateState, TlsAcceptor, TlsError, TlsSettings};
pub use values::{CipherSuite, ClientAuth, Curve, TlsVersion};

use crate::config::{Config, ConfigError};
use crate::util::Swap;

/// The web configuration `config` asks for: the file `web_config_file`
/// names, else HTTPS with the main config's `enable_tls`, `tls_cert_path`
/// and `tls_key_path`, else plain HTTP. (Config validation refuses both at
/// once.) Every file named is read and checked; an error names the file,
/// line and key, or the main config's key.
pub fn configured(config: &Config) -> Result<WebConfig, ConfigError> {
    if !config.web_config_file.is_empty() {
        return WebConfig::load(Path::new(&config.web_config_file));
    }
    WebConfig::from_spec_keys(
        config.enable_tls,
        &config.tls_cert_path,
        &config.tls_key_path,
    )
    .map_err(|e| ConfigError::msg(e.to_string()))
}

/// A web config made ready to serve: the TLS acceptor (reloading renewed
/// certificates), the basic auth checker with its cache, and the headers.
/// One per web config, shared by every listener and connection.
#[derive(Debug)]
pub struct WebSecurity {
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<BasicAuth>>,
    headers: ResponseHeaders,
    redacted: Redacted,
}

impl WebSecurity {
    /// Build from a checked config. This reads the certificate files again:
    /// it fails only if they changed for the worse since the config was
    /// loaded.
    pub fn new(config: &WebConfig) -> Result<WebSecurity, TlsError> {
        Ok(WebSecurity {
            tls: config.tls.clone().map(TlsAcceptor::new).transpose()?,
            auth: BasicAuth::new(&config.users).map(Arc::new),
            headers: config.headers.clone(),
            redacted: config.redacted(),
        })
    }

    /// Plain HTTP, no users, no headers: serving without a web config.
    pub fn plain_http() -> WebSecurity {
        let config = WebConfig::plain_http();
        WebSecurity {
            tls: None,
            auth: None,
            headers: config.headers.clone(),
            redacted: config.redacted(),
        }
    }

    /// The configuration this was built from as `/config` shows it: no
    /// hash, no key contents.
    pub fn redacted(&self) -> &Redacted {
        &self.redacted
    }

    /// `None`: serve plain HTTP.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// The basic auth checker, `None` when no user is configured.
    pub fn basic_auth(&self) -> Option<&Arc<BasicAuth>> {
        self.auth.as_ref()
    }

    /// Whether the request may proceed; `Err` is the 401 to answer with
    /// (headers applied). Without users, every request may.
    pub async fn authorize(&self, request: &HeaderMap) -> Result<(), Response<Full<Bytes>>> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        match auth.check(request.get(AUTHORIZATION)).await {
            Access::Granted => Ok(()),
            Access::Denied => {
                let mut response = unauthorized();
                self.finish(response.headers_mut());
                Err(response)
            }
        }
    }

    /// Add the configured security headers to a response's headers.
    pub fn finish(&self, response: &mut HeaderMap) {
        self.headers.apply(response);
    }
}

/// The web security new connections are served with, replaceable while the
/// exporter serves: a reload (SIGHUP) builds a new [`WebSecurity`] and puts
/// it here with [`WebSlot::replace`]. Each connection takes the current one
/// when it is accepted and keeps it until it closes, so a kept-alive
/// connection finishes under the settings it started with and every new
/// connection gets the new ones. Clones share the slot.
#[derive(Debug, Clone)]
pub struct WebSlot(Arc<Swap<WebSecurity>>);

impl WebSlot {
    pub fn new(web: WebSecurity) -> WebSlot {
        WebSlot(Arc::new(Swap::new(Arc::new(web))))
    }

    /// What a connection accepted now is served with.
    pub fn current(&self) -> Arc<WebSecurity> {
        self.0.load()
    }

    /// Serve connections accepted from now on with `web`; returns what was
    /// in the slot (connections that took it keep it until they close).
    pub fn replace(&self, web: WebSecurity) -> Arc<WebSecurity> {
        self.0.replace(Arc::new(web))
    }
}
